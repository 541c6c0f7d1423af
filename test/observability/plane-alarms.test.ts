import { CfnResource, Duration } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Stack } from 'aws-cdk-lib';
import { PlaneAlarms } from '../../constructs/plane-alarms';
import { complianceFindings, testStack } from '../support/app';
import { ExternalEndpoint, StubEndpoint, StubPipeline, StubScaleToZeroEndpoint } from './fakes';
import { publisherOf, readMetrics } from './metric-walk';

function topicIn(stack: Stack): sns.Topic {
  return new sns.Topic(stack, 'Topic', { masterKey: new kms.Key(stack, 'TopicKey', { enableKeyRotation: true }), enforceSSL: true });
}

const logicalId = (stack: Stack, c: { node: { defaultChild?: unknown } }) => stack.resolve((c.node.defaultChild as CfnResource).logicalId) as string;

function alarms(template: Template): Record<string, Record<string, any>> {
  return Object.fromEntries(Object.entries(template.findResources('AWS::CloudWatch::Alarm')).map(([id, r]) => [id, r.Properties]));
}

describe('PlaneAlarms on a pipeline and two endpoints', () => {
  // GIVEN
  const stack = testStack();
  const topic = topicIn(stack);
  const pipeline = new StubPipeline(stack, 'Pipeline');
  const chat = new StubEndpoint(stack, 'Chat', { instanceType: 'ml.g5.12xlarge' });
  const adapters = new StubScaleToZeroEndpoint(stack, 'Adapters', { instanceType: 'ml.g5.2xlarge' });
  // WHEN
  const plane = new PlaneAlarms(stack, 'Alarms', { topic, pipelines: [pipeline], endpoints: [chat, adapters], runbookUrl: 'https://example.com/README.md' });
  const template = Template.fromStack(stack);
  const json = template.toJSON();
  const topicRef = { Ref: logicalId(stack, topic) };

  test('creates one pipeline alarm and, per endpoint, 5xx rate, p99 latency, GPU memory (and no-capacity when it scales to zero)', () => {
    const ids = Object.keys(alarms(template)).map((id) => id.replace(/[0-9A-F]{8}$/, ''));
    expect(ids.sort()).toEqual(
      [
        'AlarmsPipelineRunsFailed',
        'AlarmsChatErrorRate',
        'AlarmsChatLatencyP99',
        'AlarmsChatGpuMemory',
        'AlarmsAdaptersErrorRate',
        'AlarmsAdaptersLatencyP99',
        'AlarmsAdaptersGpuMemory',
        'AlarmsAdaptersNoCapacity',
      ].sort(),
    );
    expect(plane.alarms).toHaveLength(8);
  });

  test('every alarm notifies the plane topic when it fires and when it recovers', () => {
    for (const props of Object.values(alarms(template))) {
      expect(props.AlarmActions).toEqual([topicRef]);
      expect(props.OKActions).toEqual([topicRef]);
      expect(props.AlarmDescription).toMatch(/Runbook: https:\/\/example\.com\/README\.md#[a-z0-9-]+$/);
    }
  });

  test('every alarm reads metrics that a resource of the stack publishes', () => {
    const read = readMetrics(json);
    const problems = read.metrics.map((m) => publisherOf(m, json).problem).filter((p) => p !== undefined);
    expect(problems).toEqual([]);
    const publishers = new Set(read.metrics.map((m) => publisherOf(m, json).publisher));
    expect(publishers).toEqual(
      new Set([
        logicalId(stack, pipeline.stateMachine),
        // the gate-rejection metric filter on the state machine's log group
        Object.keys(template.findResources('AWS::Logs::MetricFilter'))[0],
        logicalId(stack, chat),
        logicalId(stack, adapters),
        Object.keys(template.findResources('AWS::SageMaker::InferenceComponent'))[0],
      ]),
    );
  });

  test('pipeline runs: failed plus timed out minus gate rejections, at least 1 in 5 minutes, no data is no failure', () => {
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      AlarmDescription: Match.stringLikeRegexp('Fine-tuning runs .* failed or timed out.*#pipeline-runs-failed'),
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      Threshold: 1,
      EvaluationPeriods: 1,
      DatapointsToAlarm: 1,
      TreatMissingData: 'notBreaching',
      Metrics: Match.arrayWith([
        Match.objectLike({ Expression: 'FILL(failed, 0) + FILL(timedOut, 0) - FILL(rejected, 0)' }),
        Match.objectLike({ Id: 'failed', MetricStat: Match.objectLike({ Metric: Match.objectLike({ MetricName: 'ExecutionsFailed' }), Period: 300, Stat: 'Sum' }) }),
        Match.objectLike({ Id: 'timedOut', MetricStat: Match.objectLike({ Metric: Match.objectLike({ MetricName: 'ExecutionsTimedOut' }), Period: 300, Stat: 'Sum' }) }),
        Match.objectLike({ Id: 'rejected', MetricStat: Match.objectLike({ Metric: Match.objectLike({ MetricName: 'RunsRejected' }), Period: 300, Stat: 'Sum' }) }),
      ]),
    });
  });

  test('5xx rate: percent of invocations, above 5% in 3 of 5 minutes', () => {
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      AlarmDescription: Match.stringLikeRegexp('Chat ended in a 5xx'),
      ComparisonOperator: 'GreaterThanThreshold',
      Threshold: 5,
      EvaluationPeriods: 5,
      DatapointsToAlarm: 3,
      TreatMissingData: 'notBreaching',
      Metrics: Match.arrayWith([
        Match.objectLike({ Expression: 'IF(invocations > 0, 100 * errors / invocations, 0)' }),
        Match.objectLike({ Id: 'errors', MetricStat: Match.objectLike({ Metric: Match.objectLike({ MetricName: 'Invocation5XXErrors' }), Stat: 'Sum', Period: 60 }) }),
        Match.objectLike({ Id: 'invocations', MetricStat: Match.objectLike({ Metric: Match.objectLike({ MetricName: 'Invocations' }), Stat: 'Sum', Period: 60 }) }),
      ]),
    });
  });

  test('p99 latency: ModelLatency (microseconds) compared in milliseconds with 30000', () => {
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      AlarmDescription: Match.stringLikeRegexp('p99 model latency of .*Chat is above 30000 ms'),
      Threshold: 30000,
      Metrics: Match.arrayWith([
        Match.objectLike({ Expression: 'latency / 1000' }),
        Match.objectLike({ MetricStat: Match.objectLike({ Metric: Match.objectLike({ MetricName: 'ModelLatency' }), Stat: 'p99' }) }),
      ]),
    });
  });

  test('GPU memory: the per-instance sum divided by the GPUs of the instance', () => {
    const gpu = Object.values(alarms(template)).filter((a) => /GPU memory/.test(a.AlarmDescription));
    expect(gpu.map((a) => a.Metrics.find((m: any) => m.Expression).Expression).sort()).toEqual(['memory / 1', 'memory / 4']);
    for (const a of gpu) {
      expect(a).toMatchObject({ Threshold: 95, EvaluationPeriods: 5, DatapointsToAlarm: 5, TreatMissingData: 'notBreaching' });
      expect(a.Metrics).toContainEqual(expect.objectContaining({ MetricStat: expect.objectContaining({ Stat: 'Maximum' }) }));
    }
  });

  test('no capacity: refusals in 3 consecutive 5-minute periods, only for the endpoint that scales to zero', () => {
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'NoCapacityInvocationFailures',
      Namespace: 'AWS/SageMaker',
      Dimensions: [{ Name: 'InferenceComponentName', Value: 'adapters-adapter' }],
      Statistic: 'Sum',
      Period: 300,
      Threshold: 1,
      EvaluationPeriods: 3,
      DatapointsToAlarm: 3,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      TreatMissingData: 'notBreaching',
    });
    expect(Object.values(alarms(template)).filter((a) => a.MetricName === 'NoCapacityInvocationFailures')).toHaveLength(1);
  });
});

describe('PlaneAlarms props', () => {
  test('passes the four compliance packs', () => {
    const stack = testStack();
    new PlaneAlarms(stack, 'Alarms', { topic: topicIn(stack), endpoints: [new ExternalEndpoint(stack, 'Chat', 'chat')] });
    expect(complianceFindings(stack)).toEqual([]);
  });

  test('thresholds and periods come from props', () => {
    const stack = testStack();
    new PlaneAlarms(stack, 'Alarms', {
      topic: topicIn(stack),
      endpoints: [new ExternalEndpoint(stack, 'Chat', 'chat')],
      endpointErrorRate: { threshold: 1, period: Duration.minutes(5), evaluationPeriods: 2, datapointsToAlarm: 2 },
      endpointLatencyP99: { threshold: 2000 },
    });
    const template = Template.fromStack(stack);
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      AlarmDescription: Match.stringLikeRegexp('More than 1% of the requests'),
      Threshold: 1,
      EvaluationPeriods: 2,
      DatapointsToAlarm: 2,
      Metrics: Match.arrayWith([Match.objectLike({ Id: 'errors', MetricStat: Match.objectLike({ Period: 300 }) })]),
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', { AlarmDescription: Match.stringLikeRegexp('above 2000 ms'), Threshold: 2000, EvaluationPeriods: 5 });
  });

  test("notifies on an endpoint's own rollback alarms instead of creating a second set", () => {
    // GIVEN
    const stack = testStack();
    const topic = topicIn(stack);
    const endpoint = new ExternalEndpoint(stack, 'Chat', 'chat');
    endpoint.invocation5xxAlarm = endpoint.metricInvocation5XXErrors().createAlarm(stack, 'Own5xx', { threshold: 1, evaluationPeriods: 1 });
    endpoint.modelLatencyAlarm = endpoint.metricModelLatency({ statistic: 'p99' }).createAlarm(stack, 'OwnLatency', { threshold: 1, evaluationPeriods: 1 });
    // WHEN
    const plane = new PlaneAlarms(stack, 'Alarms', { topic, endpoints: [endpoint] });
    // THEN
    const template = Template.fromStack(stack);
    const all = alarms(template);
    expect(Object.keys(all)).toHaveLength(3); // the endpoint's two + GPU memory
    for (const own of [endpoint.invocation5xxAlarm, endpoint.modelLatencyAlarm]) {
      expect(all[logicalId(stack, own)].AlarmActions).toEqual([{ Ref: logicalId(stack, topic) }]);
      expect(plane.alarms).toContain(own);
    }
  });

  test('warns when the GPUs of an endpoint\'s instance type are unknown', () => {
    const stack = testStack();
    const endpoint = new ExternalEndpoint(stack, 'Chat', 'chat');
    endpoint.instanceType = 'ml.x9.huge';
    new PlaneAlarms(stack, 'Alarms', { topic: topicIn(stack), endpoints: [endpoint] });
    Annotations.fromStack(stack).hasWarning('/Test/Alarms', Match.stringLikeRegexp('GPUs per instance of Test/Chat are unknown \\(instance type ml.x9.huge\\).*assumes 1 GPU'));
  });

  test('fails at synth when there is nothing to alarm on', () => {
    const stack = testStack();
    new PlaneAlarms(stack, 'Alarms', { topic: topicIn(stack) });
    expect(() => Template.fromStack(stack)).toThrow(/PlaneAlarms has nothing to alarm on: give pipelines, endpoints, or both/);
  });

  test('the one-pipeline prop of earlier versions still works, with the same alarm id', () => {
    const stack = testStack();
    new PlaneAlarms(stack, 'Alarms', { topic: topicIn(stack), pipeline: new StubPipeline(stack, 'Pipeline') });
    expect(Object.keys(alarms(Template.fromStack(stack))).map((id) => id.replace(/[0-9A-F]{8}$/, ''))).toEqual(['AlarmsPipelineRunsFailed']);
  });

  test('addPipeline and addEndpoint return the alarms they add, which join `alarms`', () => {
    const stack = testStack();
    const plane = new PlaneAlarms(stack, 'Alarms', { topic: topicIn(stack) });
    const runs = plane.addPipeline(new StubPipeline(stack, 'TeamA'));
    const chat = plane.addEndpoint(new ExternalEndpoint(stack, 'Chat', 'chat'));
    expect(runs.node.id).toBe('TeamARunsFailed');
    expect(chat.map((a) => a.node.id)).toEqual(['ChatErrorRate', 'ChatLatencyP99', 'ChatGpuMemory']);
    expect(plane.alarms).toEqual([runs, ...chat]);
  });

  test('fails when a pipeline is added twice', () => {
    const stack = testStack();
    const pipeline = new StubPipeline(stack, 'P');
    const plane = new PlaneAlarms(stack, 'Alarms', { topic: topicIn(stack), pipelines: [pipeline] });
    expect(() => plane.addPipeline(pipeline)).toThrow(/pipeline Test\/P is already on these alarms; add each pipeline once/);
  });

  test('fails when datapointsToAlarm exceeds evaluationPeriods', () => {
    const stack = testStack();
    expect(
      () => new PlaneAlarms(stack, 'Alarms', { topic: topicIn(stack), pipelines: [new StubPipeline(stack, 'P')], pipelineFailures: { datapointsToAlarm: 2 } }),
    ).toThrow(/pipelineFailures: datapointsToAlarm must be between 1 and evaluationPeriods \(1\); got 2/);
  });

  test('fails when a period is not whole minutes', () => {
    const stack = testStack();
    expect(
      () => new PlaneAlarms(stack, 'Alarms', { topic: topicIn(stack), pipelines: [new StubPipeline(stack, 'P')], pipelineFailures: { period: Duration.seconds(30) } }),
    ).toThrow(/pipelineFailures: period must be a whole number of minutes.*got 30 seconds/);
  });

  test('fails when two endpoints share a construct id', () => {
    const stack = testStack();
    const a = new ExternalEndpoint(stack, 'Chat', 'a');
    const b = new ExternalEndpoint(new cloudwatch.Dashboard(stack, 'Elsewhere'), 'Chat', 'b');
    expect(() => new PlaneAlarms(stack, 'Alarms', { topic: topicIn(stack), endpoints: [a, b] })).toThrow(/two endpoints have the construct id "Chat" \(Test\/Chat, Test\/Elsewhere\/Chat\)/);
  });
});
