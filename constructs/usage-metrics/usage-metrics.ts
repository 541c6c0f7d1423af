import * as path from 'node:path';
import { Duration, RemovalPolicy, Stack, Token } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { TuneyardValidationError } from '../../lib/errors';
import { acknowledge, nagResource } from '../../lib/nag';
import { createLogKey, createPlaneFunction } from '../../lib/plane-function';
import { IUsageEndpointRef, IUsageMetricSource, UsageExpressionOptions, UsageTotalOptions } from '../plane-dashboard/metric-sources';
import { DEFAULT_USAGE_NAMESPACE, USAGE_ENV, USAGE_METRICS, UsageEvent, UsageMetricKey, WatchedEndpoint } from './usage-contract';

/**
 * Training jobs whose instance-hours are published: all jobs whose names start with the prefix
 * (`FineTuningJob` is one). A prefix that starts another's (`tuneyard-` and `tuneyard-dev-`)
 * counts that one's jobs too: give each plane of an account and region a prefix of its own.
 */
export interface IUsageTrainingJobs {
  /** The prefix of the job names. */
  readonly jobNamePrefix: string;
}

/** An endpoint whose instances (and copies) are published (`VllmEndpoint` is one). */
export interface IUsageEndpoint extends IUsageEndpointRef {
  /**
   * The endpoint's ARN, as SageMaker reports it (`CfnEndpoint.attrEndpointArn`: the name in lower
   * case): the publisher may describe this endpoint only.
   */
  readonly endpointArn: string;
}

/** A data store whose dataset versions are counted (`DatasetStore` is one). */
export interface IUsageDataStore {
  readonly bucket: s3.IBucket;
  /** Allows listing `datasets/` (keys only). */
  grantListDatasets(grantee: iam.IGrantable): iam.Grant;
}

/** Properties of {@link UsageMetrics}. Give at least one training-job prefix, endpoint or data store. */
export interface UsageMetricsProps {
  /**
   * Training jobs whose instance-hours (wall-clock and billable) are published when they end.
   *
   * @default - no training metrics
   */
  readonly trainingJobs?: IUsageTrainingJobs[];

  /**
   * Endpoints whose current and desired instances (and, for inference components, copies) are
   * published on every run.
   *
   * @default - no endpoint metrics
   */
  readonly endpoints?: IUsageEndpoint[];

  /**
   * The data store whose complete dataset versions (and datasets) are counted, once an hour, by
   * listing `datasets/`.
   *
   * @default - no dataset counts
   */
  readonly dataStore?: IUsageDataStore;

  /**
   * How often the publisher runs: the resolution of the instance and copy graphs.
   *
   * @default - Duration.minutes(1) with endpoints; Duration.minutes(5) for training jobs alone
   */
  readonly schedule?: Duration;

  /**
   * How far back each run looks for ended training jobs. Each run republishes every job that
   * ended in this window (the same value at the same timestamp), so a run that fails is made good
   * by the next one. It must exceed an hour plus two schedules, so that some run sees every job of
   * each clock hour (the hourly totals).
   *
   * @default - Duration.hours(2), or an hour plus two schedules when that is longer
   */
  readonly trainingLookback?: Duration;

  /**
   * The CloudWatch namespace of the metrics.
   *
   * @default 'Tuneyard/Usage'
   */
  readonly namespace?: string;

  /**
   * The VPC to run the publisher in. It calls the SageMaker API, CloudWatch and (with
   * `dataStore`) S3, so the subnets need interface endpoints for the first two and an S3 gateway
   * endpoint (`PlaneNetwork` has all three), or a NAT gateway.
   *
   * @default - not in a VPC
   */
  readonly vpc?: ec2.IVpc;

  /**
   * Where in `vpc` to place the function.
   *
   * @default - the VPC's private subnets
   */
  readonly vpcSubnets?: ec2.SubnetSelection;

  /**
   * Whether the function reserves one concurrent execution (and is capped at it: runs never
   * overlap). Lambda keeps 100 units of an account's limit unreserved, so an account whose limit is
   * 10 (new accounts) cannot reserve any and the deployment fails: set this to false there, or ask
   * for a limit increase.
   *
   * @default true
   */
  readonly reserveConcurrency?: boolean;
  /**
   * The KMS key that encrypts the function's log group. Its key policy must let CloudWatch Logs use it.
   *
   * @default - a new key with yearly rotation, whose policy allows the function's log group
   */
  readonly logEncryptionKey?: kms.IKey;

  /**
   * How long the function's logs are kept.
   *
   * @default logs.RetentionDays.THREE_MONTHS
   */
  readonly logRetention?: logs.RetentionDays;

  /**
   * What happens to the log group (and the log key this construct creates) when they leave the stack.
   *
   * @default RemovalPolicy.RETAIN
   */
  readonly removalPolicy?: RemovalPolicy;
}

const SAGEMAKER_LIST_REASON = 'SageMaker List* actions support no resource-level permissions';

/**
 * Publishes what SageMaker does not put into CloudWatch: the instance-hours of training jobs and
 * the instances and model copies behind endpoints, and the dataset versions of the data bucket. A
 * small Lambda function runs on a schedule, reads DescribeTrainingJob, DescribeEndpoint,
 * DescribeInferenceComponent and (hourly) a listing of `datasets/`, and puts the figures into the
 * `Tuneyard/Usage` namespace (see `usage-contract.ts` for the metrics and their
 * dimensions). The `metric*` methods read them back, for dashboards and alarms.
 *
 * Cost: one invocation per `schedule` (43,200 a month at one minute, 8,640 at five; each a second
 * or two at 256 MiB, within Lambda's free tier) and the custom metrics, billed per metric and hour
 * published: 2 per endpoint (3 with inference components), 2 per inference component, 2 per
 * training-job prefix, 2 for the data bucket, and 2 per training job for the two or three hours it
 * is republished.
 */
export class UsageMetrics extends Construct implements IUsageMetricSource {
  /** The publisher function. */
  public readonly function: lambda.IFunction;
  /** The schedule that runs it (training jobs and endpoints). */
  public readonly rule?: events.Rule;
  /** The hourly schedule that counts dataset versions (only with `dataStore`). */
  public readonly datasetsRule?: events.Rule;
  /** The bucket whose dataset versions are counted. */
  public readonly dataBucketName?: string;
  /** The CloudWatch namespace of the metrics. */
  public readonly namespace: string;
  /** The training-job prefixes whose instance-hours are published. */
  public readonly trainingJobPrefixes: string[];

  private readonly endpoints: readonly IUsageEndpoint[];

  constructor(scope: Construct, id: string, props: UsageMetricsProps) {
    super(scope, id);
    this.trainingJobPrefixes = (props.trainingJobs ?? []).map((job) => job.jobNamePrefix);
    this.endpoints = props.endpoints ?? [];
    this.dataBucketName = props.dataStore?.bucket.bucketName;
    this.namespace = props.namespace ?? DEFAULT_USAGE_NAMESPACE;
    const schedule = props.schedule ?? Duration.minutes(this.endpoints.length > 0 ? 1 : 5);
    const lookback = props.trainingLookback ?? Duration.minutes(Math.max(120, 60 + 2 * Math.ceil(schedule.toMinutes({ integral: false }))));
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;
    this.validate(schedule, lookback);

    const logKey = props.logEncryptionKey ?? createLogKey(this, 'LogKey', 'Tuneyard usage metrics function logs', removalPolicy);
    const stack = Stack.of(this);
    const watched: WatchedEndpoint[] = this.endpoints.map((e) => ({ name: e.endpointName, components: e.usesInferenceComponents }));
    const { function: fn, role } = createPlaneFunction(this, {
      ids: { function: 'Resource', role: 'ServiceRole', logGroup: 'LogGroup' },
      entry: path.join(__dirname, 'handler', 'index'),
      description: 'Tuneyard usage metrics: training instance-hours, endpoint instances and copies, dataset versions, into CloudWatch',
      memorySize: 256,
      timeout: Duration.seconds(Math.min(50, schedule.toSeconds() - 5)),
      // One run at a time: a run that overlaps the next would only publish the same figures twice.
      reservedConcurrentExecutions: props.reserveConcurrency === false ? undefined : 1,
      environment: {
        [USAGE_ENV.namespace]: this.namespace,
        [USAGE_ENV.trainingJobPrefixes]: stack.toJsonString(this.trainingJobPrefixes),
        [USAGE_ENV.endpoints]: stack.toJsonString(watched),
        [USAGE_ENV.lookbackMinutes]: String(lookback.toMinutes()),
        [USAGE_ENV.dataBucket]: this.dataBucketName ?? '',
      },
      logEncryptionKey: logKey,
      logRetention: props.logRetention ?? logs.RetentionDays.THREE_MONTHS,
      removalPolicy,
      vpc: props.vpc,
      vpcSubnets: props.vpcSubnets,
      outsideVpcReason: 'the function only calls the SageMaker Describe/List APIs, S3 ListObjectsV2 and CloudWatch PutMetricData over TLS.',
      policyScope: 'the watched training-job prefixes and endpoints, the datasets/ prefix, the log group, or (List*, PutMetricData) one namespace',
      dlqReason:
        'Run by a schedule; each run republishes the whole look-back window, so a failed run is made good by the next one, and a dead-letter queue would only hold stale ticks.',
    });
    // A tick that failed is not worth retrying: the next one comes within `schedule` (or the hour).
    fn.configureAsyncInvoke({ retryAttempts: 0 });
    this.grantReads(role);
    props.dataStore?.grantListDatasets(role);
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        sid: 'PutUsageMetrics',
        actions: ['cloudwatch:PutMetricData'],
        resources: ['*'],
        conditions: { StringEquals: { 'cloudwatch:namespace': this.namespace } },
      }),
    );

    const maxEventAge = Duration.seconds(Math.max(60, schedule.toSeconds()));
    if (this.trainingJobPrefixes.length > 0 || this.endpoints.length > 0) {
      this.rule = new events.Rule(this, 'Schedule', {
        description: 'Runs the Tuneyard usage-metrics publisher (training jobs, endpoints)',
        schedule: events.Schedule.rate(schedule),
        targets: [new targets.LambdaFunction(fn, { event: events.RuleTargetInput.fromObject({ task: 'fleet' } satisfies UsageEvent), retryAttempts: 0, maxEventAge })],
      });
    }
    if (props.dataStore) {
      this.datasetsRule = new events.Rule(this, 'DatasetsSchedule', {
        description: 'Runs the Tuneyard usage-metrics publisher (dataset versions)',
        schedule: events.Schedule.rate(Duration.hours(1)),
        targets: [new targets.LambdaFunction(fn, { event: events.RuleTargetInput.fromObject({ task: 'datasets' } satisfies UsageEvent), retryAttempts: 0, maxEventAge: Duration.hours(1) })],
      });
    }
    this.function = fn;
  }

  /**
   * Instance-hours (wall-clock training time × instances) of the training jobs that ended in each
   * clock hour: of one watched prefix (`jobNamePrefix`), or of every watched prefix added up. A
   * math expression whose metric ids are named after the metric and the prefix, so the totals of
   * several prefixes and the billable hours can share a graph or an alarm. Maximum at a one-hour period
   * (each run republishes the same totals), so the period and statistic are fixed. A graph's
   * `${SUM}` label gives the range's total. Fixed dimensions: it can back an alarm.
   */
  public metricTrainingInstanceHours(props: UsageTotalOptions = {}): cloudwatch.MathExpression {
    return this.prefixTotal('prefixInstanceHours', 'training instance-hours', props);
  }

  /** Billable instance-hours of the training jobs that ended in each clock hour (managed spot bills less than it runs). */
  public metricBillableInstanceHours(props: UsageTotalOptions = {}): cloudwatch.MathExpression {
    return this.prefixTotal('prefixBillableInstanceHours', 'billable instance-hours', props);
  }

  /**
   * Instance-hours of each training job, one line per job (a SEARCH: graph only; it finds at most
   * 500 series, with data in the last two weeks).
   */
  public metricInstanceHoursByJob(options: UsageExpressionOptions = {}): cloudwatch.MathExpression {
    const metric = USAGE_METRICS.trainingInstanceHours;
    const period = options.period ?? Duration.hours(1);
    const prefixes = this.trainingPrefixes('instance-hours by job').map((p) => `TrainingJobPrefix="${p}"`).join(' OR ');
    return new cloudwatch.MathExpression({
      expression: `SEARCH('${this.schema(metric.dimensions)} MetricName="${metric.name}" (${prefixes})', 'Maximum', ${period.toSeconds()})`,
      usingMetrics: {},
      label: options.label ?? '',
      period,
    });
  }

  /** Complete dataset versions in the data bucket (Maximum per hour). */
  public metricDatasetVersions(props: cloudwatch.MetricOptions = {}): cloudwatch.Metric {
    return this.dataMetric('datasetVersions', props);
  }

  /** Datasets with at least one complete version (Maximum per hour). */
  public metricDatasets(props: cloudwatch.MetricOptions = {}): cloudwatch.Metric {
    return this.dataMetric('datasets', props);
  }

  /** Whether this publisher watches the endpoint (its `metricEndpoint*` methods need that). */
  public watches(endpoint: IUsageEndpointRef): boolean {
    return this.endpoints.some((e) => e.endpointName === endpoint.endpointName);
  }

  /** Instances running behind the endpoint (Maximum per minute). */
  public metricEndpointInstances(endpoint: IUsageEndpointRef, props: cloudwatch.MetricOptions = {}): cloudwatch.Metric {
    return this.endpointMetric('endpointInstances', endpoint, props);
  }

  /** Instances the endpoint is scaling to (Maximum per minute). */
  public metricEndpointDesiredInstances(endpoint: IUsageEndpointRef, props: cloudwatch.MetricOptions = {}): cloudwatch.Metric {
    return this.endpointMetric('endpointDesiredInstances', endpoint, props);
  }

  /** Model copies running on the endpoint, over all its inference components (Maximum per minute). */
  public metricEndpointCopies(endpoint: IUsageEndpointRef, props: cloudwatch.MetricOptions = {}): cloudwatch.Metric {
    return this.endpointMetric('endpointCopies', endpoint, props);
  }

  /** Copies of each inference component of the endpoint, one line per component (a SEARCH: graph only). */
  public metricComponentCopies(endpoint: IUsageEndpointRef, options: UsageExpressionOptions = {}): cloudwatch.MathExpression {
    this.checkWatched(endpoint, true);
    const metric = USAGE_METRICS.componentCopies;
    const period = options.period ?? Duration.minutes(1);
    return new cloudwatch.MathExpression({
      expression: `SEARCH('${this.schema(metric.dimensions)} MetricName="${metric.name}" EndpointName="${endpoint.endpointName}"', 'Maximum', ${period.toSeconds()})`,
      usingMetrics: {},
      label: options.label ?? '',
      period,
    });
  }

  private trainingPrefixes(what: string): readonly string[] {
    if (this.trainingJobPrefixes.length === 0) {
      throw new TuneyardValidationError(`this UsageMetrics watches no training jobs, so it has no ${what}: pass \`trainingJobs\`.`, this);
    }
    return this.trainingJobPrefixes;
  }

  /**
   * The hourly totals of one watched prefix, or of every one added up (a missing hour of one prefix
   * counts 0). The expression's metric ids are named after the metric and the prefix
   * (`hours_team_a_`), never after a position: two expressions on one graph or alarm that read the
   * same prefix use the same id for the same metric, and different prefixes never share one.
   */
  private prefixTotal(key: 'prefixInstanceHours' | 'prefixBillableInstanceHours', what: string, props: UsageTotalOptions): cloudwatch.MathExpression {
    const watched = this.trainingPrefixes(what);
    const prefixes = props.jobNamePrefix === undefined ? watched : [props.jobNamePrefix];
    if (props.jobNamePrefix !== undefined && !watched.includes(props.jobNamePrefix)) {
      throw new TuneyardValidationError(
        `this UsageMetrics publishes no ${what} of jobNamePrefix "${props.jobNamePrefix}"; it watches [${watched.join(', ')}]. Add the job to \`trainingJobs\`.`,
        this,
      );
    }
    const kind = key === 'prefixInstanceHours' ? 'hours' : 'billable';
    // Job names are letters, digits and hyphens, so the ids of two prefixes never coincide.
    const ids = prefixes.map((prefix) => `${kind}_${prefix.replace(/[^A-Za-z0-9]/g, '_')}`);
    return new cloudwatch.MathExpression({
      expression: ids.length === 1 ? ids[0] : ids.map((id) => `FILL(${id}, 0)`).join(' + '),
      usingMetrics: Object.fromEntries(prefixes.map((prefix, i) => [ids[i], this.maximum(key, { TrainingJobPrefix: prefix }, Duration.hours(1), {})])),
      label: props.label ?? `${what} per hour (total in range: \${SUM})`,
      color: props.color,
      period: Duration.hours(1),
    });
  }

  private dataMetric(key: UsageMetricKey, props: cloudwatch.MetricOptions): cloudwatch.Metric {
    if (this.dataBucketName === undefined) {
      throw new TuneyardValidationError('this UsageMetrics counts no dataset versions: pass `dataStore`.', this);
    }
    return this.maximum(key, { BucketName: this.dataBucketName }, Duration.hours(1), props);
  }

  private checkWatched(endpoint: IUsageEndpointRef, copies: boolean): void {
    if (!this.watches(endpoint)) {
      throw new TuneyardValidationError(`this UsageMetrics does not watch endpoint ${endpoint.endpointName}: add it to \`endpoints\`.`, this);
    }
    if (copies && !endpoint.usesInferenceComponents) {
      throw new TuneyardValidationError(`endpoint ${endpoint.endpointName} serves a single model, which has no copies: graph its instances instead.`, this);
    }
  }

  private endpointMetric(key: UsageMetricKey, endpoint: IUsageEndpointRef, props: cloudwatch.MetricOptions): cloudwatch.Metric {
    this.checkWatched(endpoint, key === 'endpointCopies');
    return this.maximum(key, { EndpointName: endpoint.endpointName }, Duration.minutes(1), props);
  }

  /** A metric with fixed dimensions, read with Maximum (a count published once a period). */
  private maximum(key: UsageMetricKey, dimensionsMap: Record<string, string>, period: Duration, props: cloudwatch.MetricOptions): cloudwatch.Metric {
    return new cloudwatch.Metric({ namespace: this.namespace, metricName: USAGE_METRICS[key].name, dimensionsMap, statistic: cloudwatch.Stats.MAXIMUM, period, ...props });
  }

  /** The `{namespace,dims}` schema of a SEARCH; names with other than letters and digits are quoted. */
  private schema(dimensions: readonly string[]): string {
    const quote = (name: string) => (/^[A-Za-z0-9]+$/.test(name) ? name : `"${name}"`);
    return `{${[this.namespace, ...dimensions].map(quote).join(',')}}`;
  }

  private grantReads(role: iam.Role): void {
    const stack = Stack.of(this);
    const arn = (resource: string, resourceName: string) => stack.formatArn({ service: 'sagemaker', resource, resourceName });
    if (this.trainingJobPrefixes.length > 0) {
      role.addToPrincipalPolicy(new iam.PolicyStatement({ sid: 'ListTrainingJobs', actions: ['sagemaker:ListTrainingJobs'], resources: ['*'] }));
      role.addToPrincipalPolicy(
        new iam.PolicyStatement({
          sid: 'DescribeTrainingJobs',
          actions: ['sagemaker:DescribeTrainingJob'],
          resources: this.trainingJobPrefixes.map((prefix) => arn('training-job', `${prefix}*`)),
        }),
      );
    }
    if (this.endpoints.length > 0) {
      role.addToPrincipalPolicy(
        new iam.PolicyStatement({ sid: 'DescribeEndpoints', actions: ['sagemaker:DescribeEndpoint'], resources: this.endpoints.map((e) => e.endpointArn) }),
      );
    }
    const componentArn = arn('inference-component', '*');
    if (this.endpoints.some((e) => e.usesInferenceComponents)) {
      role.addToPrincipalPolicy(new iam.PolicyStatement({ sid: 'ListComponents', actions: ['sagemaker:ListInferenceComponents'], resources: ['*'] }));
      role.addToPrincipalPolicy(new iam.PolicyStatement({ sid: 'DescribeComponents', actions: ['sagemaker:DescribeInferenceComponent'], resources: [componentArn] }));
    }
    const policy = role.node.tryFindChild('DefaultPolicy') ?? role;
    acknowledge(policy, {
      'AwsSolutions-IAM5[Resource::*]': `${SAGEMAKER_LIST_REASON} (ListTrainingJobs, ListInferenceComponents), cloudwatch:PutMetricData is limited to the ${this.namespace} namespace by condition, and X-Ray's actions take no resource.`,
      ...Object.fromEntries(
        this.trainingJobPrefixes.map((prefix) => [
          `AwsSolutions-IAM5[Resource::${nagResource(stack, arn('training-job', `${prefix}*`))}]`,
          `DescribeTrainingJob on the jobs of the ${prefix} prefix: their names are made per run.`,
        ]),
      ),
      ...(this.endpoints.some((e) => e.usesInferenceComponents)
        ? {
            [`AwsSolutions-IAM5[Resource::${nagResource(stack, componentArn)}]`]:
              "DescribeInferenceComponent (read-only) on the endpoint's components: adapters are added per run under names the run chooses.",
          }
        : {}),
    });
  }

  private validate(schedule: Duration, lookback: Duration): void {
    if (this.trainingJobPrefixes.length === 0 && this.endpoints.length === 0 && this.dataBucketName === undefined) {
      throw new TuneyardValidationError('UsageMetrics has nothing to publish: give at least one of trainingJobs, endpoints or dataStore.', this);
    }
    if (!Token.isUnresolved(this.namespace) && (!/^[A-Za-z0-9._\-/#:]{1,255}$/.test(this.namespace) || this.namespace.startsWith('AWS/'))) {
      throw new TuneyardValidationError(
        `namespace "${this.namespace}" is invalid: use 1-255 letters, digits or . _ - / # :, not starting with AWS/ (reserved for AWS services), e.g. "Tuneyard/Usage".`,
        this,
      );
    }
    if (schedule.isUnresolved() || lookback.isUnresolved()) return;
    const minutes = schedule.toSeconds() / 60;
    if (!Number.isInteger(minutes) || minutes < 1 || minutes > 60) {
      throw new TuneyardValidationError(
        `schedule must be a whole number of minutes from 1 to 60; got ${schedule.toHumanString()}. Use e.g. Duration.minutes(1).`,
        this,
      );
    }
    const lookbackMinutes = lookback.toSeconds() / 60;
    const least = 60 + 2 * minutes;
    if (!Number.isInteger(lookbackMinutes) || lookbackMinutes < least || lookbackMinutes > 13 * 24 * 60) {
      throw new TuneyardValidationError(
        `trainingLookback must be a whole number of minutes, at least an hour plus two schedules (${least} minutes) and at most 13 days ` +
          `(CloudWatch refuses datapoints older than two weeks); got ${lookback.toHumanString()}. Use e.g. Duration.hours(2).`,
        this,
      );
    }
  }
}
