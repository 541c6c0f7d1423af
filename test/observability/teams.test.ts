/**
 * Two teams in one account: two pipelines (each with its own training-job prefix and Deploy stage)
 * over one data store, an adapter endpoint and a single-model endpoint, one usage publisher over
 * both prefixes, and one PlaneAlarms and one PlaneDashboard over all of them.
 */
import { Template } from 'aws-cdk-lib/assertions';
import { DatasetStore } from '../../constructs/dataset-store';
import { FineTuningJob } from '../../constructs/fine-tuning-job';
import { FineTuningPipeline } from '../../constructs/fine-tuning-pipeline';
import { NotificationTopic } from '../../constructs/notification-topic';
import { PlaneAlarms } from '../../constructs/plane-alarms';
import { PlaneDashboard } from '../../constructs/plane-dashboard';
import { TrainingImage } from '../../constructs/training-image';
import { UsageMetrics } from '../../constructs/usage-metrics';
import { VllmDeployStage, VllmEndpoint, VllmModelData } from '../../constructs/vllm-endpoint';
import { complianceFindings, testStack } from '../support/app';
import { publisherOf, readMetrics, resolveIntrinsics, searchProblem } from './metric-walk';

const IMAGE = TrainingImage.fromImageUri('123456789012.dkr.ecr.us-east-1.amazonaws.com/tuneyard-trainer:1');

function teams() {
  const stack = testStack('Teams');
  const store = new DatasetStore(stack, 'Store');
  const topic = new NotificationTopic(stack, 'Topic');
  const adapters = new VllmEndpoint(stack, 'Adapters', {
    instanceType: 'ml.g5.12xlarge',
    baseModel: 'meta-llama/Llama-3.1-8B-Instruct',
    modelData: VllmModelData.fromS3Prefix(store.bucket, 'base-models/llama-3.1-8b/'),
    endpointName: 'team-a-chat',
    inferenceComponents: { minCopies: 0, maxCopies: 2 },
    vllm: { enableLora: true },
  });
  const merged = new VllmEndpoint(stack, 'Merged', {
    instanceType: 'ml.g5.2xlarge',
    baseModel: 'meta-llama/Llama-3.1-8B-Instruct',
    modelData: VllmModelData.fromS3Prefix(store.bucket, 'base-models/llama-3.1-8b/'),
    endpointName: 'team-b-chat',
  });
  const team = (id: string, prefix: string, endpoint: VllmEndpoint) =>
    new FineTuningPipeline(stack, id, {
      store,
      topic: topic.topic,
      trainingJob: new FineTuningJob(stack, `${id}Jobs`, { store, image: IMAGE, jobNamePrefix: prefix }),
      deployStage: new VllmDeployStage({ endpoint }),
    });
  const teamA = team('TeamA', 'team-a-', adapters);
  const teamB = team('TeamB', 'team-b-', merged);
  const usage = new UsageMetrics(stack, 'Usage', { trainingJobs: [teamA.trainingJob, teamB.trainingJob], endpoints: [adapters, merged], dataStore: store });
  const alarms = new PlaneAlarms(stack, 'Alarms', { topic: topic.topic, pipelines: [teamA], endpoints: [adapters] });
  alarms.addPipeline(teamB);
  alarms.addEndpoint(merged);
  const dashboard = new PlaneDashboard(stack, 'Dashboard', {
    dataStore: store,
    trainingJobs: [teamA.trainingJob as FineTuningJob, teamB.trainingJob as FineTuningJob],
    pipelines: [teamA, teamB],
    usage,
    alarms: alarms.alarms,
  });
  dashboard.addEndpoint(adapters);
  dashboard.addEndpoint(merged);
  return { stack, teamA, teamB, usage, template: Template.fromStack(stack) };
}

// GIVEN two teams' pipelines and endpoints in one stack, WHEN the dashboard and alarms take all of them
const t = teams();
const json = t.template.toJSON();
const logicalId = (c: { node: { defaultChild?: unknown } }) => t.stack.resolve((c.node.defaultChild as any).logicalId) as string;

describe('two teams in one account', () => {
  test('the stack synthesizes: one dashboard and one set of alarms, each source named after its construct id', () => {
    const ids = Object.keys(t.template.findResources('AWS::CloudWatch::Alarm')).map((id) => id.replace(/[0-9A-F]{8}$/, ''));
    expect(ids.filter((id) => id.startsWith('Alarms')).sort()).toEqual([
      'AlarmsAdaptersGpuMemory',
      'AlarmsAdaptersNoCapacity',
      'AlarmsMergedGpuMemory',
      'AlarmsTeamARunsFailed',
      'AlarmsTeamBRunsFailed',
    ]);
    t.template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    const body = JSON.parse(resolveIntrinsics(Object.values(t.template.findResources('AWS::CloudWatch::Dashboard'))[0].Properties.DashboardBody) as string);
    const sections = body.widgets.filter((w: any) => w.type === 'text').map((w: any) => (w.properties.markdown as string).split('\n')[0]);
    expect(sections).toEqual([
      '## Training TeamAJobs',
      '## Training TeamBJobs',
      '## Pipeline TeamA',
      '## Pipeline TeamB',
      '## Data',
      '## Endpoint Adapters',
      '## Endpoint Merged',
    ]);
    const titles = body.widgets.filter((w: any) => w.type === 'metric').map((w: any) => w.properties.title as string);
    expect(titles).toEqual(expect.arrayContaining(['TeamA: runs per hour', 'TeamB: runs per hour', 'TeamAJobs: instance-hours of the jobs that ended, per hour']));
  });

  test('every metric on the dashboard and the alarms is one a resource of the stack publishes', () => {
    const read = readMetrics(json);
    expect(read.metrics.map((m) => publisherOf(m, json).problem).filter((p) => p !== undefined)).toEqual([]);
    expect(read.searches.map((s) => searchProblem(s, json)).filter((p) => p !== undefined)).toEqual([]);
  });

  test("each pipeline's failure alarm subtracts its own gate rejections only", () => {
    const filters = t.template.findResources('AWS::Logs::MetricFilter');
    for (const [pipeline, other] of [
      [t.teamA, t.teamB],
      [t.teamB, t.teamA],
    ]) {
      const [props] = Object.entries(t.template.findResources('AWS::CloudWatch::Alarm'))
        .filter(([id]) => id.startsWith(`Alarms${pipeline.node.id}RunsFailed`))
        .map(([, alarm]) => alarm.Properties);
      expect(props.AlarmDescription).toMatch(new RegExp(`^Fine-tuning runs of Teams/${pipeline.node.id} failed`));
      const query = (id: string) => props.Metrics.find((m: any) => m.Id === id);
      expect(props.Metrics.find((m: any) => m.Expression).Expression).toBe('FILL(failed, 0) + FILL(timedOut, 0) - FILL(rejected, 0)');
      // the executions of its own state machine...
      for (const id of ['failed', 'timedOut']) {
        expect(publisherOf(metricOf(query(id), `${pipeline.node.id} ${id}`), json).publisher).toBe(logicalId(pipeline.stateMachine));
      }
      // ...less the rejections counted by the metric filter on its own log group, not the other's
      const rejected = metricOf(query('rejected'), `${pipeline.node.id} rejected`);
      const publisher = publisherOf(rejected, json).publisher!;
      expect(filters[publisher].Properties.LogGroupName).toEqual({ Ref: logicalId(pipeline.logGroup) });
      expect(rejected.namespace).toBe(`Tuneyard/Pipeline/\${GetAtt:${logicalId(pipeline.stateMachine)}.Name}`);
      expect(resolveIntrinsics(t.stack.resolve(other.metricRunsRejected().namespace))).not.toBe(rejected.namespace);
    }
  });

  test('the usage publisher over both prefixes: each training section graphs its own prefix', () => {
    const usage = readMetrics(json).metrics.filter((m) => m.namespace === 'Tuneyard/Usage' && m.where.includes('instance-hours'));
    expect(usage.map((m) => [m.where.replace(/^.*widget "(\w+):.*$/, '$1'), m.metricName, m.dimensions.TrainingJobPrefix])).toEqual([
      ['TeamAJobs', 'TrainingInstanceHours', 'team-a-'],
      ['TeamAJobs', 'BillableInstanceHours', 'team-a-'],
      ['TeamBJobs', 'TrainingInstanceHours', 'team-b-'],
      ['TeamBJobs', 'BillableInstanceHours', 'team-b-'],
    ]);
  });

  test('the four compliance packs raise no unacknowledged finding', () => {
    expect(complianceFindings(t.stack)).toEqual([]);
  });
});

/** An alarm query's metric, as the metric walk reads it. */
function metricOf(query: any, where: string) {
  const m = resolveIntrinsics(query.MetricStat.Metric) as any;
  return { where, namespace: m.Namespace, metricName: m.MetricName, dimensions: Object.fromEntries((m.Dimensions ?? []).map((d: any) => [d.Name, d.Value])) };
}
