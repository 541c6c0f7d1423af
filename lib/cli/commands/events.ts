import type { HistoryEvent } from '@aws-sdk/client-sfn';
import { Command } from 'commander';
import { duration, table, time } from '../format';
import type { CommandContext } from '../program';
import { TrainingJobStatus } from '../run-client';

/** One pipeline stage of a run, from the execution history. */
export interface StageEvent {
  /** The state's name (PlanRun, ValidateDataset, Train, Evaluate, Gate, Register, Deploy, Notify, ...). */
  readonly stage: string;
  readonly start?: Date;
  readonly end?: Date;
  /** running, succeeded, failed (an error was caught and the pipeline went on to its failure path), aborted, timed out. */
  readonly outcome: StageOutcome;
  readonly error?: string;
  readonly cause?: string;
}

export type StageOutcome = 'running' | 'succeeded' | 'failed' | 'aborted' | 'timed out';

interface OpenStage {
  stage: string;
  start?: Date;
  end?: Date;
  outcome: StageOutcome;
  error?: string;
  cause?: string;
}

/** The error and cause of a failure event (TaskFailed, LambdaFunctionFailed, ...), if the event is one. */
function failureOf(event: HistoryEvent): { error?: string; cause?: string } | undefined {
  if (!event.type || event.type.startsWith('Execution')) return undefined;
  if (!/(Failed|TimedOut|StartFailed|SubmitFailed)$/.test(event.type)) return undefined;
  for (const value of Object.values(event)) {
    if (value && typeof value === 'object' && !(value instanceof Date) && ('error' in value || 'cause' in value)) {
      const details = value as { error?: string; cause?: string };
      return { error: details.error, cause: details.cause };
    }
  }
  return {};
}

/**
 * The stages of a run, in the order they were entered: each state's start, end and outcome. A
 * state whose task failed and was caught ends "failed" with the error; a retried task that then
 * succeeded ends "succeeded"; the states still open when the execution failed, was stopped or timed
 * out end with it.
 */
export function stagesOf(events: readonly HistoryEvent[]): StageEvent[] {
  const stages: OpenStage[] = [];
  const open: OpenStage[] = [];
  for (const event of events) {
    const entered = event.stateEnteredEventDetails?.name;
    const exited = event.stateExitedEventDetails?.name;
    if (entered !== undefined) {
      const stage: OpenStage = { stage: entered, start: event.timestamp, outcome: 'running' };
      stages.push(stage);
      open.push(stage);
      continue;
    }
    if (exited !== undefined) {
      const at = open.map((s) => s.stage).lastIndexOf(exited);
      if (at >= 0) {
        const [stage] = open.splice(at, 1);
        stage.end = event.timestamp;
        stage.outcome = stage.error !== undefined || stage.outcome === 'failed' ? 'failed' : 'succeeded';
      }
      continue;
    }
    const current = open[open.length - 1];
    const failure = failureOf(event);
    if (failure && current) {
      current.outcome = 'failed';
      current.error = failure.error ?? event.type;
      current.cause = failure.cause;
    } else if (current && event.type && /Succeeded$/.test(event.type) && !event.type.startsWith('Execution')) {
      // a retry that succeeded clears the earlier attempt's failure
      current.outcome = 'running';
      current.error = undefined;
      current.cause = undefined;
    }
    const ended = executionEnd(event);
    if (ended) {
      for (const stage of open.splice(0)) {
        stage.end = event.timestamp;
        stage.outcome = ended.outcome === 'succeeded' ? 'succeeded' : ended.outcome;
        stage.error ??= ended.error;
        stage.cause ??= ended.cause;
      }
    }
  }
  return stages.map((s) => ({ ...s }));
}

function executionEnd(event: HistoryEvent): { outcome: StageOutcome; error?: string; cause?: string } | undefined {
  switch (event.type) {
    case 'ExecutionSucceeded':
      return { outcome: 'succeeded' };
    case 'ExecutionFailed':
      return { outcome: 'failed', error: event.executionFailedEventDetails?.error, cause: event.executionFailedEventDetails?.cause };
    case 'ExecutionAborted':
      return { outcome: 'aborted', error: event.executionAbortedEventDetails?.error, cause: event.executionAbortedEventDetails?.cause };
    case 'ExecutionTimedOut':
      return { outcome: 'timed out', error: event.executionTimedOutEventDetails?.error, cause: event.executionTimedOutEventDetails?.cause };
    default:
      return undefined;
  }
}

function took(start?: Date, end?: Date): string {
  return start && end ? duration(end.getTime() - start.getTime()) : '-';
}

export function registerEventsCommand(program: Command, ctx: CommandContext): void {
  program
    .command('events')
    .description(
      'What happened in a run: each pipeline stage with its start, end and outcome (the execution history), ' +
        'and the training job\'s status transitions (Starting, Downloading, Training, Uploading, ...).',
    )
    .argument('<run>', 'run id (or execution ARN)')
    .action(async (run: string, _opts: unknown, command: Command) => {
      ctx.use(command);
      const client = ctx.runClient();
      const { executionArn, execution, runId } = await client.findRun(run);
      const [history, job] = await Promise.all([client.executionHistory(executionArn), client.trainingJob(runId)]);
      const stages = stagesOf(history);
      const status = execution.status ?? 'UNKNOWN';
      ctx.print(
        {
          runId,
          status,
          startDate: execution.startDate,
          stopDate: execution.stopDate,
          stages: stages.map((s) => ({ ...s, seconds: s.start && s.end ? Math.round((s.end.getTime() - s.start.getTime()) / 1000) : undefined })),
          trainingJob: job ? { name: job.name, status: job.status, failureReason: job.failureReason, transitions: job.secondaryStatusTransitions ?? [] } : null,
        },
        eventsText(runId, status, stages, job),
      );
    });
}

function eventsText(runId: string, status: string, stages: StageEvent[], job: TrainingJobStatus | undefined): string {
  let text = `run ${runId}: ${status}\n`;
  text += stages.length
    ? table(
        ['STAGE', 'STARTED', 'ENDED', 'TOOK', 'OUTCOME'],
        stages.map((s) => [s.stage, time(s.start), time(s.end), took(s.start, s.end), s.outcome + (s.error ? `: ${s.error}${s.cause ? ` (${oneLine(s.cause)})` : ''}` : '')]),
      )
    : 'no stage entered yet\n';
  if (!job) return text + 'training job: not created yet (the Train stage creates it)\n';
  text += `training job ${job.name}: ${job.status}${job.failureReason ? ` (${oneLine(job.failureReason)})` : ''}\n`;
  const transitions = job.secondaryStatusTransitions ?? [];
  text += transitions.length
    ? table(
        ['STATUS', 'STARTED', 'ENDED', 'TOOK', 'MESSAGE'],
        transitions.map((t) => [t.status, time(t.startTime), time(t.endTime), took(t.startTime, t.endTime), oneLine(t.message ?? '')]),
      )
    : 'no status transitions yet\n';
  return text;
}

/** A message on one line, at most 200 characters. */
function oneLine(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length <= 200 ? flat : `${flat.slice(0, 197)}...`;
}
