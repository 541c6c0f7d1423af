/**
 * The composed plane's own state machine (FineTuningPlaneStack with serving configured: the real
 * FineTuningJob, ModelRegistry, DatasetValidationFunction and VllmDeployStage), executed locally.
 * Local handlers stand in for SageMaker's jobs and registry, the dataset validator and SNS; the
 * PlanRun, ReadEvalReport and Deploy handlers are the real functions, the Deploy one with a fake
 * SageMaker started from the template's endpoint. Every request is checked against the API models.
 */
import { Template } from 'aws-cdk-lib/assertions';
import { environmentSettings, planRunStep } from '../../constructs/fine-tuning-pipeline/handler/plan-run';
import { readEvalReport } from '../../constructs/fine-tuning-pipeline/handler/read-eval-report';
import { deploymentName } from '../../lib/deploy';
import { FineTuningPlaneStack } from '../../lib/fine-tuning-plane-stack';
import { parseRunRequest, runIdFor } from '../../lib/run-request';
import { TEST_ENV, testApp } from '../support/app';
import { completedJob, definitionFromTemplate, lambdaTask, LocalHandler, resolveTemplateValue, runLocal, snsRecorder } from '../support/local-sfn';
import { movedReport } from '../support/trainer-reports';
import { deployFunctionTask, deploySettingsFromTemplate, FakeSageMaker } from './sagemaker-deploy-fake';

const PACKAGE_ARN = 'arn:aws:sagemaker:us-east-1:123456789012:model-package/models/1';
/** A run that deploys: the whole pipeline is at most this many state transitions (issue 11, defect 8). */
const MAX_TRANSITIONS = 25;

/**
 * A plane (serving configured or not), its state machine's definition, and what its PlanRun and
 * Deploy functions are told: their synthesized environments, read by the functions' own readers.
 */
function plane(serving?: Record<string, unknown>) {
  const stack = new FineTuningPlaneStack(testApp(), 'Tuneyard', {
    env: TEST_ENV,
    config: serving ? { serving: { baseModel: 'meta-llama/Llama-3.1-8B-Instruct', modelPrefix: 'base-models/llama-3.1-8b/', endpointName: 'chat', ...serving } as any } : {},
  });
  const template = Template.fromStack(stack).toJSON();
  const planRun = stack.pipeline.planRunFunction.node.defaultChild as any;
  const planRunVariables = template.Resources[stack.getLogicalId(planRun)].Properties.Environment.Variables;
  return {
    stack,
    template,
    definition: definitionFromTemplate(template, stack.getLogicalId(stack.pipeline.stateMachine.node.defaultChild as any)),
    deploySettings: serving ? deploySettingsFromTemplate(template) : undefined,
    env: environmentSettings(resolveTemplateValue(planRunVariables, template.Resources)),
  };
}

// GIVEN the plane without serving, one with an adapter-serving endpoint, and one with a single-model endpoint
const trainingPlane = plane();
const adapterPlane = plane({ instanceType: 'ml.g5.12xlarge', adapters: { minCopies: 0 } });
const singleModelPlane = plane({ instanceType: 'ml.g5.2xlarge' });
const BUCKET = adapterPlane.env.bucketName;

const ADAPTER_REQUEST = {
  dataset: { name: 'support-chats', sha256: 'b'.repeat(64) },
  baseModel: `s3://${BUCKET}/base-models/llama-3.1-8b/`,
  // batch 2: at the default 4 x 2048 tokens the fp32 logits of Llama 3's 128k vocabulary do not fit the A10G (PlanRun refuses it)
  recipe: { method: 'qlora', batchSize: 2 },
  autoApprove: true,
  // the Deploy stage's adapter prefix is the endpoint's name (VllmDeployStage's default)
  deploy: { endpointName: 'chat', adapterName: 'chat-support-v1' },
};
/** The README's single-model request: no adapter name, the merged model written. */
const SINGLE_MODEL_REQUEST = { ...ADAPTER_REQUEST, recipe: { method: 'qlora', batchSize: 2, merge: true }, deploy: { endpointName: 'chat' } };

function world(p: ReturnType<typeof plane>, request: object, evalLossRatio: number) {
  const runId = runIdFor(parseRunRequest(request));
  const evalKey = `eval-reports/${runId}/tuneyard-${runId}-eval/output/model/eval.json`;
  const calls: Record<string, any[]> = {};
  const record = (name: string, fn: LocalHandler): LocalHandler => async (input) => {
    (calls[name] ??= []).push(input);
    return fn(input);
  };
  // the real trainer's eval.json, its tuned losses moved to the ratio the scenario needs
  const report = JSON.stringify(movedReport(false, { evalLossRatio }));
  const s3 = {
    send: (async (command: any) => {
      expect(`${command.input.Bucket}/${command.input.Key}`).toBe(`${BUCKET}/${evalKey}`);
      const bytes = Buffer.from(report);
      return { ContentLength: bytes.length, Body: { transformToByteArray: async () => new Uint8Array(bytes) } };
    }) as any,
  };
  const job = (input: any) => completedJob(input);
  const sagemaker = FakeSageMaker.fromTemplate(p.template);
  const deploy = p.deploySettings ? deployFunctionTask(sagemaker, p.deploySettings) : undefined;
  const handlers: Record<string, LocalHandler> = {
    PlanRun: record('PlanRun', lambdaTask((event) => planRunStep(event, p.env))),
    ValidateDataset: record('ValidateDataset', lambdaTask(() => ({ ok: true, format: 'chat', rows: 500 }))),
    Train: record('Train', job),
    Evaluate: record('Evaluate', job),
    ReadEvalReport: record('ReadEvalReport', lambdaTask((event) => readEvalReport(event, s3))),
    // CreateModelPackage's answer, which the real Register state puts at $.registration
    Register: record('Register', () => ({ ModelPackageArn: PACKAGE_ARN })),
    ...(deploy ? { DeployStart: deploy, DeployWait: deploy } : {}),
  };
  const sns = snsRecorder();
  for (const name of Object.keys(p.definition.States)) if (name.startsWith('Notify')) handlers[name] = sns;
  return { runId, handlers, calls, sns, sagemaker, deploy };
}

describe('the composed plane, executed locally', () => {
  test('without serving, a run trains, evaluates, registers and notifies in 9 transitions, every request valid', async () => {
    // GIVEN
    const request = { ...ADAPTER_REQUEST, deploy: null };
    const w = world(trainingPlane, request, 0.8);
    // WHEN
    const run = await runLocal(trainingPlane.definition, request, w.handlers, { executionName: w.runId });
    // THEN
    expect([run.status, run.error, run.cause]).toEqual(['SUCCEEDED', undefined, undefined]);
    expect(run.entered).toEqual(['PlanRun', 'ValidateDataset', 'Train', 'Evaluate', 'ReadEvalReport', 'Gate', 'Register', 'NotifySucceeded', 'Succeeded']);
    expect(run.requests.map((r) => r.operation)).toEqual(['Invoke', 'Invoke', 'CreateTrainingJob', 'CreateTrainingJob', 'Invoke', 'CreateModelPackage', 'Publish']);
    expect(run.requestErrors).toEqual([]);
  });

  test('without serving, a request that asks for a deployment is refused before any GPU time', async () => {
    const w = world(trainingPlane, ADAPTER_REQUEST, 0.8);
    const run = await runLocal(trainingPlane.definition, ADAPTER_REQUEST, w.handlers, { executionName: w.runId });
    expect([run.status, run.error]).toEqual(['FAILED', 'RunRequestInvalid']);
    expect(run.cause).toMatch(/no Deploy stage/);
    expect(w.calls.Train).toBeUndefined();
    expect(run.requestErrors).toEqual([]);
  });

  test('an adapter run trains, evaluates, registers, adds its adapter to the endpoint and notifies, in at most 25 transitions', async () => {
    // GIVEN
    const w = world(adapterPlane, ADAPTER_REQUEST, 0.8);
    w.sagemaker.componentSteps = ['Creating', 'Creating', 'InService'];
    // WHEN
    const run = await runLocal(adapterPlane.definition, ADAPTER_REQUEST, w.handlers, { executionName: w.runId });
    // THEN
    expect([run.status, run.error, run.cause]).toEqual(['SUCCEEDED', undefined, undefined]);
    expect(run.entered.slice(0, 6)).toEqual(['PlanRun', 'ValidateDataset', 'Train', 'Evaluate', 'ReadEvalReport', 'Gate']);
    expect(run.entered.slice(-6)).toEqual(['DeployRequested', 'DeployStart', 'DeployStatus', 'Deployed', 'NotifySucceeded', 'Succeeded']);
    expect(run.entered.length).toBeLessThanOrEqual(MAX_TRANSITIONS);
    // the real registry state: approved (autoApprove), the uncompressed model folder, lineage
    const modelFolder = `s3://${BUCKET}/artifacts/${w.runId}/tuneyard-${w.runId}-train/output/model/`;
    expect(w.calls.Register[0]).toMatchObject({
      ModelApprovalStatus: 'Approved',
      InferenceSpecification: { Containers: [{ ModelDataSource: { S3DataSource: { S3Uri: modelFolder, CompressionType: 'None' } } }] },
      CustomerMetadataProperties: { runId: w.runId, datasetSha256: 'b'.repeat(64), method: 'qlora', trainingJobName: `tuneyard-${w.runId}-train` },
    });
    // the real Deploy stage: the run's adapter tarball on the endpoint's base component
    expect(w.sagemaker.writes).toEqual([
      {
        operation: 'CreateInferenceComponent',
        input: {
          InferenceComponentName: 'chat-support-v1',
          EndpointName: 'chat',
          Specification: { BaseInferenceComponentName: adapterPlane.stack.endpoint!.baseComponentName, Container: { ArtifactUrl: `${modelFolder}adapter.tar.gz` } },
        },
      },
    ]);
    expect(w.sns.messages.map((m) => m.message.outcome)).toEqual(['SUCCEEDED']);
    expect(run.requestErrors).toEqual([]);
    expect(w.sagemaker.requestErrors()).toEqual([]);
  });

  test('a single-model run (no adapterName) rolls the endpoint to its merged model and ends SUCCEEDED, in at most 25 transitions', async () => {
    // GIVEN a blue/green deployment that takes 20 minutes (two invocations of the Deploy function)
    const w = world(singleModelPlane, SINGLE_MODEL_REQUEST, 0.8);
    w.sagemaker.endpointSteps = [...Array(39).fill('Updating'), 'deployed'];
    // WHEN
    const run = await runLocal(singleModelPlane.definition, SINGLE_MODEL_REQUEST, w.handlers, { executionName: w.runId });
    // THEN
    expect([run.status, run.error, run.cause]).toEqual(['SUCCEEDED', undefined, undefined]);
    expect(run.entered.slice(-8)).toEqual(['DeployRequested', 'DeployStart', 'DeployStatus', 'DeployWait', 'DeployStatus', 'Deployed', 'NotifySucceeded', 'Succeeded']);
    expect(run.entered.length).toBeLessThanOrEqual(MAX_TRANSITIONS);
    const name = deploymentName('chat', PACKAGE_ARN);
    const modelFolder = `s3://${BUCKET}/artifacts/${w.runId}/tuneyard-${w.runId}-train/output/model/`;
    expect(w.sagemaker.writes.map((c) => c.operation)).toEqual(['CreateModel', 'CreateEndpointConfig', 'UpdateEndpoint']);
    expect(w.sagemaker.writes[0].input.PrimaryContainer.ModelDataSource.S3DataSource.S3Uri).toBe(`${modelFolder}full/`);
    expect(w.sagemaker.writes[2].input).toMatchObject({ EndpointName: 'chat', EndpointConfigName: name, DeploymentConfig: { AutoRollbackConfiguration: { Alarms: [{}, {}] } } });
    expect(w.sagemaker.endpoints.get('chat')).toMatchObject({ EndpointStatus: 'InService', EndpointConfigName: name });
    expect(w.sns.messages.map((m) => m.message.outcome)).toEqual(['SUCCEEDED']);
    expect(run.requestErrors).toEqual([]);
    expect(w.sagemaker.requestErrors()).toEqual([]);
  });

  test('a deployment that takes almost the whole 90-minute wait still keeps the run within 25 transitions', async () => {
    const w = world(singleModelPlane, SINGLE_MODEL_REQUEST, 0.8);
    w.sagemaker.endpointSteps = [...Array(178).fill('Updating'), 'deployed']; // InService at the 179th poll: 89.5 minutes
    const run = await runLocal(singleModelPlane.definition, SINGLE_MODEL_REQUEST, w.handlers, { executionName: w.runId });
    expect(run.status).toBe('SUCCEEDED');
    expect(w.deploy!.invocations).toBe(7);
    expect(run.entered.length).toBeLessThanOrEqual(MAX_TRANSITIONS);
    expect(run.requestErrors).toEqual([]);
  });

  test('a single-model run whose deployment SageMaker rolls back fails as DeployRolledBack, notified', async () => {
    const w = world(singleModelPlane, SINGLE_MODEL_REQUEST, 0.8);
    w.sagemaker.endpointSteps = ['Updating', 'rolled-back'];
    const run = await runLocal(singleModelPlane.definition, SINGLE_MODEL_REQUEST, w.handlers, { executionName: w.runId });
    expect(run.status).toBe('FAILED');
    expect(run.error).toBe('Tuneyard.DeployRolledBack');
    expect(w.sns.messages.map((m) => [m.message.outcome, m.message.stage])).toEqual([['FAILED', 'Deploy']]);
    expect(run.requestErrors).toEqual([]);
  });

  test("an adapter run whose adapter name lacks the Deploy stage's prefix is refused by PlanRun, before any GPU time", async () => {
    // GIVEN the plane's PlanRun, told the prefix through its synthesized environment
    expect(adapterPlane.env.adapterNamePrefix).toBe('chat-');
    const request = { ...ADAPTER_REQUEST, deploy: { endpointName: 'chat', adapterName: 'support-v1' } };
    const w = world(adapterPlane, request, 0.8);
    // WHEN
    const run = await runLocal(adapterPlane.definition, request, w.handlers, { executionName: w.runId });
    // THEN
    expect([run.status, run.error]).toEqual(['FAILED', 'RunRequestInvalid']);
    expect(run.cause).toMatch(/deploy\.adapterName: this pipeline's Deploy stage deploys adapters named chat-\* only .*got \\?"support-v1\\?"\. Name the adapter chat-support-v1/);
    expect(w.calls.Train).toBeUndefined();
    expect(w.sagemaker.calls).toEqual([]);
    expect(w.sns.messages.map((m) => [m.message.outcome, m.message.stage])).toEqual([['FAILED', 'PlanRun']]);
    // a single-model plane has no adapters, so no prefix
    expect(singleModelPlane.env.adapterNamePrefix).toBeUndefined();
  });

  test('a run the gate rejects neither registers nor deploys', async () => {
    const w = world(adapterPlane, ADAPTER_REQUEST, 1.2);
    const run = await runLocal(adapterPlane.definition, ADAPTER_REQUEST, w.handlers, { executionName: w.runId });
    expect(run.status).toBe('FAILED');
    expect(run.error).toBe('Tuneyard.GateRejected');
    expect(w.calls.Register).toBeUndefined();
    expect(w.deploy!.invocations).toBe(0);
    expect(w.sns.messages.map((m) => m.message.outcome)).toEqual(['REJECTED']);
    expect(run.requestErrors).toEqual([]);
  });
});
