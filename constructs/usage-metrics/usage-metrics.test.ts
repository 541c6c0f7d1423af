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
    const total = one.metricTrainingInstanceHours();
    expect(total.expression).toBe('hours_team_a_');
    const hours = total.usingMetrics.hours_team_a_ as cloudwatch.Metric;
    expect([hours.namespace, hours.metricName, hours.dimensions, hours.statistic, hours.period.toSeconds()]).toEqual([
      'Tuneyard/Usage',
      'TrainingInstanceHours',
      { TrainingJobPrefix: 'team-a-' },
      'Maximum',
      3600,
    ]);
    expect([total.label, total.period.toSeconds()]).toEqual(['training instance-hours per hour (total in range: ${SUM})', 3600]);
    const two = new UsageMetrics(stack, 'Two', { trainingJobs: [{ jobNamePrefix: 'team-a-' }, { jobNamePrefix: 'team-b-' }] });
    const billable = two.metricBillableInstanceHours();
    // ids named after the metric and the prefix: the totals of both metrics and prefixes can share a graph
    expect(billable.expression).toBe('FILL(billable_team_a_, 0) + FILL(billable_team_b_, 0)');
    expect(Object.entries(billable.usingMetrics).map(([id, m]) => [id, (m as cloudwatch.Metric).metricName, (m as cloudwatch.Metric).dimensions])).toEqual([
      ['billable_team_a_', 'BillableInstanceHours', { TrainingJobPrefix: 'team-a-' }],
      ['billable_team_b_', 'BillableInstanceHours', { TrainingJobPrefix: 'team-b-' }],
    ]);
    // one prefix of several
    const teamB = two.metricTrainingInstanceHours({ jobNamePrefix: 'team-b-', label: 'team B' });
    expect([teamB.expression, teamB.label, Object.keys(teamB.usingMetrics)]).toEqual(['hours_team_b_', 'team B', ['hours_team_b_']]);
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
        Match.objectLike({ Id: 'expr_1', Expression: 'hours_team_a_', ReturnData: true }),
        Match.objectLike({
          Id: 'hours_team_a_',
          MetricStat: {
            Metric: { Namespace: 'Tuneyard/Usage', MetricName: 'TrainingInstanceHours', Dimensions: [{ Name: 'TrainingJobPrefix', Value: 'team-a-' }] },
            Stat: 'Maximum',
            Period: 3600,
          },
          ReturnData: false,
        }),
      ],
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Metrics: Match.arrayWith([Match.objectLike({ Expression: 'FILL(hours_team_a_, 0) + FILL(hours_team_b_, 0)' })]),
    });
  });

  test('the totals of several prefixes, wall-clock and billable, share one graph', () => {
    // GIVEN a publisher over two prefixes
    const stack = testStack();
    const usage = new UsageMetrics(stack, 'Usage', { trainingJobs: [{ jobNamePrefix: 'team-a-' }, { jobNamePrefix: 'team-b-' }] });
    // WHEN both totals and one prefix's hours are graphed together
    new cloudwatch.Dashboard(stack, 'Dashboard').addWidgets(
      new cloudwatch.GraphWidget({
        left: [usage.metricTrainingInstanceHours(), usage.metricBillableInstanceHours(), usage.metricTrainingInstanceHours({ jobNamePrefix: 'team-a-' })],
      }),
    );
    // THEN it synthesizes (no two metrics share an id) with one row per prefix and metric
    const body = JSON.stringify(Template.fromStack(stack).toJSON());
    for (const id of ['hours_team_a_', 'hours_team_b_', 'billable_team_a_', 'billable_team_b_']) expect(body).toContain(`\\"id\\":\\"${id}\\"`);
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
    const teamA = new UsageMetrics(testStack(), 'Usage', { trainingJobs: [{ jobNamePrefix: 'team-a-' }] });
    expect(() => teamA.metricBillableInstanceHours({ jobNamePrefix: 'team-b-' })).toThrow(
      /publishes no billable instance-hours of jobNamePrefix "team-b-"; it watches \[team-a-\]\. Add the job to `trainingJobs`/,
    );
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
