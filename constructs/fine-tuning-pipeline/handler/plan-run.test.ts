import { environmentSettings, PlanRunEnvironment, planRunStep } from './plan-run';

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
    [{ method: 'dpo', useLora: false }, /method dpo with useLora false trains all weights/],
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

  test('fails when the jobs could outlast the pipeline timeout, naming both limits and the fix', () => {
    const week = 7 * 24 * 3600;
    // spot: up to 2 x 60 h waiting for training, then up to 60 h of evaluation = 180 h > 168 h
    expect(() => planRunStep(request({ method: 'qlora' }, { maxRuntimeHours: 60, deploy: null }), { ...ENV, runTimeoutSeconds: week })).toThrow(
      /training \(up to 120 h with spot waits\) and evaluation \(up to 60 h\) could outlast the pipeline's timeout of 168 h\. .*pipeline\.timeoutDays/,
    );
    // the same run on demand fits: 60 h + 60 h
    expect(planRunStep(request({ method: 'qlora' }, { maxRuntimeHours: 60, spot: false, deploy: null }), { ...ENV, runTimeoutSeconds: week }).plan.runId).toBeTruthy();
  });

  test('reads the plane settings from the function environment', () => {
    expect(
      environmentSettings({
        TUNEYARD_BUCKET_NAME: 'b',
        TUNEYARD_VOLUME_KMS_KEY_ARN: 'v',
        TUNEYARD_OUTPUT_KMS_KEY_ARN: 'o',
        TUNEYARD_ALLOW_HUB_MODELS: 'false',
        TUNEYARD_DEPLOY_STAGE: 'enabled',
        TUNEYARD_DEPLOYS: 'adapter',
        TUNEYARD_RUN_TIMEOUT_SECONDS: '604800',
      }),
    ).toEqual({ bucketName: 'b', volumeKmsKeyArn: 'v', outputKmsKeyArn: 'o', allowHubModels: false, jobNamePrefix: undefined, deployStage: true, deploys: 'adapter', runTimeoutSeconds: 604800 });
    expect(() => environmentSettings({})).toThrow(/TUNEYARD_BUCKET_NAME is not set/);
  });
});
