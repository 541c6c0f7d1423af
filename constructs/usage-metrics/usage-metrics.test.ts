import { CfnResource, Duration, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { complianceFindings, testStack } from '../../test/support/app';
import { DatasetStore } from '../dataset-store';
import { USAGE_ENV } from './usage-contract';
import { IUsageEndpoint, UsageMetrics } from './usage-metrics';

const adapters: IUsageEndpoint = { endpointName: 'chat', endpointArn: 'arn:aws:sagemaker:us-east-1:123456789012:endpoint/chat', usesInferenceComponents: true };
const single: IUsageEndpoint = { endpointName: 'merged', endpointArn: 'arn:aws:sagemaker:us-east-1:123456789012:endpoint/merged', usesInferenceComponents: false };

function functionOf(stack: Stack): Record<string, any> {
  const fns = Template.fromStack(stack).findResources('AWS::Lambda::Function', { Properties: { Description: Match.stringLikeRegexp('^Tuneyard usage metrics') } });
  const values = Object.values(fns);
  expect(values).toHaveLength(1);
  return values[0].Properties;
}

function statements(stack: Stack): any[] {
  return Object.values(Template.fromStack(stack).findResources('AWS::IAM::Policy')).flatMap((p: any) => p.Properties.PolicyDocument.Statement);
}

describe('UsageMetrics', () => {
  test('runs the publisher every minute with the prefixes and endpoints it watches, and no retries', () => {
    // GIVEN
    const stack = testStack();
    // WHEN
    new UsageMetrics(stack, 'Usage', { trainingJobs: [{ jobNamePrefix: 'team-a-' }], endpoints: [adapters, single] });
    // THEN
    const template = Template.fromStack(stack);
    template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(1 minute)',
      Targets: [Match.objectLike({ Input: '{"task":"fleet"}', RetryPolicy: { MaximumRetryAttempts: 0, MaximumEventAgeInSeconds: 60 } })],
    });
    template.resourceCountIs('AWS::Events::Rule', 1);
    template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', { MaximumRetryAttempts: 0 });
    const fn = functionOf(stack);
    expect(fn.ReservedConcurrentExecutions).toBe(1);
    expect(fn.Timeout).toBe(50);
    const env = fn.Environment.Variables;
    expect(env[USAGE_ENV.namespace]).toBe('Tuneyard/Usage');
    expect(JSON.parse(env[USAGE_ENV.trainingJobPrefixes])).toEqual(['team-a-']);
    expect(JSON.parse(env[USAGE_ENV.endpoints])).toEqual([
      { name: 'chat', components: true },
      { name: 'merged', components: false },
    ]);
    expect(env[USAGE_ENV.lookbackMinutes]).toBe('120');
    expect(complianceFindings(stack)).toEqual([]);
  });

  test('the role reads only what it watches and writes only its namespace', () => {
    const stack = testStack();
    new UsageMetrics(stack, 'Usage', { trainingJobs: [{ jobNamePrefix: 'team-a-' }], endpoints: [adapters], namespace: 'Acme/FineTuning' });
    const bySid = Object.fromEntries(statements(stack).filter((s) => s.Sid).map((s) => [s.Sid, s]));
    expect(bySid.PutUsageMetrics).toMatchObject({ Action: 'cloudwatch:PutMetricData', Resource: '*', Condition: { StringEquals: { 'cloudwatch:namespace': 'Acme/FineTuning' } } });
    expect(JSON.stringify(bySid.DescribeTrainingJobs.Resource)).toContain(':training-job/team-a-*');
    expect(bySid.DescribeEndpoints.Resource).toBe(adapters.endpointArn);
    expect(bySid.ListComponents.Action).toBe('sagemaker:ListInferenceComponents');
    expect(complianceFindings(stack)).toEqual([]);
  });

  test('a single-model endpoint alone needs no inference-component or training-job permissions', () => {
    const stack = testStack();
    new UsageMetrics(stack, 'Usage', { endpoints: [single] });
    const actions = statements(stack).flatMap((s) => [s.Action].flat());
    expect(actions).toContain('sagemaker:DescribeEndpoint');
    expect(actions).not.toContain('sagemaker:ListInferenceComponents');
    expect(actions).not.toContain('sagemaker:ListTrainingJobs');
    expect(complianceFindings(stack)).toEqual([]);
  });

  test('runs in the VPC it is given', () => {
    const stack = testStack();
    const vpc = new ec2.Vpc(stack, 'Vpc', { subnetConfiguration: [{ name: 'isolated', subnetType: ec2.SubnetType.PRIVATE_ISOLATED }] });
    new UsageMetrics(stack, 'Usage', { endpoints: [single], vpc });
    expect(functionOf(stack).VpcConfig.SubnetIds).toHaveLength(3);
  });

  test('training instance-hours are the hourly totals per prefix (Maximum, one hour), added up over the prefixes', () => {
    const stack = testStack();
    const one = new UsageMetrics(stack, 'One', { trainingJobs: [{ jobNamePrefix: 'team-a-' }] });
    const hours = one.metricTrainingInstanceHours() as cloudwatch.Metric;
    expect([hours.namespace, hours.metricName, hours.dimensions, hours.statistic, hours.period.toSeconds()]).toEqual([
      'Tuneyard/Usage',
      'TrainingInstanceHours',
      { TrainingJobPrefix: 'team-a-' },
      'Maximum',
      3600,
    ]);
    expect(hours.label).toBe('training instance-hours per hour (total in range: ${SUM})');
    const two = new UsageMetrics(stack, 'Two', { trainingJobs: [{ jobNamePrefix: 'team-a-' }, { jobNamePrefix: 'team-b-' }] });
    const billable = two.metricBillableInstanceHours() as cloudwatch.MathExpression;
    expect(billable.expression).toBe('FILL(p0, 0) + FILL(p1, 0)');
    expect(Object.values(billable.usingMetrics).map((m) => (m as cloudwatch.Metric).dimensions)).toEqual([{ TrainingJobPrefix: 'team-a-' }, { TrainingJobPrefix: 'team-b-' }]);
    expect(two.metricInstanceHoursByJob().expression).toBe(
      `SEARCH('{"Tuneyard/Usage",TrainingJobPrefix,TrainingJobName,InstanceType} MetricName="TrainingInstanceHours" (TrainingJobPrefix="team-a-" OR TrainingJobPrefix="team-b-")', 'Maximum', 3600)`,
    );
  });

  test('the hourly totals can back an alarm (as in the README), for one prefix and for several', () => {
    // GIVEN
    const stack = testStack();
    const one = new UsageMetrics(stack, 'One', { trainingJobs: [{ jobNamePrefix: 'team-a-' }] });
    const two = new UsageMetrics(stack, 'Two', { trainingJobs: [{ jobNamePrefix: 'team-a-' }, { jobNamePrefix: 'team-b-' }] });
    // WHEN
    one.metricTrainingInstanceHours().createAlarm(stack, 'OneSpend', { threshold: 40, evaluationPeriods: 1 });
    two.metricTrainingInstanceHours().createAlarm(stack, 'TwoSpend', { threshold: 40, evaluationPeriods: 1 });
    // THEN
    const template = Template.fromStack(stack);
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Threshold: 40,
      Metrics: [
        Match.objectLike({
          MetricStat: {
            Metric: { Namespace: 'Tuneyard/Usage', MetricName: 'TrainingInstanceHours', Dimensions: [{ Name: 'TrainingJobPrefix', Value: 'team-a-' }] },
            Stat: 'Maximum',
            Period: 3600,
          },
        }),
      ],
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Metrics: Match.arrayWith([Match.objectLike({ Expression: 'FILL(p0, 0) + FILL(p1, 0)' })]),
    });
  });

  test('endpoint metrics read the EndpointName dimension; component copies are a SEARCH with a quoted namespace', () => {
    const stack = testStack();
    const usage = new UsageMetrics(stack, 'Usage', { endpoints: [adapters], namespace: 'Acme/FineTuning' });
    const instances = usage.metricEndpointInstances(adapters);
    expect([instances.namespace, instances.metricName, instances.dimensions, instances.statistic]).toEqual(['Acme/FineTuning', 'EndpointInstances', { EndpointName: 'chat' }, 'Maximum']);
    expect(usage.metricEndpointCopies(adapters).metricName).toBe('EndpointCopies');
    expect(usage.metricComponentCopies(adapters).expression).toBe(
      `SEARCH('{"Acme/FineTuning",EndpointName,InferenceComponentName} MetricName="ComponentCopies" EndpointName="chat"', 'Maximum', 60)`,
    );
  });

  test('fails when asked for a metric it does not publish', () => {
    const stack = testStack();
    const usage = new UsageMetrics(stack, 'Usage', { endpoints: [single] });
    expect(() => usage.metricEndpointInstances(adapters)).toThrow(/does not watch endpoint chat: add it to `endpoints`/);
    expect(() => usage.metricEndpointCopies(single)).toThrow(/endpoint merged serves a single model, which has no copies/);
    expect(() => usage.metricComponentCopies(single)).toThrow(/no copies/);
    expect(() => usage.metricTrainingInstanceHours()).toThrow(/watches no training jobs.*pass `trainingJobs`/);
    expect(() => usage.metricDatasetVersions()).toThrow(/counts no dataset versions: pass `dataStore`/);
  });

  test('with a data store, an hourly run counts dataset versions, allowed to list datasets/ and nothing more', () => {
    // GIVEN
    const stack = testStack();
    const store = new DatasetStore(stack, 'Data');
    // WHEN
    const usage = new UsageMetrics(stack, 'Usage', { dataStore: store });
    // THEN only the hourly schedule (nothing else to watch)
    const template = Template.fromStack(stack);
    template.resourceCountIs('AWS::Events::Rule', 1);
    template.hasResourceProperties('AWS::Events::Rule', { ScheduleExpression: 'rate(1 hour)', Targets: [Match.objectLike({ Input: '{"task":"datasets"}' })] });
    expect(functionOf(stack).Environment.Variables[USAGE_ENV.dataBucket]).toEqual({ Ref: stack.resolve((store.bucket.node.defaultChild as CfnResource).logicalId) });
    const list = statements(stack).filter((st) => st.Action === 's3:ListBucket');
    expect(list).toEqual([expect.objectContaining({ Condition: { StringLike: { 's3:prefix': 'datasets/*' } } })]);
    expect(statements(stack).flatMap((st) => [st.Action].flat()).filter((a: string) => a.startsWith('s3:') || a.startsWith('kms:'))).toEqual(['s3:ListBucket']);
    const versions = usage.metricDatasetVersions();
    expect([versions.metricName, versions.statistic, versions.period.toHours()]).toEqual(['DatasetVersions', 'Maximum', 1]);
    expect(complianceFindings(stack)).toEqual([]);
  });

  test('for training jobs alone it runs every five minutes', () => {
    const stack = testStack();
    new UsageMetrics(stack, 'Usage', { trainingJobs: [{ jobNamePrefix: 'team-a-' }] });
    Template.fromStack(stack).hasResourceProperties('AWS::Events::Rule', { ScheduleExpression: 'rate(5 minutes)', Targets: [Match.objectLike({ RetryPolicy: { MaximumEventAgeInSeconds: 300, MaximumRetryAttempts: 0 } })] });
  });

  test('fails when the props are wrong, naming the value and the fix', () => {
    expect(() => new UsageMetrics(testStack(), 'Usage', {})).toThrow(/nothing to publish: give at least one of trainingJobs, endpoints or dataStore/);
    expect(() => new UsageMetrics(testStack(), 'Usage', { endpoints: [single], namespace: 'AWS/SageMaker' })).toThrow(/namespace "AWS\/SageMaker" is invalid.*not starting with AWS\//);
    expect(() => new UsageMetrics(testStack(), 'Usage', { endpoints: [single], schedule: Duration.seconds(30) })).toThrow(
      /schedule must be a whole number of minutes from 1 to 60; got 30 seconds/,
    );
    expect(() => new UsageMetrics(testStack(), 'Usage', { endpoints: [single], schedule: Duration.minutes(10), trainingLookback: Duration.minutes(75) })).toThrow(
      /trainingLookback must be .* at least an hour plus two schedules \(80 minutes\).*got 1 hour 15 minutes/,
    );
    expect(() => new UsageMetrics(testStack(), 'Usage', { endpoints: [single], trainingLookback: Duration.days(14) })).toThrow(/at most 13 days/);
  });
});
