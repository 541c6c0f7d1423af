import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { Construct, IConstruct } from 'constructs';
import { addSourceById } from '../../lib/sources-by-id';
import { IDataMetricSource, IEndpointMetricSource, IPipelineMetricSource, ITrainingMetricSource, IUsageMetricSource } from './metric-sources';
import { RunbookEntry, runbookMarkdown } from './runbook';

/** Properties of a {@link PlaneDashboard}. Every part is optional; give at least one. */
export interface PlaneDashboardProps {
  /**
   * The dashboard's name.
   *
   * @default - a name that CloudFormation generates
   */
  readonly dashboardName?: string;

  /**
   * The fine-tuning pipelines whose runs the dashboard shows (started, succeeded, rejected,
   * failed, timed out, aborted, duration), one section each, named after the pipeline's construct
   * id. More can be added with `addPipeline()`.
   *
   * @default - no pipeline section
   */
  readonly pipelines?: IPipelineMetricSource[];

  /**
   * One fine-tuning pipeline to show.
   *
   * @default - no pipeline section
   * @deprecated Use `pipelines` (or `addPipeline()`), which takes several.
   */
  readonly pipeline?: IPipelineMetricSource;

  /**
   * The training-job definitions whose runs the dashboard shows (train/eval loss, tokens per
   * second, GPU utilisation and memory, one line per job in the time range; the instance-hours
   * of their prefix when `usage` watches it; the figures of GRPO, RLOO, DPO and reward-model runs),
   * one section each. More can be added with `addTrainingJob()`.
   *
   * @default - no training section
   */
  readonly trainingJobs?: ITrainingMetricSource[];

  /**
   * One training-job definition to show.
   *
   * @default - no training section
   * @deprecated Use `trainingJobs` (or `addTrainingJob()`), which takes several.
   */
  readonly trainingJob?: ITrainingMetricSource;

  /**
   * The serving endpoints the dashboard shows (invocations, 4xx/5xx, model and overhead latency
   * p50/p90/p99, GPU utilisation and memory, capacity), one section each. More can be added with
   * `addEndpoint()`.
   *
   * @default - no endpoint section
   */
  readonly endpoints?: IEndpointMetricSource[];

  /**
   * The data store whose bucket size and object count the dashboard shows.
   *
   * @default - no data section
   */
  readonly dataStore?: IDataMetricSource;

  /**
   * The usage publisher (`UsageMetrics`): with it, each training section whose prefix it watches
   * shows that prefix's instance-hours, and each endpoint it watches shows its instances and copies.
   * SageMaker publishes neither.
   *
   * @default - no instance-hours, instances or copies
   */
  readonly usage?: IUsageMetricSource;

  /**
   * Alarms to show in a status widget at the top (typically `PlaneAlarms.alarms`).
   *
   * @default - no alarm status widget
   */
  readonly alarms?: cloudwatch.IAlarm[];

  /**
   * The URL of the README whose `## Runbook` entries the section texts link to, e.g.
   * `https://github.com/acme/tuneyard/blob/main/README.md`.
   *
   * @default - the texts name the README's runbook entries without a link
   */
  readonly runbookUrl?: string;

  /**
   * The time range the dashboard opens with.
   *
   * @default Duration.days(7)
   */
  readonly defaultInterval?: Duration;
}

const FULL = 24;
const GRAPH_HEIGHT = 6;
const MICROS_PER_MS = 1000;
const MS_PER_MINUTE = 60_000;
const BYTES_PER_GIB = 1024 ** 3;
/** The axis of a share: 0 to 1. */
const RATIO_AXIS: cloudwatch.YAxisProps = { min: 0, max: 1 };

/**
 * One CloudWatch dashboard for the fine-tuning plane: training, pipelines, endpoints and data,
 * each section with a text that links to the README's runbook. Compose it in your own app with
 * any subset of the parts, for any number of teams: each training job, pipeline and endpoint gets
 * a section of its own, named (with its graphs) after its construct id. Sections appear in the
 * order they are given: the props' training jobs, pipelines, endpoints and data store, then what
 * `addTrainingJob()`, `addPipeline()` and `addEndpoint()` add, as `cloudwatch.Dashboard.addWidgets` does.
 */
export class PlaneDashboard extends Construct {
  /** The dashboard. */
  public readonly dashboard: cloudwatch.Dashboard;

  private readonly runbookUrl?: string;
  private readonly usage?: IUsageMetricSource;
  private readonly sources = { 'training job': new Map<string, IConstruct>(), pipeline: new Map<string, IConstruct>(), endpoint: new Map<string, IConstruct>() };
  private hasData = false;

  constructor(scope: Construct, id: string, props: PlaneDashboardProps) {
    super(scope, id);
    this.runbookUrl = props.runbookUrl;
    this.usage = props.usage;
    this.dashboard = new cloudwatch.Dashboard(this, 'Resource', {
      dashboardName: props.dashboardName,
      defaultInterval: props.defaultInterval ?? Duration.days(7),
    });
    this.node.addValidation({
      validate: () =>
        Object.values(this.sources).every((s) => s.size === 0) && !this.hasData
          ? ['PlaneDashboard has nothing to show: give at least one of pipelines, trainingJobs, endpoints or dataStore (props, or the add* methods).']
          : [],
    });

    if (props.alarms && props.alarms.length > 0) {
      this.dashboard.addWidgets(
        new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms: props.alarms, width: FULL, height: 3 }),
      );
    }
    for (const job of [...(props.trainingJob ? [props.trainingJob] : []), ...(props.trainingJobs ?? [])]) this.addTrainingJob(job);
    for (const pipeline of [...(props.pipeline ? [props.pipeline] : []), ...(props.pipelines ?? [])]) this.addPipeline(pipeline);
    for (const endpoint of props.endpoints ?? []) this.addEndpoint(endpoint);
    if (props.dataStore) this.addData(props.dataStore);
  }

  /**
   * Adds a section for the runs of a training-job definition: loss, throughput, GPU use and, when
   * `usage` watches its prefix, the instance-hours of that prefix's jobs; below them, the online RL
   * figures (reward and KL; completion length, clipped and format-miss ratios) and the preference
   * figures (accuracy and reward margin), which fill only for runs of those methods.
   */
  public addTrainingJob(job: ITrainingMetricSource): void {
    const name = this.register('training job', job);
    const usage = this.usage?.trainingJobPrefixes.includes(job.jobNamePrefix) ? this.usage : undefined;
    this.section(
      `Training ${name}`,
      `Loss, throughput and GPU use of the training jobs named \`${job.jobNamePrefix}*\`, one line per job in the time range (SEARCH over \`/aws/sagemaker/TrainingJobs\`). ` +
        (usage
          ? "Instance-hours (training time × instances) are Tuneyard's own metrics, counted when a job ends; billable hours are lower under managed spot."
          : 'SageMaker publishes no instance time to CloudWatch: add `UsageMetrics` for instance-hours, or see each job\'s `BillableTimeInSeconds`.') +
        '\n\nThe second row fills for online RL runs (GRPO, RLOO) and preference runs (DPO, reward models) only. ' +
        'Reward rising while KL keeps climbing, or completion length pinned at the maximum (clipped ratio near 1), is reward hacking: ' +
        'the policy games the reward instead of learning the task. Stop the run; raise `grpo_beta` / `rloo_beta`, keep `grpo_length_guard` on, or fix the reward.',
      ['training'],
      3,
    );
    const width = usage ? 6 : 8;
    const widgets = [
      graph(`${name}: training and eval loss`, [job.metricTrainingLoss(), job.metricEvalLoss(), job.metricPolicyLoss()], width),
      graph(`${name}: tokens per second`, [job.metricTokensPerSecond()], width),
      graph(`${name}: GPU utilisation and GPU memory (%, 100 per GPU)`, [job.metricGpuUtilization(), job.metricGpuMemoryUtilization()], width),
    ];
    if (usage) {
      const ofPrefix = { jobNamePrefix: job.jobNamePrefix };
      widgets.push(
        graph(
          `${name}: instance-hours of the jobs that ended, per hour`,
          [usage.metricTrainingInstanceHours(ofPrefix), usage.metricBillableInstanceHours(ofPrefix)],
          width,
        ),
      );
    }
    this.dashboard.addWidgets(...widgets);
    this.dashboard.addWidgets(
      twoAxes(`${name}: reward (left) and KL (right), GRPO and RLOO`, [job.metricRewardMean()], [job.metricKl()], {}, { min: 0 }),
      twoAxes(
        `${name}: completion length (left, tokens) and clipped / format-miss ratio (right)`,
        [job.metricCompletionLength()],
        [job.metricClippedRatio(), job.metricFormatMissRatio()],
        { min: 0 },
        RATIO_AXIS,
      ),
      twoAxes(
        `${name}: preference accuracy (left) and reward margin (right), DPO and reward models`,
        [job.metricRewardAccuracy()],
        [job.metricRewardMargin()],
        RATIO_AXIS,
        {},
      ),
    );
  }

  /** Adds a section for the runs of a pipeline: runs per hour by outcome (its own gate rejections apart) and run duration. */
  public addPipeline(pipeline: IPipelineMetricSource): void {
    const name = this.register('pipeline', pipeline);
    this.section(`Pipeline ${name}`, `Runs of the fine-tuning state machine of \`${pipeline.node.path}\` and how long they take.`, ['pipelineRunsFailed']);
    const hourly = { statistic: cloudwatch.Stats.SUM, period: Duration.hours(1) };
    const duration = (statistic: string) =>
      new cloudwatch.MathExpression({
        expression: `${metricId('time', statistic)} / ${MS_PER_MINUTE}`,
        usingMetrics: { [metricId('time', statistic)]: pipeline.metricExecutionTime({ statistic }) },
        label: `${statistic} (minutes)`,
        period: Duration.hours(1),
      });
    this.dashboard.addWidgets(
      graph(
        `${name}: runs per hour`,
        [
          pipeline.metricExecutionsStarted({ ...hourly, label: 'started' }),
          pipeline.metricExecutionsSucceeded({ ...hourly, label: 'succeeded' }),
          pipeline.metricRunsRejected({ ...hourly, label: 'rejected' }),
          pipeline.metricExecutionsFailed({ ...hourly, label: 'failed' }),
          pipeline.metricExecutionsTimedOut({ ...hourly, label: 'timed out' }),
          pipeline.metricExecutionsAborted({ ...hourly, label: 'aborted' }),
        ],
        12,
      ),
      graph(`${name}: run duration (minutes)`, [duration('p50'), duration('p90'), duration('Maximum')], 12),
    );
  }

  /** Adds a section for an endpoint: requests, errors, latency, GPU use, capacity and (with `usage`) its instances and copies. */
  public addEndpoint(endpoint: IEndpointMetricSource): void {
    const name = this.register('endpoint', endpoint);
    this.section(
      `Endpoint ${name}`,
      'Requests, errors, latency, GPU use and capacity. ModelLatency is the time in the vLLM container; OverheadLatency is what SageMaker adds. ' +
        'GPU figures are 100 per GPU on a single-model endpoint and 0-100 for an inference component. ' +
        (this.usage?.watches(endpoint)
          ? "Instances and copies are Tuneyard's own metrics, read from SageMaker every minute."
          : 'SageMaker publishes no copy or instance count to CloudWatch: add `UsageMetrics` for them.'),
      ['endpoint5xxRate', 'endpointLatency', 'endpointGpuMemory', 'endpointNoCapacity'],
    );
    const perMinute = { statistic: cloudwatch.Stats.SUM, period: Duration.minutes(1) };
    const latency = (kind: 'model' | 'overhead', statistic: string) =>
      new cloudwatch.MathExpression({
        expression: `${metricId(kind, statistic)} / ${MICROS_PER_MS}`,
        usingMetrics: {
          [metricId(kind, statistic)]:
            kind === 'model' ? endpoint.metricModelLatency({ statistic }) : endpoint.metricOverheadLatency({ statistic }),
        },
        label: `${statistic} (ms)`,
        period: Duration.minutes(1),
      });
    const percentiles = ['p50', 'p90', 'p99'];
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: `${name}: invocations and errors per minute`,
        left: [endpoint.metricInvocations({ ...perMinute, label: 'invocations' })],
        right: [
          endpoint.metricInvocation4XXErrors({ ...perMinute, label: '4xx' }),
          endpoint.metricInvocation5XXErrors({ ...perMinute, label: '5xx' }),
        ],
        width: 6,
        height: GRAPH_HEIGHT,
      }),
      graph(`${name}: model latency (ms)`, percentiles.map((p) => latency('model', p)), 6),
      // SageMaker documents percentiles for ModelLatency but not for OverheadLatency: the average
      // shows even where the percentiles come back empty.
      graph(`${name}: overhead latency (ms)`, [...percentiles, 'Average'].map((p) => latency('overhead', p)), 6),
      graph(
        `${name}: GPU utilisation and GPU memory (%)`,
        [endpoint.metricGpuUtilization({ label: 'GPU utilisation' }), endpoint.metricGpuMemoryUtilization({ label: 'GPU memory' })],
        6,
      ),
    );
    const capacity: cloudwatch.IMetric[] = [];
    if (endpoint.metricConcurrentRequests) {
      capacity.push(endpoint.metricConcurrentRequests({ statistic: cloudwatch.Stats.MAXIMUM, period: Duration.minutes(1), label: 'concurrent requests (max)' }));
    }
    if (endpoint.noCapacityAlarm && endpoint.metricNoCapacityInvocationFailures) {
      capacity.push(endpoint.metricNoCapacityInvocationFailures({ ...perMinute, label: 'refused: no capacity' }));
    }
    const fleet = this.usage?.watches(endpoint) ? this.usage : undefined;
    const width = fleet && capacity.length > 0 ? FULL / 2 : FULL;
    const widgets = [
      ...(fleet ? [this.fleetWidget(fleet, endpoint, name, width)] : []),
      ...(capacity.length > 0 ? [graph(`${name}: capacity, concurrency and refusals`, capacity, width)] : []),
    ];
    if (widgets.length > 0) this.dashboard.addWidgets(...widgets);
  }

  /** Instances (current and desired) and, on an inference-component endpoint, copies in all and per component. */
  private fleetWidget(usage: IUsageMetricSource, endpoint: IEndpointMetricSource, name: string, width: number): cloudwatch.GraphWidget {
    const left = [
      usage.metricEndpointInstances(endpoint, { label: 'instances' }),
      usage.metricEndpointDesiredInstances(endpoint, { label: 'instances (desired)' }),
    ];
    const right = endpoint.usesInferenceComponents
      ? [usage.metricEndpointCopies(endpoint, { label: 'copies (all components)' }), usage.metricComponentCopies(endpoint, { label: 'copies:' })]
      : [];
    return new cloudwatch.GraphWidget({
      title: `${name}: ${endpoint.usesInferenceComponents ? 'instances (left) and model copies (right)' : 'instances'}`,
      left,
      right,
      leftYAxis: { min: 0 },
      rightYAxis: { min: 0 },
      width,
      height: GRAPH_HEIGHT,
    });
  }

  private addData(store: IDataMetricSource): void {
    this.hasData = true;
    const counted = this.usage?.dataBucketName !== undefined && this.usage.dataBucketName === store.bucket.bucketName ? this.usage : undefined;
    this.section(
      'Data',
      'The data bucket, all versions included. S3 publishes its size and object count once a day. ' +
        (counted
          ? "Dataset versions (complete: with a manifest) are Tuneyard's own count, hourly."
          : 'One dataset version is 3-4 objects under `datasets/`; add `UsageMetrics` with `dataStore` to count versions.'),
      ['data'],
    );
    const width = counted ? 8 : 12;
    this.dashboard.addWidgets(
      graph(
        'Data bucket size (GiB)',
        [
          new cloudwatch.MathExpression({
            expression: `b / ${BYTES_PER_GIB}`,
            usingMetrics: { b: store.metricBucketSizeBytes() },
            label: 'GiB (S3 Standard)',
            period: Duration.days(1),
          }),
        ],
        width,
      ),
      graph('Objects in the data bucket', [store.metricNumberOfObjects({ label: 'objects' })], width),
      ...(counted ? [graph('Dataset versions', [counted.metricDatasetVersions({ label: 'versions' }), counted.metricDatasets({ label: 'datasets' })], width)] : []),
    );
  }

  /** Keeps sources apart by construct id, which names their sections and graphs; returns the id. */
  private register(kind: keyof PlaneDashboard['sources'], source: IConstruct): string {
    addSourceById(this, { where: 'this dashboard', naming: 'PlaneDashboard names their sections after it' }, this.sources[kind], kind, source);
    return source.node.id;
  }

  private section(title: string, text: string, runbook: RunbookEntry[], height = 2): void {
    const links = runbook.map((entry) => runbookMarkdown(entry, this.runbookUrl)).join(' · ');
    this.dashboard.addWidgets(
      new cloudwatch.TextWidget({ markdown: `## ${title}\n${text}\n\nRunbook: ${links}`, width: FULL, height }),
    );
  }
}

/** A math-expression id for one statistic of a metric: `time_p50`, `model_p99`, `time_maximum`. */
function metricId(name: string, statistic: string): string {
  return `${name}_${statistic.toLowerCase()}`;
}

function graph(title: string, left: cloudwatch.IMetric[], width: number): cloudwatch.GraphWidget {
  return new cloudwatch.GraphWidget({ title, left, width, height: GRAPH_HEIGHT });
}

/** A third-width graph with a left and a right axis. */
function twoAxes(
  title: string,
  left: cloudwatch.IMetric[],
  right: cloudwatch.IMetric[],
  leftYAxis: cloudwatch.YAxisProps,
  rightYAxis: cloudwatch.YAxisProps,
): cloudwatch.GraphWidget {
  return new cloudwatch.GraphWidget({ title, left, right, leftYAxis, rightYAxis, width: FULL / 3, height: GRAPH_HEIGHT });
}
