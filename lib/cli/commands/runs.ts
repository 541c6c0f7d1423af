import * as fs from 'node:fs';
import { Command, Option } from 'commander';
import { METHODS } from '../../recipe';
import { GATE_REJECTED_ERROR, parseRunRequest, planRun, RunRequest, RunRequestError, runIdFor } from '../../run-request';
import { nonNegativeNumber, positiveInt, positiveNumber } from '../args';
import { CliError } from '../errors';
import { duration, metric, table, time } from '../format';
import type { CommandContext } from '../program';
import { RunStatus } from '../run-client';


/** Exit codes of `watch` (and `train --wait`): 0 succeeded, 1 failed/aborted/timed out, 2 rejected by the gate. */
export function runExitCode(status: Pick<RunStatus, 'status' | 'error'>): number | undefined {
  if (status.status === 'RUNNING' || status.status === 'PENDING_REDRIVE') return undefined;
  if (status.status === 'SUCCEEDED') return 0;
  if (status.status === 'FAILED' && status.error === GATE_REJECTED_ERROR) return 2;
  return 1;
}

interface TrainOptions {
  dataset: string;
  baseModel: string;
  baseModelParameters?: number;
  method?: string;
  recipe?: string;
  instance?: string;
  instanceCount?: number;
  spot: boolean;
  maxRuntimeHours?: number;
  maxEvalLossRatio?: number;
  maxForgettingIncrease?: number;
  autoApprove?: boolean;
  deployEndpoint?: string;
  adapter?: string;
  runName?: string;
  wait?: boolean;
  interval: number;
}

export function registerRunCommands(program: Command, ctx: CommandContext): void {
  program
    .command('train')
    .description('Start a fine-tuning run. Starting the same request again does not start a second run.')
    .requiredOption('--dataset <name@sha256|name>', 'dataset version from `tuneyard upload` (a bare name: its newest version)')
    .requiredOption('--base-model <model>', 's3://<bucket>/base-models/<name>/ (staged) or a Hugging Face Hub id')
    .option('--base-model-parameters <billions>', 'parameters of the base model in billions, when its name does not tell', positiveNumber)
    .addOption(new Option('--method <method>', 'training method (default: the recipe\'s, else lora)').choices(METHODS))
    .option('--recipe <file>', 'JSON recipe: method and hyperparameters (see the README\'s recipe fields)')
    .option('--instance <type>', 'SageMaker GPU instance type (default: ml.g5.2xlarge)')
    .option('--instance-count <n>', 'instances (more than 1 needs recipe.distribution ddp or fsdp)', positiveInt)
    .option('--no-spot', 'use on-demand instead of managed spot capacity')
    .option('--max-runtime-hours <hours>', 'training time limit (default: 24)', positiveNumber)
    .option('--max-eval-loss-ratio <ratio>', 'gate: tuned/base eval loss at most this (default: 1.0)', positiveNumber)
    .option('--max-forgetting-increase <n>', 'gate: probe loss increase at most this (default: 0.1)', nonNegativeNumber)
    .option('--auto-approve', 'register the model as Approved instead of PendingManualApproval')
    .option('--deploy-endpoint <name>', 'after approval, deploy to this vLLM endpoint (with --adapter when it serves adapters as inference components)')
    .option('--adapter <name>', 'the adapter name on --deploy-endpoint')
    .option('--run-name <label>', 'a label for people (part of the request, so it also makes a new run id)')
    .option('--wait', 'watch the run until it ends (exit code as `tuneyard watch`)')
    .option('--interval <seconds>', 'seconds between polls with --wait', positiveNumber, 15)
    .action(async (opts: TrainOptions, command: Command) => {
      ctx.use(command);
      const client = ctx.runClient();
      const dataset = await resolveDataset(ctx, opts.dataset);
      const request = buildRunRequest(opts, dataset);
      const plane = await client.plane();
      // The pipeline's PlanRun repeats these checks; here they fail before anything starts.
      // The KMS keys are placeholders (they only shape the plan) and Hub ids are let through:
      // whether the plane allows them is known to the pipeline only.
      let plan;
      try {
        plan = planRun(request, {
          bucketName: plane.dataBucketName,
          volumeKmsKeyArn: 'arn:aws:kms:us-east-1:000000000000:key/preflight',
          outputKmsKeyArn: 'arn:aws:kms:us-east-1:000000000000:key/preflight',
          allowHubModels: true,
          jobNamePrefix: plane.trainingJobPrefix,
        });
      } catch (e) {
        if (e instanceof RunRequestError) throw new CliError(e.message);
        throw e;
      }
      if (!(await client.datasetVersionExists(request.dataset))) {
        throw new CliError(`dataset ${request.dataset.name}@${request.dataset.sha256} not found in ${plane.dataBucketName}: upload it with \`tuneyard upload FILE --name ${request.dataset.name}\``);
      }
      const runId = runIdFor(request);
      const started = await client.startRun(runId, request);
      ctx.print(
        { runId, executionArn: started.executionArn, existing: started.existing, trainingJobName: plan.trainingJobName, preflight: plan.preflight },
        started.existing
          ? `run ${runId} already exists for this request: nothing started\n  watch it: tuneyard watch ${runId}\n`
          : `started run ${runId}\n  ${plan.preflight.advice}\n  watch it: tuneyard watch ${runId}\n`,
      );
      if (opts.wait) ctx.exitCode = await watchRun(ctx, runId, opts.interval);
    });

  program
    .command('watch')
    .description('Follow a run: pipeline stage, training job status, loss, elapsed and estimated time. Exits 0 succeeded, 1 failed, 2 rejected by the gate.')
    .argument('<run>', 'run id (or execution ARN)')
    .option('--interval <seconds>', 'seconds between polls', positiveNumber, 15)
    .action(async (run: string, opts: { interval: number }, command: Command) => {
      ctx.use(command);
      ctx.exitCode = await watchRun(ctx, run, opts.interval);
    });

  program
    .command('runs')
    .description('List runs, newest first.')
    .option('--max <n>', 'how many', positiveInt, 20)
    .addOption(new Option('--status <status>', 'only runs in this state').choices(['RUNNING', 'SUCCEEDED', 'FAILED', 'TIMED_OUT', 'ABORTED']))
    .action(async (opts: { max: number; status?: string }, command: Command) => {
      ctx.use(command);
      const runs = await ctx.runClient().listRuns(opts.max, opts.status);
      const rows = runs.map((r) => [r.name ?? '-', r.status ?? '-', time(r.startDate), r.stopDate ? duration(r.stopDate.getTime() - (r.startDate?.getTime() ?? 0)) : '-']);
      ctx.print(
        runs.map((r) => ({ runId: r.name, status: r.status, startDate: r.startDate, stopDate: r.stopDate, executionArn: r.executionArn })),
        runs.length ? table(['RUN', 'STATUS', 'STARTED', 'DURATION'], rows) : 'no runs yet: start one with `tuneyard train`\n',
      );
    });

  program
    .command('describe')
    .description('Show a run: its request, stage, training job and outcome.')
    .argument('<run>', 'run id (or execution ARN)')
    .action(async (run: string, _opts: unknown, command: Command) => {
      ctx.use(command);
      const status = await ctx.runClient().describeRun(run);
      ctx.print(status, describeText(status, ctx.deps.now()));
    });

  program
    .command('cancel')
    .description('Stop a run: its execution, and its training job when that is still in progress.')
    .argument('<run>', 'run id (or execution ARN)')
    .option('--reason <text>', 'why: recorded with your identity in the stopped execution and its notification')
    .action(async (run: string, opts: { reason?: string }, command: Command) => {
      ctx.use(command);
      const result = await ctx.runClient().cancelRun(run, opts.reason);
      const parts = [
        result.executionStopped ? 'execution stopped' : 'execution had already ended',
        result.trainingJobStopped ? 'training job stopping' : 'no training job in progress',
      ];
      ctx.print(result, `run ${result.runId}: ${parts.join('; ')}\n`);
    });

  program
    .command('logs')
    .description('Print the training job\'s logs (CloudWatch Logs, /aws/sagemaker/TrainingJobs).')
    .argument('<run>', 'run id')
    .option('--tail <n>', 'only the last n lines', positiveInt)
    .option('--follow', 'keep printing new lines until the training job ends')
    .option('--interval <seconds>', 'seconds between polls with --follow', positiveNumber, 10)
    .action(async (run: string, opts: { tail?: number; follow?: boolean; interval: number }, command: Command) => {
      ctx.use(command);
      const client = ctx.runClient();
      const runId = run.startsWith('arn:') ? run.split(':').pop()! : run;
      let since: number | undefined;
      let printed = new Set<string>();
      for (;;) {
        const lines = await client.trainingLogs(runId, { startTime: since, limit: since === undefined ? opts.tail : undefined });
        const seen = new Set<string>();
        for (const line of lines) {
          const key = `${line.stream}\u0000${line.timestamp}\u0000${line.message}`;
          seen.add(key);
          if (printed.has(key)) continue;
          ctx.io.out(ctx.global.json ? JSON.stringify(line) + '\n' : `${line.message.replace(/\n$/, '')}\n`);
          since = Math.max(since ?? 0, line.timestamp);
        }
        printed = seen;
        if (!opts.follow) break;
        const job = await client.trainingJob(runId);
        if (job && job.status !== 'InProgress' && job.status !== 'Stopping') break;
        await ctx.deps.sleep(opts.interval * 1000);
      }
    });
}

/** `name@sha256` as given, or a bare name resolved to its newest version. */
async function resolveDataset(ctx: CommandContext, value: string): Promise<{ name: string; sha256: string }> {
  const at = value.indexOf('@');
  if (at >= 0) return { name: value.slice(0, at), sha256: value.slice(at + 1) };
  const latest = await ctx.runClient().latestDatasetVersion(value);
  if (!latest) throw new CliError(`dataset "${value}" has no versions: upload one with \`tuneyard upload FILE --name ${value}\``);
  return latest;
}

/** The RunRequest of `train`'s options, validated (errors name the field and the fix). */
export function buildRunRequest(opts: TrainOptions, dataset: { name: string; sha256: string }): RunRequest {
  let recipe: Record<string, unknown> = {};
  if (opts.recipe) {
    let text: string;
    try {
      text = fs.readFileSync(opts.recipe, 'utf8');
    } catch (e) {
      throw new CliError(`${opts.recipe}: cannot read the recipe (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    try {
      recipe = JSON.parse(text);
    } catch (e) {
      throw new CliError(`${opts.recipe}: not valid JSON (${(e as Error).message})`);
    }
    if (!recipe || typeof recipe !== 'object' || Array.isArray(recipe)) throw new CliError(`${opts.recipe}: a recipe is a JSON object such as {"method":"lora","epochs":2}`);
  }
  if (opts.adapter && !opts.deployEndpoint) throw new CliError('--adapter needs --deploy-endpoint NAME');
  const thresholds =
    opts.maxEvalLossRatio !== undefined || opts.maxForgettingIncrease !== undefined
      ? { maxEvalLossRatio: opts.maxEvalLossRatio, maxForgettingIncrease: opts.maxForgettingIncrease }
      : undefined;
  const raw = {
    dataset,
    baseModel: opts.baseModel,
    baseModelParameters: opts.baseModelParameters,
    recipe: { ...recipe, method: opts.method ?? recipe.method ?? 'lora' },
    instanceType: opts.instance,
    instanceCount: opts.instanceCount,
    spot: opts.spot,
    maxRuntimeHours: opts.maxRuntimeHours,
    thresholds,
    autoApprove: opts.autoApprove ?? false,
    deploy: opts.deployEndpoint ? { endpointName: opts.deployEndpoint, adapterName: opts.adapter } : null,
    runName: opts.runName,
  };
  try {
    return parseRunRequest(JSON.parse(JSON.stringify(raw)));
  } catch (e) {
    if (e instanceof RunRequestError) throw new CliError(e.message);
    throw e;
  }
}

/** Polls a run and prints a line whenever it changes; returns the exit code of its outcome. */
export async function watchRun(ctx: CommandContext, run: string, intervalSeconds: number): Promise<number> {
  const client = ctx.runClient();
  let last = '';
  for (;;) {
    const status = await client.describeRun(run);
    const line = ctx.global.json ? JSON.stringify(watchJson(status, ctx.deps.now())) : watchLine(status, ctx.deps.now());
    // The elapsed and remaining times change every poll: compare without them, so that a new
    // line means the stage, the job or a metric changed.
    const key = line.replace(/ \| elapsed .*$|"(elapsed|remaining)Seconds":\d+,?/g, '');
    if (key !== last) {
      ctx.io.out(line + '\n');
      last = key;
    }
    const code = runExitCode(status);
    if (code !== undefined) {
      if (!ctx.global.json) ctx.io.err(outcomeText(status) + '\n');
      return code;
    }
    await ctx.deps.sleep(intervalSeconds * 1000);
  }
}

/** Seconds of training left: the training time so far scaled by the epochs still to go. */
export function remainingSeconds(status: RunStatus, now: Date): number | undefined {
  const job = status.trainingJob;
  const epoch = job?.metrics.epoch;
  if (!job?.startTime || job.status !== 'InProgress' || !epoch || epoch <= 0) return undefined;
  const recipe = status.input?.recipe as { epochs?: number } | undefined;
  const total = recipe?.epochs ?? 1;
  if (epoch >= total) return 0;
  const spent = (now.getTime() - job.startTime.getTime()) / 1000;
  return Math.round((spent * (total - epoch)) / epoch);
}

function watchJson(status: RunStatus, now: Date) {
  const job = status.trainingJob;
  return {
    runId: status.runId,
    status: status.status,
    stage: status.stage,
    elapsedSeconds: Math.round(((status.stopDate ?? now).getTime() - (status.startDate ?? now).getTime()) / 1000),
    trainingJob: job && { name: job.name, status: job.status, secondaryStatus: job.secondaryStatus, trainLoss: job.metrics.train_loss, evalLoss: job.metrics.eval_loss, epoch: job.metrics.epoch },
    remainingSeconds: remainingSeconds(status, now),
    error: status.error,
  };
}

/** One line of `watch`: `[RUNNING] Train | job InProgress/Training | train_loss 1.234 eval_loss 1.3 epoch 0.5 | elapsed 12m 03s, ~24m left`. */
export function watchLine(status: RunStatus, now: Date): string {
  const parts = [`[${status.status}] ${status.stage ?? 'starting'}`];
  const job = status.trainingJob;
  if (job) {
    parts.push(`job ${job.status}${job.secondaryStatus ? `/${job.secondaryStatus}` : ''}`);
    const m = job.metrics;
    const metrics = [
      m.train_loss !== undefined ? `train_loss ${metric(m.train_loss)}` : '',
      m.eval_loss !== undefined ? `eval_loss ${metric(m.eval_loss)}` : '',
      m.epoch !== undefined ? `epoch ${metric(m.epoch)}` : '',
    ].filter(Boolean);
    if (metrics.length) parts.push(metrics.join(' '));
  }
  const elapsed = (status.stopDate ?? now).getTime() - (status.startDate ?? now).getTime();
  const left = remainingSeconds(status, now);
  parts.push(`elapsed ${duration(elapsed)}${left !== undefined ? `, ~${duration(left * 1000)} of training left` : ''}`);
  return parts.join(' | ');
}

function outcomeText(status: RunStatus): string {
  switch (runExitCode(status)) {
    case 0:
      return `run ${status.runId} succeeded`;
    case 2:
      return `run ${status.runId} was rejected by the eval gate: ${status.cause ?? ''}`.trimEnd();
    default:
      return `run ${status.runId} ${status.status.toLowerCase().replace('_', ' ')}${status.error ? `: ${status.error}` : ''}${status.cause ? ` (${status.cause})` : ''}`;
  }
}

function describeText(status: RunStatus, now: Date): string {
  const input = (status.input ?? {}) as Partial<RunRequest>;
  const rows: [string, string][] = [
    ['run', status.runId],
    ['status', status.status],
    ['stage', status.stage ?? '-'],
    ['started', time(status.startDate)],
    ['elapsed', duration((status.stopDate ?? now).getTime() - (status.startDate ?? now).getTime())],
  ];
  if (input.dataset) rows.push(['dataset', `${input.dataset.name}@${input.dataset.sha256}`]);
  if (input.baseModel) rows.push(['base model', input.baseModel]);
  if (input.recipe) rows.push(['recipe', JSON.stringify(input.recipe)]);
  if (input.instanceType) rows.push(['instance', `${input.instanceCount ?? 1} x ${input.instanceType}${input.spot === false ? '' : ' (spot)'}`]);
  const job = status.trainingJob;
  if (job) {
    rows.push(['training job', `${job.name}: ${job.status}${job.secondaryStatus ? `/${job.secondaryStatus}` : ''}`]);
    for (const [name, value] of Object.entries(job.metrics)) rows.push([`  ${name}`, metric(value)]);
    if (job.billableSeconds !== undefined) rows.push(['  billable', duration(job.billableSeconds * 1000)]);
    if (job.failureReason) rows.push(['  failure', job.failureReason]);
  }
  if (status.error) rows.push(['error', status.error]);
  if (status.cause) rows.push(['cause', status.cause]);
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n') + '\n';
}
