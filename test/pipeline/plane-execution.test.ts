/**
 * The composed plane's own state machine (FineTuningPlaneStack with serving configured: the real
 * FineTuningJob, ModelRegistry, DatasetValidationFunction and VllmDeployStage), executed locally.
 * Local handlers stand in for SageMaker, Lambda and SNS; the PlanRun and ReadEvalReport handlers are
 * the real functions. What is simulated: every AWS call's result.
 */
import { Template } from 'aws-cdk-lib/assertions';
import { planRunStep } from '../../constructs/fine-tuning-pipeline/handler/plan-run';
import { readEvalReport } from '../../constructs/fine-tuning-pipeline/handler/read-eval-report';
import { FineTuningPlaneStack } from '../../lib/fine-tuning-plane-stack';
import { parseRunRequest, runIdFor } from '../../lib/run-request';
import { TEST_ENV, testApp } from '../support/app';
import { definitionFromTemplate, lambdaTask, LocalHandler, runLocal, snsRecorder } from '../support/local-sfn';

// GIVEN the plane with an adapter-serving endpoint, and its state machine's definition
const plane = new FineTuningPlaneStack(testApp(), 'Tuneyard', {
  env: TEST_ENV,
  config: {
    serving: { instanceType: 'ml.g5.12xlarge', baseModel: 'meta-llama/Llama-3.1-8B-Instruct', modelPrefix: 'base-models/llama-3.1-8b/', endpointName: 'chat', adapters: { minCopies: 0 } },
  },
});
const template = Template.fromStack(plane).toJSON();
const definition = definitionFromTemplate(template, plane.getLogicalId(plane.pipeline.stateMachine.node.defaultChild as any));
const BUCKET = 'data-bucket';
const ENV = {
  bucketName: BUCKET,
  volumeKmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/data',
  outputKmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/data',
  allowHubModels: false,
  deployStage: true,
};
const REQUEST = {
  dataset: { name: 'support-chats', sha256: 'b'.repeat(64) },
  baseModel: `s3://${BUCKET}/base-models/llama-3.1-8b/`,
  recipe: { method: 'qlora' },
  autoApprove: true,
  deploy: { endpointName: 'chat', adapterName: 'support-v1' },
};
const RUN_ID = runIdFor(parseRunRequest(REQUEST));
const EVAL_KEY = `eval-reports/${RUN_ID}/tuneyard-${RUN_ID}-eval/output/model/eval.json`;

function world(evalLossRatio: number) {
  const calls: Record<string, any[]> = {};
  const record = (name: string, fn: LocalHandler): LocalHandler => async (input) => {
    (calls[name] ??= []).push(input);
    return fn(input);
  };
  const report = JSON.stringify({
    schema_version: 1,
    base: { eval_loss: 2, eval_perplexity: 7.39, probe_loss: null },
    tuned: { eval_loss: 2 * evalLossRatio, eval_perplexity: Math.exp(2 * evalLossRatio), probe_loss: null },
    eval_loss_ratio: evalLossRatio,
    forgetting_increase: null,
    examples: 100,
  });
  const s3 = {
    send: (async (command: any) => {
      expect(`${command.input.Bucket}/${command.input.Key}`).toBe(`${BUCKET}/${EVAL_KEY}`);
      const bytes = Buffer.from(report);
      return { ContentLength: bytes.length, Body: { transformToByteArray: async () => new Uint8Array(bytes) } };
    }) as any,
  };
  const job = (input: any) => ({
    TrainingJobName: input.TrainingJobName,
    TrainingJobStatus: 'Completed',
    SecondaryStatus: 'Completed',
    ModelArtifacts: { S3ModelArtifacts: `${input.OutputDataConfig.S3OutputPath}${input.TrainingJobName}/output/model/` },
  });
  let polls = 0;
  const handlers: Record<string, LocalHandler> = {
    PlanRun: record('PlanRun', lambdaTask((event) => planRunStep(event, ENV))),
    ValidateDataset: record('ValidateDataset', lambdaTask(() => ({ ok: true, format: 'chat', rows: 500 }))),
    Train: record('Train', job),
    Evaluate: record('Evaluate', job),
    ReadEvalReport: record('ReadEvalReport', lambdaTask((event) => readEvalReport(event, s3))),
    Register: record('Register', () => ({ ModelPackageArn: 'arn:aws:sagemaker:us-east-1:123456789012:model-package/models/1' })),
    DeployFindAdapter: record('DeployFindAdapter', () => {
      const e = new Error('Could not find inference component');
      e.name = 'SageMaker.ValidationException';
      throw e;
    }),
    DeployCreateAdapter: record('DeployCreateAdapter', () => ({})),
    DeployDescribe: record('DeployDescribe', () => ({ InferenceComponentStatus: ++polls < 2 ? 'Creating' : 'InService' })),
  };
  const sns = snsRecorder();
  for (const name of Object.keys(definition.States)) if (name.startsWith('Notify')) handlers[name] = sns;
  return { handlers, calls, sns };
}

describe('the composed plane, executed locally', () => {
  test('a good run that asks for a deployment trains, evaluates, registers, adds its adapter to the endpoint and notifies', async () => {
    // GIVEN
    const w = world(0.8);
    // WHEN
    const run = await runLocal(definition, REQUEST, w.handlers, { executionName: RUN_ID });
    // THEN
    expect([run.status, run.error, run.cause]).toEqual(['SUCCEEDED', undefined, undefined]);
    expect(run.entered.slice(0, 8)).toEqual(['PlanRun', 'ValidateDataset', 'Train', 'Evaluate', 'ReadEvalReport', 'Gate', 'Register', expect.any(String)]);
    expect(run.entered).toEqual(expect.arrayContaining(['DeployCreateAdapter', 'Deployed', 'NotifySucceeded']));
    // the real registry state: approved (autoApprove), the uncompressed model folder, lineage
    expect(w.calls.Register[0]).toMatchObject({
      ModelApprovalStatus: 'Approved',
      InferenceSpecification: { Containers: [{ ModelDataSource: { S3DataSource: { S3Uri: `s3://${BUCKET}/artifacts/${RUN_ID}/tuneyard-${RUN_ID}-train/output/model/`, CompressionType: 'None' } } }] },
      CustomerMetadataProperties: { runId: RUN_ID, datasetSha256: 'b'.repeat(64), method: 'qlora', trainingJobName: `tuneyard-${RUN_ID}-train` },
    });
    // the real Deploy stage: the run's adapter tarball on the endpoint's base component
    expect(w.calls.DeployCreateAdapter[0]).toMatchObject({
      InferenceComponentName: 'support-v1',
      EndpointName: 'chat',
      Specification: { BaseInferenceComponentName: plane.endpoint!.baseComponentName, Container: { ArtifactUrl: `s3://${BUCKET}/artifacts/${RUN_ID}/tuneyard-${RUN_ID}-train/output/model/adapter.tar.gz` } },
    });
    expect(w.sns.messages.map((m) => m.message.outcome)).toEqual(['SUCCEEDED']);
  });

  test('a run the gate rejects neither registers nor deploys', async () => {
    const w = world(1.2);
    const run = await runLocal(definition, REQUEST, w.handlers, { executionName: RUN_ID });
    expect(run.status).toBe('FAILED');
    expect(run.error).toBe('Tuneyard.GateRejected');
    expect(w.calls.Register).toBeUndefined();
    expect(w.calls.DeployCreateAdapter).toBeUndefined();
    expect(w.sns.messages.map((m) => m.message.outcome)).toEqual(['REJECTED']);
  });
});
