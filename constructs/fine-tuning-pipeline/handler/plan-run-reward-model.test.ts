import { DescribeModelPackageCommand, type DescribeModelPackageCommandOutput } from '@aws-sdk/client-sagemaker';
import { validateRequests } from '../../../test/support/api-model';
import { PlanRunEnvironment, planRunAndWriteGraders, planRunStep, RegistryReader, RunRequestInvalid } from './plan-run';

const ENV: PlanRunEnvironment = {
  bucketName: 'data-bucket',
  volumeKmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/k',
  outputKmsKeyArn: 'arn:aws:kms:us-east-1:123456789012:key/k',
  allowHubModels: false,
  jobNamePrefix: 'tuneyard-',
  deployStage: false,
};
const BASE = 's3://data-bucket/base-models/qwen2.5-0.5b/';
const ARN = 'arn:aws:sagemaker:us-east-1:123456789012:model-package/tuneyard-models/3';
const EXACT = { type: 'string_check', name: 'exact', input: '{{ sample.output_text }}', reference: '{{ item.reference }}', operation: 'eq' };

const grpoRequest = (rewardModel: string, graders = false) => ({
  request: {
    dataset: { name: 'math-prompts', sha256: 'c'.repeat(64) },
    baseModel: BASE,
    recipe: { method: 'grpo' },
    rewardModel,
    ...(graders ? { graders: [EXACT] } : {}),
  },
});

/**
 * A registry holding the model package the Register state writes for a real planned run (its model data is the plan's
 * modelArtifactS3Uri, its CustomerMetadataProperties the plan's lineage, as ModelRegistry.registerState maps them).
 */
function registryOf(method: 'reward' | 'lora'): RegistryReader & { calls: unknown[] } {
  const { plan } = planRunStep({ request: { dataset: { name: 'prefs', sha256: 'd'.repeat(64) }, baseModel: BASE, recipe: { method } } }, ENV);
  const calls: unknown[] = [];
  return {
    calls,
    async send(command: DescribeModelPackageCommand): Promise<DescribeModelPackageCommandOutput> {
      calls.push(command.input);
      if (command.input.ModelPackageName !== ARN) throw Object.assign(new Error(`Model package ${command.input.ModelPackageName} does not exist.`), { name: 'ValidationException' });
      const { runId, baseModel, datasetName, datasetSha256, kind } = plan.lineage;
      return {
        ModelPackageArn: ARN,
        ModelPackageName: 'tuneyard-models',
        CreationTime: new Date(0),
        ModelPackageStatus: 'Completed',
        ModelPackageStatusDetails: { ValidationStatuses: [] },
        InferenceSpecification: {
          Containers: [{ Image: 'image', ModelDataSource: { S3DataSource: { S3Uri: plan.modelArtifactS3Uri, S3DataType: 'S3Prefix', CompressionType: 'None' } } }],
          SupportedContentTypes: ['application/json'],
          SupportedResponseMIMETypes: ['application/json'],
        },
        CustomerMetadataProperties: { runId, baseModel, datasetName, datasetSha256, method: plan.lineage.method, kind },
        $metadata: {},
      };
    },
  };
}

const s3 = { send: async () => ({}) };

describe('PlanRun resolves a grpo run\'s rewardModel in the model registry', () => {
  test('a registered reward model (kind=reward): its model data is the reward_model channel, read with one valid DescribeModelPackage', async () => {
    const registry = registryOf('reward');
    const { plan } = await planRunAndWriteGraders(grpoRequest(ARN), ENV, s3, registry);
    const rewardRun = planRunStep({ request: { dataset: { name: 'prefs', sha256: 'd'.repeat(64) }, baseModel: BASE, recipe: { method: 'reward' } } }, ENV).plan;
    expect(plan.inputDataConfig.find((c) => c.ChannelName === 'reward_model')?.DataSource.S3DataSource.S3Uri).toBe(rewardRun.modelArtifactS3Uri);
    expect(plan.hyperParameters).toMatchObject({ method: 'grpo', reward_model: ARN });
    expect(registry.calls).toEqual([{ ModelPackageName: ARN }]);
    expect(validateRequests([{ service: 'sagemaker', operation: 'DescribeModelPackage', params: registry.calls[0] }])).toEqual([[]]);
  });

  test('a registered model that generates (kind=generative) is refused as a reward model, with the fix', async () => {
    const error = await planRunAndWriteGraders(grpoRequest(ARN), ENV, s3, registryOf('lora')).catch((e) => e);
    expect(error).toBeInstanceOf(RunRequestInvalid);
    expect(error.message).toMatch(/^rewardModel: ".*" is registered as kind=generative, not as a reward model \(kind=reward\); .*name its model package/);
  });

  test('a version the registry does not hold is refused as RunRequestInvalid naming the field', async () => {
    const missing = ARN.replace(/3$/, '99');
    const error = await planRunAndWriteGraders(grpoRequest(missing), ENV, s3, registryOf('reward')).catch((e) => e);
    expect(error).toBeInstanceOf(RunRequestInvalid);
    expect(error.message).toMatch(/^rewardModel: ".*\/99" cannot be read from this plane's model registry \(ValidationException: .*does not exist\.\); name a reward model version/);
  });

  test('an s3:// reward model folder and a run without one read no registry', async () => {
    const registry = registryOf('reward');
    const folder = 's3://data-bucket/artifacts/rm/tuneyard-rm-train/output/model/';
    const { plan } = await planRunAndWriteGraders(grpoRequest(folder, true), ENV, s3, registry);
    expect(plan.inputDataConfig.find((c) => c.ChannelName === 'reward_model')?.DataSource.S3DataSource.S3Uri).toBe(folder);
    expect(registry.calls).toEqual([]);
  });
});

describe('PlanRun deploys a grpo run as the adapter it writes', () => {
  const deploying = (deploys: 'adapter' | 'full-weights') =>
    planRunStep(
      { request: { ...grpoRequest('s3://data-bucket/artifacts/rm/tuneyard-rm-train/output/model/').request, deploy: { endpointName: 'chat', adapterName: 'math-v1' } } },
      { ...ENV, deployStage: true, deploys },
    );

  test('an adapter endpoint takes it; a single-model endpoint is refused with why merge does not help', () => {
    expect(deploying('adapter').plan.hyperParameters.method).toBe('grpo');
    expect(() => deploying('full-weights')).toThrow(/serves full models, but this grpo run writes only a LoRA adapter\. A grpo run does not merge \(recipe\.merge does not apply\)/);
  });
});
