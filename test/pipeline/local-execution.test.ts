import { Template } from 'aws-cdk-lib/assertions';
import { planRunStep, PlanRunEnvironment } from '../../constructs/fine-tuning-pipeline/handler/plan-run';
import { readEvalReport, S3Reader } from '../../constructs/fine-tuning-pipeline/handler/read-eval-report';
import { runIdFor, parseRunRequest } from '../../lib/run-request';
import { definitionFromTemplate, failingFirst, lambdaTask, LocalHandler, runLocal, snsRecorder, stepFunctionsError } from '../support/local-sfn';
import { pipelineStack } from './pipeline-stack';

// GIVEN the synthesized pipeline definition (intrinsics resolved) and local stand-ins for every Task
const definition = definitionFromTemplate(Template.fromStack(pipelineStack().stack).toJSON());

const ENV: PlanRunEnvironment = {
  bucketName: 'data-bucket',
  volumeKmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/volume',
  outputKmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/output',
  allowHubModels: false,
  deployStage: false,
};

const REQUEST = {
  dataset: { name: 'support-chats', sha256: 'a'.repeat(64) },
  baseModel: 's3://data-bucket/base-models/llama-3.1-8b/',
  recipe: { method: 'qlora' },
};
const RUN_ID = runIdFor(parseRunRequest(REQUEST));

function evalJson(overrides: Record<string, unknown> = {}): string {
  return JSON.stringify({
    schema_version: 1,
    base: { eval_loss: 2.0, eval_perplexity: 7.39, probe_loss: 1.5 },
    tuned: { eval_loss: 1.5, eval_perplexity: 4.48, probe_loss: 1.55 },
    eval_loss_ratio: 0.75,
    forgetting_increase: 0.05,
    examples: 200,
    ...overrides,
  });
}

/** An S3 client that serves one object per key and records the keys read. */
function fakeS3(objects: Record<string, string>): S3Reader & { keys: string[] } {
  const keys: string[] = [];
  return {
    keys,
    send: (async (command: any) => {
      const key = `${command.input.Bucket}/${command.input.Key}`;
      keys.push(key);
      if (!(key in objects)) throw stepFunctionsError('NoSuchKey', 'The specified key does not exist.');
      const bytes = Buffer.from(objects[key]);
      return { ContentLength: bytes.length, Body: { transformToByteArray: async () => new Uint8Array(bytes) } };
    }) as any,
  };
}

function describeJob(input: any, status: Record<string, unknown> = {}) {
  return {
    TrainingJobName: input.TrainingJobName,
    TrainingJobStatus: 'Completed',
    SecondaryStatus: 'Completed',
    ModelArtifacts: { S3ModelArtifacts: `${input.OutputDataConfig.S3OutputPath}${input.TrainingJobName}/output/model/` },
    // no FinalMetricDataList or BillableTimeInSeconds: the states must not depend on them
    ...status,
  };
}

/** The handlers of a run where everything works; override some to take another path. */
function world(report = evalJson()) {
  const calls: Record<string, any[]> = {};
  const record = (name: string, fn: LocalHandler): LocalHandler => async (input) => {
    (calls[name] ??= []).push(input);
    return fn(input);
  };
  const sns = snsRecorder();
  const s3 = fakeS3({ [`data-bucket/eval-reports/${RUN_ID}/tuneyard-${RUN_ID}-eval/output/model/eval.json`]: report });
  const handlers: Record<string, LocalHandler> = {
    PlanRun: record('PlanRun', lambdaTask((event) => planRunStep(event, ENV))),
    ValidateDataset: record('ValidateDataset', lambdaTask(() => ({ format: 'chat', rows: 1000, evalRows: 200 }))),
    Train: record('Train', (input) => describeJob(input)),
    Evaluate: record('Evaluate', (input) => describeJob(input)),
    ReadEvalReport: record('ReadEvalReport', lambdaTask((event) => readEvalReport(event, s3))),
    Register: record('Register', () => ({ ModelPackageArn: 'arn:aws:sagemaker:us-east-1:123456789012:model-package/tuneyard-models/1' })),
  };
  for (const name of Object.keys(definition.States)) {
    if (name.startsWith('Notify')) handlers[name] = record(name, sns);
  }
  return { handlers, calls, sns, s3 };
}

const run = (handlers: Record<string, LocalHandler>, input: any = REQUEST) => runLocal(definition, input, handlers, { executionName: RUN_ID });

describe('FineTuningPipeline, executed locally', () => {
  test('a good run is planned, validated, trained, evaluated, gated, registered and notified', async () => {
    // GIVEN
    const w = world();
    // WHEN
    const result = await run(w.handlers);
    // THEN
    expect(result.status).toBe('SUCCEEDED');
    expect(result.entered).toEqual(['PlanRun', 'ValidateDataset', 'Train', 'Evaluate', 'ReadEvalReport', 'Gate', 'GateForgetting', 'Register', 'NotifySucceeded', 'Succeeded']);
    expect(w.calls.ValidateDataset[0]).toEqual({ datasetName: 'support-chats', datasetSha256: 'a'.repeat(64), method: 'qlora', maxLength: expect.any(Number) });
    expect(w.calls.Train[0]).toMatchObject({ TrainingJobName: `tuneyard-${RUN_ID}-train`, EnableManagedSpotTraining: true, AlgorithmSpecification: { ContainerArguments: ['train'] } });
    expect(w.calls.Evaluate[0]).toMatchObject({ TrainingJobName: `tuneyard-${RUN_ID}-eval`, AlgorithmSpecification: { ContainerArguments: ['evaluate'] } });
    expect(w.s3.keys).toEqual([`data-bucket/eval-reports/${RUN_ID}/tuneyard-${RUN_ID}-eval/output/model/eval.json`]);
    // The registry gets the lineage: base model, dataset hash, recipe, training job, and the eval report.
    expect(w.calls.Register[0]).toMatchObject({
      CustomerMetadataProperties: { runId: RUN_ID, baseModel: REQUEST.baseModel, datasetSha256: 'a'.repeat(64), method: 'qlora', trainingJobName: `tuneyard-${RUN_ID}-train` },
      EvalReport: `s3://data-bucket/eval-reports/${RUN_ID}/tuneyard-${RUN_ID}-eval/output/model/eval.json`,
    });
    expect(w.sns.messages).toEqual([
      { subject: 'Tuneyard run succeeded', message: expect.objectContaining({ outcome: 'SUCCEEDED', runId: RUN_ID, report: expect.stringContaining('eval_loss_ratio=0.75') }) },
    ]);
    expect(result.output).toMatchObject({ plan: { runId: RUN_ID }, report: { evalLossRatio: 0.75, forgettingIncrease: 0.05 }, registration: { ModelPackageArn: expect.any(String) } });
  });

  test('a run without a forgetting probe passes the forgetting check', async () => {
    const w = world(evalJson({ forgetting_increase: null, base: { eval_loss: 2, eval_perplexity: 7.39, probe_loss: null }, tuned: { eval_loss: 1.5, eval_perplexity: 4.48, probe_loss: null } }));
    const result = await run(w.handlers);
    expect(result.status).toBe('SUCCEEDED');
    expect(result.entered).toEqual(expect.arrayContaining(['Gate', 'Register']));
    expect(result.entered).not.toContain('GateForgetting');
  });

  test.each([
    ['the eval loss ratio is above the threshold', evalJson({ eval_loss_ratio: 1.08 }), /eval_loss_ratio=1\.08 \(max 1\)/],
    ['the forgetting increase is above the threshold', evalJson({ forgetting_increase: 0.25 }), /forgetting_increase=0\.25 \(max 0\.1\)/],
  ])('a run is rejected, registers nothing and fails as Tuneyard.GateRejected when %s', async (_, report, summary) => {
    const w = world(report);
    const result = await run(w.handlers);
    expect(result.status).toBe('FAILED');
    expect(result.error).toBe('Tuneyard.GateRejected');
    expect(result.cause).toMatch(summary);
    expect(result.entered.slice(-2)).toEqual(['NotifyRejected', 'Rejected']);
    expect(w.calls.Register).toBeUndefined();
    expect(w.sns.messages).toEqual([{ subject: 'Tuneyard run rejected by the quality gate', message: expect.objectContaining({ outcome: 'REJECTED', runId: RUN_ID, thresholds: { maxEvalLossRatio: 1, maxForgettingIncrease: 0.1 } }) }]);
  });

  test('an invalid dataset starts no training job and fails as DatasetInvalid after a notification', async () => {
    const w = world();
    w.handlers.ValidateDataset = lambdaTask(() => {
      const e = new Error('train.jsonl line 3: "messages" is missing');
      e.name = 'DatasetInvalid';
      throw e;
    });
    const result = await run(w.handlers);
    expect(result.status).toBe('FAILED');
    expect(result.error).toBe('DatasetInvalid');
    expect(JSON.parse(result.cause!)).toMatchObject({ errorType: 'DatasetInvalid', errorMessage: expect.stringContaining('line 3') });
    expect(result.entered).toEqual(['PlanRun', 'ValidateDataset', 'NotifyDatasetInvalid', 'DatasetInvalid']);
    expect(w.calls.Train).toBeUndefined();
    expect(result.retried).toEqual([]);
    expect(w.sns.messages[0].message).toMatchObject({ outcome: 'FAILED', stage: 'ValidateDataset', runId: RUN_ID, error: 'DatasetInvalid' });
  });

  test('an invalid RunRequest fails as RunRequestInvalid before anything runs', async () => {
    const w = world();
    const result = await run(w.handlers, { ...REQUEST, instanceCount: 0 });
    expect(result.status).toBe('FAILED');
    expect(result.error).toBe('RunRequestInvalid');
    expect(result.cause).toMatch(/instanceCount: must be at least 1/);
    expect(result.entered).toEqual(['PlanRun', 'NotifyRunRequestInvalid', 'RunRequestInvalid']);
    expect(w.sns.messages[0].message).toMatchObject({ outcome: 'FAILED', stage: 'PlanRun', runId: RUN_ID, error: 'RunRequestInvalid' });
  });

  test('a request that asks for a deployment is refused when the pipeline has no Deploy stage', async () => {
    const w = world();
    const result = await run(w.handlers, { ...REQUEST, deploy: { endpointName: 'chat', adapterName: 'support' } });
    expect(result.error).toBe('RunRequestInvalid');
    expect(result.cause).toMatch(/no Deploy stage/);
  });

  test('a failed training job ends in a notified TrainingFailed that carries the failure reason', async () => {
    const w = world();
    const describe = { TrainingJobName: `tuneyard-${RUN_ID}-train`, TrainingJobStatus: 'Failed', SecondaryStatus: 'Failed', FailureReason: 'AlgorithmError: CUDA out of memory' };
    w.handlers.Train = failingFirst(Infinity, () => stepFunctionsError('States.TaskFailed', JSON.stringify(describe)), () => ({}));
    const result = await run(w.handlers);
    expect(result.status).toBe('FAILED');
    expect(result.error).toBe('States.TaskFailed');
    expect(JSON.parse(result.cause!)).toMatchObject({ FailureReason: 'AlgorithmError: CUDA out of memory' });
    expect(result.entered).toEqual(['PlanRun', 'ValidateDataset', 'Train', 'NotifyTrainingFailed', 'TrainingFailed']);
    // A failed job is never retried: a second job would cost the same GPU hours and fail the same way.
    expect(result.retried).toEqual([]);
    expect((w.handlers.Train as any).calls).toBe(1);
    expect(w.sns.messages[0].message).toMatchObject({ outcome: 'FAILED', stage: 'Train', error: 'States.TaskFailed', cause: expect.stringContaining('CUDA out of memory') });
  });

  test('a spot job that waited past MaxWaitTimeInSeconds ends in a notified TrainingFailed naming MaxWaitTimeExceeded', async () => {
    const w = world();
    const describe = { TrainingJobName: `tuneyard-${RUN_ID}-train`, TrainingJobStatus: 'Stopped', SecondaryStatus: 'MaxWaitTimeExceeded' };
    w.handlers.Train = () => {
      throw stepFunctionsError('States.TaskFailed', JSON.stringify(describe));
    };
    const result = await run(w.handlers);
    expect(result.status).toBe('FAILED');
    expect(result.entered.slice(-2)).toEqual(['NotifyTrainingFailed', 'TrainingFailed']);
    expect(result.cause).toContain('MaxWaitTimeExceeded');
    expect(w.sns.messages[0].message.cause).toContain('MaxWaitTimeExceeded');
    expect(w.calls.Evaluate).toBeUndefined();
  });

  test('a SageMaker API error (ResourceLimitExceeded) is retried, then caught and notified', async () => {
    const w = world();
    const train = failingFirst(Infinity, () => stepFunctionsError('SageMaker.AmazonSageMakerException', 'The account-level service limit is 0 Instances (Service: AmazonSageMaker; Status Code: 400; Error Code: ResourceLimitExceeded)'), () => ({}));
    w.handlers.Train = train;
    const result = await run(w.handlers);
    expect(result.error).toBe('SageMaker.AmazonSageMakerException');
    expect(train.calls).toBe(5); // 1 + 4 retries
    expect(result.entered.slice(-2)).toEqual(['NotifyTrainingFailed', 'TrainingFailed']);
  });

  test('a throttled Lambda invocation and a throttled training start are retried and the run succeeds', async () => {
    const w = world();
    const validate = failingFirst(1, () => stepFunctionsError('Lambda.TooManyRequestsException', 'Rate exceeded'), w.handlers.ValidateDataset);
    const train = failingFirst(1, () => stepFunctionsError('ThrottlingException', 'Rate exceeded'), w.handlers.Train);
    w.handlers.ValidateDataset = validate;
    w.handlers.Train = train;
    const result = await run(w.handlers);
    expect(result.status).toBe('SUCCEEDED');
    expect(result.retried).toEqual(['ValidateDataset', 'Train']);
    expect(validate.calls).toBe(2);
    expect(train.calls).toBe(2);
  });

  test('a missing eval report ends in EvalReportInvalid, registering nothing', async () => {
    const w = world();
    w.handlers.ReadEvalReport = lambdaTask((event) => readEvalReport(event, fakeS3({})));
    const result = await run(w.handlers);
    expect(result.error).toBe('EvalReportInvalid');
    expect(result.entered.slice(-2)).toEqual(['NotifyEvalReportInvalid', 'EvalReportInvalid']);
    expect(w.calls.Register).toBeUndefined();
  });

  test('a failed registration is notified and ends in RegistrationFailed', async () => {
    const w = world();
    w.handlers.Register = () => {
      throw stepFunctionsError('SageMaker.ResourceNotFoundException', 'Model package group tuneyard-models does not exist');
    };
    const result = await run(w.handlers);
    expect(result.error).toBe('SageMaker.ResourceNotFoundException');
    expect(result.entered.slice(-2)).toEqual(['NotifyRegistrationFailed', 'RegistrationFailed']);
  });

  test('a failing notification does not hide the failure it reports', async () => {
    const w = world();
    w.handlers.ValidateDataset = () => {
      throw stepFunctionsError('DatasetInvalid', '{}');
    };
    w.handlers.NotifyDatasetInvalid = () => {
      throw stepFunctionsError('SNS.AuthorizationErrorException', 'not authorized');
    };
    const result = await run(w.handlers);
    expect(result.error).toBe('DatasetInvalid');
    expect(result.entered.slice(-2)).toEqual(['NotifyDatasetInvalid', 'DatasetInvalid']);
  });
});
