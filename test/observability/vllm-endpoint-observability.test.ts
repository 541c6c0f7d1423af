import { CfnResource, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sns from 'aws-cdk-lib/aws-sns';
import { IConstruct } from 'constructs';
import { PlaneAlarms } from '../../constructs/plane-alarms';
import { PlaneDashboard } from '../../constructs/plane-dashboard';
import { VllmEndpoint, VllmModelData } from '../../constructs/vllm-endpoint';
import { complianceFindings, testStack } from '../support/app';
import { publisherOf, readMetrics } from './metric-walk';

const logicalId = (stack: Stack, c: IConstruct) => stack.resolve((CfnResource.isCfnResource(c) ? c : (c.node.defaultChild as CfnResource)).logicalId) as string;

/** A single-model endpoint on 4 GPUs and an adapter fleet that scales to zero, watched by the plane's dashboard and alarms. */
function plane() {
  const stack = testStack();
  const key = new kms.Key(stack, 'DataKey', { enableKeyRotation: true });
  const bucket = s3.Bucket.fromBucketAttributes(stack, 'Data', { bucketName: 'tuneyard-data', encryptionKey: key });
  const topic = new sns.Topic(stack, 'Topic', { masterKey: new kms.Key(stack, 'TopicKey', { enableKeyRotation: true }), enforceSSL: true });
  const chat = new VllmEndpoint(stack, 'Chat', {
    instanceType: 'ml.g5.12xlarge',
    baseModel: 'meta-llama/Llama-3.1-8B-Instruct',
    modelData: VllmModelData.fromS3Prefix(bucket, 'artifacts/run-1/model/full/'),
    vllm: { tensorParallelDegree: 4 },
  });
  const adapters = new VllmEndpoint(stack, 'Adapters', {
    instanceType: 'ml.g5.2xlarge',
    baseModel: 'meta-llama/Llama-3.1-8B-Instruct',
    modelData: VllmModelData.fromS3Prefix(bucket, 'base-models/llama-3.1-8b/'),
    inferenceComponents: { minCopies: 0, maxCopies: 2 },
  });
  const alarms = new PlaneAlarms(stack, 'Alarms', { topic, endpoints: [chat, adapters] });
  new PlaneDashboard(stack, 'Dashboard', { endpoints: [chat, adapters], alarms: alarms.alarms });
  return { stack, topic, chat, adapters, alarms, template: Template.fromStack(stack) };
}

describe('PlaneDashboard and PlaneAlarms on VllmEndpoints', () => {
  const { stack, topic, chat, adapters, alarms, template } = plane();
  const json = template.toJSON();
  const all = template.findResources('AWS::CloudWatch::Alarm');

  test('every widget and alarm reads a metric that an endpoint or inference component of the stack publishes', () => {
    const read = readMetrics(json);
    expect(read.metricWidgets).toBeGreaterThanOrEqual(10);
    expect(read.metrics.map((m) => publisherOf(m, json).problem).filter((p) => p !== undefined)).toEqual([]);
    const publishers = new Set(read.metrics.map((m) => publisherOf(m, json).publisher));
    expect(publishers).toEqual(new Set([logicalId(stack, chat), logicalId(stack, adapters.baseComponent!)]));
  });

  test("one set of alarms: the endpoints' rollback alarms notify the topic, and no second 5xx or latency alarm exists", () => {
    for (const own of [chat.invocation5xxAlarm, chat.modelLatencyAlarm, adapters.invocation5xxAlarm, adapters.modelLatencyAlarm]) {
      expect(all[logicalId(stack, own)].Properties.AlarmActions).toEqual([{ Ref: logicalId(stack, topic) }]);
      expect(alarms.alarms).toContain(own);
    }
    const planeOwn = Object.keys(all).filter((id) => id.startsWith('Alarms')).map((id) => id.replace(/[0-9A-F]{8}$/, ''));
    expect(planeOwn.sort()).toEqual(['AlarmsAdaptersGpuMemory', 'AlarmsAdaptersNoCapacity', 'AlarmsChatGpuMemory']);
  });

  test('the rollback alarms are the ones the deployments roll back on', () => {
    const endpoint = Object.values(template.findResources('AWS::SageMaker::Endpoint')).find((e) => e.Properties.DeploymentConfig)!;
    const rollback = endpoint.Properties.DeploymentConfig.AutoRollbackConfiguration.Alarms.map((a: { AlarmName: unknown }) => a.AlarmName);
    expect(rollback).toEqual([stack.resolve(chat.invocation5xxAlarm.alarmName), stack.resolve(chat.modelLatencyAlarm.alarmName)]);
  });

  test('the wake-from-zero alarm only scales: it does not page on every wake-up', () => {
    const wake = all[logicalId(stack, adapters.noCapacityAlarm!)];
    expect(JSON.stringify(wake.Properties.AlarmActions)).not.toContain(logicalId(stack, topic));
    expect(alarms.alarms).not.toContain(adapters.noCapacityAlarm);
  });

  test('GPU memory: a single-model endpoint divides by its 4 GPUs; a normalized component metric is not divided', () => {
    const expression = (id: string) => (all[id].Properties.Metrics as { Expression?: string }[]).find((m) => m.Expression)!.Expression;
    const [chatGpu] = Object.keys(all).filter((id) => id.startsWith('AlarmsChatGpuMemory'));
    const [adaptersGpu] = Object.keys(all).filter((id) => id.startsWith('AlarmsAdaptersGpuMemory'));
    expect(expression(chatGpu)).toBe('memory / 4');
    expect(expression(adaptersGpu)).toBe('memory / 1');
    expect(JSON.stringify(all[adaptersGpu].Properties.Metrics)).toContain('GPUMemoryUtilizationNormalized');
  });

  test('passes the four compliance packs', () => {
    expect(complianceFindings(stack)).toEqual([]);
  });
});
