import { Template } from 'aws-cdk-lib/assertions';
import { parsePlaneConfig } from '../../lib/config';
import { FineTuningPlaneStack } from '../../lib/fine-tuning-plane-stack';
import { TEST_ENV, testApp } from '../support/app';
import { publisherOf, readMetrics, resolveIntrinsics } from './metric-walk';

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
    // training searches name the stack's training-job prefix, which the jobs it starts use
    const prefix = stack.trainingJob.jobNamePrefix;
    expect(read.searches.length).toBeGreaterThan(0);
    for (const search of read.searches) {
      expect(search.expression).toContain("SEARCH('{/aws/sagemaker/TrainingJobs,Host}");
      expect(search.expression).toContain(`Host="${prefix}"`);
    }
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
