import { environmentSettings, MESSAGE_MAX_LENGTH, PlanRunEnvironment, planRunStep, RunRequestInvalid } from './plan-run';

const ENV: PlanRunEnvironment = {
  bucketName: 'data-bucket',
  volumeKmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/k',
  outputKmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/k',
  allowHubModels: false,
  deployStage: true,
};
const request = (recipe: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  request: {
    dataset: { name: 'chats', sha256: 'c'.repeat(64) },
    // a 0.5B model, so full-weight methods fit the default instance
    baseModel: 's3://data-bucket/base-models/qwen2.5-0.5b/',
    recipe,
    deploy: { endpointName: 'chat', adapterName: 'chat-v1' },
    ...extra,
  },
});

describe('PlanRun', () => {
  test('plans a run and hands the dataset check its method and max length', () => {
    const result = planRunStep(request({ method: 'qlora', maxLength: 1024 }), { ...ENV, deploys: 'adapter' });
    expect(result.datasetCheck).toEqual({ datasetName: 'chats', datasetSha256: 'c'.repeat(64), method: 'qlora', maxLength: 1024 });
    expect(result.plan.trainingJobName).toMatch(/^tuneyard-chats-qlora-[0-9a-f]{12}-train$/);
  });

  test.each([
    [{ method: 'sft' }, /serves LoRA adapters, but method sft trains all weights and writes no adapter/],
    [{ method: 'dpo', useLora: false, batchSize: 1 }, /method dpo with useLora false trains all weights/], // full DPO fits the A10G at batch 1
  ])('fails when an adapter endpoint is asked to deploy a run that writes no adapter (%o)', (recipe, message) => {
    expect(() => planRunStep(request(recipe), { ...ENV, deploys: 'adapter' })).toThrow(message);
  });

  test('fails when an adapter endpoint is asked to deploy without an adapter name', () => {
    expect(() => planRunStep(request({ method: 'qlora' }, { deploy: { endpointName: 'chat' } }), { ...ENV, deploys: 'adapter' })).toThrow(
      /deploy\.adapterName: endpoint "chat" serves LoRA adapters as inference components; name the run's adapter/,
    );
  });

  test('fails when a single-model endpoint is asked to deploy a LoRA run that does not merge, and accepts it with merge', () => {
    expect(() => planRunStep(request({ method: 'qlora' }), { ...ENV, deploys: 'full-weights' })).toThrow(
      /serves full models, but this qlora run writes only a LoRA adapter\. Set recipe\.merge to true/,
    );
    expect(planRunStep(request({ method: 'qlora', merge: true }), { ...ENV, deploys: 'full-weights' }).plan.runId).toMatch(/^chats-qlora-/);
    expect(planRunStep(request({ method: 'sft' }), { ...ENV, deploys: 'full-weights' }).plan.runId).toMatch(/^chats-sft-/);
  });

  test('an rloo run deploys as the adapter it writes: an adapter endpoint takes it, a single-model endpoint is refused with why merge does not help', () => {
    const rloo = request({ method: 'rloo' }, { rewardModel: 's3://data-bucket/artifacts/rm/tuneyard-rm-train/output/model/' });
    expect(planRunStep(rloo, { ...ENV, deploys: 'adapter' }).plan.hyperParameters.method).toBe('rloo');
    expect(() => planRunStep(rloo, { ...ENV, deploys: 'full-weights' })).toThrow(
      /serves full models, but this rloo run writes only a LoRA adapter\. An rloo run does not merge \(recipe\.merge does not apply\): deploy its adapter to an endpoint that serves adapters, or merge it yourself\./,
    );
  });

  test('fails when the jobs could outlast the pipeline timeout, naming both limits and the fix', () => {
    const week = 7 * 24 * 3600;
    // spot: up to 2 x 60 h waiting for training, then up to 60 h of evaluation = 180 h > 168 h
    expect(() => planRunStep(request({ method: 'qlora' }, { maxRuntimeHours: 60, deploy: null }), { ...ENV, runTimeoutSeconds: week })).toThrow(
      /training \(up to 120 h with spot waits\) and evaluation \(up to 60 h\) could outlast the pipeline's timeout of 168 h\. .*pipeline\.timeoutDays/,
    );
    // the same run on demand fits: 60 h + 60 h
    expect(planRunStep(request({ method: 'qlora' }, { maxRuntimeHours: 60, spot: false, deploy: null }), { ...ENV, runTimeoutSeconds: week }).plan.runId).toBeTruthy();
  });

  /** The RunRequestInvalid that planRunStep throws for a request (fails the test when it plans). */
  const invalid = (event: ReturnType<typeof request>): RunRequestInvalid => {
    try {
      planRunStep(event, ENV);
    } catch (e) {
      expect(e).toBeInstanceOf(RunRequestInvalid);
      return e as RunRequestInvalid;
    }
    throw new Error('the request was planned');
  };

  test('fails as RunRequestInvalid, before any job, on a base-model folder that SageMaker would refuse to register', () => {
    const e = invalid(request({ method: 'qlora' }, { baseModel: 's3://data-bucket/base-models/Qwen2.5 (0.5B)/', deploy: null }));
    expect(e.message).toMatch(/^baseModel: "s3:\/\/data-bucket\/base-models\/Qwen2\.5 \(0\.5B\)\/" has characters that CreateModelPackage\.CustomerMetadataProperties .* refuses \("\(", "\)"\).* e\.g\. "s3:\/\/data-bucket\/base-models\/Qwen2\.5-0\.5B\/"/);
  });

  test('fails as RunRequestInvalid on target modules that make a hyperparameter over 2,500 characters', () => {
    const targetModules = Array.from({ length: 60 }, (_, i) => `model.language_model.layers.${i}.self_attn.q_proj`);
    expect(invalid(request({ method: 'qlora', targetModules }, { deploy: null })).message).toMatch(
      /^recipe\.targetModules: .* over the 2500 that CreateTrainingJob\.HyperParameters\["lora_target_modules"\] may have/,
    );
  });

  test('keeps the error of a 200 KB runName small, naming the field', () => {
    const { message } = invalid(request({ method: 'qlora' }, { runName: 'x'.repeat(200 * 1024) }));
    expect(message).toMatch(/runName: must be 1-64 letters.* \(got "x{120}\.\.\." \(204800 characters\)\)/);
    expect(message.length).toBeLessThan(2048);
  });

  test('bounds any RunRequestInvalid message', () => {
    const long = new RunRequestInvalid('m'.repeat(100_000));
    expect(long.message).toBe(`${'m'.repeat(MESSAGE_MAX_LENGTH)}... (100000 characters)`);
    expect(new RunRequestInvalid('short').message).toBe('short');
  });

  test('reads the plane settings from the function environment', () => {
    expect(
      environmentSettings({
        TUNEYARD_BUCKET_NAME: 'b',
        TUNEYARD_VOLUME_KMS_KEY_ARN: 'v',
        TUNEYARD_OUTPUT_KMS_KEY_ARN: 'o',
        TUNEYARD_ALLOW_HUB_MODELS: 'false',
        TUNEYARD_JOB_NAME_PREFIX: 'teama-',
        TUNEYARD_DEPLOY_STAGE: 'enabled',
        TUNEYARD_DEPLOYS: 'adapter',
        TUNEYARD_RUN_TIMEOUT_SECONDS: '604800',
        TUNEYARD_JUDGE_MODEL_IDS: 'amazon.nova-pro-v1:0,us.amazon.nova-lite-v1:0',
      }),
    ).toEqual({
      bucketName: 'b',
      volumeKmsKeyArn: 'v',
      outputKmsKeyArn: 'o',
      allowHubModels: false,
      jobNamePrefix: 'teama-',
      deployStage: true,
      deploys: 'adapter',
      runTimeoutSeconds: 604800,
      judgeModelIds: ['amazon.nova-pro-v1:0', 'us.amazon.nova-lite-v1:0'],
    });
    // an empty list (the pipeline's default): no judge model allowed
    expect(environmentSettings({ TUNEYARD_BUCKET_NAME: 'b', TUNEYARD_VOLUME_KMS_KEY_ARN: 'v', TUNEYARD_OUTPUT_KMS_KEY_ARN: 'o', TUNEYARD_JOB_NAME_PREFIX: 'p-', TUNEYARD_JUDGE_MODEL_IDS: '' }).judgeModelIds).toEqual([]);
    expect(() => environmentSettings({})).toThrow(/TUNEYARD_BUCKET_NAME is not set/);
  });

  test('fails when the environment names no job prefix, rather than naming jobs the state machine may not create', () => {
    const env = { TUNEYARD_BUCKET_NAME: 'b', TUNEYARD_VOLUME_KMS_KEY_ARN: 'v', TUNEYARD_OUTPUT_KMS_KEY_ARN: 'o' };
    expect(() => environmentSettings(env)).toThrow(/TUNEYARD_JOB_NAME_PREFIX is not set/);
    expect(environmentSettings({ ...env, TUNEYARD_JOB_NAME_PREFIX: 'tuneyard-' }).jobNamePrefix).toBe('tuneyard-');
  });
});
