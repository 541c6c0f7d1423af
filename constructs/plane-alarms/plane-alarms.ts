import { Annotations, Duration, Token } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cloudwatchActions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import { TuneyardValidationError } from '../../lib/errors';
import { addSourceById } from '../../lib/sources-by-id';
import { findGpuInstance } from '../../lib/instances';
import { IEndpointMetricSource, IPipelineMetricSource } from '../plane-dashboard/metric-sources';
import { RunbookEntry, runbookText } from '../plane-dashboard/runbook';

/** How PlaneAlarms words a source added twice or two sources with one id. */
const ALARM_NAMING = { where: 'these alarms', naming: 'PlaneAlarms names its alarms after it' };

/** How one alarm evaluates its metric. Every field is optional; the defaults are per alarm. */
export interface AlarmTuning {
  /**
   * The threshold, in the unit the alarm's documentation names.
   *
   * @default - the alarm's default
   */
  readonly threshold?: number;
  /**
   * The period of one datapoint.
   *
   * @default - the alarm's default
   */
  readonly period?: Duration;
  /**
   * How many recent periods are evaluated.
   *
   * @default - the alarm's default
   */
  readonly evaluationPeriods?: number;
  /**
   * How many of the evaluated periods must breach.
   *
   * @default - the alarm's default
   */
  readonly datapointsToAlarm?: number;
}

/**
 * An endpoint the plane alarms on. When it can scale to zero (`noCapacityAlarm`, its wake-up
 * alarm, is set), PlaneAlarms does not notify on the wake-up alarm (it fires on every wake-up)
 * but adds an alarm on refusals that last longer than a wake-up takes. `VllmEndpoint` implements it; so can your own endpoint
 * constructs.
 */
export interface IEndpointAlarmSource extends IEndpointMetricSource {
  /**
   * The SageMaker instance type, to read `GPUMemoryUtilization` (100 per GPU, summed over the
   * GPUs of an instance) as a percentage. Not needed when the GPU memory metric is already
   * normalized (`GPUMemoryUtilizationNormalized` of an inference component).
   *
   * @default - 1 GPU per instance, with a warning
   */
  readonly instanceType?: string;

  /**
   * The endpoint's own 5xx alarm (the one its deployments roll back on). When set, `PlaneAlarms`
   * notifies on it instead of creating its 5xx-rate alarm.
   *
   * @default - PlaneAlarms creates a 5xx-rate alarm
   */
  readonly invocation5xxAlarm?: cloudwatch.Alarm;

  /**
   * The endpoint's own p99 model latency alarm (the one its deployments roll back on). When set,
   * `PlaneAlarms` notifies on it instead of creating its latency alarm.
   *
   * @default - PlaneAlarms creates a p99 latency alarm
   */
  readonly modelLatencyAlarm?: cloudwatch.Alarm;
}

/** Properties of {@link PlaneAlarms}. */
export interface PlaneAlarmsProps {
  /** The topic every alarm notifies (in the plane: `NotificationTopic.topic`). */
  readonly topic: sns.ITopic;

  /**
   * The pipelines to alarm on, one alarm each: its failed and timed-out runs, its own gate
   * rejections excluded. More can be added with `addPipeline()`.
   *
   * @default - no pipeline alarms
   */
  readonly pipelines?: IPipelineMetricSource[];

  /**
   * One pipeline to alarm on.
   *
   * @default - no pipeline alarm
   * @deprecated Use `pipelines` (or `addPipeline()`), which takes several.
   */
  readonly pipeline?: IPipelineMetricSource;

  /**
   * The endpoints to alarm on: 5xx rate, p99 model latency, GPU memory saturation and, for
   * endpoints that scale to zero, requests refused for lack of capacity. More can be added with
   * `addEndpoint()`.
   *
   * @default - no endpoint alarms
   */
  readonly endpoints?: IEndpointAlarmSource[];

  /**
   * Runs that failed or timed out (`ExecutionsFailed + ExecutionsTimedOut`, count per period).
   *
   * @default - threshold 1, period 5 minutes, 1 of 1 periods
   */
  readonly pipelineFailures?: AlarmTuning;

  /**
   * The share of requests answered with a 5xx, in percent (`100 * Invocation5XXErrors / Invocations`).
   * Used only for endpoints without their own `invocation5xxAlarm`.
   *
   * @default - threshold 5 (%), period 1 minute, 3 of 5 periods
   */
  readonly endpointErrorRate?: AlarmTuning;

  /**
   * p99 of `ModelLatency`, in milliseconds. Used only for endpoints without their own
   * `modelLatencyAlarm`. A generation's latency grows with the tokens it produces: set this from
   * your own traffic.
   *
   * @default - threshold 30000 (ms), period 1 minute, 3 of 5 periods
   */
  readonly endpointLatencyP99?: AlarmTuning;

  /**
   * Maximum GPU memory in use, in percent of all the GPU memory of an instance (single-model
   * endpoints) or of the GPUs reserved for the model (inference components).
   * vLLM reserves `gpu_memory_utilization` (0.9 by default) of each GPU when it starts, so a
   * healthy endpoint sits near 90%.
   *
   * @default - threshold 95 (%), period 1 minute, 5 of 5 periods
   */
  readonly endpointGpuMemory?: AlarmTuning;

  /**
   * Requests refused because no copy of the model runs, per period (endpoints that scale to zero).
   * Scaling out of zero takes minutes, so the default fires only when refusals last 15 minutes.
   *
   * @default - threshold 1, period 5 minutes, 3 of 3 periods
   */
  readonly endpointNoCapacity?: AlarmTuning;

  /**
   * The URL of the README whose `## Runbook` entries the alarm descriptions point to.
   *
   * @default - the descriptions name `README.md#<entry>`
   */
  readonly runbookUrl?: string;
}

type TuningKey = 'pipelineFailures' | 'endpointErrorRate' | 'endpointLatencyP99' | 'endpointGpuMemory' | 'endpointNoCapacity';

interface AlarmSpec {
  readonly id: string;
  readonly metric: cloudwatch.IMetric;
  readonly tuning: Required<AlarmTuning>;
  readonly comparisonOperator: cloudwatch.ComparisonOperator;
  readonly treatMissingData: cloudwatch.TreatMissingData;
  readonly description: string;
  readonly runbook: RunbookEntry;
}

/**
 * The plane's alarms, each notifying the plane's SNS topic when it fires and when it recovers,
 * with a description that names its source and its runbook entry. It takes any number of
 * pipelines and endpoints (several teams in one account): each source's alarms are named after
 * its construct id (`<pipeline id>RunsFailed`, `<endpoint id>ErrorRate`, ...) and read its own
 * metrics only. Endpoints that already own alarms for their auto-rollback (5xx rate, p99 latency)
 * keep them: PlaneAlarms adds its notification to those instead of duplicating them, so one set of
 * alarms both rolls deployments back and pages.
 */
export class PlaneAlarms extends Construct {
  /** Every alarm that notifies the topic, the endpoints' own included (it grows with `addPipeline` and `addEndpoint`). */
  public readonly alarms: cloudwatch.IAlarm[] = [];

  private readonly props: PlaneAlarmsProps;
  private readonly action: cloudwatch.IAlarmAction;
  private readonly pipelines = new Map<string, IPipelineMetricSource>();
  private readonly endpoints = new Map<string, IEndpointAlarmSource>();

  constructor(scope: Construct, id: string, props: PlaneAlarmsProps) {
    super(scope, id);
    this.props = props;
    this.action = new cloudwatchActions.SnsAction(props.topic);
    this.node.addValidation({
      validate: () =>
        this.pipelines.size === 0 && this.endpoints.size === 0
          ? ['PlaneAlarms has nothing to alarm on: give pipelines, endpoints, or both (props, or addPipeline() and addEndpoint()).']
          : [],
    });
    for (const pipeline of [...(props.pipeline ? [props.pipeline] : []), ...(props.pipelines ?? [])]) this.addPipeline(pipeline);
    for (const endpoint of props.endpoints ?? []) this.addEndpoint(endpoint);
  }

  /**
   * Alarms on the runs of a pipeline that failed or timed out, less its own gate rejections
   * (alarm `<pipeline id>RunsFailed`).
   *
   * @returns the alarm
   */
  public addPipeline(pipeline: IPipelineMetricSource): cloudwatch.IAlarm {
    addSourceById(this, ALARM_NAMING, this.pipelines, 'pipeline', pipeline);
    const name = pipeline.node.id;
    const tuning = this.tuning('pipelineFailures', { threshold: 1, period: Duration.minutes(5), evaluationPeriods: 1, datapointsToAlarm: 1 });
    const counted = { statistic: cloudwatch.Stats.SUM, period: tuning.period };
    return this.create({
      id: `${name}RunsFailed`,
      metric: new cloudwatch.MathExpression({
        // A gate rejection ends the execution as failed too, but it is the gate doing its job (and is
        // notified on its own): only operational failures page. The pipeline's own rejections only:
        // subtracting another pipeline's would hide this one's failures.
        expression: 'FILL(failed, 0) + FILL(timedOut, 0) - FILL(rejected, 0)',
        usingMetrics: {
          failed: pipeline.metricExecutionsFailed(counted),
          timedOut: pipeline.metricExecutionsTimedOut(counted),
          rejected: pipeline.metricRunsRejected(counted),
        },
        label: 'runs failed or timed out (gate rejections excluded)',
        period: tuning.period,
      }),
      tuning,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      // Step Functions publishes execution metrics only when runs end: no data means no run failed.
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      description: `Fine-tuning runs of ${pipeline.node.path} failed or timed out (quality-gate rejections excluded).`,
      runbook: 'pipelineRunsFailed',
    });
  }

  /**
   * Alarms on an endpoint: 5xx rate, p99 model latency (or notifies on the endpoint's own rollback
   * alarms for them), GPU memory and, when it scales to zero, refusals for lack of capacity; each
   * named `<endpoint id><alarm>`.
   *
   * @returns the alarms that notify for the endpoint
   */
  public addEndpoint(endpoint: IEndpointAlarmSource): cloudwatch.IAlarm[] {
    addSourceById(this, ALARM_NAMING, this.endpoints, 'endpoint', endpoint);
    const before = this.alarms.length;
    const name = endpoint.node.id;
    if (endpoint.invocation5xxAlarm) {
      this.notifyOn(endpoint.invocation5xxAlarm);
    } else {
      const tuning = this.tuning('endpointErrorRate', { threshold: 5, period: Duration.minutes(1), evaluationPeriods: 5, datapointsToAlarm: 3 });
      const counted = { statistic: cloudwatch.Stats.SUM, period: tuning.period };
      this.create({
        id: `${name}ErrorRate`,
        metric: new cloudwatch.MathExpression({
          expression: 'IF(invocations > 0, 100 * errors / invocations, 0)',
          usingMetrics: { errors: endpoint.metricInvocation5XXErrors(counted), invocations: endpoint.metricInvocations(counted) },
          label: '5xx (% of requests)',
          period: tuning.period,
        }),
        tuning,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        // An idle endpoint (or one scaled to zero) publishes no invocation metrics: no requests, no errors.
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        description: `More than ${tuning.threshold}% of the requests to ${endpoint.node.path} ended in a 5xx.`,
        runbook: 'endpoint5xxRate',
      });
    }

    if (endpoint.modelLatencyAlarm) {
      this.notifyOn(endpoint.modelLatencyAlarm);
    } else {
      const tuning = this.tuning('endpointLatencyP99', { threshold: 30_000, period: Duration.minutes(1), evaluationPeriods: 5, datapointsToAlarm: 3 });
      this.create({
        id: `${name}LatencyP99`,
        // ModelLatency is in microseconds; the threshold is in milliseconds.
        metric: new cloudwatch.MathExpression({
          expression: 'latency / 1000',
          usingMetrics: { latency: endpoint.metricModelLatency({ statistic: 'p99', period: tuning.period }) },
          label: 'p99 model latency (ms)',
          period: tuning.period,
        }),
        tuning,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        // No requests, no latency: an idle endpoint is not slow.
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        description: `p99 model latency of ${endpoint.node.path} is above ${tuning.threshold} ms.`,
        runbook: 'endpointLatency',
      });
    }

    const gpus = this.gpusToDivideBy(endpoint);
    const memory = this.tuning('endpointGpuMemory', { threshold: 95, period: Duration.minutes(1), evaluationPeriods: 5, datapointsToAlarm: 5 });
    this.create({
      id: `${name}GpuMemory`,
      // GPUMemoryUtilization adds up 100 per GPU: divide by the GPUs to compare with a percentage.
      metric: new cloudwatch.MathExpression({
        expression: `memory / ${gpus}`,
        usingMetrics: { memory: endpoint.metricGpuMemoryUtilization({ statistic: cloudwatch.Stats.MAXIMUM, period: memory.period }) },
        label: 'GPU memory (% of all GPUs)',
        period: memory.period,
      }),
      tuning: memory,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      // An endpoint scaled to zero has no instance and no GPU memory in use.
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      description: `GPU memory of ${endpoint.node.path} is above ${memory.threshold}% (vLLM alone reserves about 90%).`,
      runbook: 'endpointGpuMemory',
    });

    if (endpoint.noCapacityAlarm && endpoint.metricNoCapacityInvocationFailures) {
      const tuning = this.tuning('endpointNoCapacity', { threshold: 1, period: Duration.minutes(5), evaluationPeriods: 3, datapointsToAlarm: 3 });
      this.create({
        id: `${name}NoCapacity`,
        metric: endpoint.metricNoCapacityInvocationFailures({ statistic: cloudwatch.Stats.SUM, period: tuning.period }),
        tuning,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        // The metric is published only when a request is refused: no data means no refusal.
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        description: `${endpoint.node.path} has refused requests for lack of capacity for longer than a scale-out from zero takes.`,
        runbook: 'endpointNoCapacity',
      });
    }
    return this.alarms.slice(before);
  }

  /** 1 for a normalized metric (already 0-100); else the GPUs of the endpoint's instance type. */
  private gpusToDivideBy(endpoint: IEndpointAlarmSource): number {
    const metric = endpoint.metricGpuMemoryUtilization();
    if (metric instanceof cloudwatch.Metric && metric.metricName.endsWith('Normalized')) return 1;
    const instanceType = endpoint.instanceType;
    const known = instanceType !== undefined && !Token.isUnresolved(instanceType) ? findGpuInstance(instanceType) : undefined;
    if (known) return known.gpus;
    Annotations.of(this).addWarningV2(
      'tuneyard:endpoint-gpu-count-unknown',
      `The GPUs per instance of ${endpoint.node.path} are unknown (instance type ${instanceType ?? 'not given'}); ` +
        'its GPU memory alarm assumes 1 GPU, so on a multi-GPU instance it fires late. Use an instance type from lib/instances.ts.',
    );
    return 1;
  }

  private tuning(key: TuningKey, defaults: Required<AlarmTuning>): Required<AlarmTuning> {
    const given = this.props[key] ?? {};
    const tuning = { ...defaults, ...dropUndefined(given) };
    if (tuning.datapointsToAlarm > tuning.evaluationPeriods || tuning.datapointsToAlarm < 1) {
      throw new TuneyardValidationError(
        `${key}: datapointsToAlarm must be between 1 and evaluationPeriods (${tuning.evaluationPeriods}); got ${tuning.datapointsToAlarm}.`,
        this,
      );
    }
    const seconds = tuning.period.toSeconds();
    if (!Token.isUnresolved(seconds) && (seconds < 60 || seconds % 60 !== 0)) {
      throw new TuneyardValidationError(
        `${key}: period must be a whole number of minutes (SageMaker and Step Functions publish per minute); got ${tuning.period.toHumanString()}.`,
        this,
      );
    }
    return tuning;
  }

  private create(spec: AlarmSpec): cloudwatch.Alarm {
    const alarm = new cloudwatch.Alarm(this, spec.id, {
      metric: spec.metric,
      threshold: spec.tuning.threshold,
      evaluationPeriods: spec.tuning.evaluationPeriods,
      datapointsToAlarm: spec.tuning.datapointsToAlarm,
      comparisonOperator: spec.comparisonOperator,
      treatMissingData: spec.treatMissingData,
      alarmDescription: `${spec.description} Runbook: ${runbookText(spec.runbook, this.props.runbookUrl)}`,
    });
    this.notifyOn(alarm);
    return alarm;
  }

  private notifyOn(alarm: cloudwatch.Alarm): void {
    alarm.addAlarmAction(this.action);
    alarm.addOkAction(this.action);
    this.alarms.push(alarm);
  }
}

function dropUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
