import { parseRunRequest, planRun, runIdFor, RUN_ID_MAX_LENGTH, PlanSettings } from './run-request';

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
    recipe: { method: 'qlora' },
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
    expect(() => request({ recipe: { method: 'sft', loraR: 8 } })).toThrow(/recipe\.loraR: loraR applies to method lora or qlora or dpo only and has no effect with method "sft"; remove it/);
    expect(() => request({ recipe: { method: 'qlora', distribution: 'fsdp' } })).toThrow(/recipe\.distribution: method "qlora" with distribution "fsdp" is not supported/);
    expect(() => request({ colour: 'red' })).toThrow(/colour: unknown field; remove it/);
    expect(() => request({ maxRuntimeHours: 0.0001 })).toThrow(/maxRuntimeHours: must be at least 1\/60 hour \(one minute\) \(got 0\.0001\)/);
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
      /does not fit in GPU memory: full SFT of an 8B model at maxLength 2048, batchSize 4 needs ~12\d(\.\d)? GiB per GPU; ml\.g5\.2xlarge has 24 GiB per GPU: use qlora/,
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
