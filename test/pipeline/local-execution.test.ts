import { Readable } from 'node:stream';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { Template } from 'aws-cdk-lib/assertions';
import { inspectJob, MAX_CAUSE_LENGTH, MAX_CREATE_RETRIES } from '../../constructs/fine-tuning-pipeline/handler/inspect-job';
import { REGISTER_THROTTLE_RETRIES } from '../../constructs/fine-tuning-pipeline';
import { planRunAndWriteGraders, PlanRunEnvironment, RegistryReader } from '../../constructs/fine-tuning-pipeline/handler/plan-run';
import { readEvalReport, S3Reader } from '../../constructs/fine-tuning-pipeline/handler/read-eval-report';
import { runIdFor, parseRunRequest } from '../../lib/run-request';
import { METHODS, type Method } from '../../lib/methods';
import { datasetVersionPrefix } from '../../lib/layout';
import { validateDatasetVersion, type S3Sender as DatasetS3 } from '../../constructs/dataset-validator/handler';
import { dpoTrainerReport, gradedRewardReport, gradedTrainerReport, movedDpoReport, movedReport, movedRewardReport, rewardTrainerReport, rlTrainerReport, trainerReport } from '../support/trainer-reports';
import { completedJob, definitionFromTemplate, failingFirst, lambdaTask, LocalHandler, runLocal, snsRecorder, stepFunctionsError } from '../support/local-sfn';
import { pipelineStack } from './pipeline-stack';
import { LONG_PYTHON_GRADER } from '../support/graders';

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
  probeDataset: { name: 'general-probe', sha256: 'c'.repeat(64) },
  baseModel: 's3://data-bucket/base-models/llama-3.1-8b/',
  // batch 2: at the default 4 x 2048 tokens the fp32 logits of Llama 3's 128k vocabulary do not fit the A10G (PlanRun refuses it)
  recipe: { method: 'qlora', batchSize: 2 },
};
const { probeDataset: _probe, ...REQUEST_WITHOUT_PROBE } = REQUEST;
const RUN_ID = runIdFor(parseRunRequest(REQUEST));

const evalJson = (report: any = trainerReport(true)) => JSON.stringify(report);

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

/** SageMaker as the inspection sees it: DescribeTrainingJob answers from `jobs` (a missing job: ValidationException). */
function fakeSageMaker(jobs: Record<string, Array<Record<string, unknown>>>) {
  const described: string[] = [];
  return {
    described,
    send: (async (command: any) => {
      const name = command.input.TrainingJobName;
      described.push(name);
      const answers = jobs[name];
      if (!answers?.length) throw stepFunctionsError('ValidationException', 'Requested resource not found.');
      return answers.length > 1 ? answers.shift() : answers[0];
    }) as any,
  };
}


/** The handlers of a run where everything works (PlanRun reading `registry` for a reward model); override some to take another path. */
function world(report = evalJson(), jobs: Record<string, Array<Record<string, unknown>>> = {}, runId = RUN_ID, registry?: RegistryReader) {
  const calls: Record<string, any[]> = {};
  const record = (name: string, fn: LocalHandler): LocalHandler => async (input) => {
    (calls[name] ??= []).push(input);
    return fn(input);
  };
  const sns = snsRecorder();
  const s3 = fakeS3({ [`data-bucket/eval-reports/${runId}/tuneyard-${runId}-eval/output/model/eval.json`]: report });
  const sagemaker = fakeSageMaker(jobs);
  // what PlanRun writes (graders.json), by bucket/key
  const objects = new Map<string, { body: string; contentType: string }>();
  const written = { send: async (command: any) => void objects.set(`${command.input.Bucket}/${command.input.Key}`, { body: command.input.Body, contentType: command.input.ContentType }) };
  const handlers: Record<string, LocalHandler> = {
    PlanRun: record('PlanRun', lambdaTask((event) => planRunAndWriteGraders(event, ENV, written, registry))),
    ValidateDataset: record('ValidateDataset', lambdaTask(() => ({ format: 'chat', rows: 1000, evalRows: 200 }))),
    Train: record('Train', (input) => completedJob(input)),
    InspectTraining: record('InspectTraining', lambdaTask((event) => inspectJob(event, sagemaker))),
    Evaluate: record('Evaluate', (input) => completedJob(input)),
    InspectEvaluation: record('InspectEvaluation', lambdaTask((event) => inspectJob(event, sagemaker))),
    ReadEvalReport: record('ReadEvalReport', lambdaTask((event) => readEvalReport(event, s3))),
    Register: record('Register', () => ({ ModelPackageArn: 'arn:aws:sagemaker:us-east-1:123456789012:model-package/tuneyard-models/1' })),
  };
  for (const name of Object.keys(definition.States)) {
    if (name.startsWith('Notify')) handlers[name] = record(name, sns);
  }
  return { handlers, calls, sns, s3, sagemaker, written: objects };
}

/** Runs the pipeline; in every scenario, each request a state sent must be one the service's API model accepts. */
async function run(handlers: Record<string, LocalHandler>, input: any = REQUEST, executionName = RUN_ID) {
  const result = await runLocal(definition, input, handlers, { executionName });
  expect(result.requestErrors).toEqual([]);
  return result;
}
const BASE_1B = 's3://data-bucket/base-models/llama-3.2-1b/';
/** The model package the Register stand-in answers with (world()). */
const REGISTERED = 'arn:aws:sagemaker:us-east-1:123456789012:model-package/tuneyard-models/1';
/** The grader test_grpo.py and test_rloo.py evaluated their adapters with (eval-report-grpo.json, eval-report-rloo.json). */
const HAS_A = { type: 'regex', name: 'has_a', input: '{{ sample.output_text }}', pattern: 'a' };

/** The registry after a run of `input` was registered: DescribeModelPackage answers with what its Register state sent. */
async function registryAfter(input: any, runId: string, report: any): Promise<RegistryReader & { described: string[] }> {
  const registered = await run(world(evalJson(report), {}, runId).handlers, input, runId);
  expect(registered.status).toBe('SUCCEEDED');
  const sent = registered.requests.find((r) => r.state === 'Register')!.params as any;
  const described: string[] = [];
  return {
    described,
    send: (async (command: any) => {
      described.push(command.input.ModelPackageName);
      if (command.input.ModelPackageName !== REGISTERED) throw stepFunctionsError('ValidationException', 'Model package does not exist.');
      return { ModelPackageArn: REGISTERED, InferenceSpecification: sent.InferenceSpecification, CustomerMetadataProperties: sent.CustomerMetadataProperties };
    }) as any,
  };
}

const TRAINING_JOB = `tuneyard-${RUN_ID}-train`;
const ARTIFACTS = `s3://data-bucket/artifacts/${RUN_ID}/${TRAINING_JOB}/output/model/`;
/** What Step Functions reports when CreateTrainingJob (optimized integration) is refused. */
const apiError = (code: string, message: string) => () =>
  stepFunctionsError('SageMaker.AmazonSageMakerException', `${message} (Service: AmazonSageMaker; Status Code: 400; Error Code: ${code}; Request ID: 1f2e)`);
/** What a `.sync` Task reports when its job ends Failed or Stopped: the whole DescribeTrainingJob. */
const jobEnded = (describe: Record<string, unknown>) => () => stepFunctionsError('States.TaskFailed', JSON.stringify({ ...describe, HyperParameters: { recipe: 'x'.repeat(3000) } }));

describe('FineTuningPipeline, executed locally', () => {
  test('a good run is planned, validated, trained, evaluated, gated, registered and notified', async () => {
    // GIVEN
    const w = world();
    // WHEN
    const result = await run(w.handlers);
    // THEN
    expect([result.status, result.error, result.cause]).toEqual(['SUCCEEDED', undefined, undefined]);
    expect(result.entered).toEqual(['PlanRun', 'ValidateDataset', 'Train', 'Evaluate', 'ReadEvalReport', 'Gate', 'Register', 'NotifySucceeded', 'Succeeded']);
    // Every request the states sent (Lambda, CreateTrainingJob x2, CreateModelPackage, SNS) is one the API models accept.
    expect(result.requests.map((r) => `${r.service}:${r.operation}`)).toEqual([
      'lambda:Invoke', 'lambda:Invoke', 'sagemaker:CreateTrainingJob', 'sagemaker:CreateTrainingJob', 'lambda:Invoke', 'sagemaker:CreateModelPackage', 'sns:Publish',
    ]);
    expect(result.requestErrors).toEqual([]);
    expect(w.calls.ValidateDataset[0]).toEqual({ datasetName: 'support-chats', datasetSha256: 'a'.repeat(64), method: 'qlora', maxLength: expect.any(Number) });
    expect(w.calls.Train[0]).toMatchObject({ TrainingJobName: TRAINING_JOB, EnableManagedSpotTraining: true, AlgorithmSpecification: { ContainerArguments: ['train'] } });
    expect(w.calls.Evaluate[0]).toMatchObject({ TrainingJobName: `tuneyard-${RUN_ID}-eval`, AlgorithmSpecification: { ContainerArguments: ['evaluate'] } });
    expect(w.s3.keys).toEqual([`data-bucket/eval-reports/${RUN_ID}/tuneyard-${RUN_ID}-eval/output/model/eval.json`]);
    // The registry gets the lineage: base model, dataset hash, recipe, training job, and the eval report.
    const reportUri = `s3://data-bucket/eval-reports/${RUN_ID}/tuneyard-${RUN_ID}-eval/output/model/eval.json`;
    expect(w.calls.Register[0]).toMatchObject({
      CustomerMetadataProperties: { runId: RUN_ID, baseModel: REQUEST.baseModel, datasetSha256: 'a'.repeat(64), method: 'qlora', trainingJobName: TRAINING_JOB, evalReport: reportUri },
      ModelMetrics: { ModelQuality: { Statistics: { S3Uri: reportUri } } },
    });
    const report = trainerReport(true);
    expect(w.sns.messages).toEqual([
      { subject: 'Tuneyard run succeeded', message: expect.objectContaining({ outcome: 'SUCCEEDED', runId: RUN_ID, report: expect.stringContaining(`passed | eval_loss_ratio=${Number((report.tuned.eval_loss / report.base.eval_loss).toPrecision(4))} `), htmlReport: reportUri.replace(/eval\.json$/, 'report.html'), review: `tuneyard eval ${RUN_ID}` }) },
    ]);
    expect(result.output).toMatchObject({
      plan: { runId: RUN_ID, forgettingProbe: true },
      report: { passed: true, evalLossRatio: report.tuned.eval_loss / report.base.eval_loss, forgettingIncrease: report.tuned.probe_loss - report.base.probe_loss },
      registration: { ModelPackageArn: expect.any(String) },
    });
    expect(w.sagemaker.described).toEqual([]);
  });

  test('a run without a forgetting probe is gated on its eval loss alone', async () => {
    const runId = runIdFor(parseRunRequest(REQUEST_WITHOUT_PROBE));
    const w = world(evalJson(trainerReport(false)), {}, runId);
    const result = await run(w.handlers, REQUEST_WITHOUT_PROBE, runId);
    expect(result.status).toBe('SUCCEEDED');
    expect(result.output.report).toMatchObject({ passed: true, forgettingIncrease: null, summary: expect.stringContaining('forgetting_increase=none (no probe)') });
  });

  test.each([
    ['the eval loss ratio is above the threshold', movedReport(true, { evalLossRatio: 1.08 }), /rejected: eval_loss_ratio 1\.08 is above the maximum 1 \|/],
    ['the forgetting increase is above the threshold', movedReport(true, { forgettingIncrease: 0.25 }), /rejected: forgetting_increase 0\.25 is above the maximum 0\.1 \|/],
    // The plan says a probe was measured; a report without its figure fails closed.
    ['the run planned a probe but the report has no forgetting figure', trainerReport(false), /rejected: forgetting_increase was not measured although the run planned a probe/],
  ])('a run is rejected, registers nothing and fails as Tuneyard.GateRejected when %s', async (_, report, summary) => {
    const w = world(evalJson(report));
    const result = await run(w.handlers);
    expect(result.status).toBe('FAILED');
    expect(result.error).toBe('Tuneyard.GateRejected');
    expect(result.cause).toMatch(summary);
    expect(result.entered.slice(-2)).toEqual(['NotifyRejected', 'Rejected']);
    expect(w.calls.Register).toBeUndefined();
    expect(w.sns.messages).toEqual([{ subject: 'Tuneyard run rejected by the quality gate', message: expect.objectContaining({ outcome: 'REJECTED', runId: RUN_ID, thresholds: { maxEvalLossRatio: 1, maxForgettingIncrease: 0.1 }, review: `tuneyard eval ${RUN_ID}`, htmlReport: `s3://data-bucket/eval-reports/${RUN_ID}/tuneyard-${RUN_ID}-eval/output/model/report.html` }) }]);
  });

  describe('a run gated on its graders and benchmarks', () => {
    // The graders and benchmarks of the real report (training-images/trainer/tests/test_evaluate.py wrote it with these).
    const GRADED_REQUEST = {
      ...REQUEST_WITHOUT_PROBE,
      graders: [
        { type: 'string_check', name: 'exact', input: '{{ sample.output_text }}', reference: '{{ item.reference }}', operation: 'eq' },
        { type: 'text_similarity', name: 'fuzzy', input: '{{ sample.output_text }}', reference: '{{ item.reference }}', evaluation_metric: 'fuzzy_match', pass_threshold: 0.5 },
      ],
      benchmarkDatasets: [{ name: 'translate-a', sha256: 'b'.repeat(64) }, { name: 'translate-b', sha256: 'd'.repeat(64) }],
    };
    const report = gradedTrainerReport();
    const fuzzy = Number(report.graders.tuned.fuzzy.mean.toPrecision(4));
    const request = (minFuzzy: number) => ({ ...GRADED_REQUEST, thresholds: { minGraderMean: { fuzzy: minFuzzy }, maxBenchmarkDrop: 0.02 } });

    test('passes when the tuned answers meet the grader minimum and no benchmark drops more than the maximum', async () => {
      const input = request(0.05);
      const runId = runIdFor(parseRunRequest(input));
      const w = world(evalJson(report), {}, runId);
      const result = await run(w.handlers, input, runId);
      expect([result.status, result.error]).toEqual(['SUCCEEDED', undefined]);
      expect(w.calls.ReadEvalReport[0]).toMatchObject({ benchmarks: ['translate-a', 'translate-b'], judge: null, thresholds: { minGraderMean: { fuzzy: 0.05 }, maxBenchmarkDrop: 0.02 } });
      expect(w.sns.messages[0].message.report).toContain(`grader fuzzy=${fuzzy} (base ${Number(report.graders.base.fuzzy.mean.toPrecision(4))}; min 0.05)`);
      expect(w.sns.messages[0].message.report).toContain('benchmark translate-a drop=0 (accuracy 0.3333 -> 0.3333 on 6 items; max 0.02)');
    });

    test('is rejected by a grader threshold, the check named with its value and threshold in the notification', async () => {
      const input = request(0.5);
      const runId = runIdFor(parseRunRequest(input));
      const w = world(evalJson(report), {}, runId);
      const result = await run(w.handlers, input, runId);
      expect([result.status, result.error]).toEqual(['FAILED', 'Tuneyard.GateRejected']);
      expect(result.cause).toMatch(new RegExp(`^rejected: grader fuzzy mean ${fuzzy} is below the minimum 0\\.5 \\|`));
      expect(w.calls.Register).toBeUndefined();
      expect(w.sns.messages).toEqual([
        {
          subject: 'Tuneyard run rejected by the quality gate',
          message: expect.objectContaining({
            outcome: 'REJECTED',
            report: expect.stringContaining(`grader fuzzy mean ${fuzzy} is below the minimum 0.5`),
            thresholds: expect.objectContaining({ minGraderMean: { fuzzy: 0.5 }, maxBenchmarkDrop: 0.02 }),
          }),
        },
      ]);
    });

    test('a python grader over 2,500 characters plans: PlanRun writes graders.json and Evaluate reads it as its graders channel', async () => {
      const input = { ...request(0.05), graders: [...GRADED_REQUEST.graders, LONG_PYTHON_GRADER] };
      const runId = runIdFor(parseRunRequest(input));
      const w = world(evalJson(report), {}, runId);
      const result = await run(w.handlers, input, runId);
      expect([result.status, result.error]).toEqual(['SUCCEEDED', undefined]);
      const key = `eval-reports/${runId}/graders.json`;
      expect([...w.written.keys()]).toEqual([`data-bucket/${key}`]);
      expect(JSON.parse(w.written.get(`data-bucket/${key}`)!.body)).toEqual(input.graders);
      // the CreateTrainingJob request of Evaluate, as sent (and valid against SageMaker's API model: run() checks it)
      const evaluate = result.requests.find((r) => r.state === 'Evaluate')!.params as any;
      expect(evaluate.InputDataConfig.find((c: any) => c.ChannelName === 'graders')).toEqual({
        ChannelName: 'graders',
        DataSource: { S3DataSource: { S3DataType: 'S3Prefix', S3Uri: `s3://data-bucket/${key}`, S3DataDistributionType: 'FullyReplicated' } },
        ContentType: 'application/json',
        InputMode: 'File',
      });
      expect(evaluate.HyperParameters).not.toHaveProperty('graders');
    });

    test('a planned benchmark the report lacks fails the gate closed', async () => {
      const input = { ...request(0.05), benchmarkDatasets: [...GRADED_REQUEST.benchmarkDatasets, { name: 'mmlu', sha256: 'e'.repeat(64) }] };
      const runId = runIdFor(parseRunRequest(input));
      const w = world(evalJson(report), {}, runId);
      const result = await run(w.handlers, input, runId);
      expect([result.status, result.error]).toEqual(['FAILED', 'Tuneyard.GateRejected']);
      expect(result.cause).toMatch(/^rejected: benchmark mmlu was not measured \(maximum drop 0\.02\): eval\.json has no result for it \|/);
    });
  });

  describe('a DPO run', () => {
    // (a 1B base: PlanRun finds that DPO of an 8B model at the default batch size does not fit ml.g5.2xlarge)
    const DPO_REQUEST = { ...REQUEST_WITHOUT_PROBE, baseModel: 's3://data-bucket/base-models/llama-3.2-1b/', recipe: { method: 'dpo' } };
    const DPO_RUN_ID = runIdFor(parseRunRequest(DPO_REQUEST));

    test('is gated on the preference accuracy of the real DPO eval.json, and registered', async () => {
      // GIVEN the report the trainer's evaluate wrote for a DPO run (LoRA), a loss ratio of its chosen responses included
      const report = dpoTrainerReport();
      const w = world(evalJson(report), {}, DPO_RUN_ID);
      // WHEN
      const result = await run(w.handlers, DPO_REQUEST, DPO_RUN_ID);
      // THEN
      expect([result.status, result.error]).toEqual(['SUCCEEDED', undefined]);
      expect(result.output.plan.thresholds).toEqual({ maxForgettingIncrease: 0.1, minPreferenceAccuracy: 0.5 });
      const { preferred, pairs } = report.preference;
      expect(result.output.report).toMatchObject({ passed: true, preferenceAccuracy: preferred / pairs, preference: report.preference });
      expect(result.output.report.summary).toMatch(new RegExp(`^passed \\| preference_accuracy=[0-9.]+ \\(${preferred}/${pairs} pairs; min 0\\.5\\); reward_margin=[0-9.]+; eval_loss_ratio=[0-9.]+ \\(max none\\)`));
      expect(w.calls.Register).toHaveLength(1);
    });

    test('passes with a higher loss on its chosen responses (DPO does not minimise it), and is rejected below the minimum accuracy', async () => {
      const worse = world(evalJson(movedDpoReport({ evalLossRatio: 1.3 })), {}, DPO_RUN_ID);
      expect((await run(worse.handlers, DPO_REQUEST, DPO_RUN_ID)).status).toBe('SUCCEEDED');

      const w = world(evalJson(movedDpoReport({ preferred: 3 })), {}, DPO_RUN_ID);
      const result = await run(w.handlers, DPO_REQUEST, DPO_RUN_ID);
      expect([result.status, result.error]).toEqual(['FAILED', 'Tuneyard.GateRejected']);
      expect(result.cause).toMatch(/^rejected: preference_accuracy 0\.4286 is below the minimum 0\.5 \|/);
      expect(w.calls.Register).toBeUndefined();
      expect(w.sns.messages).toEqual([
        { subject: 'Tuneyard run rejected by the quality gate', message: expect.objectContaining({ outcome: 'REJECTED', thresholds: { maxForgettingIncrease: 0.1, minPreferenceAccuracy: 0.5 } }) },
      ]);
    });

    test('is rejected (fail closed) when its report has no preference figures', async () => {
      const w = world(evalJson(trainerReport(false)), {}, DPO_RUN_ID);
      const result = await run(w.handlers, DPO_REQUEST, DPO_RUN_ID);
      expect(result.error).toBe('Tuneyard.GateRejected');
      expect(result.cause).toMatch(/^rejected: preference_accuracy was not measured \(minimum 0\.5\)/);
    });
  });

  describe('a reward run', () => {
    // method reward: a reward model trained on preference pairs, gated on its held-out pairwise accuracy
    const REWARD_REQUEST = { ...REQUEST_WITHOUT_PROBE, baseModel: 's3://data-bucket/base-models/llama-3.2-1b/', recipe: { method: 'reward' } };
    const REWARD_RUN_ID = runIdFor(parseRunRequest(REWARD_REQUEST));

    test('is gated on the pairwise accuracy of the real reward eval.json, and registered as a reward model', async () => {
      // GIVEN the report the trainer's evaluate wrote for a reward run (LoRA, merged)
      const report = rewardTrainerReport();
      const w = world(evalJson(report), {}, REWARD_RUN_ID);
      // WHEN
      const result = await run(w.handlers, REWARD_REQUEST, REWARD_RUN_ID);
      // THEN
      expect([result.status, result.error]).toEqual(['SUCCEEDED', undefined]);
      expect(result.entered).toEqual(['PlanRun', 'ValidateDataset', 'Train', 'Evaluate', 'ReadEvalReport', 'Gate', 'Register', 'NotifySucceeded', 'Succeeded']);
      expect(w.calls.ValidateDataset[0]).toMatchObject({ method: 'reward' });
      expect(w.calls.Train[0].HyperParameters).toMatchObject({ method: 'reward' });
      expect(result.output.plan.thresholds).toEqual({ maxForgettingIncrease: 0.1, minPreferenceAccuracy: 0.5 });
      const { preferred, pairs } = report.preference;
      expect(result.output.report).toMatchObject({ passed: true, preferenceAccuracy: preferred / pairs, preference: { ...report.preference, beta: null } });
      expect(result.output.report.summary).toMatch(new RegExp(`^passed \\| preference_accuracy=1 \\(${preferred}/${pairs} pairs; min 0\\.5\\); reward_margin=[0-9.]+; eval_loss_ratio=[0-9.]+ \\(max none\\)`));
      expect(w.calls.Register).toHaveLength(1);
      expect(w.calls.Register[0].CustomerMetadataProperties).toMatchObject({ method: 'reward', kind: 'reward', runId: REWARD_RUN_ID });
    });

    test('is rejected below the minimum pairwise accuracy and not registered', async () => {
      const w = world(evalJson(movedRewardReport(3)), {}, REWARD_RUN_ID);
      const result = await run(w.handlers, REWARD_REQUEST, REWARD_RUN_ID);
      expect([result.status, result.error]).toEqual(['FAILED', 'Tuneyard.GateRejected']);
      expect(result.cause).toMatch(/^rejected: preference_accuracy 0\.375 is below the minimum 0\.5 \|/);
      expect(w.calls.Register).toBeUndefined();
    });
  });

  describe('a grpo run', () => {
    // method grpo: a LoRA adapter trained online on prompt-only rows, rewarded by the run's graders (the same
    // definitions the evaluation scores with) and gated on the gain of that reward and on the graders; the report is the
    // trainer's real graded eval.json of a LoRA adapter (test_evaluate.py) with the reward block the evaluation of a run
    // rewarded by those graders adds (exact 1, fuzzy 0.5: its fuzzy mean fell, so its reward fell by 0.02)
    const GRADERS = [
      { type: 'string_check', name: 'exact', input: '{{ sample.output_text }}', reference: '{{ item.reference }}', operation: 'eq' },
      { type: 'text_similarity', name: 'fuzzy', input: '{{ sample.output_text }}', reference: '{{ item.reference }}', evaluation_metric: 'fuzzy_match', pass_threshold: 0.5 },
    ];
    const GRPO_REQUEST = {
      ...REQUEST_WITHOUT_PROBE,
      baseModel: 's3://data-bucket/base-models/llama-3.2-1b/',
      recipe: { method: 'grpo', rewardWeights: { exact: 1, fuzzy: 0.5 }, grpoMaxCompletionLength: 128 },
      graders: GRADERS,
      // a small loss of reward tolerated
      thresholds: { minGraderMean: { fuzzy: 0.05 }, minRewardGain: -0.05 },
    };
    const GRPO_RUN_ID = runIdFor(parseRunRequest(GRPO_REQUEST));
    const GRPO_REPORT = () => gradedRewardReport({ exact: 1, fuzzy: 0.5 });

    test('is planned with its graders as the training job\'s rewards, trained, gated on its reward gain and grader mean, and registered', async () => {
      const w = world(evalJson(GRPO_REPORT()), {}, GRPO_RUN_ID);
      const result = await run(w.handlers, GRPO_REQUEST, GRPO_RUN_ID);
      expect([result.status, result.error, result.cause]).toEqual(['SUCCEEDED', undefined, undefined]);
      expect(result.entered).toEqual(['PlanRun', 'ValidateDataset', 'Train', 'Evaluate', 'ReadEvalReport', 'Gate', 'Register', 'NotifySucceeded', 'Succeeded']);
      expect(w.calls.ValidateDataset[0]).toMatchObject({ method: 'grpo' });
      // the Train state's CreateTrainingJob, as sent (valid against SageMaker's API model: run() checks it)
      const train = result.requests.find((r) => r.state === 'Train')!.params as any;
      expect(train.HyperParameters).toMatchObject({ method: 'grpo', reward_weights: '{"exact":1,"fuzzy":0.5}', grpo_max_completion_length: '128' });
      expect(train.HyperParameters).not.toHaveProperty('graders');
      const key = `eval-reports/${GRPO_RUN_ID}/graders.json`;
      expect(train.InputDataConfig.find((c: any) => c.ChannelName === 'graders')?.DataSource.S3DataSource.S3Uri).toBe(`s3://data-bucket/${key}`);
      expect(JSON.parse(w.written.get(`data-bucket/${key}`)!.body)).toEqual(GRADERS);
      // the evaluation job scores the answers with the same reward: the graders channel and the reward weights
      const evaluate = result.requests.find((r) => r.state === 'Evaluate')!.params as any;
      expect(evaluate.HyperParameters).toMatchObject({ method: 'grpo', reward_weights: '{"exact":1,"fuzzy":0.5}' });
      expect(evaluate.InputDataConfig.find((c: any) => c.ChannelName === 'graders')?.DataSource.S3DataSource.S3Uri).toBe(`s3://data-bucket/${key}`);
      // gated on its reward gain and the grader the request names; the loss ratio of the reference answers is not checked unless set
      expect(result.output.plan.thresholds).toEqual({ maxForgettingIncrease: 0.1, minGraderMean: { fuzzy: 0.05 }, minRewardGain: -0.05 });
      expect(result.output.report).toMatchObject({ passed: true, summary: expect.stringMatching(/^passed \| reward_gain=-0\.02076 \(mean reward 0\.05539 -> 0\.03463 on 4 answers; min -0\.05\)/) });
      expect(w.calls.Register[0].CustomerMetadataProperties).toMatchObject({ method: 'grpo', kind: 'generative', runId: GRPO_RUN_ID });
    });

    test('is rejected by the default gate when its reward fell (minRewardGain 0), and not registered', async () => {
      const input = { ...GRPO_REQUEST, thresholds: { minGraderMean: { fuzzy: 0.05 } } };
      const runId = runIdFor(parseRunRequest(input));
      const w = world(evalJson(GRPO_REPORT()), {}, runId);
      const result = await run(w.handlers, input, runId);
      expect([result.status, result.error]).toEqual(['FAILED', 'Tuneyard.GateRejected']);
      expect(result.cause).toMatch(/^rejected: reward gain -0\.02076 is below the minimum 0 \(mean reward base 0\.05539, tuned 0\.03463\) \|/);
      expect(w.calls.Register).toBeUndefined();
      // the report of an evaluation that did not score the reward fails the same gate closed
      const unscored = world(evalJson(gradedTrainerReport()), {}, runId);
      const closed = await run(unscored.handlers, input, runId);
      expect(closed.cause).toMatch(/^rejected: reward gain was not measured \(minimum 0\): the report has no reward figures/);
    });

    test('is rejected below its grader minimum and not registered', async () => {
      const input = { ...GRPO_REQUEST, thresholds: { minGraderMean: { fuzzy: 0.99 }, minRewardGain: -0.05 } };
      const runId = runIdFor(parseRunRequest(input));
      const w = world(evalJson(GRPO_REPORT()), {}, runId);
      const result = await run(w.handlers, input, runId);
      expect([result.status, result.error]).toEqual(['FAILED', 'Tuneyard.GateRejected']);
      expect(result.cause).toMatch(/^rejected: grader fuzzy mean [0-9.]+ is below the minimum 0\.99 \|/);
      expect(w.calls.Register).toBeUndefined();
    });

    test('without a reward source it fails as RunRequestInvalid before anything runs', async () => {
      const { graders: _graders, thresholds: _thresholds, ...input } = { ...GRPO_REQUEST, recipe: { method: 'grpo' } };
      const w = world();
      const result = await run(w.handlers, input, 'no-reward');
      expect(result.status).toBe('FAILED');
      expect(JSON.parse(result.cause!)).toMatchObject({ errorType: 'RunRequestInvalid', errorMessage: expect.stringMatching(/- graders: recipe\.method "grpo" needs a reward source/) });
      expect(w.calls.Train).toBeUndefined();
    });
  });

  describe('an rloo run (RLHF against a registered reward model)', () => {
    // method rloo: a LoRA adapter trained online on prompt-only rows against the reward model a reward run registered;
    // the evaluation scores its answers with that reward model (the gate's reward gain) and the run's graders (the
    // trainer's real eval.json of an rloo adapter, test_rloo.py), and both gate it
    const REWARD_REQUEST = { ...REQUEST_WITHOUT_PROBE, baseModel: BASE_1B, recipe: { method: 'reward' } };
    const REWARD_RUN_ID = runIdFor(parseRunRequest(REWARD_REQUEST));
    const RLOO_REQUEST = {
      ...REQUEST_WITHOUT_PROBE,
      dataset: { name: 'chat-prompts', sha256: 'e'.repeat(64) },
      baseModel: BASE_1B,
      recipe: { method: 'rloo', rlooMaxCompletionLength: 128, rlooBeta: 0.02 },
      rewardModel: REGISTERED,
      graders: [HAS_A],
      thresholds: { minGraderMean: { has_a: 0.7 } },
    };
    const RLOO_RUN_ID = runIdFor(parseRunRequest(RLOO_REQUEST));

    test('is rewarded by the model a reward run registered: the reward_model channel and hyperparameters, gated on that reward\'s gain and its graders, registered with the reward model in its lineage', async () => {
      // GIVEN the registry holding what a real reward run's Register state registered
      const registry = await registryAfter(REWARD_REQUEST, REWARD_RUN_ID, rewardTrainerReport());
      const w = world(evalJson(rlTrainerReport('rloo')), {}, RLOO_RUN_ID, registry);
      // WHEN
      const result = await run(w.handlers, RLOO_REQUEST, RLOO_RUN_ID);
      // THEN
      expect([result.status, result.error, result.cause]).toEqual(['SUCCEEDED', undefined, undefined]);
      expect(result.entered).toEqual(['PlanRun', 'ValidateDataset', 'Train', 'Evaluate', 'ReadEvalReport', 'Gate', 'Register', 'NotifySucceeded', 'Succeeded']);
      expect(registry.described).toEqual([REGISTERED]);
      expect(w.calls.ValidateDataset[0]).toMatchObject({ method: 'rloo' });
      // the Train state's CreateTrainingJob, as sent (valid against SageMaker's API model: run() checks it)
      const train = result.requests.find((r) => r.state === 'Train')!.params as any;
      expect(train.HyperParameters).toMatchObject({
        method: 'rloo', reward_model: REGISTERED, rloo_max_completion_length: '128', rloo_beta: '0.02', rloo_num_generations: '4', rloo_epsilon: '0.2', lora_r: '16',
      });
      for (const key of ['graders', 'merge', 'reward_weights']) expect(train.HyperParameters).not.toHaveProperty(key);
      // the reward model's files: the model data the reward run registered (its training job's output/model/)
      const rewardTraining = `tuneyard-${REWARD_RUN_ID}-train`;
      const channels = Object.fromEntries(train.InputDataConfig.map((c: any) => [c.ChannelName, c.DataSource.S3DataSource.S3Uri]));
      expect(channels).toEqual({
        train: 's3://data-bucket/datasets/chat-prompts/' + 'e'.repeat(64) + '/train.jsonl',
        eval: 's3://data-bucket/datasets/chat-prompts/' + 'e'.repeat(64) + '/eval.jsonl',
        model: `${BASE_1B}`,
        reward_model: `s3://data-bucket/artifacts/${REWARD_RUN_ID}/${rewardTraining}/output/model/`,
      });
      // the graders evaluate it (the evaluation job's graders channel) and the reward model scores its answers (the
      // evaluation job's reward_model channel, the training job's): gated on the reward gain and has_a
      const evaluate = result.requests.find((r) => r.state === 'Evaluate')!.params as any;
      const evalChannels = Object.fromEntries(evaluate.InputDataConfig.map((c: any) => [c.ChannelName, c.DataSource.S3DataSource.S3Uri]));
      expect(Object.keys(evalChannels)).toEqual(['model', 'adapter', 'eval', 'graders', 'reward_model']);
      expect(evalChannels.reward_model).toBe(channels.reward_model);
      expect(evaluate.HyperParameters).toMatchObject({ method: 'rloo' });
      expect(JSON.parse(w.written.get(`data-bucket/eval-reports/${RLOO_RUN_ID}/graders.json`)!.body)).toEqual([HAS_A]);
      expect(result.output.plan.thresholds).toEqual({ maxForgettingIncrease: 0.1, minGraderMean: { has_a: 0.7 }, minRewardGain: 0 });
      expect(result.output.report).toMatchObject({ passed: true, summary: expect.stringMatching(/reward_gain=[0-9.]+ \(mean reward -?[0-9.]+ -> -?[0-9.]+ on 20 answers; min 0\)/) });
      // the registered model says what it is and what rewarded it
      const registered = result.requests.find((r) => r.state === 'Register')!.params as any;
      expect(registered.CustomerMetadataProperties).toMatchObject({ method: 'rloo', kind: 'generative', rewardModel: REGISTERED, runId: RLOO_RUN_ID });
    });

    test('a reward run, and every run without a reward model, is registered with rewardModel none', async () => {
      const w = world(evalJson(rewardTrainerReport()), {}, REWARD_RUN_ID);
      const result = await run(w.handlers, REWARD_REQUEST, REWARD_RUN_ID);
      expect((result.requests.find((r) => r.state === 'Register')!.params as any).CustomerMetadataProperties).toMatchObject({ kind: 'reward', rewardModel: 'none' });
    });

    test('a model that is not a reward model is refused as RunRequestInvalid before anything runs, naming the fix', async () => {
      // GIVEN the registry holding what a qlora run registered (kind=generative) under that version
      const registry = await registryAfter(REQUEST, RUN_ID, trainerReport(true));
      const w = world(evalJson(rlTrainerReport('rloo')), {}, RLOO_RUN_ID, registry);
      const result = await run(w.handlers, RLOO_REQUEST, RLOO_RUN_ID);
      expect(result.error).toBe('RunRequestInvalid');
      expect(JSON.parse(result.cause!).errorMessage).toMatch(/^rewardModel: ".*tuneyard-models\/1" is registered as kind=generative, not as a reward model \(kind=reward\); an rloo run is optimised against a method "reward" run's model/);
      expect(result.entered).toEqual(['PlanRun', 'NotifyRunRequestInvalid', 'RunRequestInvalid']);
      expect(w.calls.Train).toBeUndefined();
    });

    test('without a reward model it fails as RunRequestInvalid before anything runs, saying how to get one', async () => {
      const { rewardModel: _rm, ...input } = RLOO_REQUEST;
      const w = world();
      const result = await run(w.handlers, input, 'no-reward-model');
      expect(result.error).toBe('RunRequestInvalid');
      expect(JSON.parse(result.cause!).errorMessage).toMatch(/- rewardModel: missing; recipe\.method "rloo" \(RLHF\) .*train one with a method "reward" run/);
      expect(w.calls.Train).toBeUndefined();
    });
  });

  describe('every method, end to end', () => {
    // The smallest valid request of each method, its dataset (in the format the method trains on, validated by the real
    // ValidateDataset handler) and the eval.json the trainer wrote for a model of that method. Typed by Method, and the
    // test runs over METHODS: a method added later without a case here fails to compile and fails the test.
    const chat = (question: string, answer: string) => ({ messages: [{ role: 'user', content: question }, { role: 'assistant', content: answer }] });
    const pair = (prompt: string, chosen: string, rejected: string) => ({ prompt, chosen, rejected });
    const prompt = (question: string) => ({ messages: [{ role: 'user', content: question }], reference: 'a' });
    const DATASETS = {
      chat: { train: [chat('Capital of France?', 'Paris.'), chat('2 + 2?', '4')], eval: [chat('Capital of Italy?', 'Rome.')] },
      preference: { train: [pair('2 + 2?', '4', '5'), pair('Capital of Italy?', 'Rome.', 'Milan.')], eval: [pair('Is water wet?', 'Yes.', 'No.')] },
      // online RL trains on prompts; its eval set holds reference answers (the evaluation's eval loss)
      prompts: { train: [prompt('Name a fruit.'), prompt('Name a colour.')], eval: [chat('Name an animal.', 'A cat.')] },
    };
    interface MethodCase {
      readonly request: Record<string, unknown>;
      readonly dataset: keyof typeof DATASETS;
      /** The format ValidateDataset reads the dataset as. */
      readonly format: string;
      /** The trainer's eval.json for a model of this method. */
      readonly report: () => any;
      /** The Train job's channels. */
      readonly channels: string[];
      /** The Evaluate job's channels: the training output (adapter) and what scores it. */
      readonly evalChannels: string[];
      /** The figure the gate passed the method on (ReadEvalReport's summary). */
      readonly gate: RegExp;
      readonly kind: 'generative' | 'reward';
    }
    const dataset = (name: string) => ({ name, sha256: 'f'.repeat(64) });
    const CASES: Record<Method, MethodCase> = {
      sft: { request: { dataset: dataset('chats'), baseModel: BASE_1B, recipe: { method: 'sft' } }, dataset: 'chat', format: 'chat', report: () => trainerReport(false), channels: ['train', 'eval', 'model'], evalChannels: ['model', 'adapter', 'eval'], gate: /eval_loss_ratio=0\.929 \(max 1\)/, kind: 'generative' },
      lora: { request: { dataset: dataset('chats'), baseModel: BASE_1B, recipe: { method: 'lora' } }, dataset: 'chat', format: 'chat', report: () => trainerReport(false), channels: ['train', 'eval', 'model'], evalChannels: ['model', 'adapter', 'eval'], gate: /eval_loss_ratio=0\.929 \(max 1\)/, kind: 'generative' },
      qlora: { request: { dataset: dataset('chats'), baseModel: BASE_1B, recipe: { method: 'qlora' } }, dataset: 'chat', format: 'chat', report: () => trainerReport(false), channels: ['train', 'eval', 'model'], evalChannels: ['model', 'adapter', 'eval'], gate: /eval_loss_ratio=0\.929 \(max 1\)/, kind: 'generative' },
      dpo: { request: { dataset: dataset('pairs'), baseModel: BASE_1B, recipe: { method: 'dpo' } }, dataset: 'preference', format: 'preference', report: dpoTrainerReport, channels: ['train', 'eval', 'model'], evalChannels: ['model', 'adapter', 'eval'], gate: /preference_accuracy=[0-9.]+ \(\d+\/\d+ pairs; min 0\.5\)/, kind: 'generative' },
      reward: { request: { dataset: dataset('pairs'), baseModel: BASE_1B, recipe: { method: 'reward' } }, dataset: 'preference', format: 'preference', report: rewardTrainerReport, channels: ['train', 'eval', 'model'], evalChannels: ['model', 'adapter', 'eval'], gate: /preference_accuracy=[0-9.]+ \(\d+\/\d+ pairs; min 0\.5\)/, kind: 'reward' },
      grpo: {
        request: { dataset: dataset('prompts'), baseModel: BASE_1B, recipe: { method: 'grpo' }, graders: [HAS_A] },
        dataset: 'prompts',
        format: 'chat',
        report: () => rlTrainerReport('grpo'),
        channels: ['train', 'eval', 'model', 'graders'],
        evalChannels: ['model', 'adapter', 'eval', 'graders'],
        // the default gate of online RL: the run's reward (has_a) of the tuned answers against the base's
        gate: /reward_gain=0\.55 \(mean reward 0\.45 -> 1 on 20 answers; min 0\)/,
        kind: 'generative',
      },
      rloo: {
        request: { dataset: dataset('prompts'), baseModel: BASE_1B, recipe: { method: 'rloo' }, rewardModel: REGISTERED },
        dataset: 'prompts',
        format: 'chat',
        report: () => rlTrainerReport('rloo'),
        channels: ['train', 'eval', 'model', 'reward_model'],
        evalChannels: ['model', 'adapter', 'eval', 'reward_model'],
        // the default gate of online RL: the reward model's mean score of the tuned answers against the base's
        gate: /reward_gain=6\.634 \(mean reward -2\.822 -> 3\.812 on 20 answers; min 0\)/,
        kind: 'generative',
      },
    };

    /** The data bucket holding one dataset version (train.jsonl, eval.jsonl), as the ValidateDataset handler reads and writes it. */
    function datasetBucket(request: any, files: { train: unknown[]; eval: unknown[] }): DatasetS3 {
      const prefix = datasetVersionPrefix(request.dataset.name, request.dataset.sha256);
      const jsonl = (rows: unknown[]) => Buffer.from(rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
      const objects = new Map<string, Buffer>([[`${prefix}train.jsonl`, jsonl(files.train)], [`${prefix}eval.jsonl`, jsonl(files.eval)]]);
      return {
        send: async (command) => {
          if (command instanceof ListObjectsV2Command) return { Contents: [...objects.keys()].filter((k) => k.startsWith(command.input.Prefix!)).map((Key) => ({ Key })) };
          const key = command.input.Key!;
          if (command instanceof GetObjectCommand) return { Body: Readable.from([objects.get(key)!]) };
          objects.set(key, Buffer.from(command.input.Body as string));
          return {};
        },
      };
    }

    test('has a case for every method', () => {
      expect(Object.keys(CASES)).toEqual([...METHODS]);
    });

    test.each([...METHODS])('method %s: planned, validated, trained, evaluated, gated, registered and notified', async (method) => {
      // GIVEN the method's request, its dataset and (rloo) the registry holding a reward run's model
      const c = CASES[method];
      const runId = runIdFor(parseRunRequest(c.request));
      const registry = method === 'rloo' ? await registryAfter(CASES.reward.request, runIdFor(parseRunRequest(CASES.reward.request)), CASES.reward.report()) : undefined;
      const w = world(evalJson(c.report()), {}, runId, registry);
      const bucket = datasetBucket(c.request, DATASETS[c.dataset]);
      w.handlers.ValidateDataset = lambdaTask((event) => validateDatasetVersion(event, { s3: bucket, bucket: 'data-bucket' }));
      // WHEN
      const result = await run(w.handlers, c.request, runId);
      // THEN
      expect([result.status, result.error, result.cause]).toEqual(['SUCCEEDED', undefined, undefined]);
      expect(result.entered).toEqual(['PlanRun', 'ValidateDataset', 'Train', 'Evaluate', 'ReadEvalReport', 'Gate', 'Register', 'NotifySucceeded', 'Succeeded']);
      const sent = (state: string) => result.requests.find((r) => r.state === state)!.params as any;
      expect(JSON.parse(sent('ValidateDataset').Payload)).toMatchObject({ method, datasetName: (c.request as any).dataset.name });
      expect(result.output.validation).toMatchObject({ ok: true, format: c.format, rows: DATASETS[c.dataset].train.length, evalRows: DATASETS[c.dataset].eval.length });
      const train = sent('Train');
      expect(train.HyperParameters.method).toBe(method);
      expect(train.InputDataConfig.map((channel: any) => channel.ChannelName)).toEqual(c.channels);
      // the evaluation job evaluates what the training job wrote, and ReadEvalReport reads the evaluation job's report
      const evaluate = sent('Evaluate');
      expect(evaluate.HyperParameters.method).toBe(method);
      expect(evaluate.InputDataConfig.map((channel: any) => channel.ChannelName)).toEqual(c.evalChannels);
      const trained = `${train.OutputDataConfig.S3OutputPath}${train.TrainingJobName}/output/model/`;
      expect(evaluate.InputDataConfig.find((channel: any) => channel.ChannelName === 'adapter').DataSource.S3DataSource.S3Uri).toBe(trained);
      expect(w.s3.keys).toEqual([`data-bucket/eval-reports/${runId}/${evaluate.TrainingJobName}/output/model/eval.json`]);
      expect(result.output.report).toMatchObject({ passed: true, summary: expect.stringMatching(c.gate) });
      expect(sent('Register').CustomerMetadataProperties).toMatchObject({ runId, method, kind: c.kind, rewardModel: method === 'rloo' ? REGISTERED : 'none', trainingJobName: train.TrainingJobName });
      expect(w.sns.messages).toEqual([{ subject: 'Tuneyard run succeeded', message: expect.objectContaining({ outcome: 'SUCCEEDED', runId }) }]);
    });
  });

  test('a report whose ratio disagrees with its own losses is refused, not trusted (EvalReportInvalid)', async () => {
    // GIVEN the trainer's report for a model 30% worse than the base, whose ratio was rewritten to 0.8
    const report = movedReport(true, { evalLossRatio: 1.3 });
    report.eval_loss_ratio = 0.8;
    const w = world(evalJson(report));
    // WHEN
    const result = await run(w.handlers);
    // THEN
    expect(result.error).toBe('EvalReportInvalid');
    expect(JSON.parse(result.cause!).errorMessage).toMatch(/eval_loss_ratio 0\.8 disagrees with the losses it summarises .* = 1\.3\)/);
    expect(w.calls.Register).toBeUndefined();
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

  test.each([
    [
      'out of GPU memory',
      { TrainingJobStatus: 'Failed', SecondaryStatus: 'Failed', FailureReason: 'AlgorithmError: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB' },
      'Tuneyard.TrainingFailed',
      /CUDA out of memory.* Fix: The GPU ran out of memory: lower recipe\.batchSize/,
    ],
    [
      'stopped after waiting for spot capacity',
      { TrainingJobStatus: 'Stopped', SecondaryStatus: 'MaxWaitTimeExceeded' },
      'Tuneyard.TrainingStopped',
      /is Stopped \(MaxWaitTimeExceeded\).* Fix: No spot capacity came within MaxWaitTimeInSeconds: run again with spot false/,
    ],
    [
      'missing its base-model channel',
      { TrainingJobStatus: 'Failed', SecondaryStatus: 'Failed', FailureReason: 'ClientError: No S3 objects found under S3 URL "s3://data-bucket/base-models/llama-3.1-8b/" given in input data source.' },
      'Tuneyard.TrainingFailed',
      /No S3 objects found.* Fix: A channel is missing or empty: the base model must be a complete Hugging Face model folder/,
    ],
  ])('a training job %s fails the run with its FailureReason and a fix, not the raw describe', async (_, describe, error, cause) => {
    // GIVEN a job that ended badly; the .sync Task reports the whole DescribeTrainingJob (several KB)
    const ended = { TrainingJobName: TRAINING_JOB, ...describe };
    const w = world(evalJson(), { [TRAINING_JOB]: [ended] });
    w.handlers.Train = failingFirst(Infinity, jobEnded(ended), () => ({}));
    // WHEN
    const result = await run(w.handlers);
    // THEN
    expect([result.status, result.error]).toEqual(['FAILED', error]);
    expect(result.cause).toMatch(cause);
    expect(result.cause!.length).toBeLessThanOrEqual(MAX_CAUSE_LENGTH);
    expect(result.entered).toEqual(['PlanRun', 'ValidateDataset', 'Train', 'InspectTraining', 'TrainingJobOutcome', 'TrainingJobFailed', 'NotifyTrainingFailed', 'TrainingFailed']);
    // A failed job is never retried: a second job would cost the same GPU hours and fail the same way.
    expect((w.handlers.Train as any).calls).toBe(1);
    expect(w.sns.messages[0].message).toMatchObject({ outcome: 'FAILED', stage: 'Train', error, cause: result.cause });
    expect(w.calls.Evaluate).toBeUndefined();
  });

  test('a create whose answer was lost is adopted: the run waits for the job that runs instead of failing on ResourceInUse', async () => {
    // GIVEN CreateTrainingJob reached SageMaker but its answer was lost; Step Functions reports an API error
    const w = world(evalJson(), {
      [TRAINING_JOB]: [
        { TrainingJobName: TRAINING_JOB, TrainingJobStatus: 'InProgress', SecondaryStatus: 'Training' },
        { TrainingJobName: TRAINING_JOB, TrainingJobStatus: 'InProgress', SecondaryStatus: 'Uploading' },
        { TrainingJobName: TRAINING_JOB, TrainingJobStatus: 'Completed', SecondaryStatus: 'Completed', ModelArtifacts: { S3ModelArtifacts: ARTIFACTS } },
      ],
    });
    const train = failingFirst(Infinity, apiError('InternalFailure', 'We encountered an internal error. Please try again.'), () => ({}));
    w.handlers.Train = train;
    // WHEN
    const result = await run(w.handlers);
    // THEN no second create; the adopted job's result is what the rest of the run reads
    expect([result.status, result.error, result.cause]).toEqual(['SUCCEEDED', undefined, undefined]);
    expect(train.calls).toBe(1);
    expect(w.sagemaker.described).toEqual([TRAINING_JOB, TRAINING_JOB, TRAINING_JOB]);
    expect(result.entered.slice(2, 11)).toEqual([
      'Train', 'InspectTraining', 'TrainingJobOutcome', 'TrainingJobRunning', 'InspectTraining', 'TrainingJobOutcome', 'TrainingJobRunning', 'InspectTraining', 'TrainingJobOutcome',
    ]);
    expect(result.entered).toContain('TrainingJobCompleted');
    expect(w.calls.Evaluate[0].InputDataConfig).toEqual(expect.arrayContaining([expect.objectContaining({ ChannelName: 'adapter', DataSource: { S3DataSource: expect.objectContaining({ S3Uri: ARTIFACTS }) } })]));
    expect(result.output.training).toEqual({ TrainingJobName: TRAINING_JOB, TrainingJobStatus: 'Completed', SecondaryStatus: 'Completed', ModelArtifacts: { S3ModelArtifacts: ARTIFACTS } });
  });

  test('a throttled create is tried again after the inspection finds no job, and the run succeeds', async () => {
    const w = world();
    const train = failingFirst(1, apiError('ThrottlingException', 'Rate exceeded'), w.handlers.Train);
    const validate = failingFirst(1, () => stepFunctionsError('Lambda.TooManyRequestsException', 'Rate exceeded'), w.handlers.ValidateDataset);
    w.handlers.Train = train;
    w.handlers.ValidateDataset = validate;
    const result = await run(w.handlers);
    expect(result.status).toBe('SUCCEEDED');
    expect(result.retried).toEqual(['ValidateDataset']);
    expect(validate.calls).toBe(2);
    expect(train.calls).toBe(2);
    expect(result.entered.slice(2, 7)).toEqual(['Train', 'InspectTraining', 'TrainingJobOutcome', 'TrainingCreateThrottled', 'Train']);
  });

  test(`a create throttled ${MAX_CREATE_RETRIES + 1} times fails the run, notified`, async () => {
    const w = world();
    const train = failingFirst(Infinity, apiError('ThrottlingException', 'Rate exceeded'), () => ({}));
    w.handlers.Train = train;
    const result = await run(w.handlers);
    expect(result.error).toBe('SageMaker.AmazonSageMakerException');
    expect(train.calls).toBe(MAX_CREATE_RETRIES + 1);
    expect(result.cause).toMatch(/still refused after 4 retries/);
  });

  test.each([
    ['ResourceLimitExceeded', 'The account-level service limit is 0 Instances', /Fix: The account's SageMaker quota/],
    ['ValidationException', 'Invalid hyperparameter value', /Fix: SageMaker refused the request as invalid/],
  ])('a create refused with %s fails at once with a fix, never retried', async (code, message, fix) => {
    const w = world();
    const train = failingFirst(Infinity, apiError(code, message), () => ({}));
    w.handlers.Train = train;
    const result = await run(w.handlers);
    expect(result.error).toBe('SageMaker.AmazonSageMakerException');
    expect(train.calls).toBe(1);
    expect(result.cause).toContain(`Error Code: ${code}`);
    expect(result.cause).toMatch(fix);
    expect(result.entered.slice(-2)).toEqual(['NotifyTrainingFailed', 'TrainingFailed']);
  });

  test('a failed evaluation job is explained the same way', async () => {
    const ended = { TrainingJobName: `tuneyard-${RUN_ID}-eval`, TrainingJobStatus: 'Failed', SecondaryStatus: 'Failed', FailureReason: 'AlgorithmError: CUDA out of memory' };
    const w = world(evalJson(), { [`tuneyard-${RUN_ID}-eval`]: [ended] });
    w.handlers.Evaluate = failingFirst(Infinity, jobEnded(ended), () => ({}));
    const result = await run(w.handlers);
    expect(result.error).toBe('Tuneyard.EvaluationFailed');
    expect(result.cause).toMatch(/The evaluation job .* is Failed: AlgorithmError: CUDA out of memory Fix: The GPU ran out of memory/);
    expect(result.entered.slice(-2)).toEqual(['NotifyEvaluationFailed', 'EvaluationFailed']);
  });

  test('a failing inspection does not hide the job failure it was looking at', async () => {
    const w = world();
    w.handlers.Train = failingFirst(Infinity, jobEnded({ TrainingJobName: TRAINING_JOB, TrainingJobStatus: 'Failed', FailureReason: 'AlgorithmError: boom' }), () => ({}));
    w.handlers.InspectTraining = () => {
      throw stepFunctionsError('Lambda.Unknown', 'The function crashed');
    };
    const result = await run(w.handlers);
    expect(result.error).toBe('States.TaskFailed');
    expect(result.cause).toContain('AlgorithmError: boom');
    expect(result.entered.slice(-2)).toEqual(['NotifyTrainingFailed', 'TrainingFailed']);
  });

  test('a missing eval report ends in EvalReportInvalid, registering nothing', async () => {
    const w = world();
    w.handlers.ReadEvalReport = lambdaTask((event) => readEvalReport(event, fakeS3({})));
    const result = await run(w.handlers);
    expect(result.error).toBe('EvalReportInvalid');
    expect(result.entered.slice(-2)).toEqual(['NotifyEvalReportInvalid', 'EvalReportInvalid']);
    expect(w.calls.Register).toBeUndefined();
  });

  test('a throttled registration is retried (through the SDK integration throttling is SageMaker.SageMakerException) and registers once', async () => {
    const w = world();
    const tokens: string[] = [];
    const register = failingFirst(1, () => stepFunctionsError('SageMaker.SageMakerException', 'Rate exceeded (Service: SageMaker, Status Code: 400, Request ID: 9a)'), w.handlers.Register);
    w.handlers.Register = (input) => {
      tokens.push(input.ClientToken);
      return register(input);
    };
    const result = await run(w.handlers);
    expect(result.status).toBe('SUCCEEDED');
    expect(result.entered.slice(result.entered.indexOf('Register'), result.entered.indexOf('Register') + 5)).toEqual([
      'Register', 'RegisterThrottled', 'RegisterFirstRetry', 'RegisterThrottledWait', 'Register',
    ]);
    // The retry carries the same idempotency token, so SageMaker answers it with the first registration.
    expect(tokens).toHaveLength(2);
    expect(tokens[0]).toMatch(/^[0-9a-f]{32}$/);
    expect(tokens[1]).toBe(tokens[0]);
  });

  test('a registration refused as invalid (the same SageMaker.SageMakerException) is never retried', async () => {
    const w = world();
    const register = failingFirst(Infinity, () => stepFunctionsError('SageMaker.SageMakerException', 'Value at customerMetadataProperties failed to satisfy constraint (Service: SageMaker, Status Code: 400, Request ID: 9b) ValidationException'), () => ({}));
    w.handlers.Register = register;
    const result = await run(w.handlers);
    expect(result.error).toBe('SageMaker.SageMakerException');
    expect(register.calls).toBe(1);
    expect(result.entered.slice(-4)).toEqual(['Register', 'RegisterThrottled', 'NotifyRegistrationFailed', 'RegistrationFailed']);
  });

  test(`a registration throttled ${REGISTER_THROTTLE_RETRIES + 1} times fails, notified`, async () => {
    const w = world();
    const register = failingFirst(Infinity, () => stepFunctionsError('SageMaker.SageMakerException', 'Rate exceeded (Service: SageMaker, Status Code: 400, Request ID: 9c)'), () => ({}));
    w.handlers.Register = register;
    const result = await run(w.handlers);
    expect(result.error).toBe('SageMaker.SageMakerException');
    expect(register.calls).toBe(REGISTER_THROTTLE_RETRIES + 1);
    expect(result.entered.slice(-2)).toEqual(['NotifyRegistrationFailed', 'RegistrationFailed']);
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
