import * as fs from 'node:fs';
import { CloudFormationClient, DescribeStacksCommand } from '@aws-sdk/client-cloudformation';
import { CloudWatchLogsClient, DescribeLogStreamsCommand, GetLogEventsCommand } from '@aws-sdk/client-cloudwatch-logs';
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client, _Object } from '@aws-sdk/client-s3';
import {
  DescribeModelPackageCommand,
  DescribeModelPackageCommandOutput,
  DescribeTrainingJobCommand,
  DescribeTrainingJobCommandOutput,
  ListModelPackagesCommand,
  ModelApprovalStatus,
  ModelPackageSummary,
  SageMakerClient,
  StopTrainingJobCommand,
  UpdateModelPackageCommand,
} from '@aws-sdk/client-sagemaker';
import { InvokeEndpointCommand, SageMakerRuntimeClient } from '@aws-sdk/client-sagemaker-runtime';
import {
  DescribeExecutionCommand,
  DescribeExecutionCommandOutput,
  ExecutionListItem,
  GetExecutionHistoryCommand,
  HistoryEvent,
  ListExecutionsCommand,
  SFNClient,
  StartExecutionCommand,
  StopExecutionCommand,
} from '@aws-sdk/client-sfn';
import { Upload } from '@aws-sdk/lib-storage';
import { DATA_PREFIXES, DATASET_MANIFEST, datasetNameProblem, datasetVersionOfManifest, datasetVersionPrefix } from '../layout';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { DEFAULT_JOB_NAME_PREFIX, jobNamesFor } from '../run-request';
import { isNotFound } from '../aws-errors';
import { CliError } from './errors';

/** The error a run stopped with `tuneyard cancel` ends with. */
export const CANCELLED_ERROR = 'Tuneyard.Cancelled';
/** StopExecution's cause is at most 32,768 characters; a cancel reason needs far fewer. */
const CANCEL_CAUSE_MAX_LENGTH = 1024;

/** The AWS clients behind the CLI: injected so tests can point them at a moto server. */
export interface AwsClients {
  readonly cloudformation: CloudFormationClient;
  readonly s3: S3Client;
  readonly sfn: SFNClient;
  readonly sagemaker: SageMakerClient;
  readonly logs: CloudWatchLogsClient;
  readonly runtime: SageMakerRuntimeClient;
  /** Who is calling (`tuneyard cancel` records it in the stopped execution's cause). */
  readonly sts: STSClient;
}

export interface ClientOptions {
  readonly region?: string;
  readonly profile?: string;
}

/** Attempts of each SageMaker call of the CLI (the SDK's default is 3), with client-side rate limiting ('adaptive'). */
export const SAGEMAKER_MAX_ATTEMPTS = 8;

/** Real clients, with the SDK's default credential chain (or `profile`) and region resolution. */
export function createAwsClients(options: ClientOptions): AwsClients {
  const config = { region: options.region, profile: options.profile };
  return {
    cloudformation: new CloudFormationClient(config),
    s3: new S3Client(config),
    sfn: new SFNClient(config),
    // `tuneyard models` describes every version of the group, MODEL_DESCRIBE_CONCURRENCY at a time: SageMaker throttles
    // such bursts past the SDK's default 3 attempts, which failed the whole listing; adaptive retries slow the client down
    sagemaker: new SageMakerClient({ ...config, retryMode: 'adaptive', maxAttempts: SAGEMAKER_MAX_ATTEMPTS }),
    logs: new CloudWatchLogsClient(config),
    runtime: new SageMakerRuntimeClient(config),
    sts: new STSClient(config),
  };
}

/** What the CLI needs to know about a deployed plane: its stack's CloudFormation outputs. */
export interface Plane {
  readonly stackName: string;
  readonly stateMachineArn: string;
  readonly dataBucketName: string;
  readonly notificationTopicArn?: string;
  readonly modelPackageGroupName?: string;
  readonly trainingJobPrefix?: string;
  /** Whether PlanRun accepts Hugging Face Hub ids as base models (output AllowHubModels); undefined on a plane that does not say. */
  readonly allowHubModels?: boolean;
  /** The lowest GPU compute capability the plane's training image runs on (output MinComputeCapability), when it says. */
  readonly minComputeCapability?: number;
}

/** What the CLI reads of a dataset version's manifest.json (written by `tuneyard upload`). */
export interface DatasetManifest {
  /** The rows' format (chat, prompt-completion, preference, ...). */
  readonly format?: string | null;
  readonly files?: {
    readonly train?: { readonly rows?: number; readonly tokens?: number };
    readonly eval?: { readonly rows?: number; readonly tokens?: number };
  };
}

/** A dataset version: `name@sha256`. */
export interface DatasetVersion {
  readonly name: string;
  readonly sha256: string;
}

export interface UploadFile {
  /** The local file. */
  readonly path: string;
  /** Its size in bytes. */
  readonly bytes: number;
}

export interface UploadRequest extends DatasetVersion {
  readonly train: UploadFile;
  readonly eval?: UploadFile;
  /** manifest.json's content, written last. */
  readonly manifest: object;
  /** Called with the bytes sent so far over all files. */
  readonly onProgress?: (sent: number, total: number) => void;
}

export interface UploadResult {
  /** False when the version already existed: nothing was written. */
  readonly created: boolean;
}

/** The summary of a run: its execution, pipeline stage and training job. */
export interface RunStatus {
  readonly runId: string;
  readonly executionArn: string;
  /** RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED, PENDING_REDRIVE. */
  readonly status: string;
  readonly startDate?: Date;
  readonly stopDate?: Date;
  /** The last state the execution entered (PlanRun, Train, Gate, ...). */
  readonly stage?: string;
  readonly error?: string;
  readonly cause?: string;
  /** The RunRequest the run was started with. */
  readonly input?: Record<string, unknown>;
  readonly trainingJob?: TrainingJobStatus;
}

export interface TrainingJobStatus {
  readonly name: string;
  readonly status: string;
  readonly secondaryStatus?: string;
  readonly startTime?: Date;
  readonly endTime?: Date;
  readonly failureReason?: string;
  /** The latest value of each metric the job emitted (train_loss, eval_loss, epoch, ...). */
  readonly metrics: Record<string, number>;
  readonly billableSeconds?: number;
  /** SageMaker's secondary status transitions (Starting, Downloading, Training, Uploading, ...), oldest first. */
  readonly secondaryStatusTransitions?: Array<{ status: string; startTime?: Date; endTime?: Date; message?: string }>;
}

export interface LogLine {
  readonly stream: string;
  readonly timestamp: number;
  readonly message: string;
}

/** The training job's log group in CloudWatch Logs (SageMaker's fixed name). */
export const TRAINING_LOG_GROUP = '/aws/sagemaker/TrainingJobs';

/** The name of a run's training job: `<TrainingJobPrefix output><run id>-train` (as `planRun` names it). */
export function trainingJobName(plane: Pick<Plane, 'trainingJobPrefix'>, runId: string): string {
  return jobNamesFor(runId, plane.trainingJobPrefix ?? DEFAULT_JOB_NAME_PREFIX).training;
}

/**
 * The version hash of a dataset: the sha256 of the train file's bytes when there is no eval
 * file; otherwise the sha256 of the ASCII string `<sha256 of train>` + `<sha256 of eval>` (the
 * two lower-case hex digests, concatenated, 128 characters). Either way it is 64 lower-case hex
 * characters and it changes when either file changes.
 */
export { datasetVersionHash } from './dataset-hash';

/**
 * The plane's API, as the CLI uses it. One instance per command; the plane's outputs are looked
 * up once, on first use.
 */
export class RunClient {
  private planePromise?: Promise<Plane>;

  constructor(
    readonly clients: AwsClients,
    readonly stackName: string,
  ) {}

  /** The plane's outputs; a missing stack or output is a CliError that says what to do. */
  plane(): Promise<Plane> {
    this.planePromise ??= this.loadPlane();
    return this.planePromise;
  }

  private async loadPlane(): Promise<Plane> {
    const out = await this.clients.cloudformation.send(new DescribeStacksCommand({ StackName: this.stackName }));
    const stack = out.Stacks?.[0];
    const outputs = new Map((stack?.Outputs ?? []).map((o) => [o.OutputKey ?? '', o.OutputValue ?? '']));
    const need = (key: string): string => {
      const value = outputs.get(key);
      if (!value) {
        throw new CliError(
          `stack ${this.stackName} has no output "${key}": it is not a Tuneyard plane, or an older one; redeploy it with \`npx cdk deploy\` or pass --stack`,
        );
      }
      return value;
    };
    return {
      stackName: this.stackName,
      stateMachineArn: need('StateMachineArn'),
      dataBucketName: need('DataBucketName'),
      notificationTopicArn: outputs.get('NotificationTopicArn') || undefined,
      modelPackageGroupName: outputs.get('ModelPackageGroupName') || undefined,
      trainingJobPrefix: outputs.get('TrainingJobPrefix') || undefined,
      allowHubModels: outputs.has('AllowHubModels') ? outputs.get('AllowHubModels') === 'true' : undefined,
      minComputeCapability: outputs.get('MinComputeCapability') ? Number(outputs.get('MinComputeCapability')) : undefined,
    };
  }

  // ---------------------------------------------------------------- datasets

  /** The newest version of a dataset (by its manifest's LastModified), or undefined. */
  async latestDatasetVersion(name: string): Promise<DatasetVersion | undefined> {
    const problem = datasetNameProblem(name);
    if (problem) throw new CliError(problem);
    const { dataBucketName } = await this.plane();
    const prefix = `${DATA_PREFIXES.datasets}${name}/`;
    let newest: { sha256: string; modified: number } | undefined;
    let token: string | undefined;
    do {
      const page = await this.clients.s3.send(new ListObjectsV2Command({ Bucket: dataBucketName, Prefix: prefix, ContinuationToken: token }));
      for (const object of page.Contents ?? []) {
        const version = datasetVersionOfManifest(object.Key ?? '');
        const modified = object.LastModified?.getTime() ?? 0;
        if (version?.name === name && (!newest || modified > newest.modified)) newest = { sha256: version.sha256, modified };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return newest && { name, sha256: newest.sha256 };
  }

  /** Whether a dataset version is complete (its manifest exists). */
  async datasetVersionExists(version: DatasetVersion): Promise<boolean> {
    const { dataBucketName } = await this.plane();
    try {
      await this.clients.s3.send(new HeadObjectCommand({ Bucket: dataBucketName, Key: `${datasetVersionPrefix(version.name, version.sha256)}${DATASET_MANIFEST}` }));
      return true;
    } catch (e) {
      if (isNotFound(e) || (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return false;
      throw e;
    }
  }

  /** A dataset version's manifest.json, or undefined when the version does not exist (no manifest: not uploaded, or not completely). */
  async datasetManifest(version: DatasetVersion): Promise<DatasetManifest | undefined> {
    const text = await this.readObject(`${datasetVersionPrefix(version.name, version.sha256)}${DATASET_MANIFEST}`);
    if (text === undefined) return undefined;
    try {
      const manifest = JSON.parse(text);
      return manifest && typeof manifest === 'object' ? manifest : {};
    } catch {
      return {};
    }
  }

  /** An object of the data bucket as text, or undefined when there is none. */
  async readObject(key: string): Promise<string | undefined> {
    const { dataBucketName } = await this.plane();
    try {
      const out = await this.clients.s3.send(new GetObjectCommand({ Bucket: dataBucketName, Key: key }));
      return await out.Body!.transformToString();
    } catch (e) {
      if (isNotFound(e) || httpStatus(e) === 404) return undefined;
      throw e;
    }
  }

  /** Whether an object exists in the data bucket. */
  async objectExists(key: string): Promise<boolean> {
    const { dataBucketName } = await this.plane();
    try {
      await this.clients.s3.send(new HeadObjectCommand({ Bucket: dataBucketName, Key: key }));
      return true;
    } catch (e) {
      if (isNotFound(e) || httpStatus(e) === 404) return false;
      throw e;
    }
  }

  /** Every object under `prefix` in the data bucket, in key order. */
  async listObjects(prefix: string): Promise<_Object[]> {
    const { dataBucketName } = await this.plane();
    const objects: _Object[] = [];
    let token: string | undefined;
    do {
      const page = await this.clients.s3.send(new ListObjectsV2Command({ Bucket: dataBucketName, Prefix: prefix, ContinuationToken: token }));
      objects.push(...(page.Contents ?? []));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return objects;
  }

  /**
   * Writes a dataset version: train.jsonl, eval.jsonl, then manifest.json, each with
   * `If-None-Match: *` (the bucket policy refuses writes without it). A version whose manifest
   * exists is left alone (`created: false`); a file that exists already (412, from an earlier
   * upload that stopped before its manifest) has the same bytes, since the key holds their hash.
   */
  async uploadDataset(request: UploadRequest): Promise<UploadResult> {
    const { dataBucketName } = await this.plane();
    if (await this.datasetVersionExists(request)) return { created: false };
    const prefix = datasetVersionPrefix(request.name, request.sha256);
    const total = request.train.bytes + (request.eval?.bytes ?? 0);
    let before = 0;
    const files: [string, UploadFile][] = [['train.jsonl', request.train]];
    if (request.eval) files.push(['eval.jsonl', request.eval]);
    for (const [key, file] of files) {
      const upload = new Upload({
        client: this.clients.s3,
        params: {
          Bucket: dataBucketName,
          Key: prefix + key,
          Body: fs.createReadStream(file.path),
          ContentLength: file.bytes,
          ContentType: 'application/jsonl',
          IfNoneMatch: '*',
        },
        partSize: 16 * 1024 * 1024,
        queueSize: 4,
      });
      const offset = before;
      upload.on('httpUploadProgress', (p) => request.onProgress?.(offset + (p.loaded ?? 0), total));
      try {
        await upload.done();
      } catch (e) {
        if (!isPreconditionFailed(e)) throw e;
      }
      before += file.bytes;
      request.onProgress?.(before, total);
    }
    try {
      await this.clients.s3.send(
        new PutObjectCommand({
          Bucket: dataBucketName,
          Key: `${prefix}${DATASET_MANIFEST}`,
          Body: JSON.stringify(request.manifest, null, 2) + '\n',
          ContentType: 'application/json',
          IfNoneMatch: '*',
        }),
      );
    } catch (e) {
      // Another upload of the same bytes finished first: the version exists, as wanted.
      if (isPreconditionFailed(e)) return { created: false };
      throw e;
    }
    return { created: true };
  }

  // ---------------------------------------------------------------- runs

  /** The execution ARN of a run id (or the ARN itself when given one). */
  async executionArn(run: string): Promise<string> {
    if (run.startsWith('arn:')) return run;
    const { stateMachineArn } = await this.plane();
    return `${stateMachineArn.replace(':stateMachine:', ':execution:')}:${run}`;
  }

  /**
   * Starts a run with its deterministic name. Starting the same request again is not an error:
   * Step Functions returns the running execution (same name and input), or refuses with
   * ExecutionAlreadyExists once it has finished; either way the existing run is reported.
   */
  async startRun(runId: string, request: object): Promise<{ executionArn: string; existing: boolean }> {
    const { stateMachineArn } = await this.plane();
    const input = JSON.stringify(request);
    const executionArn = await this.executionArn(runId);
    const existing = await this.findExecution(executionArn);
    if (!existing) {
      try {
        const started = await this.clients.sfn.send(new StartExecutionCommand({ stateMachineArn, name: runId, input }));
        return { executionArn: started.executionArn ?? executionArn, existing: false };
      } catch (e) {
        if (!(e instanceof Error) || e.name !== 'ExecutionAlreadyExists') throw e;
      }
    }
    const found = existing ?? (await this.describeExecution(executionArn));
    if (found.input !== undefined && !sameJson(found.input, input)) {
      throw new CliError(
        `run ${runId} already exists with a different request (Step Functions keeps execution names for 90 days): pass --run-name to start a new run`,
      );
    }
    return { executionArn, existing: true };
  }

  private async findExecution(executionArn: string): Promise<DescribeExecutionCommandOutput | undefined> {
    try {
      return await this.clients.sfn.send(new DescribeExecutionCommand({ executionArn }));
    } catch (e) {
      if (e instanceof Error && e.name === 'ExecutionDoesNotExist') return undefined;
      throw e;
    }
  }

  /** A run given by id or execution ARN: its ARN, its execution and its id. An unknown run fails (how to list runs). */
  async findRun(run: string): Promise<{ executionArn: string; execution: DescribeExecutionCommandOutput; runId: string }> {
    const executionArn = await this.executionArn(run);
    const execution = await this.describeExecution(executionArn);
    return { executionArn, execution, runId: execution.name ?? executionArn.split(':').pop()! };
  }

  /** The run's execution, stage and training job. */
  async describeRun(run: string): Promise<RunStatus> {
    const { executionArn, execution, runId } = await this.findRun(run);
    const [stage, trainingJob] = await Promise.all([this.currentStage(executionArn), this.trainingJob(runId)]);
    return {
      runId,
      executionArn,
      status: execution.status ?? 'UNKNOWN',
      startDate: execution.startDate,
      stopDate: execution.stopDate,
      stage,
      error: execution.error,
      cause: execution.cause,
      input: parseObject(execution.input),
      trainingJob,
    };
  }

  /** The run's execution; a run that does not exist is a CliError that says how to list runs. */
  async describeExecution(executionArn: string): Promise<DescribeExecutionCommandOutput> {
    try {
      return await this.clients.sfn.send(new DescribeExecutionCommand({ executionArn }));
    } catch (e) {
      if (e instanceof Error && e.name === 'ExecutionDoesNotExist') {
        throw new CliError(`run ${executionArn.split(':').pop()} not found in plane ${this.stackName}: list runs with \`tuneyard runs\``);
      }
      throw e;
    }
  }

  /** The execution's whole history, oldest first. */
  async executionHistory(executionArn: string): Promise<HistoryEvent[]> {
    const events: HistoryEvent[] = [];
    let token: string | undefined;
    do {
      const page = await this.clients.sfn.send(
        new GetExecutionHistoryCommand({ executionArn, maxResults: 1000, nextToken: token, includeExecutionData: false }),
      );
      events.push(...(page.events ?? []));
      token = page.nextToken;
    } while (token);
    return events;
  }

  /** The name of the last state the execution entered. */
  async currentStage(executionArn: string): Promise<string | undefined> {
    let token: string | undefined;
    do {
      const page = await this.clients.sfn.send(
        new GetExecutionHistoryCommand({ executionArn, reverseOrder: true, maxResults: 100, nextToken: token, includeExecutionData: false }),
      );
      // The newest by id, not the first: a server that ignores reverseOrder (moto) still gives the last state entered.
      const entered = (page.events ?? [])
        .filter((event: HistoryEvent) => event.stateEnteredEventDetails?.name)
        .reduce<HistoryEvent | undefined>((newest, event) => (!newest || (event.id ?? 0) > (newest.id ?? 0) ? event : newest), undefined);
      if (entered) return entered.stateEnteredEventDetails!.name;
      token = page.nextToken;
    } while (token);
    return undefined;
  }

  /** The run's training job, or undefined before the Train stage created it. */
  async trainingJob(runId: string): Promise<TrainingJobStatus | undefined> {
    const name = trainingJobName(await this.plane(), runId);
    let job: DescribeTrainingJobCommandOutput;
    try {
      job = await this.clients.sagemaker.send(new DescribeTrainingJobCommand({ TrainingJobName: name }));
    } catch (e) {
      if (isNotFound(e)) return undefined;
      throw e;
    }
    const metrics: Record<string, number> = {};
    const latest: Record<string, number> = {};
    for (const m of job.FinalMetricDataList ?? []) {
      if (!m.MetricName || m.Value === undefined) continue;
      const at = m.Timestamp?.getTime() ?? 0;
      if (latest[m.MetricName] === undefined || at >= latest[m.MetricName]) {
        latest[m.MetricName] = at;
        metrics[m.MetricName] = m.Value;
      }
    }
    return {
      name: job.TrainingJobName ?? name,
      status: job.TrainingJobStatus ?? 'Unknown',
      secondaryStatus: job.SecondaryStatus,
      startTime: job.TrainingStartTime,
      endTime: job.TrainingEndTime,
      failureReason: job.FailureReason,
      metrics,
      billableSeconds: job.BillableTimeInSeconds,
      secondaryStatusTransitions: (job.SecondaryStatusTransitions ?? []).map((t) => ({
        status: t.Status ?? 'Unknown',
        startTime: t.StartTime,
        endTime: t.EndTime,
        message: t.StatusMessage,
      })),
    };
  }

  /** The newest runs first. */
  async listRuns(max: number, status?: string): Promise<ExecutionListItem[]> {
    const { stateMachineArn } = await this.plane();
    const runs: ExecutionListItem[] = [];
    let token: string | undefined;
    do {
      const page = await this.clients.sfn.send(
        new ListExecutionsCommand({
          stateMachineArn,
          maxResults: Math.min(max - runs.length, 1000),
          nextToken: token,
          statusFilter: status as never,
        }),
      );
      runs.push(...(page.executions ?? []));
      token = page.nextToken;
    } while (token && runs.length < max);
    return runs.sort((a, b) => (b.startDate?.getTime() ?? 0) - (a.startDate?.getTime() ?? 0));
  }

  /**
   * Stops a run: its execution, and its training job when that is still in progress (a stopped
   * execution does not stop a `.sync` task's job by itself in every case, so the CLI does it).
   */
  async cancelRun(run: string, reason?: string): Promise<{ runId: string; executionStopped: boolean; trainingJobStopped: boolean; cause?: string }> {
    const executionArn = await this.executionArn(run);
    const execution = await this.describeExecution(executionArn);
    const runId = execution.name ?? run;
    let executionStopped = false;
    let cause: string | undefined;
    if (execution.status === 'RUNNING') {
      // The plane notifies a stopped run with this cause (EventBridge rule RunsAborted): say who and why.
      cause = `cancelled with tuneyard cancel by ${await this.callerArn()}${reason ? `: ${reason}` : ''}`.slice(0, CANCEL_CAUSE_MAX_LENGTH);
      await this.clients.sfn.send(new StopExecutionCommand({ executionArn, error: CANCELLED_ERROR, cause }));
      executionStopped = true;
    }
    let trainingJobStopped = false;
    const job = await this.trainingJob(runId);
    if (job && job.status === 'InProgress') {
      await this.clients.sagemaker.send(new StopTrainingJobCommand({ TrainingJobName: job.name }));
      trainingJobStopped = true;
    }
    return { runId, executionStopped, trainingJobStopped, ...(cause ? { cause } : {}) };
  }

  /** The caller's ARN (STS GetCallerIdentity), or a note that it could not be read: cancelling must not depend on it. */
  private async callerArn(): Promise<string> {
    try {
      return (await this.clients.sts.send(new GetCallerIdentityCommand({}))).Arn ?? 'an unnamed caller';
    } catch (e) {
      return `an unknown caller (GetCallerIdentity failed: ${(e as Error).name})`;
    }
  }

  /**
   * The training job's log lines, oldest first, from every stream whose name starts with the
   * job's name (one per instance: `<job>/algo-1-...`). `startTime` (ms) skips older lines.
   */
  async trainingLogs(runId: string, options: { startTime?: number; limit?: number } = {}): Promise<LogLine[]> {
    const prefix = trainingJobName(await this.plane(), runId);
    const streams: string[] = [];
    let token: string | undefined;
    try {
      do {
        const page = await this.clients.logs.send(
          new DescribeLogStreamsCommand({ logGroupName: TRAINING_LOG_GROUP, logStreamNamePrefix: prefix + '/', nextToken: token }),
        );
        streams.push(...(page.logStreams ?? []).map((s) => s.logStreamName ?? '').filter(Boolean));
        token = page.nextToken;
      } while (token);
    } catch (e) {
      if (e instanceof Error && e.name === 'ResourceNotFoundException') return [];
      throw e;
    }
    const lines: LogLine[] = [];
    for (const stream of streams) {
      let next: string | undefined;
      for (;;) {
        const page = await this.clients.logs.send(
          new GetLogEventsCommand({
            logGroupName: TRAINING_LOG_GROUP,
            logStreamName: stream,
            startFromHead: true,
            startTime: options.startTime,
            nextToken: next,
          }),
        );
        for (const event of page.events ?? []) lines.push({ stream, timestamp: event.timestamp ?? 0, message: event.message ?? '' });
        // GetLogEvents signals the end by returning the token it was given.
        if (!page.nextForwardToken || page.nextForwardToken === next || (page.events ?? []).length === 0) break;
        next = page.nextForwardToken;
      }
    }
    lines.sort((a, b) => a.timestamp - b.timestamp);
    return options.limit ? lines.slice(-options.limit) : lines;
  }

  // ---------------------------------------------------------------- models

  async modelPackageGroup(): Promise<string> {
    const { modelPackageGroupName } = await this.plane();
    if (!modelPackageGroupName) {
      throw new CliError(`stack ${this.stackName} has no output "ModelPackageGroupName": redeploy the plane with \`npx cdk deploy\``);
    }
    return modelPackageGroupName;
  }

  /** The registered models, newest first. */
  async listModels(): Promise<ModelPackageSummary[]> {
    const group = await this.modelPackageGroup();
    const models: ModelPackageSummary[] = [];
    let token: string | undefined;
    do {
      const page = await this.clients.sagemaker.send(
        new ListModelPackagesCommand({ ModelPackageGroupName: group, SortBy: 'CreationTime', SortOrder: 'Descending', NextToken: token }),
      );
      models.push(...(page.ModelPackageSummaryList ?? []));
      token = page.NextToken;
    } while (token);
    return models;
  }

  /**
   * The registered models, newest first, as DescribeModelPackage answers them: with their lineage
   * (CustomerMetadataProperties, which ListModelPackages leaves out), described {@link MODEL_DESCRIBE_CONCURRENCY}
   * at a time. A version deleted between the listing and its description is left out.
   */
  async describeModels(): Promise<DescribeModelPackageCommandOutput[]> {
    const models = await this.listModels();
    const described = await mapConcurrently(models, MODEL_DESCRIBE_CONCURRENCY, async (m) => {
      try {
        return await this.clients.sagemaker.send(new DescribeModelPackageCommand({ ModelPackageName: m.ModelPackageArn }));
      } catch (e) {
        if (isNotFound(e)) return undefined;
        throw e;
      }
    });
    return described.filter((d): d is DescribeModelPackageCommandOutput => d !== undefined);
  }

  /** A model package by ARN, or by version number in the plane's group. */
  async describeModel(model: string) {
    const arn = model.startsWith('arn:') ? model : await this.modelArn(model);
    try {
      return await this.clients.sagemaker.send(new DescribeModelPackageCommand({ ModelPackageName: arn }));
    } catch (e) {
      if (isNotFound(e)) throw new CliError(`model ${model} not found: list models with \`tuneyard models\``);
      throw e;
    }
  }

  private async modelArn(model: string): Promise<string> {
    const version = /^(?:v)?(\d+)$/.exec(model)?.[1];
    if (!version) throw new CliError(`model "${model}" is neither a model package ARN nor a version number (e.g. 3): see \`tuneyard models\``);
    const found = (await this.listModels()).find((m) => String(m.ModelPackageVersion) === version);
    if (!found?.ModelPackageArn) throw new CliError(`model version ${version} not found in ${await this.modelPackageGroup()}: see \`tuneyard models\``);
    return found.ModelPackageArn;
  }

  async approveModel(arn: string, description: string): Promise<void> {
    await this.clients.sagemaker.send(
      new UpdateModelPackageCommand({ ModelPackageArn: arn, ModelApprovalStatus: ModelApprovalStatus.APPROVED, ApprovalDescription: description }),
    );
  }

  /** Sends an OpenAI chat-completions request to a vLLM endpoint and returns the parsed reply. */
  async invoke(endpointName: string, payload: object, inferenceComponentName?: string): Promise<unknown> {
    const out = await this.clients.runtime.send(
      new InvokeEndpointCommand({
        EndpointName: endpointName,
        ContentType: 'application/json',
        Accept: 'application/json',
        Body: new TextEncoder().encode(JSON.stringify(payload)),
        InferenceComponentName: inferenceComponentName,
      }),
    );
    const text = new TextDecoder().decode(out.Body);
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
}

/** How many DescribeModelPackage calls `tuneyard models` has in flight at once (SageMaker throttles bursts). */
export const MODEL_DESCRIBE_CONCURRENCY = 8;

/** `fn` over `items`, at most `limit` at a time, results in the items' order. */
async function mapConcurrently<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

function httpStatus(e: unknown): number | undefined {
  return (e as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
}

function isPreconditionFailed(e: unknown): boolean {
  return (
    e instanceof Error &&
    (e.name === 'PreconditionFailed' || (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 412)
  );
}

function sameJson(a: string, b: string): boolean {
  try {
    return JSON.stringify(JSON.parse(a)) === JSON.stringify(JSON.parse(b));
  } catch {
    return a === b;
  }
}

function parseObject(text: string | undefined): Record<string, unknown> | undefined {
  if (!text) return undefined;
  try {
    const value = JSON.parse(text);
    return value && typeof value === 'object' ? value : undefined;
  } catch {
    return undefined;
  }
}
