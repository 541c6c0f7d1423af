import { ApiRequest, expectValidRequests, validateRequests } from '../test/support/api-model';
import { CUSTOMER_METADATA_VALUE, HYPER_PARAMETER_VALUE } from './api-limits';
import { renderHyperParameters } from './recipe';
import { lineageRecipe, parseRunRequest, planRun, PlanSettings, RunPlan, runIdFor, RUN_ID_MAX_LENGTH } from './run-request';

const SHA = 'a'.repeat(64);
const SETTINGS: PlanSettings = {
  bucketName: 'tuneyard-data',
  volumeKmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/volume',
  outputKmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/output',
  allowHubModels: false,
};

function request(overrides: Record<string, unknown> = {}) {
  return parseRunRequest({
    dataset: { name: 'support-chats', sha256: SHA },
    baseModel: 's3://tuneyard-data/base-models/llama-3.1-8b/',
    // batch 2: at the default 4 x 2048 tokens the fp32 logits of Llama 3's 128k vocabulary do not fit a 24 GiB A10G
    recipe: { method: 'qlora', batchSize: 2 },
    ...overrides,
  });
}

describe('parseRunRequest', () => {
  test('applies the defaults of every optional field', () => {
    expect(request()).toMatchObject({
      instanceType: 'ml.g5.2xlarge',
      instanceCount: 1,
      spot: true,
      maxRuntimeHours: 24,
      thresholds: { maxEvalLossRatio: 1.0, maxForgettingIncrease: 0.1 },
      autoApprove: false,
      deploy: null,
    });
  });

  test('fails with path-named errors that give the fix', () => {
    expect(() => parseRunRequest({ dataset: { name: 'Support Chats', sha256: 'abc' }, baseModel: 'x', recipe: { method: 'rlhf' } })).toThrow(
      /invalid RunRequest:\n {2}- dataset\.name: must be 1-63 lower-case .* \(got "Support Chats"\)\n {2}- dataset\.sha256: must be the 64 lower-case hex characters .* \(got "abc"\)\n {2}- baseModel: must be an s3:\/\/ folder .*\n {2}- recipe\.method: /,
    );
    expect(() => request({ spot: 'yes' })).toThrow(/spot: .*expected boolean.* \(got "yes"\)/);
    expect(() => request({ instanceCount: 0 })).toThrow(/instanceCount: must be at least 1 \(got 0\)/);
    expect(() => request({ recipe: { method: 'sft', loraR: 8 } })).toThrow(/recipe\.loraR: loraR applies to method lora or qlora or dpo or reward or grpo or rloo only and has no effect with method "sft"; remove it/);
    expect(() => request({ recipe: { method: 'qlora', distribution: 'deepspeed' } })).toThrow(/recipe\.distribution: method "qlora" with distribution "deepspeed" is not supported/);
    expect(() => request({ colour: 'red' })).toThrow(/colour: unknown field; remove it/);
    expect(() => request({ recipe: { method: 'lora', lora_r: 8 } })).toThrow(/ {2}- recipe: unknown field "lora_r"; did you mean "loraR"\?/);
    expect(() => request({ recipe: { method: 'lora', useDora: true }, deploy: { endpointName: 'chat', adapterName: 'support' } })).toThrow(
      /recipe\.useDora: vLLM cannot serve a DoRA adapter .*; remove useDora, or set recipe\.merge true and deploy the merged model/,
    );
    expect(request({ recipe: { method: 'lora', useDora: true, merge: true }, deploy: { endpointName: 'chat' } }).recipe.useDora).toBe(true);
    expect(() => request({ maxRuntimeHours: 0.0001 })).toThrow(/maxRuntimeHours: must be at least 1\/60 hour \(one minute\) \(got 0\.0001\)/);
  });

  test('the gate of a dpo run is its preference accuracy (default 0.5), not its eval loss ratio', () => {
    expect(request({ recipe: { method: 'dpo' } }).thresholds).toEqual({ maxForgettingIncrease: 0.1, minPreferenceAccuracy: 0.5 });
    expect(request({ recipe: { method: 'dpo' }, thresholds: { minPreferenceAccuracy: 0.65 } }).thresholds).toEqual({ maxForgettingIncrease: 0.1, minPreferenceAccuracy: 0.65 });
    // a ratio the request asks for is checked too (for dpo: the loss of the chosen responses)
    expect(request({ recipe: { method: 'dpo' }, thresholds: { maxEvalLossRatio: 1.2 } }).thresholds).toEqual({ maxEvalLossRatio: 1.2, maxForgettingIncrease: 0.1, minPreferenceAccuracy: 0.5 });
    for (const method of ['sft', 'lora', 'qlora']) {
      expect(request({ recipe: { method } }).thresholds).toEqual({ maxEvalLossRatio: 1.0, maxForgettingIncrease: 0.1 });
    }
  });

  test('fails when a run that is not grpo or rloo asks for a reward gain, naming the threshold of its method', () => {
    expect(() => request({ thresholds: { minRewardGain: 0.1 } })).toThrow(
      /thresholds\.minRewardGain: applies to recipe\.method "grpo" or "rloo" only \(a qlora run is trained on no reward that the evaluation could score\); remove it, or use maxEvalLossRatio \(got 0\.1\)/,
    );
    expect(() => request({ recipe: { method: 'dpo' }, thresholds: { minRewardGain: 0 } })).toThrow(/thresholds\.minRewardGain: applies to recipe\.method "grpo" or "rloo" only .*; remove it, or use minPreferenceAccuracy/);
  });

  test('fails when a run that is not dpo asks for a preference accuracy, or one outside 0-1', () => {
    expect(() => request({ thresholds: { minPreferenceAccuracy: 0.6 } })).toThrow(
      /thresholds\.minPreferenceAccuracy: applies to recipe\.method "dpo" or "reward" only \(the evaluation of a qlora run has no preference pairs\); remove it, or use maxEvalLossRatio \(got 0\.6\)/,
    );
    expect(() => request({ recipe: { method: 'dpo' }, thresholds: { minPreferenceAccuracy: 1.5 } })).toThrow(/thresholds\.minPreferenceAccuracy: must be from 0 to 1 \(got 1\.5\)/);
  });

  describe('thresholds on what the evaluation measures', () => {
    const graders = [
      { type: 'string_check', name: 'exact', input: '{{ sample.output_text }}', reference: '{{ item.reference }}', operation: 'eq' },
      { type: 'regex', name: 'has-ticket', input: '{{ sample.output_text }}', pattern: 'TICKET-[0-9]+' },
    ];
    const benchmarkDatasets = [{ name: 'mmlu-sample', sha256: 'b'.repeat(64) }];

    test('are kept beside the method\'s gate when the run measures them', () => {
      const thresholds = { minGraderMean: { exact: 0.8, 'has-ticket': 0.9 }, maxBenchmarkDrop: 0.02 };
      expect(request({ graders, benchmarkDatasets, thresholds }).thresholds).toEqual({ ...thresholds, maxEvalLossRatio: 1.0, maxForgettingIncrease: 0.1 });
      expect(request({ judge: { modelId: 'amazon.nova-pro-v1:0' }, thresholds: { minJudgeWinRate: 0.55 } }).thresholds).toMatchObject({ minJudgeWinRate: 0.55 });
    });

    test('fails when a grader threshold names a grader the run does not define, with the closest name', () => {
      expect(() => request({ graders, thresholds: { minGraderMean: { exakt: 0.8 } } })).toThrow(
        /thresholds\.minGraderMean\.exakt: names grader "exakt", which the run does not define \(its graders: exact, has-ticket\); did you mean "exact"\?/,
      );
      expect(() => request({ thresholds: { minGraderMean: { exact: 0.8 } } })).toThrow(/thresholds\.minGraderMean\.exact: names grader "exact", but the run defines no graders; add it to graders, or remove the threshold/);
    });

    test('fails when a judge or benchmark threshold has nothing to measure, or is out of range', () => {
      expect(() => request({ thresholds: { minJudgeWinRate: 0.5 } })).toThrow(/thresholds\.minJudgeWinRate: needs a judge, and the run configures none; add judge, or remove the threshold/);
      expect(() => request({ thresholds: { maxBenchmarkDrop: 0.02 } })).toThrow(/thresholds\.maxBenchmarkDrop: needs benchmarks, and the run names no benchmarkDatasets/);
      expect(() => request({ benchmarkDatasets, thresholds: { maxBenchmarkDrop: 2 } })).toThrow(/thresholds\.maxBenchmarkDrop: must be from 0 to 1 \(a fraction: 0\.02 is 2 accuracy points\)/);
    });

    test('planRun hands the gate the planned benchmarks by name', () => {
      const plan = planRun(request({ benchmarkDatasets, thresholds: { maxBenchmarkDrop: 0.02 } }), SETTINGS);
      expect(plan.benchmarks).toEqual(['mmlu-sample']);
      expect(plan.thresholds).toMatchObject({ maxBenchmarkDrop: 0.02 });
      expect(planRun(request(), SETTINGS).benchmarks).toEqual([]);
    });
  });
});

describe('runIdFor', () => {
  test('is deterministic, key-order independent and changes with the request', () => {
    const a = runIdFor(request({ recipe: { method: 'qlora', loraR: 8, learningRate: 1e-4 } }));
    const b = runIdFor(request({ recipe: { learningRate: 1e-4, method: 'qlora', loraR: 8 } }));
    expect(a).toBe(b);
    expect(a).toMatch(/^support-chats-qlora-[0-9a-f]{12}$/);
    expect(runIdFor(request({ recipe: { method: 'qlora', loraR: 16, learningRate: 1e-4 } }))).not.toBe(a);
  });

  test('a request that is not dpo keeps the run id it had before dpo runs got their own gate', () => {
    // the id of this request when every method defaulted to maxEvalLossRatio 1 (its hash covers the defaults applied)
    expect(runIdFor(request({ recipe: { method: 'qlora' } }))).toBe('support-chats-qlora-8fb522b18c27');
    expect(runIdFor(request({ recipe: { method: 'qlora' }, thresholds: { maxEvalLossRatio: 1, maxForgettingIncrease: 0.1 } }))).toBe('support-chats-qlora-8fb522b18c27');
  });

  test('stays within 48 characters of [a-z0-9-] for the longest dataset name', () => {
    const id = runIdFor(request({ dataset: { name: `a.b_${'x'.repeat(59)}`, sha256: SHA } }));
    expect(id.length).toBeLessThanOrEqual(RUN_ID_MAX_LENGTH);
    expect(id).toMatch(/^[a-z0-9][a-z0-9-]*-qlora-[0-9a-f]{12}$/);
  });
});

describe('planRun', () => {
  test('renders the CreateTrainingJob fragments of a spot run on an NVMe instance', () => {
    // GIVEN / WHEN
    const plan = planRun(request(), SETTINGS);
    // THEN
    expect(plan.trainingJobName).toBe(`tuneyard-${plan.runId}-train`);
    expect(plan.evaluationJobName).toBe(`tuneyard-${plan.runId}-eval`);
    expect(plan.trainingJobName.length).toBeLessThanOrEqual(63);
    expect(plan.resourceConfig).toEqual({ InstanceType: 'ml.g5.2xlarge', InstanceCount: 1, VolumeSizeInGB: expect.any(Number) });
    expect(plan.resourceConfig).not.toHaveProperty('VolumeKmsKeyId');
    expect(plan.enableManagedSpotTraining).toBe(true);
    expect(plan.stoppingCondition.MaxRuntimeInSeconds).toBe(24 * 3600);
    expect(plan.stoppingCondition.MaxWaitTimeInSeconds).toBeGreaterThan(plan.stoppingCondition.MaxRuntimeInSeconds);
    expect(plan.checkpointConfig).toEqual({ S3Uri: `s3://tuneyard-data/checkpoints/${plan.runId}/`, LocalPath: '/opt/ml/checkpoints' });
    expect(plan.outputDataConfig).toEqual({ S3OutputPath: `s3://tuneyard-data/artifacts/${plan.runId}/`, KmsKeyId: SETTINGS.outputKmsKeyArn, CompressionType: 'NONE' });
    expect(plan.outputS3Uri).toBe(`s3://tuneyard-data/artifacts/${plan.runId}/`);
    expect(plan.evalReportS3Uri).toBe(`s3://tuneyard-data/eval-reports/${plan.runId}/`);
    expect(plan.evalReport.key).toBe(`eval-reports/${plan.runId}/${plan.evaluationJobName}/output/model/eval.json`);
    expect(plan.datasetS3Uri).toBe(`s3://tuneyard-data/datasets/support-chats/${SHA}/`);
    expect(plan.inputDataConfig.map((c) => [c.ChannelName, c.DataSource.S3DataSource.S3Uri])).toEqual([
      ['train', `s3://tuneyard-data/datasets/support-chats/${SHA}/train.jsonl`],
      ['eval', `s3://tuneyard-data/datasets/support-chats/${SHA}/eval.jsonl`],
      ['model', 's3://tuneyard-data/base-models/llama-3.1-8b/'],
    ]);
    expect(plan.evaluationInputDataConfig.map((c) => c.ChannelName)).toEqual(['model', 'adapter', 'eval']);
    expect(plan.evaluationInputDataConfig[1].DataSource.S3DataSource.S3Uri).toBe(plan.modelArtifactS3Uri);
    expect(plan.hyperParameters).toMatchObject({ method: 'qlora', base_model: 's3://tuneyard-data/base-models/llama-3.1-8b/', max_length: '2048' });
    expect(plan.enableNetworkIsolation).toBe(true);
    expect(plan.modelApprovalStatus).toBe('PendingManualApproval');
    expect(plan.preflight).toMatchObject({ fits: true, availableGiB: 24 });
    expect(plan.lineage).toMatchObject({ runId: plan.runId, datasetSha256: SHA, method: 'qlora', trainingJobName: plan.trainingJobName });
  });

  test('sets the volume KMS key only on instance types without local NVMe storage', () => {
    const plan = planRun(request({ instanceType: 'ml.p3.2xlarge', recipe: { method: 'qlora', batchSize: 1 } }), SETTINGS);
    expect(plan.resourceConfig.VolumeKmsKeyId).toBe(SETTINGS.volumeKmsKeyArn);
    expect(plan.evaluationResourceConfig.VolumeKmsKeyId).toBe(SETTINGS.volumeKmsKeyArn);
  });

  test('fails when the instance\'s GPUs are older than the training image\'s CUDA build runs on (V100 under the bundled trainer)', () => {
    const bundled = { ...SETTINGS, minComputeCapability: 7.5 };
    expect(() => planRun(request({ instanceType: 'ml.p3.2xlarge', recipe: { method: 'qlora', batchSize: 1 } }), bundled)).toThrow(
      /instanceType: ml\.p3\.2xlarge has V100 GPUs \(compute capability 7\.0\), which the training image's CUDA build cannot run \(it needs 7\.5 or later.*Use a newer GPU/,
    );
    // T4 (7.5) is the oldest the bundled trainer runs on; an image of the user's own is not checked
    expect(planRun(request({ instanceType: 'ml.g4dn.2xlarge', recipe: { method: 'qlora', batchSize: 1, maxLength: 1024 } }), bundled).resourceConfig.InstanceType).toBe('ml.g4dn.2xlarge');
    expect(planRun(request({ instanceType: 'ml.p3.2xlarge', recipe: { method: 'qlora', batchSize: 1 } }), SETTINGS).resourceConfig.InstanceType).toBe('ml.p3.2xlarge');
  });

  test('has no MaxWait when not spot', () => {
    const plan = planRun(request({ spot: false, maxRuntimeHours: 2 }), SETTINGS);
    expect(plan.enableManagedSpotTraining).toBe(false);
    expect(plan.stoppingCondition).toEqual({ MaxRuntimeInSeconds: 7200 });
  });

  test('adds the probe channel and approves automatically when asked', () => {
    const plan = planRun(request({ probeDataset: { name: 'general-probe', sha256: 'b'.repeat(64) }, autoApprove: true }), SETTINGS);
    expect(plan.evaluationInputDataConfig.map((c) => c.ChannelName)).toEqual(['model', 'adapter', 'eval', 'probe']);
    expect(plan.modelApprovalStatus).toBe('Approved');
  });

  test('adds a benchmark-<name> channel per benchmark dataset and passes the evaluation settings as hyperparameters', () => {
    // GIVEN two staged benchmark versions and a smaller generation budget
    const benchmarkDatasets = [
      { name: 'mmlu-mini', sha256: 'c'.repeat(64) },
      { name: 'hellaswag', sha256: 'd'.repeat(64) },
    ];
    // WHEN
    const plan = planRun(request({ benchmarkDatasets, evaluation: { maxGenerations: 50, maxNewTokens: 128, maxBenchmarkItems: 500 } }), SETTINGS);
    // THEN evaluate.py reads each channel's one file as the benchmark of the channel's name
    expect(plan.evaluationInputDataConfig.map((c) => c.ChannelName)).toEqual(['model', 'adapter', 'eval', 'benchmark-mmlu-mini', 'benchmark-hellaswag']);
    expect(plan.evaluationInputDataConfig[3].DataSource.S3DataSource.S3Uri).toBe(`s3://tuneyard-data/datasets/mmlu-mini/${'c'.repeat(64)}/train.jsonl`);
    expect(plan.evaluationHyperParameters).toMatchObject({ max_generations: '50', max_new_tokens: '128', max_benchmark_items: '500' });
    expect(plan.inputDataConfig.map((c) => c.ChannelName)).not.toContain('benchmark-mmlu-mini');
    // without them, the evaluation job takes its defaults
    expect(Object.keys(planRun(request(), SETTINGS).evaluationHyperParameters).sort()).toEqual(['base_model', 'method']);
  });

  test.each([
    [{ benchmarkDatasets: [{ name: 'mmlu', sha256: 'c'.repeat(64) }, { name: 'mmlu', sha256: 'd'.repeat(64) }] }, /benchmarkDatasets: must name each benchmark dataset once/],
    [{ benchmarkDatasets: Array.from({ length: 9 }, (_, i) => ({ name: `b${i}`, sha256: 'c'.repeat(64) })) }, /benchmarkDatasets: must list at most 8 benchmarks/],
    [{ evaluation: { maxGenerations: -1 } }, /evaluation\.maxGenerations: must be 0 or more/],
    [{ evaluation: { maxNewTokens: 1.5 } }, /evaluation\.maxNewTokens: must be a whole number/],
  ])('fails when the benchmarks or evaluation settings are invalid (%#)', (overrides, message) => {
    expect(() => planRun(request(overrides), SETTINGS)).toThrow(message);
  });

  test('fails when a Hub model is given and the plane does not allow it', () => {
    const hub = request({ baseModel: 'meta-llama/Llama-3.1-8B-Instruct' });
    expect(() => planRun(hub, SETTINGS)).toThrow(/is a Hugging Face Hub id, but training jobs run with network isolation .* Stage the model folder under s3:\/\/tuneyard-data\/base-models\//);
    const plan = planRun(hub, { ...SETTINGS, allowHubModels: true });
    expect(plan.enableNetworkIsolation).toBe(false);
    expect(plan.inputDataConfig.map((c) => c.ChannelName)).toEqual(['train', 'eval']);
  });

  test('fails when the base model is outside the base-models/ prefix', () => {
    expect(() => planRun(request({ baseModel: 's3://other-bucket/llama-3.1-8b/' }), SETTINGS)).toThrow(/outside the plane's base-models\/ prefix/);
  });

  test('fails when the run does not fit, with the preflight advice', () => {
    expect(() => planRun(request({ recipe: { method: 'sft' } }), SETTINGS)).toThrow(
      /does not fit in GPU memory: full SFT of Llama 3\.1 8B at maxLength 2048, batchSize 4 needs ~1\d\d(\.\d)? GiB per GPU; ml\.g5\.2xlarge has 24 GiB per GPU: use qlora/,
    );
  });

  test('fails when the model size is unknown or the instance type is not a known GPU instance', () => {
    expect(() => planRun(request({ baseModel: 's3://tuneyard-data/base-models/house-model/' }), SETTINGS)).toThrow(/set baseModelParameters/);
    expect(planRun(request({ baseModel: 's3://tuneyard-data/base-models/house-model/', baseModelParameters: 3 }), SETTINGS).preflight.fits).toBe(true);
    expect(() => planRun(request({ instanceType: 'ml.m5.xlarge' }), SETTINGS)).toThrow(/instanceType: instance type "ml.m5.xlarge" is not a SageMaker GPU instance/);
  });

  test('fails when several instances run one process', () => {
    expect(() => planRun(request({ instanceCount: 2 }), SETTINGS)).toThrow(/instanceCount is 2 but recipe.distribution is "none"/);
  });

  test('never asks for a VolumeSizeInGB above the local NVMe storage (SageMaker refuses it)', () => {
    // A 13B QLoRA run fits a T4's memory, but needs more disk than ml.g4dn.xlarge's 125 GB instance store.
    const big = request({ baseModel: 's3://tuneyard-data/base-models/llama-2-13b/', instanceType: 'ml.g4dn.xlarge', recipe: { method: 'qlora', batchSize: 1, maxLength: 1024 } });
    expect(() => planRun(big, SETTINGS)).toThrow(/needs ~128 GB of disk .* ml\.g4dn\.xlarge trains on its local NVMe storage of 125 GB/);
    const plan = planRun(request(), SETTINGS);
    expect(plan.resourceConfig.VolumeSizeInGB).toBeLessThanOrEqual(450);
  });
});

const ROLE = 'arn:aws:iam::123456789012:role/TuneyardJobs';
const IMAGE = '123456789012.dkr.ecr.us-east-1.amazonaws.com/tuneyard-trainer:test';

/**
 * The SageMaker requests a plan makes: the Train and Evaluate states' CreateTrainingJob (the plan's
 * fragments and the fixed members, as FineTuningJob's jobState writes them) and the Register
 * state's CreateModelPackage (as ModelRegistry.registerState writes it; the metadata carries every
 * lineage entry, as the test pipeline's registry stand-in sends them).
 */
function requestsOf(plan: RunPlan): ApiRequest[] {
  const job = (mode: string, fromPlan: Record<string, unknown>): ApiRequest => ({
    service: 'sagemaker',
    operation: 'CreateTrainingJob',
    params: {
      ...fromPlan,
      RoleArn: ROLE,
      AlgorithmSpecification: { TrainingImage: IMAGE, TrainingInputMode: 'File', ContainerEntrypoint: ['python', '-m', 'tuneyard_trainer'], ContainerArguments: [mode] },
      VpcConfig: { SecurityGroupIds: ['sg-0123456789abcdef0'], Subnets: ['subnet-0123456789abcdef0'] },
      EnableNetworkIsolation: plan.enableNetworkIsolation,
      EnableInterContainerTrafficEncryption: true,
      Environment: { HF_HUB_OFFLINE: '1', HF_DATASETS_OFFLINE: '1', HF_HUB_DISABLE_TELEMETRY: '1' },
      Tags: [{ Key: 'tuneyard:component', Value: mode === 'train' ? 'training' : 'evaluation' }, { Key: 'tuneyard:plane', Value: 'Tuneyard' }],
    },
  });
  return [
    job('train', {
      TrainingJobName: plan.trainingJobName,
      HyperParameters: plan.hyperParameters,
      InputDataConfig: plan.inputDataConfig,
      OutputDataConfig: plan.outputDataConfig,
      ResourceConfig: plan.resourceConfig,
      StoppingCondition: plan.stoppingCondition,
      EnableManagedSpotTraining: plan.enableManagedSpotTraining,
      CheckpointConfig: plan.checkpointConfig,
    }),
    job('evaluate', {
      TrainingJobName: plan.evaluationJobName,
      HyperParameters: plan.evaluationHyperParameters,
      InputDataConfig: plan.evaluationInputDataConfig,
      OutputDataConfig: plan.evaluationOutputDataConfig,
      ResourceConfig: plan.evaluationResourceConfig,
      StoppingCondition: plan.evaluationStoppingCondition,
    }),
    {
      service: 'sagemaker',
      operation: 'CreateModelPackage',
      params: {
        ModelPackageGroupName: 'tuneyard-models',
        ModelPackageDescription: `Tuneyard run ${plan.runId}; recipe ${plan.lineage.recipe}`,
        ModelApprovalStatus: plan.modelApprovalStatus,
        InferenceSpecification: {
          Containers: [{ Image: IMAGE, ModelDataSource: { S3DataSource: { S3Uri: plan.modelArtifactS3Uri, S3DataType: 'S3Prefix', CompressionType: 'None' } } }],
          SupportedContentTypes: ['application/json'],
          SupportedResponseMIMETypes: ['application/json'],
        },
        CustomerMetadataProperties: { ...plan.lineage, trainingJobName: plan.trainingJobName, evalLossRatio: '0.85', forgettingIncrease: 'null', evalReport: plan.evalReport.s3Uri },
        ModelMetrics: { ModelQuality: { Statistics: { ContentType: 'application/json', S3Uri: plan.evalReport.s3Uri } } },
      },
    },
  ];
}

/** Module names as long as a multimodal model's (`model.language_model.layers.<i>.self_attn.q_proj`). */
const longModuleNames = (count: number) => Array.from({ length: count }, (_, i) => `model.language_model.layers.${i}.self_attn.q_proj`);

describe('a reward run', () => {
  const REWARD = { baseModel: 's3://tuneyard-data/base-models/llama-3.2-1b/', recipe: { method: 'reward' } };

  test('is gated on its pairwise accuracy (default 0.5, like dpo), planned with the trainer method and registered as a reward model', () => {
    const parsed = request(REWARD);
    expect(parsed.thresholds).toEqual({ maxForgettingIncrease: 0.1, minPreferenceAccuracy: 0.5 });
    expect(request({ ...REWARD, thresholds: { minPreferenceAccuracy: 0.8 } }).thresholds).toEqual({ maxForgettingIncrease: 0.1, minPreferenceAccuracy: 0.8 });
    const plan = planRun(parsed, SETTINGS);
    expect(plan.hyperParameters).toMatchObject({ method: 'reward', use_lora: 'true' });
    expect(plan.thresholds).toEqual({ maxForgettingIncrease: 0.1, minPreferenceAccuracy: 0.5 });
    expect(plan.lineage).toMatchObject({ method: 'reward', kind: 'reward', baseModel: REWARD.baseModel, datasetSha256: SHA });
    expect(plan.preflight.fits).toBe(true);
    // every other method's model generates
    expect(planRun(request(), SETTINGS).lineage.kind).toBe('generative');
    // all weights: the disk of a full-weight run (fp32 checkpoints with optimiser state), as for full DPO
    const full = planRun(request({ ...REWARD, instanceType: 'ml.g6e.2xlarge', recipe: { method: 'reward', useLora: false, batchSize: 1 } }), SETTINGS);
    const dpoFull = planRun(request({ ...REWARD, instanceType: 'ml.g6e.2xlarge', recipe: { method: 'dpo', useLora: false, batchSize: 1 } }), SETTINGS);
    expect(full.resourceConfig.VolumeSizeInGB).toBe(dpoFull.resourceConfig.VolumeSizeInGB);
    expect(full.resourceConfig.VolumeSizeInGB).toBeGreaterThan(plan.resourceConfig.VolumeSizeInGB);
  });

  test.each([
    ['probeDataset', { probeDataset: { name: 'general-probe', sha256: 'c'.repeat(64) } }],
    ['benchmarkDatasets', { benchmarkDatasets: [{ name: 'mmlu', sha256: 'e'.repeat(64) }] }],
    ['graders', { graders: [{ type: 'string_check', name: 'exact', input: '{{sample.output_text}}', reference: '{{item.reference}}', operation: 'eq' }] }],
    ['deploy', { deploy: { endpointName: 'chat' } }],
  ])('refuses %s: a reward model generates nothing to measure or serve', (field, extra) => {
    expect(() => request({ ...REWARD, ...extra })).toThrow(new RegExp(`${field}: recipe\\.method "reward" trains a reward model, which scores text and generates none, so ${field} has nothing to measure or serve; remove it`));
  });
});

describe('planRun against the SageMaker API model', () => {
  test('every request of every plan is one SageMaker accepts', () => {
    const plans = [
      planRun(request(), SETTINGS),
      planRun(request({ probeDataset: { name: 'general-probe', sha256: 'b'.repeat(64) }, autoApprove: true, runName: 'Support chats v2 (try 3)'.replace(/[()]/g, '') }), SETTINGS),
      planRun(request({ baseModel: 'meta-llama/Llama-3.1-8B-Instruct' }), { ...SETTINGS, allowHubModels: true }),
      planRun(request({ dataset: { name: `a.b_${'x'.repeat(59)}`, sha256: SHA }, baseModel: 's3://tuneyard-data/base-models/modèle 8b/' }), { ...SETTINGS, jobNamePrefix: 'ty-' }),
      planRun(request({ instanceType: 'ml.p3.2xlarge', spot: false, recipe: { method: 'qlora', batchSize: 1, loraR: 8, learningRate: 1e-5, lrScheduler: 'cosine_with_restarts', targetModules: ['q_proj', 'v_proj'] } }), SETTINGS),
      // a long recipe: its lineage value is cut, within the pattern
      planRun(request({ recipe: { method: 'qlora', batchSize: 2, targetModules: longModuleNames(30), attnImplementation: 'flash_attention_2', earlyStoppingPatience: 2 } }), SETTINGS),
      planRun(request({ baseModel: 's3://tuneyard-data/base-models/qwen2.5-0.5b/', recipe: { method: 'dpo', useLora: false, dpoBeta: 0.2, batchSize: 1 } }), SETTINGS),
    ];
    expectValidRequests(plans.flatMap(requestsOf));
  });

  test('fails when the base-model folder has characters CreateModelPackage refuses, naming the field, the characters and a name that works', () => {
    // GIVEN a folder name SageMaker refuses as lineage (the registry's CustomerMetadataProperties.baseModel)
    const baseModel = 's3://tuneyard-data/base-models/Llama 3.1 (8B)/';
    const [refused] = validateRequests([{ service: 'sagemaker', operation: 'CreateModelPackage', params: { ModelPackageGroupName: 'g', CustomerMetadataProperties: { baseModel } } }]);
    expect(refused).toEqual([expect.stringMatching(/^CreateModelPackage\.CustomerMetadataProperties\.baseModel: value .* does not match pattern/)]);
    // WHEN / THEN the run is refused before any job starts, with the fix
    expect(() => planRun(request({ baseModel }), SETTINGS)).toThrow(
      'baseModel: "s3://tuneyard-data/base-models/Llama 3.1 (8B)/" has characters that CreateModelPackage.CustomerMetadataProperties ' +
        '(the registered model\'s lineage) refuses ("(", ")"): it takes only letters, digits, spaces and _ . : / = + - @; ' +
        'SageMaker would refuse to register the model after training and evaluation. Rename the folder (s3://tuneyard-data/...) to letters, digits and ' +
        '_ . : = + @ - only, e.g. "s3://tuneyard-data/base-models/Llama-3.1-8B/", and pass that URI.',
    );
    // the suggested name plans, and its requests pass
    expectValidRequests(requestsOf(planRun(request({ baseModel: 's3://tuneyard-data/base-models/Llama-3.1-8B/' }), SETTINGS)));
  });

  test('fails when the base model is longer than a lineage value may be', () => {
    const baseModel = `s3://tuneyard-data/base-models/${'llama-3.1-8b-'.repeat(20)}/`;
    expect(() => planRun(request({ baseModel }), SETTINGS)).toThrow(
      /^baseModel: "s3:\/\/tuneyard-data\/base-models\/llama-3\.1-8b-.*\.\.\." \(292 characters\) is 292 characters, over the 256 that CreateModelPackage\.CustomerMetadataProperties .* Stage the model under a folder name of at most 256 characters/,
    );
  });

  test('fails when 60 target modules make a hyperparameter over 2,500 characters, naming the recipe field and the fix', () => {
    // GIVEN 60 module names, which render to one hyperparameter SageMaker refuses
    const targetModules = longModuleNames(60);
    const rendered = renderHyperParameters({ method: 'qlora', targetModules }, { baseModel: 's3://tuneyard-data/base-models/llama-3.1-8b/' }).lora_target_modules;
    expect(rendered.length).toBeGreaterThan(HYPER_PARAMETER_VALUE.max);
    // WHEN / THEN
    expect(() => planRun(request({ recipe: { method: 'qlora', batchSize: 2, targetModules } }), SETTINGS)).toThrow(
      new RegExp(
        `^recipe\\.targetModules: "model\\.language_model\\.layers\\.0\\.self_attn\\.q_proj,.*\\.\\.\\." \\(${rendered.length} characters\\) is 2,\\d{3} characters, ` +
          'over the 2500 that CreateTrainingJob\\.HyperParameters\\["lora_target_modules"\\] may have\\. Name fewer modules: PEFT matches a name at the end of every module path',
      ),
    );
  });
});

describe('lineageRecipe', () => {
  test('writes the fields the request set as sorted name=value pairs, lists joined with +', () => {
    expect(lineageRecipe({ targetModules: ['q_proj', 'v_proj'], method: 'qlora', loraR: 8, learningRate: 1e-4, packing: true })).toBe(
      'learningRate=0.0001 loraR=8 method=qlora packing=true targetModules=q_proj+v_proj',
    );
  });

  test('keeps any recipe within the pattern and length of a lineage value, cutting with ...', () => {
    const value = lineageRecipe({ method: 'qlora', targetModules: longModuleNames(30), learningRate: 1e-7, lrScheduler: 'cosine_with_restarts' });
    expect(value).toHaveLength(CUSTOMER_METADATA_VALUE.max);
    expect(value).toMatch(/^learningRate=1e-7 lrScheduler=cosine_with_restarts method=qlora targetModules=model\.language_model\.layers\.0\.self_attn\.q_proj\+.*\.\.\.$/);
    expect(value).toMatch(CUSTOMER_METADATA_VALUE.regExp!);
  });
});

describe('echoed values', () => {
  const runName = 'x'.repeat(200 * 1024);

  test('a 200 KB runName gives a small error that names the field', () => {
    let message = '';
    try {
      request({ runName });
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/^invalid RunRequest:\n {2}- runName: must be 1-64 letters, .* \(got "x{120}\.\.\." \(204800 characters\)\)$/);
    expect(message.length).toBeLessThan(2048);
  });

  test('many unknown fields, or many problems, are listed in part', () => {
    const message = (raw: Record<string, unknown>) => {
      try {
        parseRunRequest({ dataset: { name: 'chats', sha256: SHA }, baseModel: 's3://b/base-models/m/', recipe: { method: 'qlora' }, ...raw });
      } catch (e) {
        return (e as Error).message;
      }
      throw new Error('no error');
    };
    const unknown = message(Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`field${i}${'k'.repeat(1000)}`, i])));
    expect(unknown).toMatch(/^invalid RunRequest:\n {2}- field0k{114}\.\.\. \(1006 characters\), .*, field19k{113}\.\.\. \(1007 characters\) and 980 more: unknown field; remove it$/);
    expect(unknown.length).toBeLessThan(4096);
    const many = message({ recipe: { method: 'qlora', targetModules: Array(5000).fill('bad name') } });
    expect(many).toMatch(/recipe\.targetModules\.19: must be a module name such as "q_proj" \(got "bad name"\)\n {2}- \.\.\. and 4980 more problems$/);
    expect(many.length).toBeLessThan(4096);
  });

  test.each([
    ['a Hub id the plane does not allow', { baseModel: `org/${'m'.repeat(200 * 1024)}` }, /^baseModel: "org\/m{116}\.\.\." \(204804 characters\) is a Hugging Face Hub id/],
    ['a base model outside the prefix', { baseModel: `s3://other/${'m'.repeat(200 * 1024)}` }, /^baseModel: "s3:\/\/other\/m{109}\.\.\." \(204811 characters\) is outside the plane's base-models\/ prefix/],
    ['a base model too long for the lineage', { baseModel: `s3://tuneyard-data/base-models/${'m'.repeat(200 * 1024)}-8b/` }, /^baseModel: "s3:.*\.\.\." \(204835 characters\) is 204,835 characters, over the 256/],
    ['an unknown instance type', { instanceType: `ml.${'g'.repeat(200 * 1024)}` }, /^instanceType: instance type "ml\.g{117}\.\.\. \(204803 characters\)" is not a SageMaker GPU instance/],
  ])('planRun keeps the message small for %s', (_, overrides, message) => {
    let error = '';
    try {
      planRun(request(overrides), SETTINGS);
    } catch (e) {
      error = (e as Error).message;
    }
    expect(error).toMatch(message);
    expect(error.length).toBeLessThan(2048);
  });
});

describe('a grpo run', () => {
  const EXACT = { type: 'string_check', name: 'exact', input: '{{sample.output_text}}', reference: '{{item.reference}}', operation: 'eq' };
  const ARN = 'arn:aws:sagemaker:us-east-1:123456789012:model-package/tuneyard-models/7';
  const REWARD_DATA = 's3://tuneyard-data/artifacts/rm-run/tuneyard-rm-run-train/output/model/';
  const GRPO = { baseModel: 's3://tuneyard-data/base-models/qwen2.5-0.5b/', recipe: { method: 'grpo' }, graders: [EXACT] };

  test('with graders: planned with the trainer method, the graders channel of the training job (graders.json) and gated on the gain of its reward (default 0), not on its eval loss ratio unless set', () => {
    const parsed = request(GRPO);
    expect(parsed.thresholds).toEqual({ maxForgettingIncrease: 0.1, minRewardGain: 0 });
    expect(request({ ...GRPO, thresholds: { minGraderMean: { exact: 0.7 } } }).thresholds).toEqual({ maxForgettingIncrease: 0.1, minGraderMean: { exact: 0.7 }, minRewardGain: 0 });
    expect(request({ ...GRPO, thresholds: { minRewardGain: 0.2, maxEvalLossRatio: 1.5 } }).thresholds).toEqual({ maxForgettingIncrease: 0.1, minRewardGain: 0.2, maxEvalLossRatio: 1.5 });
    expect(request({ ...GRPO, thresholds: { minRewardGain: -0.05 } }).thresholds.minRewardGain).toBe(-0.05); // a small loss tolerated
    expect(() => request({ ...GRPO, evaluation: { maxGenerations: 0 } })).toThrow(
      /evaluation\.maxGenerations: is 0, but the gate of a grpo run scores the answers to the eval prompts with the run's reward \(thresholds\.minRewardGain\); set it above 0/,
    );
    const plan = planRun(parsed, SETTINGS);
    expect(plan.hyperParameters).toMatchObject({ method: 'grpo', grpo_num_generations: '8', grpo_beta: '0.04', lora_r: '16' });
    expect(plan.hyperParameters).not.toHaveProperty('graders');
    expect(plan.hyperParameters).not.toHaveProperty('reward_model');
    const trainChannels = plan.inputDataConfig.map((c) => [c.ChannelName, c.DataSource.S3DataSource.S3Uri]);
    expect(trainChannels).toContainEqual(['graders', plan.gradersFile!.s3Uri]);
    expect(plan.evaluationInputDataConfig.map((c) => c.ChannelName)).toContain('graders');
    expect(plan.lineage).toMatchObject({ method: 'grpo', kind: 'generative', rewardModel: 'none' });
    // the evaluation job scores the answers with the run's reward: its graders, method and (when set) weights
    expect(plan.evaluationHyperParameters).toEqual({ base_model: GRPO.baseModel, method: 'grpo' });
    expect(plan.evaluationInputDataConfig.map((c) => c.ChannelName)).not.toContain('reward_model');
    // a lora run's training job reads no graders
    expect(planRun(request({ graders: [EXACT] }), SETTINGS).inputDataConfig.map((c) => c.ChannelName)).not.toContain('graders');
  });

  test('a cosine grader rewards the training job with the encoder the evaluation scores with: embeddingModel is a channel of both jobs', () => {
    // GIVEN a grpo run rewarded by a cosine text_similarity grader, its encoder staged under base-models/
    const ENCODER = 's3://tuneyard-data/base-models/all-minilm-l6-v2/';
    const cosine = { type: 'text_similarity', name: 'close', input: '{{sample.output_text}}', reference: '{{item.reference}}', evaluation_metric: 'cosine' };
    // WHEN it is planned
    const plan = planRun(request({ ...GRPO, graders: [cosine], embeddingModel: ENCODER }), SETTINGS);
    // THEN the training job's graders find their encoder where the evaluation job's do (graders.py embedding_folder)
    const channels = (config: RunPlan['inputDataConfig']) => config.map((c) => [c.ChannelName, c.DataSource.S3DataSource.S3Uri]);
    expect(channels(plan.inputDataConfig)).toContainEqual(['embedding_model', ENCODER]);
    expect(channels(plan.evaluationInputDataConfig)).toContainEqual(['embedding_model', ENCODER]);
    expectValidRequests(requestsOf(plan));
    // AND an rloo run's graders only evaluate: its training job reads no encoder
    const rloo = planRun(request({ ...GRPO, recipe: { method: 'rloo' }, rewardModel: REWARD_DATA, graders: [cosine], embeddingModel: ENCODER }), SETTINGS);
    expect(rloo.inputDataConfig.map((c) => c.ChannelName)).not.toContain('embedding_model');
  });

  test('needs a reward source, names its weights after its sources, and takes no LLM judge as a reward', () => {
    expect(() => request({ ...GRPO, graders: undefined })).toThrow(/graders: recipe\.method "grpo" needs a reward source: graders .*rewardModel .*or both/);
    expect(() => request({ ...GRPO, recipe: { method: 'grpo', rewardWeights: { exatc: 1 } } })).toThrow(/recipe\.rewardWeights\.exatc: names "exatc", which is not a reward source of this run \(its sources: exact: .*\); did you mean "exact"\?/);
    expect(() => request({ ...GRPO, recipe: { method: 'grpo', rewardWeights: { reward_model: 1 } } })).toThrow(/recipe\.rewardWeights\.reward_model: weighs the reward model, but the run names no rewardModel; set rewardModel/);
    expect(request({ ...GRPO, rewardModel: REWARD_DATA, recipe: { method: 'grpo', rewardWeights: { exact: 1, reward_model: 0.5 } } }).recipe.rewardWeights).toEqual({ exact: 1, reward_model: 0.5 });
    const judge = { type: 'score_model', name: 'helpful', model: 'x', input: [{ role: 'user', content: 'Rate {{sample.output_text}}' }], range: [0, 1] };
    expect(() => request({ ...GRPO, graders: [EXACT, judge] })).toThrow(/graders: grader "helpful" is an LLM judge \(score_model\), which cannot reward a grpo run/);
    expect(() => request({ ...GRPO, recipe: { method: 'grpo', batchSize: 3, gradientAccumulation: 1 } })).toThrow(/recipe\.grpoNumGenerations: batchSize x gradientAccumulation \(3\) must be a multiple of grpoNumGenerations \(8\)/);
    expect(() => request({ rewardModel: REWARD_DATA })).toThrow(/rewardModel: a reward model rewards recipe\.method "grpo" or "rloo" only \(got "qlora"\); remove rewardModel, or set recipe\.method "rloo"/);
    expect(() => request({ ...GRPO, rewardModel: 'my-reward-model' })).toThrow(/rewardModel: must be a registered reward model: its model package version ARN/);
  });

  test('a reward model folder is planned as the reward_model channel, its hyperparameter set and its weights in the memory estimate', () => {
    const withGraders = planRun(request(GRPO), SETTINGS);
    const plan = planRun(request({ ...GRPO, graders: undefined, rewardModel: REWARD_DATA }), SETTINGS);
    expect(plan.hyperParameters.reward_model).toBe(REWARD_DATA);
    expect(plan.inputDataConfig.find((c) => c.ChannelName === 'reward_model')?.DataSource.S3DataSource.S3Uri).toBe(REWARD_DATA);
    expect(plan.inputDataConfig.map((c) => c.ChannelName)).not.toContain('graders');
    // the evaluation job scores the answers with the same reward model, weighted as in training
    expect(plan.evaluationInputDataConfig.find((c) => c.ChannelName === 'reward_model')?.DataSource.S3DataSource.S3Uri).toBe(REWARD_DATA);
    const weighted = planRun(request({ ...GRPO, rewardModel: REWARD_DATA, recipe: { method: 'grpo', rewardWeights: { exact: 1, reward_model: 0.5 } } }), SETTINGS);
    expect(weighted.evaluationHyperParameters).toEqual({ base_model: GRPO.baseModel, method: 'grpo', reward_weights: '{"exact":1,"reward_model":0.5}' });
    expect(weighted.evaluationHyperParameters.reward_weights).toBe(weighted.hyperParameters.reward_weights);
    expect(weighted.evaluationInputDataConfig.map((c) => c.ChannelName)).toEqual(['model', 'adapter', 'eval', 'graders', 'reward_model']);
    // the registered model's lineage says what rewarded it
    expect(plan.lineage.rewardModel).toBe(REWARD_DATA);
    // a reward model of the policy's size (0.5B) in bf16 beside the policy: ~0.9 GiB more weights
    expect(plan.preflight.breakdown.weights - withGraders.preflight.breakdown.weights).toBeCloseTo((0.494 * 1e9 * 2) / 2 ** 30, 1);
    expect(() => planRun(request({ ...GRPO, rewardModel: 's3://other-bucket/models/rm/' }), SETTINGS)).toThrow(/rewardModel: "s3:\/\/other-bucket\/models\/rm\/" is outside the plane's artifacts\/ prefix/);
  });

  test('a model package ARN is resolved from the registry: a reward model (kind=reward) plans its model data; any other kind, or no lookup, is refused', () => {
    const parsed = request({ ...GRPO, rewardModel: ARN });
    expect(() => planRun(parsed, SETTINGS)).toThrow(/rewardModel: ".*model-package\/tuneyard-models\/7" is a model package, .*this plan was made without reading it/);
    expect(() => planRun(parsed, SETTINGS, { rewardModel: { modelDataS3Uri: REWARD_DATA, kind: 'generative' } })).toThrow(/is registered as kind=generative, not as a reward model \(kind=reward\)/);
    const plan = planRun(parsed, SETTINGS, { rewardModel: { modelDataS3Uri: REWARD_DATA, kind: 'reward', baseModel: 's3://tuneyard-data/base-models/qwen2.5-0.5b/' } });
    expect(plan.hyperParameters.reward_model).toBe(ARN);
    expect(plan.inputDataConfig.find((c) => c.ChannelName === 'reward_model')?.DataSource.S3DataSource.S3Uri).toBe(REWARD_DATA);
  });

  test('its lineage recipe carries the reward weights and a digest of the format pattern, within the registry\'s pattern; every request is one SageMaker accepts', () => {
    const recipe = { method: 'grpo', rewardWeights: { exact: 1, reward_model: 0.5 }, grpoFormatRegex: '<answer>.*</answer>', grpoNumGenerations: 4 } as const;
    const text = lineageRecipe(recipe);
    expect(text).toMatch(/^grpoFormatRegex=sha256-[0-9a-f]{12} grpoNumGenerations=4 method=grpo rewardWeights=exact:1\+reward_model:0\.5$/);
    const plan = planRun(request({ ...GRPO, rewardModel: REWARD_DATA, recipe }), SETTINGS);
    expectValidRequests(requestsOf(plan));
  });
});

describe('an rloo run (RLHF against a registered reward model)', () => {
  const EXACT = { type: 'string_check', name: 'exact', input: '{{sample.output_text}}', reference: '{{item.reference}}', operation: 'eq' };
  const ARN = 'arn:aws:sagemaker:us-east-1:123456789012:model-package/tuneyard-models/7';
  const REWARD_DATA = 's3://tuneyard-data/artifacts/rm-run/tuneyard-rm-run-train/output/model/';
  const RLOO = { baseModel: 's3://tuneyard-data/base-models/qwen2.5-0.5b/', recipe: { method: 'rloo' }, rewardModel: REWARD_DATA };

  test('fails without a rewardModel, naming how to get one (a reward run, tuneyard models) and grpo for graders', () => {
    expect(() => request({ ...RLOO, rewardModel: undefined })).toThrow(
      /rewardModel: missing; recipe\.method "rloo" \(RLHF\) optimises the model against a registered reward model, its only reward: train one with a method "reward" run on preference pairs, then set rewardModel to its model package \(`tuneyard models`; tuneyard train --reward-model VERSION\) or its s3:\/\/ model data folder\. To reward with graders instead, use recipe\.method "grpo"/,
    );
    // graders do not stand in for it (they evaluate an rloo run, they do not reward it)
    expect(() => request({ ...RLOO, rewardModel: undefined, graders: [EXACT] })).toThrow(/rewardModel: missing; recipe\.method "rloo"/);
    expect(() => request({ ...RLOO, rewardModel: 'my-reward-model' })).toThrow(/rewardModel: must be a registered reward model: its model package version ARN/);
    // rewardWeights are grpo's (rloo's one source needs no weight)
    expect(() => request({ ...RLOO, recipe: { method: 'rloo', rewardWeights: { reward_model: 1 } } })).toThrow(/recipe\.rewardWeights: rewardWeights applies to method grpo only/);
  });

  test('is gated on the gain of its reward model\'s score (default 0) and, when set, its graders\' means, as grpo: not on its eval loss ratio unless set', () => {
    expect(request(RLOO).thresholds).toEqual({ maxForgettingIncrease: 0.1, minRewardGain: 0 });
    expect(request({ ...RLOO, graders: [EXACT], thresholds: { minGraderMean: { exact: 0.7 } } }).thresholds).toEqual({ maxForgettingIncrease: 0.1, minGraderMean: { exact: 0.7 }, minRewardGain: 0 });
    expect(request({ ...RLOO, thresholds: { minRewardGain: 1, maxEvalLossRatio: 1 } }).thresholds).toEqual({ maxForgettingIncrease: 0.1, minRewardGain: 1, maxEvalLossRatio: 1 });
    expect(() => request({ ...RLOO, thresholds: { minPreferenceAccuracy: 0.6 } })).toThrow(/thresholds\.minPreferenceAccuracy: applies to recipe\.method "dpo" or "reward" only/);
  });

  test('is planned with the trainer method, the reward_model channel and hyperparameter, no graders channel for training (graders evaluate it), the reward model in its memory estimate and lineage', () => {
    const plan = planRun(request({ ...RLOO, graders: [EXACT] }), SETTINGS);
    expect(plan.hyperParameters).toMatchObject({
      method: 'rloo', reward_model: REWARD_DATA, lora_r: '16', rloo_num_generations: '4', rloo_max_completion_length: '256', rloo_beta: '0.05', rloo_epsilon: '0.2', rloo_temperature: '1',
    });
    for (const key of ['graders', 'merge', 'reward_weights', 'grpo_num_generations']) expect(plan.hyperParameters).not.toHaveProperty(key);
    expect(plan.inputDataConfig.map((c) => c.ChannelName)).toEqual(['train', 'eval', 'model', 'reward_model']);
    expect(plan.inputDataConfig.find((c) => c.ChannelName === 'reward_model')?.DataSource.S3DataSource.S3Uri).toBe(REWARD_DATA);
    expect(plan.evaluationInputDataConfig.map((c) => c.ChannelName)).toContain('graders');
    expect(plan.evaluationHyperParameters).toEqual({ base_model: RLOO.baseModel, method: 'rloo' });
    // its evaluation job scores the base and tuned answers with the reward model the training job read
    expect(plan.evaluationInputDataConfig.map((c) => c.ChannelName)).toEqual(['model', 'adapter', 'eval', 'graders', 'reward_model']);
    expect(plan.evaluationInputDataConfig.find((c) => c.ChannelName === 'reward_model')).toEqual(plan.inputDataConfig.find((c) => c.ChannelName === 'reward_model'));
    expect(plan.lineage).toMatchObject({ method: 'rloo', kind: 'generative', rewardModel: REWARD_DATA });
    // the same memory as a grpo run rewarded by the same model with the same completions (the same TRL batching)
    const grpo = planRun(request({ ...RLOO, recipe: { method: 'grpo', grpoNumGenerations: 4 } }), SETTINGS);
    expect(plan.preflight.breakdown).toEqual(grpo.preflight.breakdown);
    const graders = planRun(request({ ...RLOO, recipe: { method: 'grpo' }, rewardModel: undefined, graders: [EXACT] }), SETTINGS);
    expect(plan.preflight.breakdown.weights - graders.preflight.breakdown.weights).toBeCloseTo((0.494 * 1e9 * 2) / 2 ** 30, 1);
    // its completion length sizes the estimate
    const long = planRun(request({ ...RLOO, recipe: { method: 'rloo', rlooMaxCompletionLength: 1536, gradientCheckpointing: false } }), SETTINGS);
    const short = planRun(request({ ...RLOO, recipe: { method: 'rloo', rlooMaxCompletionLength: 64, gradientCheckpointing: false } }), SETTINGS);
    expect(long.preflight.breakdown.activations).toBeGreaterThan(short.preflight.breakdown.activations);
    expectValidRequests(requestsOf(plan));
  });

  test('the messages name the command that lists the registered models as the CLI takes it: `tuneyard models` (which refuses an argument such as "list")', () => {
    const GRPO = { ...RLOO, recipe: { method: 'grpo' }, graders: [EXACT] };
    const messages = [
      () => request({ ...RLOO, rewardModel: 'my-reward-model' }),
      () => request({ ...GRPO, rewardModel: 'my-reward-model' }),
      () => planRun(request({ ...RLOO, rewardModel: ARN }), SETTINGS, { rewardModel: { modelDataS3Uri: REWARD_DATA, kind: 'generative' } }),
      () => planRun(request({ ...GRPO, rewardModel: ARN }), SETTINGS, { rewardModel: { modelDataS3Uri: REWARD_DATA, kind: 'generative' } }),
    ].map((refused) => {
      try {
        refused();
      } catch (e) {
        return (e as Error).message;
      }
      throw new Error('not refused');
    });
    for (const message of messages) {
      expect(message).toContain('`tuneyard models`');
      expect(message).not.toMatch(/tuneyard models \w/);
    }
  });

  test('a model package ARN is resolved from the registry and recorded in the lineage as named; a model not registered as a reward model is refused', () => {
    const parsed = request({ ...RLOO, rewardModel: ARN });
    expect(() => planRun(parsed, SETTINGS, { rewardModel: { modelDataS3Uri: REWARD_DATA, kind: 'generative' } })).toThrow(
      /is registered as kind=generative, not as a reward model \(kind=reward\); an rloo run is optimised against a method "reward" run's model: name its model package \(`tuneyard models`\), or train one with a method "reward" run\./,
    );
    const plan = planRun(parsed, SETTINGS, { rewardModel: { modelDataS3Uri: REWARD_DATA, kind: 'reward', baseModel: 's3://tuneyard-data/base-models/qwen2.5-0.5b/' } });
    expect(plan.hyperParameters.reward_model).toBe(ARN);
    expect(plan.inputDataConfig.find((c) => c.ChannelName === 'reward_model')?.DataSource.S3DataSource.S3Uri).toBe(REWARD_DATA);
    expect(plan.lineage.rewardModel).toBe(ARN);
    expectValidRequests(requestsOf(plan));
  });

  test('fails at plan time when the reward model\'s folder could not be its lineage (the registry would refuse the model after training)', () => {
    const odd = 's3://tuneyard-data/artifacts/rm (v2)/tuneyard-rm-train/output/model/';
    expect(() => planRun(request({ ...RLOO, rewardModel: odd }), SETTINGS)).toThrow(
      /rewardModel: "s3:\/\/tuneyard-data\/artifacts\/rm \(v2\)\/.*" has characters that CreateModelPackage\.CustomerMetadataProperties .* refuses \("\(", "\)"\)/,
    );
    const long = `s3://tuneyard-data/artifacts/${'r'.repeat(240)}/output/model/`;
    expect(() => planRun(request({ ...RLOO, rewardModel: long }), SETTINGS)).toThrow(/rewardModel: "s3:.*" \(\d+ characters\) is \d+ characters, over the 256 that CreateModelPackage\.CustomerMetadataProperties/);
  });

  test('every other run records no reward model in its lineage', () => {
    expect(planRun(request(), SETTINGS).lineage.rewardModel).toBe('none');
  });
});
