import * as fs from 'node:fs';
import * as path from 'node:path';
import { Template } from 'aws-cdk-lib/assertions';
import { CfnResource, Stack } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { DatasetStore } from '../../constructs/dataset-store';
import { PlaneDashboard } from '../../constructs/plane-dashboard';
import { complianceFindings, testStack } from '../support/app';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { FineTuningJob } from '../../constructs/fine-tuning-job';
import { TrainingImage } from '../../constructs/training-image';
import { UsageMetrics } from '../../constructs/usage-metrics';
import { StubEndpoint, StubPipeline } from './fakes';
import { parseSearch, publisherOf, readMetrics, resolveIntrinsics } from './metric-walk';

function dashboardBody(template: Template): { widgets: { type: string; width: number; properties: Record<string, any> }[] } {
  const dashboards = Object.values(template.findResources('AWS::CloudWatch::Dashboard'));
  expect(dashboards).toHaveLength(1);
  return JSON.parse(resolveIntrinsics(dashboards[0].Properties.DashboardBody) as string);
}

describe('PlaneDashboard with a pipeline and a data store', () => {
  // GIVEN
  const stack = testStack();
  const pipeline = new StubPipeline(stack, 'Pipeline');
  const dataStore = new DatasetStore(stack, 'Data');
  // WHEN
  new PlaneDashboard(stack, 'Dashboard', { pipeline, dataStore, runbookUrl: 'https://example.com/tuneyard/README.md' });
  const template = Template.fromStack(stack);
  const json = template.toJSON();

  test('every metric on the dashboard is one that a resource of the stack publishes', () => {
    const read = readMetrics(json);
    expect(read.metrics.length).toBeGreaterThan(0);
    const problems = read.metrics.map((m) => publisherOf(m, json).problem).filter((p) => p !== undefined);
    expect(problems).toEqual([]);
    const publishers = new Set(read.metrics.map((m) => publisherOf(m, json).publisher));
    // the state machine, the metric filter and the data bucket are all read
    expect(publishers).toEqual(
      new Set([
        stack.resolve((pipeline.stateMachine.node.defaultChild as CfnResource).logicalId),
        Object.keys(template.findResources('AWS::Logs::MetricFilter'))[0],
        stack.resolve((dataStore.bucket.node.defaultChild as CfnResource).logicalId),
      ]),
    );
  });

  test('shows runs by outcome, run duration, bucket size and object count', () => {
    const titles = dashboardBody(template).widgets.filter((w) => w.type === 'metric').map((w) => w.properties.title);
    expect(titles).toEqual(['Pipeline: runs per hour', 'Pipeline: run duration (minutes)', 'Data bucket size (GiB)', 'Objects in the data bucket']);
    const read = readMetrics(json);
    const runs = read.metrics.filter((m) => m.where.includes('runs per hour')).map((m) => m.metricName);
    expect(runs).toEqual(['ExecutionsStarted', 'ExecutionsSucceeded', 'RunsRejected', 'ExecutionsFailed', 'ExecutionsTimedOut', 'ExecutionsAborted']);
    // ExecutionTime is milliseconds, shown in minutes; BucketSizeBytes is shown in GiB
    expect(read.expressions).toEqual(expect.arrayContaining(['time_p50 / 60000', 'time_p90 / 60000', 'time_maximum / 60000', `b / ${1024 ** 3}`]));
  });

  test('links each section to its runbook entries', () => {
    const texts = dashboardBody(template).widgets.filter((w) => w.type === 'text').map((w) => w.properties.markdown as string);
    expect(texts).toHaveLength(2);
    expect(texts[0]).toMatch(/^## Pipeline Pipeline\nRuns of the fine-tuning state machine of `Test\/Pipeline`/);
    expect(texts[0]).toContain('[Pipeline runs failed](https://example.com/tuneyard/README.md#pipeline-runs-failed)');
    expect(texts[1]).toContain('[Data bucket growth](https://example.com/tuneyard/README.md#data-bucket-growth)');
  });

  test('opens on the last week', () => {
    expect(dashboardBody(template)).toMatchObject({ start: '-P7D' });
  });
});

/** A training-job definition whose jobs are named team-a-*, in an isolated VPC of its own. */
function teamAJob(stack: Stack): FineTuningJob {
  const vpc = new ec2.Vpc(stack, 'Vpc', { natGateways: 0, subnetConfiguration: [{ name: 'isolated', subnetType: ec2.SubnetType.PRIVATE_ISOLATED }] });
  return new FineTuningJob(stack, 'Job', {
    store: new DatasetStore(stack, 'Store'),
    vpc,
    image: TrainingImage.fromImageUri('123456789012.dkr.ecr.us-east-1.amazonaws.com/tuneyard-trainer:1'),
    s3PrefixListId: 'pl-63a5400a',
    jobNamePrefix: 'team-a-',
  });
}

describe('PlaneDashboard with a training job', () => {
  // GIVEN a training-job definition whose jobs are named team-a-*
  const stack = testStack();
  const trainingJob = teamAJob(stack);
  // WHEN
  new PlaneDashboard(stack, 'Dashboard', { trainingJob });
  const body = dashboardBody(Template.fromStack(stack));
  const widget = (title: string) => {
    const found = body.widgets.find((w) => w.properties.title === title);
    if (!found) throw new Error(`no widget "${title}" among ${body.widgets.map((w) => w.properties.title).join(', ')}`);
    return found as typeof found & { x: number; y: number; height: number };
  };
  /** The metric each SEARCH of a widget looks for, on its axis: `left:kl`. */
  const searched = (title: string) =>
    (widget(title).properties.metrics as { expression: string; yAxis?: string }[][]).map(([row]) => {
      const parsed = parseSearch(row.expression);
      expect(parsed).toMatchObject({ namespace: '/aws/sagemaker/TrainingJobs', dimensions: ['Host'], terms: { Host: [{ value: 'team', exact: false }, { value: 'a', exact: false }] } });
      return `${row.yAxis ?? 'left'}:${parsed.metricName}`;
    });
  const RL = {
    'Job: reward (left) and KL (right), GRPO and RLOO': ['left:reward_mean', 'right:kl'],
    'Job: completion length (left, tokens) and clipped / format-miss ratio (right)': ['left:completion_length', 'right:clipped_ratio', 'right:format_miss_ratio'],
    'Job: preference accuracy (left) and reward margin (right), DPO and reward models': ['left:reward_accuracy', 'right:reward_margin'],
  };

  test('graphs reward and KL, completion length and clipped / format-miss ratios, preference accuracy and margin, per job of the prefix', () => {
    for (const [title, metrics] of Object.entries(RL)) expect(searched(title)).toEqual(metrics);
    // RLOO logs its loss as policy_loss: it shares the loss graph
    expect(searched('Job: training and eval loss')).toEqual(['left:train_loss', 'left:eval_loss', 'left:policy_loss']);
    // shares are drawn on a 0-1 axis
    expect(widget('Job: completion length (left, tokens) and clipped / format-miss ratio (right)').properties.yAxis).toEqual({ left: { min: 0 }, right: { min: 0, max: 1 } });
    expect(widget('Job: preference accuracy (left) and reward margin (right), DPO and reward models').properties.yAxis).toEqual({ left: { min: 0, max: 1 }, right: {} });
  });

  test('every metric the training section searches for is one the trainer prints (metrics.json)', () => {
    const defined = new Set(JSON.parse(fs.readFileSync(path.join(__dirname, '../../training-images/trainer/metrics.json'), 'utf8')).map((d: { Name: string }) => d.Name));
    const instance = new Set(['GPUUtilization', 'GPUMemoryUtilization']);
    const names = readMetrics(Template.fromStack(stack).toJSON()).searches.map((s) => parseSearch(s.expression).metricName!);
    expect(names).toHaveLength(13);
    expect(names.filter((name) => !defined.has(name) && !instance.has(name))).toEqual([]);
  });

  test('lays the RL and preference graphs out as a full row of thirds below the loss, throughput and GPU graphs', () => {
    const rl = Object.keys(RL).map(widget);
    const loss = widget('Job: training and eval loss');
    expect(rl.map((w) => [w.x, w.width, w.height])).toEqual([
      [0, 8, 6],
      [8, 8, 6],
      [16, 8, 6],
    ]);
    expect(new Set(rl.map((w) => w.y))).toEqual(new Set([loss.y + loss.height]));
  });

  test("the section's text says how to read the RL graphs and links the training runbook", () => {
    const text = body.widgets.find((w) => w.type === 'text')!.properties.markdown as string;
    expect(text).toMatch(/^## Training Job\n/);
    expect(text).toContain('completion length pinned at the maximum (clipped ratio near 1), is reward hacking');
    expect(text).toContain('README.md, Runbook: *Training is slow or not learning*');
  });
});

describe('PlaneDashboard props', () => {
  test('passes the four compliance packs', () => {
    const stack = testStack();
    new PlaneDashboard(stack, 'Dashboard', { dataStore: new DatasetStore(stack, 'Data') });
    expect(complianceFindings(stack)).toEqual([]);
  });

  test('shows an alarm status widget for the given alarms', () => {
    const stack = testStack();
    const dataStore = new DatasetStore(stack, 'Data');
    const alarm = dataStore.metricNumberOfObjects().createAlarm(stack, 'TooMany', { threshold: 1e9, evaluationPeriods: 1 });
    new PlaneDashboard(stack, 'Dashboard', { dataStore, alarms: [alarm], dashboardName: 'tuneyard' });
    const template = Template.fromStack(stack);
    template.hasResourceProperties('AWS::CloudWatch::Dashboard', { DashboardName: 'tuneyard' });
    const read = readMetrics(template.toJSON());
    expect(read.alarmArns).toEqual([`\${GetAtt:${stack.resolve((alarm.node.defaultChild as cloudwatch.CfnAlarm).logicalId)}.Arn}`]);
  });

  test('names the runbook entries without a link when no URL is given', () => {
    const stack = testStack();
    new PlaneDashboard(stack, 'Dashboard', { dataStore: new DatasetStore(stack, 'Data') });
    const text = dashboardBody(Template.fromStack(stack)).widgets.find((w) => w.type === 'text')!.properties.markdown;
    expect(text).toContain('README.md, Runbook: *Data bucket growth*');
  });

  test('with the usage publisher watching a single-model endpoint, graphs its instances (no copies), full width', () => {
    // GIVEN
    const stack = testStack();
    const endpoint = new StubEndpoint(stack, 'Endpoint');
    const usage = new UsageMetrics(stack, 'Usage', {
      endpoints: [{ endpointName: endpoint.endpointName, endpointArn: 'arn:aws:sagemaker:us-east-1:123456789012:endpoint/stub', usesInferenceComponents: false }],
    });
    // WHEN
    new PlaneDashboard(stack, 'Dashboard', { endpoints: [endpoint], usage });
    // THEN
    const json = Template.fromStack(stack).toJSON();
    const widget = dashboardBody(Template.fromStack(stack)).widgets.find((w) => w.properties.title === 'Endpoint: instances')!;
    expect(widget.width).toBe(24);
    const read = readMetrics(json);
    expect(read.metrics.filter((m) => m.where.includes('"Endpoint: instances"')).map((m) => m.metricName)).toEqual(['EndpointInstances', 'EndpointDesiredInstances']);
    expect(read.metrics.map((m) => publisherOf(m, json).problem).filter((p) => p !== undefined)).toEqual([]);
    const text = dashboardBody(Template.fromStack(stack)).widgets.find((w) => w.type === 'text')!.properties.markdown;
    expect(text).toContain("Instances and copies are Tuneyard's own metrics");
  });

  test('graphs training instance-hours only when the usage publisher watches the job\'s own prefix', () => {
    // GIVEN a training job with prefix team-a- and publishers watching team-a- or team-b-
    const titles = (watched: string) => {
      const stack = testStack();
      const trainingJob = teamAJob(stack);
      const usage = new UsageMetrics(stack, 'Usage', { trainingJobs: [{ jobNamePrefix: watched }] });
      // WHEN
      new PlaneDashboard(stack, 'Dashboard', { trainingJob, usage });
      // THEN
      return dashboardBody(Template.fromStack(stack)).widgets.map((w) => w.properties.title);
    };
    expect(titles('team-a-')).toContain('Job: instance-hours of the jobs that ended, per hour');
    expect(titles('team-b-')).not.toContain('Job: instance-hours of the jobs that ended, per hour');
  });

  test('fails at synth when it is given nothing to show', () => {
    const stack = testStack();
    new PlaneDashboard(stack, 'Dashboard', {});
    expect(() => Template.fromStack(stack)).toThrow(/PlaneDashboard has nothing to show: give at least one of pipelines, trainingJobs, endpoints or dataStore/);
  });

  test('a section added later makes an empty dashboard valid', () => {
    const stack = testStack();
    const dashboard = new PlaneDashboard(stack, 'Dashboard', {});
    dashboard.addPipeline(new StubPipeline(stack, 'Pipeline'));
    expect(dashboardBody(Template.fromStack(stack)).widgets.map((w) => w.properties.title)).toEqual([
      undefined,
      'Pipeline: runs per hour',
      'Pipeline: run duration (minutes)',
    ]);
  });

  test('fails when a source is added twice, or two sources of a kind share a construct id', () => {
    const stack = testStack();
    const pipeline = new StubPipeline(stack, 'Pipeline');
    const dashboard = new PlaneDashboard(stack, 'Dashboard', { pipelines: [pipeline] });
    expect(() => dashboard.addPipeline(pipeline)).toThrow(/pipeline Test\/Pipeline is already on this dashboard; add each pipeline once/);
    const namesake = new StubPipeline(new cloudwatch.Dashboard(stack, 'Elsewhere'), 'Pipeline');
    expect(() => dashboard.addPipeline(namesake)).toThrow(/two pipelines have the construct id "Pipeline" \(Test\/Pipeline, Test\/Elsewhere\/Pipeline\).*Give the pipelines distinct ids/);
  });
});
