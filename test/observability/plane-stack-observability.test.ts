import * as fs from 'node:fs';
import * as path from 'node:path';
import { Template } from 'aws-cdk-lib/assertions';
import { parsePlaneConfig } from '../../lib/config';
import { FineTuningPlaneStack } from '../../lib/fine-tuning-plane-stack';
import { TEST_ENV, testApp } from '../support/app';
import { publisherOf, readMetrics, resolveIntrinsics, searchProblem } from './metric-walk';

function plane(config = {}) {
  return new FineTuningPlaneStack(testApp(), 'Tuneyard', { env: TEST_ENV, config });
}

describe('observability in the plane stack', () => {
  test('the dashboard is on by default, and every metric on it is one the stack publishes', () => {
    const stack = plane();
    const json = Template.fromStack(stack).toJSON();
    expect(stack.dashboard).toBeDefined();
    const read = readMetrics(json);
    expect(read.metrics.length).toBeGreaterThan(0);
    expect(read.metrics.map((m) => publisherOf(m, json).problem).filter((p) => p !== undefined)).toEqual([]);
    // the training instance-hours are the usage publisher's hourly totals of the pipeline's prefix (fixed dimensions)
    const prefix = stack.trainingJob.jobNamePrefix;
    expect(read.metrics.filter((m) => m.namespace === 'Tuneyard/Usage')).toEqual([
      expect.objectContaining({ metricName: 'TrainingInstanceHours', dimensions: { TrainingJobPrefix: prefix } }),
      expect.objectContaining({ metricName: 'BillableInstanceHours', dimensions: { TrainingJobPrefix: prefix } }),
      expect.objectContaining({ metricName: 'DatasetVersions' }),
      expect.objectContaining({ metricName: 'Datasets' }),
    ]);
    // every SEARCH looks for what a resource publishes: here, the training jobs the pipeline starts
    expect(read.searches.map((s) => s.expression)).toEqual(expect.arrayContaining([expect.stringContaining("SEARCH('{/aws/sagemaker/TrainingJobs,Host}")]));
    expect(read.searches.map((s) => searchProblem(s, json)).filter((p) => p !== undefined)).toEqual([]);
  });

  test('with an adapter endpoint, the dashboard graphs its instances and copies from the usage publisher', () => {
    const { stackName: _, ...config } = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'config', 'serving.json'), 'utf8'));
    const stack = plane(config);
    const json = Template.fromStack(stack).toJSON();
    const read = readMetrics(json);
    const usage = read.metrics.filter((m) => m.namespace === 'Tuneyard/Usage').map((m) => m.metricName);
    expect(usage.sort()).toEqual(['BillableInstanceHours', 'DatasetVersions', 'Datasets', 'EndpointCopies', 'EndpointDesiredInstances', 'EndpointInstances', 'TrainingInstanceHours']);
    expect(read.searches.map((s) => s.expression)).toEqual(expect.arrayContaining([expect.stringContaining('MetricName="ComponentCopies"')]));
    // latency in ms: p50/p90/p99 of both, and the overhead's average (its percentiles are not documented)
    expect(read.expressions).toEqual(expect.arrayContaining(['model_p99 / 1000', 'overhead_p50 / 1000', 'overhead_average / 1000']));
    expect(read.metrics.map((m) => publisherOf(m, json).problem).filter((p) => p !== undefined)).toEqual([]);
    expect(read.searches.map((s) => searchProblem(s, json)).filter((p) => p !== undefined)).toEqual([]);
  });

  test('the search check fails on what no resource publishes (so the checks above can fail)', () => {
    const json = Template.fromStack(plane()).toJSON();
    const problem = (expression: string) => searchProblem({ where: 'test', expression }, json);
    const training = (term: string, name = 'train_loss') => `SEARCH('{/aws/sagemaker/TrainingJobs,Host} MetricName="${name}" ${term}', 'Average', 300)`;
    expect(problem(training('Host=tuneyard'))).toBeUndefined();
    expect(problem(training('Host="tuneyard-"'))).toMatch(/match the prefix by its words, unquoted/);
    expect(problem(training('Host=other'))).toMatch(/do not spell a job-name prefix the pipeline uses \[tuneyard-\]/);
    expect(problem(training('Host=tuneyard', 'accuracy'))).toMatch(/neither an instance metric nor one of the jobs' MetricDefinitions/);
    const usage = (term: string) => `SEARCH('{"Tuneyard/Usage",TrainingJobPrefix,TrainingJobName,InstanceType} MetricName="TrainingInstanceHours" ${term}', 'Maximum', 3600)`;
    expect(problem(usage('TrainingJobPrefix="tuneyard-"'))).toBeUndefined();
    expect(problem(usage('TrainingJobPrefix="other-"'))).toMatch(/publishes training jobs of \[tuneyard-\] only/);
    expect(problem(usage('TrainingJobPrefix=tuneyard'))).toMatch(/partial match/);
    expect(problem(`SEARCH('{"Tuneyard/Usage",EndpointName,InferenceComponentName} MetricName="ComponentCopies" EndpointName="chat"', 'Maximum', 60)`)).toMatch(
      /watches endpoints \[\] only/,
    );
  });

  test('observability.usageMetrics: false leaves the publisher out, and the dashboard says how to get it back', () => {
    const stack = plane({ observability: { usageMetrics: false } });
    expect(stack.usage).toBeUndefined();
    const json = Template.fromStack(stack).toJSON();
    expect(readMetrics(json).metrics.filter((m) => m.namespace === 'Tuneyard/Usage')).toEqual([]);
    const dashboard = Object.values(json.Resources as Record<string, any>).find((r) => r.Type === 'AWS::CloudWatch::Dashboard');
    expect(resolveIntrinsics(dashboard.Properties.DashboardBody)).toContain('add `UsageMetrics` for instance-hours');
  });

  test('links the runbook to the configured URL', () => {
    const json = Template.fromStack(plane({ observability: { runbookUrl: 'https://github.com/acme/tuneyard/blob/main/README.md' } })).toJSON();
    const dashboard = Object.values(json.Resources as Record<string, any>).find((r) => r.Type === 'AWS::CloudWatch::Dashboard');
    expect(resolveIntrinsics(dashboard.Properties.DashboardBody)).toContain('https://github.com/acme/tuneyard/blob/main/README.md#data-bucket-growth');
  });

  test('observability.enabled: false leaves the dashboard and the alarms out', () => {
    const stack = plane({ observability: { enabled: false } });
    expect(stack.dashboard).toBeUndefined();
    const template = Template.fromStack(stack);
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 0);
    template.resourceCountIs('AWS::CloudWatch::Alarm', 0);
    // and the default plane has both
    Template.fromStack(plane()).resourceCountIs('AWS::CloudWatch::Alarm', 1);
  });

  test('fails when an observability value is wrong, naming the field and the value', () => {
    expect(() => parsePlaneConfig({ observability: { enabled: 'yes' } }, 'cdk.json')).toThrow(
      /observability\.enabled: Invalid input: expected boolean, received string \(got "yes"\)/,
    );
    expect(() => parsePlaneConfig({ observability: { runbookUrl: 'http://wiki/runbook' } }, 'cdk.json')).toThrow(
      /observability\.runbookUrl: must be the https:\/\/ URL of the README.*\(got "http:\/\/wiki\/runbook"\)/,
    );
    expect(() => parsePlaneConfig({ observability: { enable: true } }, 'cdk.json')).toThrow(/observability\.enable: unknown key; did you mean "enabled"\?/);
  });
});
