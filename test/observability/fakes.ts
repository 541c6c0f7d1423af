import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sagemaker from 'aws-cdk-lib/aws-sagemaker';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { IEndpointAlarmSource } from '../../constructs/plane-alarms';
import { IPipelineMetricSource } from '../../constructs/plane-dashboard';

/**
 * A minimal pipeline: a real state machine and a real metric filter, with the metric methods of
 * the pipeline contract. It lets the observability tests run against what a pipeline publishes
 * without building the whole FineTuningPipeline.
 */
export class StubPipeline extends Construct implements IPipelineMetricSource {
  public readonly stateMachine: sfn.StateMachine;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    this.stateMachine = new sfn.StateMachine(this, 'Resource', {
      definitionBody: sfn.DefinitionBody.fromChainable(new sfn.Pass(this, 'Done')),
    });
    const logGroup = new logs.LogGroup(this, 'Logs');
    new logs.MetricFilter(this, 'Rejected', {
      logGroup,
      filterPattern: logs.FilterPattern.literal('GateRejected'),
      metricNamespace: 'Stub/Pipeline',
      metricName: 'RunsRejected',
      metricValue: '1',
    });
  }

  public metricExecutionsStarted(props?: cloudwatch.MetricOptions) {
    return this.stateMachine.metricStarted(props);
  }
  public metricExecutionsSucceeded(props?: cloudwatch.MetricOptions) {
    return this.stateMachine.metricSucceeded(props);
  }
  public metricExecutionsFailed(props?: cloudwatch.MetricOptions) {
    return this.stateMachine.metricFailed(props);
  }
  public metricExecutionsTimedOut(props?: cloudwatch.MetricOptions) {
    return this.stateMachine.metricTimedOut(props);
  }
  public metricExecutionsAborted(props?: cloudwatch.MetricOptions) {
    return this.stateMachine.metricAborted(props);
  }
  public metricExecutionTime(props?: cloudwatch.MetricOptions) {
    return this.stateMachine.metricTime(props);
  }
  public metricRunsRejected(props?: cloudwatch.MetricOptions) {
    return new cloudwatch.Metric({ namespace: 'Stub/Pipeline', metricName: 'RunsRejected', statistic: 'Sum', period: Duration.minutes(5), ...props });
  }
}

/** Metrics of an endpoint named `endpointName`, variant AllTraffic, as VllmEndpoint publishes them. */
abstract class EndpointMetrics extends Construct implements IEndpointAlarmSource {
  public abstract readonly endpointName: string;
  public usesInferenceComponents = false;
  public instanceType?: string;
  public invocation5xxAlarm?: cloudwatch.Alarm;
  public modelLatencyAlarm?: cloudwatch.Alarm;
  public noCapacityAlarm?: cloudwatch.IAlarm;

  public metricInvocations(props?: cloudwatch.MetricOptions) {
    return this.metric('AWS/SageMaker', 'Invocations', props);
  }
  public metricModelLatency(props?: cloudwatch.MetricOptions) {
    return this.metric('AWS/SageMaker', 'ModelLatency', props);
  }
  public metricOverheadLatency(props?: cloudwatch.MetricOptions) {
    return this.metric('AWS/SageMaker', 'OverheadLatency', props);
  }
  public metricInvocation4XXErrors(props?: cloudwatch.MetricOptions) {
    return this.metric('AWS/SageMaker', 'Invocation4XXErrors', props);
  }
  public metricInvocation5XXErrors(props?: cloudwatch.MetricOptions) {
    return this.metric('AWS/SageMaker', 'Invocation5XXErrors', props);
  }
  public metricGpuUtilization(props?: cloudwatch.MetricOptions) {
    return this.metric('/aws/sagemaker/Endpoints', 'GPUUtilization', props);
  }
  public metricGpuMemoryUtilization(props?: cloudwatch.MetricOptions) {
    return this.metric('/aws/sagemaker/Endpoints', 'GPUMemoryUtilization', props);
  }

  protected metric(namespace: string, metricName: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return new cloudwatch.Metric({ namespace, metricName, dimensionsMap: { EndpointName: this.endpointName, VariantName: 'AllTraffic' }, ...props });
  }
}

/** A real endpoint and endpoint config (not deployable: it has no model), with the endpoint metric contract. */
export class StubEndpoint extends EndpointMetrics {
  public readonly endpointName: string;

  constructor(scope: Construct, id: string, options: { instanceType?: string; variantName?: string } = {}) {
    super(scope, id);
    this.instanceType = options.instanceType ?? 'ml.g5.12xlarge';
    const config = new sagemaker.CfnEndpointConfig(this, 'Config', {
      productionVariants: [{ variantName: options.variantName ?? 'AllTraffic', modelName: 'stub', initialInstanceCount: 1, instanceType: this.instanceType }],
    });
    const endpoint = new sagemaker.CfnEndpoint(this, 'Resource', { endpointConfigName: config.attrEndpointConfigName });
    this.endpointName = endpoint.attrEndpointName;
  }
}

/** An endpoint that scales to zero (inference components): it also has NoCapacityInvocationFailures. */
export class StubScaleToZeroEndpoint extends StubEndpoint {
  public readonly componentName: string;

  constructor(scope: Construct, id: string, options: { instanceType?: string } = {}) {
    super(scope, id, options);
    // The wake-from-zero alarm belongs to the endpoint's scaling; an imported one keeps the template to PlaneAlarms' own.
    this.noCapacityAlarm = cloudwatch.Alarm.fromAlarmName(this, 'Wake', `${id}-wake`);
    this.usesInferenceComponents = true;
    const component = new sagemaker.CfnInferenceComponent(this, 'Component', {
      endpointName: this.endpointName,
      inferenceComponentName: `${id.toLowerCase()}-adapter`,
      specification: { modelName: 'stub' },
      runtimeConfig: { copyCount: 1 },
    });
    this.componentName = component.inferenceComponentName!;
  }

  public metricNoCapacityInvocationFailures(props?: cloudwatch.MetricOptions) {
    return new cloudwatch.Metric({
      namespace: 'AWS/SageMaker',
      metricName: 'NoCapacityInvocationFailures',
      dimensionsMap: { InferenceComponentName: this.componentName },
      ...props,
    });
  }
}

/** Endpoint metrics only, for an endpoint outside the stack (no resources, so no nag findings). */
export class ExternalEndpoint extends EndpointMetrics {
  constructor(
    scope: Construct,
    id: string,
    public readonly endpointName: string,
  ) {
    super(scope, id);
    this.instanceType = 'ml.g5.2xlarge';
  }
}
