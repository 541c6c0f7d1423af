/**
 * The seam between the plane and `tuneyard train`: the stack outputs the CLI reads to run PlanRun's
 * checks before it starts a run (AllowHubModels, MinComputeCapability) say what the PlanRun
 * function is told (its environment, read by the handler's environmentSettings), for the real
 * synthesized plane.
 */
import { Template } from 'aws-cdk-lib/assertions';
import { environmentSettings } from '../../constructs/fine-tuning-pipeline/handler/plan-run';
import { RunClient } from '../../lib/cli/run-client';
import { FineTuningPlaneStack } from '../../lib/fine-tuning-plane-stack';
import { TEST_ENV, testApp } from '../support/app';
import { fakeClients } from './support';

type Resource = { Type: string; Properties: { Environment?: { Variables?: Record<string, unknown> } } };

test.each([
  ['the default plane', {}],
  ['a plane that allows Hub models', { training: { allowHubModels: true } }],
  ['a plane with a training image of its own', { training: { imageUri: '123456789012.dkr.ecr.us-east-1.amazonaws.com/trainer:1' } }],
])('%s: the CLI reads from the outputs the settings PlanRun is given', async (_name, config) => {
  // GIVEN the synthesized plane
  const template = Template.fromStack(new FineTuningPlaneStack(testApp(), 'Tuneyard', { env: TEST_ENV, config })).toJSON();
  const planRun = Object.values(template.Resources as Record<string, Resource>).find(
    (r) => r.Type === 'AWS::Lambda::Function' && r.Properties.Environment?.Variables?.TUNEYARD_ALLOW_HUB_MODELS !== undefined,
  );
  expect(planRun).toBeDefined();
  // the PlanRun function's settings as its handler reads them (values CloudFormation resolves at deploy get placeholders)
  const variables = Object.fromEntries(Object.entries(planRun!.Properties.Environment!.Variables!).map(([k, v]) => [k, typeof v === 'string' ? v : `resolved-${k}`]));
  const settings = environmentSettings(variables);

  // WHEN the CLI reads the plane's outputs
  const outputs = Object.entries(template.Outputs as Record<string, { Value: unknown }>).map(([key, o]) => ({ OutputKey: key, OutputValue: typeof o.Value === 'string' ? o.Value : `resolved-${key}` }));
  const { factory } = fakeClients({ DescribeStacksCommand: () => ({ Stacks: [{ StackName: 'Tuneyard', Outputs: outputs }] }) });
  const plane = await new RunClient(factory({}), 'Tuneyard').plane();

  // THEN it has PlanRun's Hub-model and GPU settings
  expect(plane.allowHubModels).toBe(settings.allowHubModels);
  expect(plane.minComputeCapability).toBe(settings.minComputeCapability);
  expect(plane.trainingJobPrefix).toBe(settings.jobNamePrefix);
});

test('the settings differ between the planes above (the outputs follow the configuration)', () => {
  const outputs = (config: object) => Template.fromStack(new FineTuningPlaneStack(testApp(), 'Tuneyard', { env: TEST_ENV, config })).toJSON().Outputs;
  expect(outputs({}).AllowHubModels.Value).toBe('false');
  expect(outputs({ training: { allowHubModels: true } }).AllowHubModels.Value).toBe('true');
  expect(outputs({}).MinComputeCapability.Value).toBe('7.5');
  expect(outputs({ training: { imageUri: '123456789012.dkr.ecr.us-east-1.amazonaws.com/trainer:1' } }).MinComputeCapability).toBeUndefined();
});
