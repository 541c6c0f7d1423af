import { DescribeTrainingJobCommand, DescribeTrainingJobCommandOutput, SageMakerClient } from '@aws-sdk/client-sagemaker';
import { isNotFound } from '../../../lib/aws-errors';

/**
 * InspectTraining / InspectEvaluation: what the pipeline does after its Train or Evaluate state
 * failed. The job's name is deterministic (the run id), so the job itself says what happened:
 *
 * - it runs (a CreateTrainingJob answer was lost and the retry met `ResourceInUse`, or the `.sync`
 *   watch failed): the run adopts it and waits (`running`);
 * - it completed: the run goes on with its result (`completed`);
 * - it failed or was stopped: the run fails with the job's FailureReason and what to do (`failed`);
 * - there is no job and the error was throttling or a service fault: the create is tried again,
 *   a bounded number of times (`retry`); any other error (ValidationException, quota, access)
 *   fails the run at once with what to do, never retried.
 */

/** The input: which stage, and the state the failed Task left (its `$.error`, the plan, earlier inspections). */
export interface InspectJobEvent {
  readonly stage: 'Train' | 'Evaluate';
  readonly state: {
    readonly plan: { readonly trainingJobName: string; readonly evaluationJobName: string };
    readonly error?: { readonly Error?: string; readonly Cause?: string };
    /** The stage's previous inspection (`$.trainInspection` / `$.evaluateInspection`), when there was one. */
    readonly trainInspection?: { readonly attempts?: number };
    readonly evaluateInspection?: { readonly attempts?: number };
  };
}

/** The fields of the job the states keep (as the `.sync` Task's ResultSelector: `JOB_RESULT_FIELDS`). */
export interface InspectedJob {
  readonly TrainingJobName: string;
  readonly TrainingJobStatus: string;
  readonly SecondaryStatus: string;
  readonly ModelArtifacts: { readonly S3ModelArtifacts: string };
}

export interface InspectJobResult {
  readonly outcome: 'running' | 'completed' | 'failed' | 'retry';
  /** The job's status when it exists. */
  readonly status?: string;
  /** How many times the create was tried again after a transient error (this run, this stage). */
  readonly attempts: number;
  /** Seconds to wait before the next look (`running`) or the next create (`retry`). */
  readonly waitSeconds: number;
  /** The completed job (`completed`). */
  readonly job?: InspectedJob;
  /** What fails the run (`failed`): the error's name and one short cause with the fix. */
  readonly error?: { readonly Error: string; readonly Cause: string };
}

/** The most creates a stage tries after transient errors (throttling, service faults). */
export const MAX_CREATE_RETRIES = 4;
/** How often an adopted job is looked at. */
export const ADOPTED_JOB_POLL_SECONDS = 300;
/** The longest cause a failure carries (the notification and the Fail state's cause). */
export const MAX_CAUSE_LENGTH = 1500;

const TRANSIENT = /ThrottlingException|Throttling|Rate exceeded|ServiceUnavailable|InternalFailure|InternalServerError|InternalError|RequestLimitExceeded|TooManyRequests|SlowDown|Status Code: 5\d\d/i;

/** Known causes of a failed job or a refused create, and what to do. The first match wins. */
const ADVICE: Array<{ readonly match: RegExp; readonly action: string }> = [
  {
    match: /CUDA out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED|out of memory/i,
    action:
      'The GPU ran out of memory: lower recipe.batchSize or maxLength (raise gradientAccumulation to keep the effective batch), turn on gradientCheckpointing, use qlora, or a larger instance; `tuneyard estimate` shows the memory a recipe needs.',
  },
  {
    match: /MaxWaitTimeExceeded|InsufficientCapacity|insufficient capacity|capacity/i,
    action:
      'No spot capacity came within MaxWaitTimeInSeconds: run again with spot false, another instance type or region, or a longer maxRuntimeHours (spot waits up to twice the runtime).',
  },
  {
    match: /MaxRuntimeExceeded/i,
    action: 'The job reached maxRuntimeHours: raise maxRuntimeHours, or train less (fewer epochs, a smaller dataset or maxLength).',
  },
  {
    match: /ResourceLimitExceeded|service limit|quota/i,
    action:
      "The account's SageMaker quota for this instance type is too low: request an increase in Service Quotas (\"<instance> for spot training job usage\" or \"... for training job usage\"), or use another instance type.",
  },
  {
    match: /AccessDenied|not authorized|Forbidden|KMS.*(denied|disabled)/i,
    action:
      "Access was denied: the training role reads only the plane bucket's datasets/, base-models/ and artifacts/ prefixes with its KMS key; keep the base model and datasets there, and check any key or bucket policy you changed.",
  },
  {
    match: /No S3 objects? (were )?found|does not exist|NoSuchKey|channel|config\.json|Can't load|not a valid model identifier/i,
    action:
      'A channel is missing or empty: the base model must be a complete Hugging Face model folder (config.json, weights, tokenizer) under base-models/<name>/ (README: "Staging a base model"), and the dataset version must have train.jsonl and eval.jsonl.',
  },
  {
    match: /ValidationException/i,
    action: 'SageMaker refused the request as invalid: the message names the field; fix the RunRequest (or the plane configuration) and start a new run.',
  },
];

/** The advice for a failure text, or a pointer to the logs. */
export function adviceFor(text: string): string {
  return ADVICE.find((a) => a.match.test(text))?.action ?? 'Read the job log in CloudWatch Logs (/aws/sagemaker/TrainingJobs, the job name as stream prefix) and the README runbook "Pipeline runs failed".';
}

/** `text` clipped to `max` characters, saying how much was left out. */
export function clip(text: string, max: number = MAX_CAUSE_LENGTH): string {
  if (text.length <= max) return text;
  const note = ` … [${text.length - max} more characters]`;
  return text.slice(0, Math.max(0, max - note.length)) + note;
}

/** The describe client the handler needs (so tests can pass a fake). */
export type SageMakerDescriber = Pick<SageMakerClient, 'send'>;

/** Decides what the run does after a failed Train or Evaluate state. */
export async function inspectJob(event: InspectJobEvent, sagemaker: SageMakerDescriber): Promise<InspectJobResult> {
  const jobName = event.stage === 'Train' ? event.state.plan.trainingJobName : event.state.plan.evaluationJobName;
  const attempts = (event.stage === 'Train' ? event.state.trainInspection : event.state.evaluateInspection)?.attempts ?? 0;
  const errorName = event.state.error?.Error ?? 'Unknown';
  const errorCause = event.state.error?.Cause ?? '';
  const job = await describe(sagemaker, jobName);
  const what = event.stage === 'Train' ? 'training' : 'evaluation';

  if (job) {
    const status = job.TrainingJobStatus ?? 'Unknown';
    if (status === 'InProgress' || status === 'Stopping') {
      return { outcome: 'running', status, attempts, waitSeconds: ADOPTED_JOB_POLL_SECONDS };
    }
    if (status === 'Completed') {
      return {
        outcome: 'completed',
        status,
        attempts,
        waitSeconds: 0,
        job: {
          TrainingJobName: job.TrainingJobName ?? jobName,
          TrainingJobStatus: status,
          SecondaryStatus: job.SecondaryStatus ?? status,
          ModelArtifacts: { S3ModelArtifacts: job.ModelArtifacts?.S3ModelArtifacts ?? '' },
        },
      };
    }
    const reason = job.FailureReason ?? `${job.SecondaryStatus ?? status}, no reason given`;
    const secondary = job.SecondaryStatus && job.SecondaryStatus !== status ? ` (${job.SecondaryStatus})` : '';
    return {
      outcome: 'failed',
      status,
      attempts,
      waitSeconds: 0,
      error: {
        Error: `Tuneyard.${event.stage === 'Train' ? 'Training' : 'Evaluation'}${status === 'Stopped' ? 'Stopped' : 'Failed'}`,
        Cause: failureCause(`The ${what} job ${jobName} is ${status}${secondary}: ${reason}`, `${reason} ${job.SecondaryStatus ?? ''}`),
      },
    };
  }

  // No job: the create itself failed.
  const summary = `${errorName}: ${errorCause}`;
  if (TRANSIENT.test(summary) && attempts < MAX_CREATE_RETRIES) {
    return { outcome: 'retry', attempts: attempts + 1, waitSeconds: Math.min(300, 30 * 2 ** attempts) };
  }
  return {
    outcome: 'failed',
    attempts,
    waitSeconds: 0,
    error: {
      Error: errorName,
      Cause: failureCause(
        `SageMaker did not start the ${what} job ${jobName}${TRANSIENT.test(summary) ? ` (still refused after ${attempts} retries)` : ''}: ${errorCause || errorName}`,
        summary,
      ),
    },
  };
}

function failureCause(what: string, matchOn: string): string {
  const action = ` Fix: ${adviceFor(matchOn)}`;
  return clip(what, MAX_CAUSE_LENGTH - action.length) + action;
}

async function describe(sagemaker: SageMakerDescriber, name: string): Promise<DescribeTrainingJobCommandOutput | undefined> {
  try {
    return await sagemaker.send(new DescribeTrainingJobCommand({ TrainingJobName: name }));
  } catch (e) {
    // DescribeTrainingJob answers a missing job with ValidationException "Requested resource not found".
    if (isNotFound(e)) return undefined;
    throw e;
  }
}

let client: SageMakerClient | undefined;

/** The Lambda entry point. */
export async function handler(event: InspectJobEvent): Promise<InspectJobResult> {
  client ??= new SageMakerClient({});
  return inspectJob(event, client);
}
