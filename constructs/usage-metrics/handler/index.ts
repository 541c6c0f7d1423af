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
  const json = <T>(key: string): T => {
    try {
      return JSON.parse(read(key)) as T;
    } catch (error) {
      if (error instanceof SyntaxError) throw new Error(`usage metrics: ${key} is not JSON: ${error.message}`);
      throw error;
    }
  };
  return {
    namespace: read(USAGE_ENV.namespace),
    trainingJobPrefixes: json<string[]>(USAGE_ENV.trainingJobPrefixes),
    endpoints: json<WatchedEndpoint[]>(USAGE_ENV.endpoints),
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
  const problems: string[] = [];
  let published = 0;
  // Endpoints first, each section put as soon as it is read: a run that times out still leaves them.
  const minute = new Date(Math.floor(now.getTime() / 60_000) * 60_000);
  const fleet: MetricDatum[] = [];
  for (const endpoint of settings.endpoints) {
    try {
      fleet.push(...(await endpointUsage(clients.sagemaker, endpoint, minute, problems)));
    } catch (error) {
      problems.push(`endpoint ${endpoint.name}: ${describeError(error)}`);
    }
  }
  await put(clients.cloudwatch, settings.namespace, fleet);
  published += fleet.length;

  let trainingJobs = 0;
  for (const prefix of settings.trainingJobPrefixes) {
    const jobs: JobUsage[] = [];
    try {
      for (const name of await endedTrainingJobs(clients.sagemaker, prefix, new Date(now.getTime() - settings.lookbackMinutes * 60_000))) {
        try {
          const usage = trainingJobUsage(await clients.sagemaker.send(new DescribeTrainingJobCommand({ TrainingJobName: name })), prefix);
          if (now.getTime() - usage.timestamp.getTime() <= MAX_AGE_MS) jobs.push(usage);
        } catch (error) {
          problems.push(`training job ${name}: ${describeError(error)}`);
        }
      }
    } catch (error) {
      problems.push(`training jobs ${prefix}*: ${describeError(error)}`);
    }
    const data = [...jobs.flatMap((job) => job.data), ...hourlyTotals(prefix, jobs)];
    await put(clients.cloudwatch, settings.namespace, data);
    published += data.length;
    trainingJobs += jobs.length;
  }
  return { published, trainingJobs, problems };
}

/** One ended job's instance-hours. */
interface JobUsage {
  readonly data: MetricDatum[];
  readonly timestamp: Date;
  readonly instanceHours: number;
  readonly billableHours: number;
}

/**
 * The prefix's totals per clock hour of the jobs' end times, stamped at the start of the hour.
 * Each run sees every job that ended in the look-back window, so an hour's total only grows while
 * the hour is fully inside the window and shrinks once it starts to leave it: read with Maximum,
 * each hour counts every job once (the construct keeps the window at least an hour plus two
 * schedules long, so some run sees all of an hour's jobs).
 */
function hourlyTotals(prefix: string, jobs: readonly JobUsage[]): MetricDatum[] {
  const hours = new Map<number, { instance: number; billable: number }>();
  for (const job of jobs) {
    const hour = Math.floor(job.timestamp.getTime() / 3600_000) * 3600_000;
    const total = hours.get(hour) ?? { instance: 0, billable: 0 };
    total.instance += job.instanceHours;
    total.billable += job.billableHours;
    hours.set(hour, total);
  }
  return [...hours.entries()].flatMap(([hour, total]) => [
    datum('prefixInstanceHours', [prefix], total.instance, 'None', new Date(hour)),
    datum('prefixBillableInstanceHours', [prefix], total.billable, 'None', new Date(hour)),
  ]);
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
export function trainingJobUsage(job: DescribeTrainingJobCommandOutput, prefix: string): JobUsage {
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
  const instanceHours = (seconds * instances) / 3600;
  const billableHours = (billable * instances) / 3600;
  return {
    timestamp,
    instanceHours,
    billableHours,
    data: [
      datum('trainingInstanceHours', values, instanceHours, 'None', timestamp),
      datum('billableInstanceHours', values, billableHours, 'None', timestamp),
    ],
  };
}

/**
 * Current and desired instances of an endpoint (a blue/green deployment's new fleet included); for
 * inference components, their copies too. A component that cannot be described (one deleted since
 * the listing, say) is reported in `problems` and left out; the others are still published.
 */
async function endpointUsage(sagemaker: UsageClients['sagemaker'], endpoint: WatchedEndpoint, at: Date, problems: string[]): Promise<MetricDatum[]> {
  const described = await sagemaker.send(new DescribeEndpointCommand({ EndpointName: endpoint.name }));
  const variants = [...(described.ProductionVariants ?? []), ...(described.PendingDeploymentSummary?.ProductionVariants ?? [])];
  const data: MetricDatum[] = [];
  const sum = (field: 'CurrentInstanceCount' | 'DesiredInstanceCount') =>
    variants.some((v) => v[field] !== undefined) ? variants.reduce((n, v) => n + (v[field] ?? 0), 0) : undefined;
  const current = sum('CurrentInstanceCount');
  const desired = sum('DesiredInstanceCount');
  if (current !== undefined) data.push(datum('endpointInstances', [endpoint.name], current, 'Count', at));
  if (desired !== undefined) data.push(datum('endpointDesiredInstances', [endpoint.name], desired, 'Count', at));
  if (!endpoint.components) return data;

  let copies = 0;
  let NextToken: string | undefined;
  do {
    const page = await sagemaker.send(new ListInferenceComponentsCommand({ EndpointNameEquals: endpoint.name, MaxResults: 100, NextToken }));
    for (const summary of page.InferenceComponents ?? []) {
      const name = summary.InferenceComponentName!;
      let component;
      try {
        component = await sagemaker.send(new DescribeInferenceComponentCommand({ InferenceComponentName: name }));
      } catch (error) {
        problems.push(`inference component ${name} of ${endpoint.name}: ${describeError(error)}`);
        continue;
      }
      const runtime = component.RuntimeConfig;
      // An adapter runs inside its base component's copies: only components with compute of their own add copies.
      const ownCompute = component.Specification?.BaseInferenceComponentName === undefined;
      if (runtime?.CurrentCopyCount !== undefined) {
        if (ownCompute) copies += runtime.CurrentCopyCount;
        data.push(datum('componentCopies', [endpoint.name, name], runtime.CurrentCopyCount, 'Count', at));
      }
      if (runtime?.DesiredCopyCount !== undefined) data.push(datum('componentDesiredCopies', [endpoint.name, name], runtime.DesiredCopyCount, 'Count', at));
    }
    NextToken = page.NextToken;
  } while (NextToken);
  data.push(datum('endpointCopies', [endpoint.name], copies, 'Count', at));
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
