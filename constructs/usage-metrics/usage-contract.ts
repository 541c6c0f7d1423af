/**
 * The metrics that the usage publisher (`UsageMetrics` and its handler) puts into CloudWatch: one
 * definition for the construct that reads them, the handler that writes them and the tests.
 *
 * SageMaker publishes neither instance-hours nor the instance and copy counts of an endpoint, and
 * S3 counts objects, not dataset versions, so Tuneyard publishes them itself from
 * DescribeTrainingJob, DescribeEndpoint, DescribeInferenceComponent and a listing of `datasets/`.
 */

/** The default CloudWatch namespace of Tuneyard's own metrics. */
export const DEFAULT_USAGE_NAMESPACE = 'Tuneyard/Usage';

/** Metric names, and the dimensions each one is published with (in this order). */
export const USAGE_METRICS = {
  /**
   * Instance-hours of one training job (wall-clock training time × instances), published once
   * the job has ended, stamped with its end time. Republished every run while the job is in the
   * look-back window, always with the same value and timestamp: read it with `Maximum`.
   */
  trainingInstanceHours: { name: 'TrainingInstanceHours', dimensions: ['TrainingJobPrefix', 'TrainingJobName', 'InstanceType'] },
  /** Billable instance-hours of one training job (`BillableTimeInSeconds` × instances: spot savings show here). */
  billableInstanceHours: { name: 'BillableInstanceHours', dimensions: ['TrainingJobPrefix', 'TrainingJobName', 'InstanceType'] },
  /**
   * Instance-hours of all jobs of a prefix that ended in one clock hour, stamped at the start of
   * the hour. Read with Maximum at a one-hour period; Sum over a range is then the range's total.
   * Fixed dimensions: it can back an alarm and needs no SEARCH (which finds at most 500 series,
   * of the last two weeks).
   */
  prefixInstanceHours: { name: 'TrainingInstanceHours', dimensions: ['TrainingJobPrefix'] },
  /** Billable instance-hours of all jobs of a prefix that ended in one clock hour. */
  prefixBillableInstanceHours: { name: 'BillableInstanceHours', dimensions: ['TrainingJobPrefix'] },
  /** Instances running behind an endpoint (`CurrentInstanceCount`, summed over its variants). */
  endpointInstances: { name: 'EndpointInstances', dimensions: ['EndpointName'] },
  /** Instances an endpoint is scaling to (`DesiredInstanceCount`, summed over its variants). */
  endpointDesiredInstances: { name: 'EndpointDesiredInstances', dimensions: ['EndpointName'] },
  /** Model copies running on an endpoint, over its inference components with compute of their own (adapters run inside their base's copies). */
  endpointCopies: { name: 'EndpointCopies', dimensions: ['EndpointName'] },
  /** Copies of one inference component (`CurrentCopyCount`). */
  componentCopies: { name: 'ComponentCopies', dimensions: ['EndpointName', 'InferenceComponentName'] },
  /** Copies one inference component is scaling to (`DesiredCopyCount`). */
  componentDesiredCopies: { name: 'ComponentDesiredCopies', dimensions: ['EndpointName', 'InferenceComponentName'] },
  /** Complete dataset versions in the data bucket (`datasets/<name>/<sha256>/manifest.json`), counted hourly. */
  datasetVersions: { name: 'DatasetVersions', dimensions: ['BucketName'] },
  /** Datasets (distinct names with at least one complete version), counted hourly. */
  datasets: { name: 'Datasets', dimensions: ['BucketName'] },
} as const;

/** One of the metrics above. */
export type UsageMetricKey = keyof typeof USAGE_METRICS;

/** An endpoint the publisher watches. */
export interface WatchedEndpoint {
  readonly name: string;
  /** Whether it serves inference components (then copies are published too). */
  readonly components: boolean;
}

/** The environment variables through which the construct configures the handler. */
export const USAGE_ENV = {
  /** The CloudWatch namespace. */
  namespace: 'METRICS_NAMESPACE',
  /** JSON array of training-job name prefixes. */
  trainingJobPrefixes: 'TRAINING_JOB_PREFIXES',
  /** JSON array of {@link WatchedEndpoint}. */
  endpoints: 'ENDPOINTS',
  /** How far back (minutes) ended training jobs are looked for on each run. */
  lookbackMinutes: 'TRAINING_LOOKBACK_MINUTES',
  /** The data bucket whose dataset versions are counted (empty: none). */
  dataBucket: 'DATA_BUCKET',
} as const;

/** What a scheduled run does: the frequent fleet-and-jobs run, or the hourly dataset count. */
export interface UsageEvent {
  readonly task?: 'fleet' | 'datasets';
}
