import { CloudWatchClient, MetricDatum, PutMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import {
  DescribeEndpointCommand,
  DescribeInferenceComponentCommand,
  DescribeTrainingJobCommand,
  DescribeTrainingJobCommandOutput,
  ListInferenceComponentsCommand,
  ListTrainingJobsCommand,
  SageMakerClient,
} from '@aws-sdk/client-sagemaker';
import { ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { DATA_PREFIXES, datasetVersionOfManifest } from '../../../lib/layout';
import { USAGE_ENV, USAGE_METRICS, UsageEvent, UsageMetricKey, WatchedEndpoint } from '../usage-contract';

/** What one run publishes, read from the function's environment. */
export interface UsageSettings {
  readonly namespace: string;
  readonly trainingJobPrefixes: readonly string[];
  readonly endpoints: readonly WatchedEndpoint[];
  /** How far back ended training jobs are looked for. */
  readonly lookbackMinutes: number;
  /** The data bucket whose dataset versions the hourly run counts. */
  readonly dataBucket?: string;
}

/** The clients a run needs (so tests can pass fakes or clients pointed at moto). */
export interface UsageClients {
  readonly sagemaker: Pick<SageMakerClient, 'send'>;
  readonly cloudwatch: Pick<CloudWatchClient, 'send'>;
  readonly s3: Pick<S3Client, 'send'>;
}

/** What one run did. */
export interface UsageResult {
  readonly published: number;
  readonly trainingJobs: number;
  /** One line per endpoint or job that could not be read; the run fails after publishing the rest. */
  readonly problems: string[];
}

/** Statuses after which a training job's instance time no longer changes. */
const ENDED = new Set(['Completed', 'Failed', 'Stopped']);
/** CloudWatch refuses datapoints older than two weeks; stay an hour clear of the edge. */
const MAX_AGE_MS = (14 * 24 - 1) * 3600 * 1000;
/** PutMetricData takes at most 1000 datapoints per call. */
const BATCH = 1000;

/** Reads the settings the construct put into the environment; a wrong value is a deployment bug. */
export function settingsFromEnv(env: NodeJS.ProcessEnv = process.env): UsageSettings {
  const read = (key: string): string => {
    const value = env[key];
    if (value === undefined || value === '') throw new Error(`usage metrics: environment variable ${key} is not set`);
    return value;
  };
  const lookbackMinutes = Number(read(USAGE_ENV.lookbackMinutes));
  if (!Number.isInteger(lookbackMinutes) || lookbackMinutes < 1) {
    throw new Error(`usage metrics: ${USAGE_ENV.lookbackMinutes} must be a whole number of minutes; got ${env[USAGE_ENV.lookbackMinutes]}`);
  }
  return {
    namespace: read(USAGE_ENV.namespace),
    trainingJobPrefixes: JSON.parse(read(USAGE_ENV.trainingJobPrefixes)) as string[],
    endpoints: JSON.parse(read(USAGE_ENV.endpoints)) as WatchedEndpoint[],
    lookbackMinutes,
    dataBucket: env[USAGE_ENV.dataBucket] || undefined,
  };
}

/**
 * One run: the instance-hours of every training job of the watched prefixes that ended within the
 * look-back window, and the current instance and copy counts of every watched endpoint, put into
 * CloudWatch. Republishing a job is harmless: the same value at the same timestamp, read with
 * `Maximum`.
 */
export async function publishUsage(clients: UsageClients, settings: UsageSettings, now: Date): Promise<UsageResult> {
  const data: MetricDatum[] = [];
  const problems: string[] = [];
  let trainingJobs = 0;
  for (const prefix of settings.trainingJobPrefixes) {
    try {
      for (const name of await endedTrainingJobs(clients.sagemaker, prefix, new Date(now.getTime() - settings.lookbackMinutes * 60_000))) {
        try {
          const job = await clients.sagemaker.send(new DescribeTrainingJobCommand({ TrainingJobName: name }));
          const usage = trainingJobUsage(job, prefix);
          if (now.getTime() - usage.timestamp.getTime() > MAX_AGE_MS) continue;
          data.push(...usage.data);
          trainingJobs++;
        } catch (error) {
          problems.push(`training job ${name}: ${describeError(error)}`);
        }
      }
    } catch (error) {
      problems.push(`training jobs ${prefix}*: ${describeError(error)}`);
    }
  }
  for (const endpoint of settings.endpoints) {
    try {
      data.push(...(await endpointUsage(clients.sagemaker, endpoint, now)));
    } catch (error) {
      problems.push(`endpoint ${endpoint.name}: ${describeError(error)}`);
    }
  }
  await put(clients.cloudwatch, settings.namespace, data);
  return { published: data.length, trainingJobs, problems };
}

/**
 * The hourly run: counts the complete dataset versions (those with a manifest) and the datasets
 * of the data bucket by listing `datasets/`.
 */
export async function publishDatasetCounts(clients: UsageClients, settings: UsageSettings, now: Date): Promise<UsageResult> {
  const bucket = settings.dataBucket;
  if (!bucket) throw new Error(`usage metrics: the dataset count needs ${USAGE_ENV.dataBucket}`);
  let versions = 0;
  const names = new Set<string>();
  let ContinuationToken: string | undefined;
  do {
    const page = await clients.s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: DATA_PREFIXES.datasets, ContinuationToken }));
    for (const object of page.Contents ?? []) {
      const version = datasetVersionOfManifest(object.Key ?? '');
      if (!version) continue;
      versions++;
      names.add(version.name);
    }
    ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (ContinuationToken);
  const data = [datum('datasetVersions', [bucket], versions, 'Count', now), datum('datasets', [bucket], names.size, 'Count', now)];
  await put(clients.cloudwatch, settings.namespace, data);
  return { published: data.length, trainingJobs: 0, problems: [] };
}

async function put(cloudwatch: UsageClients['cloudwatch'], namespace: string, data: MetricDatum[]): Promise<void> {
  for (let i = 0; i < data.length; i += BATCH) {
    await cloudwatch.send(new PutMetricDataCommand({ Namespace: namespace, MetricData: data.slice(i, i + BATCH) }));
  }
}

/** Names of the jobs with this prefix that ended (or changed) since `since`. */
async function endedTrainingJobs(sagemaker: UsageClients['sagemaker'], prefix: string, since: Date): Promise<string[]> {
  const names: string[] = [];
  let NextToken: string | undefined;
  do {
    const page = await sagemaker.send(new ListTrainingJobsCommand({ NameContains: prefix, LastModifiedTimeAfter: since, MaxResults: 100, NextToken }));
    for (const job of page.TrainingJobSummaries ?? []) {
      // NameContains matches anywhere in the name: keep the jobs that start with the prefix.
      if (job.TrainingJobName?.startsWith(prefix) && ENDED.has(job.TrainingJobStatus ?? '')) names.push(job.TrainingJobName);
    }
    NextToken = page.NextToken;
  } while (NextToken);
  return names;
}

/**
 * The instance-hours of one ended job. Training time is `TrainingTimeInSeconds` (or the span from
 * start to end when SageMaker left it out, as it does for a job that failed early); billable time
 * is `BillableTimeInSeconds`, 0 when absent. Both are per instance: SageMaker bills them once per
 * instance of the cluster.
 */
export function trainingJobUsage(job: DescribeTrainingJobCommandOutput, prefix: string): { data: MetricDatum[]; timestamp: Date } {
  const config = job.ResourceConfig;
  const groups = config?.InstanceGroups ?? [];
  const instances = config?.InstanceCount ?? (groups.length > 0 ? groups.reduce((n, g) => n + (g.InstanceCount ?? 0), 0) : 1);
  const instanceType = config?.InstanceType ?? (groups.map((g) => g.InstanceType).join('+') || 'unknown');
  const start = job.TrainingStartTime?.getTime();
  const end = job.TrainingEndTime?.getTime();
  const seconds = job.TrainingTimeInSeconds ?? (start !== undefined && end !== undefined ? Math.max(0, (end - start) / 1000) : 0);
  const billable = job.BillableTimeInSeconds ?? 0;
  const timestamp = job.TrainingEndTime ?? job.LastModifiedTime ?? job.CreationTime ?? new Date();
  const values = [prefix, job.TrainingJobName ?? 'unknown', instanceType];
  return {
    timestamp,
    data: [
      datum('trainingInstanceHours', values, (seconds * instances) / 3600, 'None', timestamp),
      datum('billableInstanceHours', values, (billable * instances) / 3600, 'None', timestamp),
    ],
  };
}

/** Current and desired instances of an endpoint; for inference components, their copies too. */
async function endpointUsage(sagemaker: UsageClients['sagemaker'], endpoint: WatchedEndpoint, now: Date): Promise<MetricDatum[]> {
  const described = await sagemaker.send(new DescribeEndpointCommand({ EndpointName: endpoint.name }));
  const variants = described.ProductionVariants ?? [];
  const data: MetricDatum[] = [];
  const sum = (field: 'CurrentInstanceCount' | 'DesiredInstanceCount') =>
    variants.some((v) => v[field] !== undefined) ? variants.reduce((n, v) => n + (v[field] ?? 0), 0) : undefined;
  const current = sum('CurrentInstanceCount');
  const desired = sum('DesiredInstanceCount');
  if (current !== undefined) data.push(datum('endpointInstances', [endpoint.name], current, 'Count', now));
  if (desired !== undefined) data.push(datum('endpointDesiredInstances', [endpoint.name], desired, 'Count', now));
  if (!endpoint.components) return data;

  let copies = 0;
  let NextToken: string | undefined;
  do {
    const page = await sagemaker.send(new ListInferenceComponentsCommand({ EndpointNameEquals: endpoint.name, MaxResults: 100, NextToken }));
    for (const summary of page.InferenceComponents ?? []) {
      const name = summary.InferenceComponentName!;
      const component = await sagemaker.send(new DescribeInferenceComponentCommand({ InferenceComponentName: name }));
      const runtime = component.RuntimeConfig;
      if (runtime?.CurrentCopyCount !== undefined) {
        copies += runtime.CurrentCopyCount;
        data.push(datum('componentCopies', [endpoint.name, name], runtime.CurrentCopyCount, 'Count', now));
      }
      if (runtime?.DesiredCopyCount !== undefined) data.push(datum('componentDesiredCopies', [endpoint.name, name], runtime.DesiredCopyCount, 'Count', now));
    }
    NextToken = page.NextToken;
  } while (NextToken);
  data.push(datum('endpointCopies', [endpoint.name], copies, 'Count', now));
  return data;
}

function datum(key: UsageMetricKey, values: readonly string[], value: number, unit: 'None' | 'Count', timestamp: Date): MetricDatum {
  const metric = USAGE_METRICS[key];
  return {
    MetricName: metric.name,
    Dimensions: metric.dimensions.map((Name, i) => ({ Name, Value: values[i] })),
    Value: value,
    Unit: unit,
    Timestamp: timestamp,
  };
}

function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/**
 * One scheduled run: reads the settings, publishes, and fails (so the function's Errors metric
 * counts it) when anything could not be read, after publishing everything else.
 */
export async function run(clients: UsageClients, env: NodeJS.ProcessEnv, now: Date, event: UsageEvent = {}): Promise<UsageResult> {
  const settings = settingsFromEnv(env);
  const result = event.task === 'datasets' ? await publishDatasetCounts(clients, settings, now) : await publishUsage(clients, settings, now);
  console.log(JSON.stringify({ message: 'usage metrics published', ...result }));
  if (result.problems.length > 0) throw new Error(`usage metrics: ${result.problems.length} could not be read: ${result.problems.join('; ')}`);
  return result;
}

let clients: UsageClients | undefined;

export async function handler(event: UsageEvent = {}): Promise<UsageResult> {
  clients ??= { sagemaker: new SageMakerClient({}), cloudwatch: new CloudWatchClient({}), s3: new S3Client({}) };
  return run(clients, process.env, new Date(), event);
}
