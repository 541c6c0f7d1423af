import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { IConstruct } from 'constructs';

/**
 * What the plane's dashboard and alarms read from a fine-tuning pipeline
 * (`FineTuningPipeline` implements it).
 */
export interface IPipelineMetricSource extends IConstruct {
  /** `AWS/States ExecutionsStarted` of the state machine. */
  metricExecutionsStarted(props?: cloudwatch.MetricOptions): cloudwatch.IMetric;
  /** `AWS/States ExecutionsSucceeded` of the state machine. */
  metricExecutionsSucceeded(props?: cloudwatch.MetricOptions): cloudwatch.IMetric;
  /** `AWS/States ExecutionsFailed` of the state machine. */
  metricExecutionsFailed(props?: cloudwatch.MetricOptions): cloudwatch.IMetric;
  /** `AWS/States ExecutionsTimedOut` of the state machine. */
  metricExecutionsTimedOut(props?: cloudwatch.MetricOptions): cloudwatch.IMetric;
  /** `AWS/States ExecutionsAborted` of the state machine. */
  metricExecutionsAborted(props?: cloudwatch.MetricOptions): cloudwatch.IMetric;
  /** `AWS/States ExecutionTime` of the state machine, in milliseconds. */
  metricExecutionTime(props?: cloudwatch.MetricOptions): cloudwatch.IMetric;
  /** Runs the quality gate rejected (error `Tuneyard.GateRejected`). */
  metricRunsRejected(props?: cloudwatch.MetricOptions): cloudwatch.IMetric;
}

/**
 * What the dashboard reads from the training jobs of a pipeline (`FineTuningJob` implements it).
 * The metrics are SEARCH expressions over `/aws/sagemaker/TrainingJobs`, since job names are only
 * known at run time.
 */
export interface ITrainingMetricSource extends IConstruct {
  /** The prefix of the job names (what the usage metrics of these jobs are keyed by). */
  readonly jobNamePrefix: string;
  /** The training loss that the trainer logs. */
  metricTrainingLoss(props?: cloudwatch.MathExpressionOptions): cloudwatch.IMetric;
  /** The held-out loss that the trainer logs. */
  metricEvalLoss(props?: cloudwatch.MathExpressionOptions): cloudwatch.IMetric;
  /** Training throughput in tokens per second. */
  metricTokensPerSecond(props?: cloudwatch.MathExpressionOptions): cloudwatch.IMetric;
  /** GPU utilisation of the training instances (100 per GPU). */
  metricGpuUtilization(props?: cloudwatch.MathExpressionOptions): cloudwatch.IMetric;
  /** GPU memory utilisation of the training instances (100 per GPU). */
  metricGpuMemoryUtilization(props?: cloudwatch.MathExpressionOptions): cloudwatch.IMetric;
  /** GRPO and RLOO: mean reward of each step's completions. */
  metricRewardMean(props?: cloudwatch.MathExpressionOptions): cloudwatch.IMetric;
  /** GRPO and RLOO: mean per-token KL divergence of the policy from the reference model. */
  metricKl(props?: cloudwatch.MathExpressionOptions): cloudwatch.IMetric;
  /** GRPO and RLOO: mean completion length, in tokens. */
  metricCompletionLength(props?: cloudwatch.MathExpressionOptions): cloudwatch.IMetric;
  /** GRPO and RLOO: share (0-1) of completions that reached the maximum completion length without ending. */
  metricClippedRatio(props?: cloudwatch.MathExpressionOptions): cloudwatch.IMetric;
  /** GRPO with a format check: share (0-1) of completions that missed the required format. */
  metricFormatMissRatio(props?: cloudwatch.MathExpressionOptions): cloudwatch.IMetric;
  /** RLOO: its policy-gradient loss, which it logs instead of the training loss. */
  metricPolicyLoss(props?: cloudwatch.MathExpressionOptions): cloudwatch.IMetric;
  /** DPO and reward models: share (0-1) of preference pairs whose chosen answer gets the higher reward. */
  metricRewardAccuracy(props?: cloudwatch.MathExpressionOptions): cloudwatch.IMetric;
  /** DPO and reward models: mean chosen minus rejected reward. */
  metricRewardMargin(props?: cloudwatch.MathExpressionOptions): cloudwatch.IMetric;
}

/**
 * What the dashboard and alarms read from a serving endpoint (`VllmEndpoint` implements it).
 */
export interface IEndpointMetricSource extends IConstruct {
  /** The endpoint's name. */
  readonly endpointName: string;
  /** Whether it serves inference components (copies) rather than one model. */
  readonly usesInferenceComponents: boolean;
  /** `AWS/SageMaker Invocations`. */
  metricInvocations(props?: cloudwatch.MetricOptions): cloudwatch.IMetric;
  /** `AWS/SageMaker ModelLatency`, in microseconds. */
  metricModelLatency(props?: cloudwatch.MetricOptions): cloudwatch.IMetric;
  /** `AWS/SageMaker OverheadLatency`, in microseconds. */
  metricOverheadLatency(props?: cloudwatch.MetricOptions): cloudwatch.IMetric;
  /** `AWS/SageMaker Invocation4XXErrors`. */
  metricInvocation4XXErrors(props?: cloudwatch.MetricOptions): cloudwatch.IMetric;
  /** `AWS/SageMaker Invocation5XXErrors`. */
  metricInvocation5XXErrors(props?: cloudwatch.MetricOptions): cloudwatch.IMetric;
  /**
   * GPU utilisation: `/aws/sagemaker/Endpoints GPUUtilization` (100 per GPU) of a single-model
   * endpoint, or `/aws/sagemaker/InferenceComponents GPUUtilizationNormalized` (0-100).
   */
  metricGpuUtilization(props?: cloudwatch.MetricOptions): cloudwatch.IMetric;
  /** GPU memory, in the same namespaces as `metricGpuUtilization` (`GPUMemoryUtilization[Normalized]`). */
  metricGpuMemoryUtilization(props?: cloudwatch.MetricOptions): cloudwatch.IMetric;
  /** Concurrent requests per model or per copy: what target tracking scales on. */
  metricConcurrentRequests?(props?: cloudwatch.MetricOptions): cloudwatch.IMetric;
  /**
   * The alarm that scales the endpoint out of zero copies; set only when the endpoint can scale
   * to zero.
   *
   * @default - no alarm: the endpoint cannot scale to zero
   */
  readonly noCapacityAlarm?: cloudwatch.IAlarm;
  /**
   * `AWS/SageMaker NoCapacityInvocationFailures`: requests refused because no copy of the model
   * runs. Read only when `noCapacityAlarm` is set.
   */
  metricNoCapacityInvocationFailures?(props?: cloudwatch.MetricOptions): cloudwatch.IMetric;
}

/** What the dashboard reads from the data store (`DatasetStore` implements it). */
export interface IDataMetricSource extends IConstruct {
  /** The data bucket. */
  readonly bucket: s3.IBucket;
  /** `AWS/S3 BucketSizeBytes` of the data bucket (daily). */
  metricBucketSizeBytes(props?: cloudwatch.MetricOptions): cloudwatch.IMetric;
  /** `AWS/S3 NumberOfObjects` of the data bucket (daily). */
  metricNumberOfObjects(props?: cloudwatch.MetricOptions): cloudwatch.IMetric;
}

/** Options of the usage publisher's hourly training totals (their period and statistic are fixed). */
export interface UsageTotalOptions {
  /**
   * The training-job prefix whose jobs are totalled; it must be one the publisher watches.
   *
   * @default - every prefix the publisher watches, added up
   */
  readonly jobNamePrefix?: string;
  /**
   * The label of the line.
   *
   * @default - the metric and the total over the graph's range
   */
  readonly label?: string;
  /**
   * The colour of the line, e.g. '#1f77b4'.
   *
   * @default - automatic
   */
  readonly color?: string;
}

/** Options of the usage publisher's SEARCH expressions. */
export interface UsageExpressionOptions {
  /**
   * The period of each value.
   *
   * @default - one hour for training jobs, one minute for copies
   */
  readonly period?: Duration;
  /**
   * The label of the lines.
   *
   * @default - the name of each series
   */
  readonly label?: string;
}

/** An endpoint, as the usage metrics name it. */
export interface IUsageEndpointRef {
  readonly endpointName: string;
  readonly usesInferenceComponents: boolean;
}

/**
 * What the dashboard reads from the usage publisher (`UsageMetrics` implements it): the
 * instance-hours of training jobs and the instances and copies of endpoints, which SageMaker does
 * not publish.
 */
export interface IUsageMetricSource extends IConstruct {
  /** The data bucket whose dataset versions are counted, if any. */
  readonly dataBucketName?: string;
  /** Complete dataset versions in the data bucket (hourly). */
  metricDatasetVersions(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Datasets with at least one complete version (hourly). */
  metricDatasets(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** The training-job prefixes whose instance-hours are published (none: no training metrics). */
  readonly trainingJobPrefixes: string[];
  /** Wall-clock instance-hours of the training jobs (of one prefix, or of all) that ended in each clock hour. */
  metricTrainingInstanceHours(options?: UsageTotalOptions): cloudwatch.MathExpression;
  /** Billable instance-hours of the training jobs (of one prefix, or of all) that ended in each clock hour. */
  metricBillableInstanceHours(options?: UsageTotalOptions): cloudwatch.MathExpression;
  /** Whether the endpoint's instances (and copies) are published. */
  watches(endpoint: IUsageEndpointRef): boolean;
  /** Instances running behind the endpoint. */
  metricEndpointInstances(endpoint: IUsageEndpointRef, props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Instances the endpoint is scaling to. */
  metricEndpointDesiredInstances(endpoint: IUsageEndpointRef, props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Model copies on the endpoint, over all its inference components. */
  metricEndpointCopies(endpoint: IUsageEndpointRef, props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Copies of each inference component, one line each. */
  metricComponentCopies(endpoint: IUsageEndpointRef, options?: UsageExpressionOptions): cloudwatch.MathExpression;
}
