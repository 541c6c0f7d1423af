import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { DescribeModelPackageCommand, type DescribeModelPackageCommandOutput } from '@aws-sdk/client-sagemaker';
import { MotoServer, startMoto } from '../../../test/support/moto';
import { makeTokenizers, PythonTokenizers } from '../../../test/support/tokenizers';
import { recordingModelFiles } from '../../../test/support/model-files';
import { validateRequests } from '../../../test/support/api-model';
import { PlanRunEnvironment, planRunAndWriteGraders, planRunStep, RegistryReader, RunRequestInvalid } from './plan-run';
import { ModelFileReader } from '../../../lib/reward-vocabulary';

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
function registryOf(method: 'reward' | 'lora', lineage: { modelData?: string; baseModel?: string } = {}): RegistryReader & { calls: unknown[] } {
  const { plan } = planRunStep({ request: { dataset: { name: 'prefs', sha256: 'd'.repeat(64) }, baseModel: BASE, recipe: { method } } }, ENV);
  const calls: unknown[] = [];
  return {
    calls,
    async send(command: DescribeModelPackageCommand): Promise<DescribeModelPackageCommandOutput> {
      calls.push(command.input);
      if (command.input.ModelPackageName !== ARN) throw Object.assign(new Error(`Model package ${command.input.ModelPackageName} does not exist.`), { name: 'ValidationException' });
      const { runId, datasetName, datasetSha256, kind } = plan.lineage;
      const baseModel = lineage.baseModel ?? plan.lineage.baseModel;
      return {
        ModelPackageArn: ARN,
        ModelPackageName: 'tuneyard-models',
        CreationTime: new Date(0),
        ModelPackageStatus: 'Completed',
        ModelPackageStatusDetails: { ValidationStatuses: [] },
        InferenceSpecification: {
          Containers: [{ Image: 'image', ModelDataSource: { S3DataSource: { S3Uri: lineage.modelData ?? plan.modelArtifactS3Uri, S3DataType: 'S3Prefix', CompressionType: 'None' } } }],
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
    expect(error.message).toMatch(/^rewardModel: ".*\/99" cannot be read from this plane's model registry \(ValidationException: .*does not exist\.\); name a reward model version of its model package group \(`tuneyard models`\)/);
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

describe("PlanRun refuses a reward model whose vocabulary is not the policy's base model's, before any job starts", () => {
  // GIVEN tokenizers built by the Python libraries (tokenizers, transformers), staged on an S3 (moto) as stage-model
  // stages a base model and as a method=reward run writes its model (output/model/full/)
  let moto: MotoServer;
  let client: S3Client;
  let dir: string;
  let python: PythonTokenizers;
  const REWARD_RUNS = 's3://data-bucket/artifacts/';
  const WORDPIECE_BASE = 's3://data-bucket/base-models/bert-mini/';
  const rewardRun = (name: string) => `${REWARD_RUNS}${name}/tuneyard-${name}-train/output/model/`;
  const file = (name: string, f = 'tokenizer.json') => fs.readFileSync(path.join(dir, name, f));
  const CONFIG = Buffer.from(JSON.stringify({ architectures: ['Qwen2ForSequenceClassification'], num_labels: 1 }));

  async function put(uri: string, body: Buffer, staged = false): Promise<void> {
    const [, bucket, key] = /^s3:\/\/([^/]+)\/(.*)$/.exec(uri)!;
    const metadata = staged ? { Metadata: { sha256: createHash('sha256').update(body).digest('hex') } } : {};
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ...metadata }));
  }
  /** A reward run's model folder: full/{config.json, tokenizer.json, tokenizer_config.json} beside adapter/. */
  async function putRewardRun(name: string, tokenizer: string, layout: 'full' | 'root' = 'full'): Promise<string> {
    const folder = rewardRun(name);
    const model = layout === 'full' ? `${folder}full/` : folder;
    await put(`${model}config.json`, CONFIG);
    await put(`${model}tokenizer.json`, file(tokenizer));
    await put(`${model}tokenizer_config.json`, file(tokenizer, 'tokenizer_config.json'));
    await put(`${folder}adapter/adapter_config.json`, Buffer.from('{}'));
    return folder;
  }
  const reader = () => recordingModelFiles(client);
  // chatTemplate set: these base tokenizers have none (plan-run-chat-template.test.ts refuses a run without it)
  const plan = async (rewardModel: string, files: ModelFileReader, baseModel = BASE, registry?: RegistryReader) =>
    planRunAndWriteGraders(
      { request: { ...grpoRequest(rewardModel).request, recipe: { method: 'grpo', chatTemplate: 'chatml' }, baseModel, ...(baseModel === BASE ? {} : { baseModelParameters: 0.01 }) } },
      ENV,
      s3,
      registry,
      files,
    );

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokenizers-'));
    python = makeTokenizers(dir);
    moto = await startMoto();
    client = new S3Client({ ...moto.clientConfig, forcePathStyle: true });
    await client.send(new CreateBucketCommand({ Bucket: 'data-bucket' }));
    for (const [base, tokenizer] of [[BASE, 'bpe'], [WORDPIECE_BASE, 'wordpiece']]) {
      await put(`${base}config.json`, CONFIG, true);
      await put(`${base}tokenizer.json`, file(tokenizer), true);
      await put(`${base}tokenizer_config.json`, file(tokenizer, 'tokenizer_config.json'), true);
    }
    await putRewardRun('same', 'bpe-reformatted');
    await putRewardRun('chatml', 'bpe-chatml');
    await putRewardRun('other', 'bpe-other');
    await putRewardRun('moved', 'wordpiece-one-id', 'root');
    await putRewardRun('identical', 'bpe');
    // a sentencepiece-only reward model: no tokenizer.json
    await put(`${rewardRun('sentencepiece')}full/config.json`, CONFIG);
    await put(`${rewardRun('sentencepiece')}full/tokenizer.model`, Buffer.from('spm'));
  }, 180_000);
  afterAll(async () => {
    await moto?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('fails when the reward model is of another tokenizer family: its size, the base model\'s, the count of differing ids, examples, and the fix', async () => {
    const files = reader();
    const error = await plan(rewardRun('other'), files).catch((e) => e);
    expect(error).toBeInstanceOf(RunRequestInvalid);
    const differing = python.pairs.find((p) => p.first === 'bpe' && p.second === 'bpe-other')!.differing;
    expect(error.message).toMatch(
      new RegExp(
        `^rewardModel: the reward model's vocabulary \\(${python.cases['bpe-other'].size} tokens, ".*/other/tuneyard-other-train/output/model/full/tokenizer\\.json"\\) ` +
          `is not the policy's base model's \\("${BASE}": ${python.cases.bpe.size} tokens; ${differing} token ids differ, e\\.g\\. ".+" is \\d+ in the base model and .+\\): ` +
          "it would score token ids it reads differently\\. Use a reward model trained \\(method=reward\\) on this base model or one of its tokenizer family\\.$",
      ),
    );
    // the reward model found where the job finds it (not the channel root: full/), then the base model's file; read once each
    expect(files.calls).toEqual([
      `List ${rewardRun('other').slice('s3://data-bucket/'.length)}`,
      `List ${rewardRun('other').slice('s3://data-bucket/'.length)}full/`,
      'List base-models/qwen2.5-0.5b/',
      `Get ${rewardRun('other').slice('s3://data-bucket/'.length)}full/tokenizer.json`,
      'Get base-models/qwen2.5-0.5b/tokenizer.json',
    ]);
  });

  test('fails alike for an rloo run (RLHF against the reward model)', async () => {
    const request = { ...grpoRequest(rewardRun('other')).request, recipe: { method: 'rloo', chatTemplate: 'chatml' } };
    const error = await planRunAndWriteGraders({ request }, ENV, s3, undefined, reader()).catch((e) => e);
    expect(error).toBeInstanceOf(RunRequestInvalid);
    expect(error.message).toMatch(/^rewardModel: the reward model's vocabulary \(\d+ tokens, .*\) is not the policy's base model's/);
    await expect(planRunAndWriteGraders({ request: { ...request, rewardModel: rewardRun('chatml') } }, ENV, s3, undefined, reader())).resolves.toBeDefined();
  });

  test('fails when a single token of the vocabulary has another id (a WordPiece model in the channel\'s root)', async () => {
    const error = await plan(rewardRun('moved'), reader(), WORDPIECE_BASE).catch((e) => e);
    expect(error).toBeInstanceOf(RunRequestInvalid);
    const size = python.cases.wordpiece.size;
    expect(error.message).toMatch(new RegExp(`\\(${size} tokens, .*\\(".*bert-mini/": ${size} tokens; 2 token ids differ, e\\.g\\. "##.+" is \\d+ in the base model and ${size} in the reward model\\)`));
  });

  test('a registered reward model trained on another base model is refused naming the base model it was trained on', async () => {
    const registry = registryOf('reward', { modelData: rewardRun('other'), baseModel: 's3://data-bucket/base-models/other-family/' });
    const error = await plan(ARN, reader(), BASE, registry).catch((e) => e);
    expect(error).toBeInstanceOf(RunRequestInvalid);
    expect(error.message).toMatch(/tokenizer family \(this one was trained on "s3:\/\/data-bucket\/base-models\/other-family\/"\)\.$/);
  });

  test('the same vocabulary in another file (normalizer, formatting) plans, and so does one with a chat template\'s tokens added', async () => {
    for (const name of ['same', 'chatml']) {
      const { plan: planned } = await plan(rewardRun(name), reader());
      expect(planned.inputDataConfig.find((c) => c.ChannelName === 'reward_model')?.DataSource.S3DataSource.S3Uri).toBe(rewardRun(name));
    }
  });

  test('a tokenizer.json with the bytes of the staged one (its sha256 metadata) is not parsed, nor the base\'s body read', async () => {
    const files = reader();
    let bodyRead = false;
    const send = files.send.bind(files);
    files.send = (async (command: any) => {
      const out: any = await send(command);
      if (command.input.Key === 'base-models/qwen2.5-0.5b/tokenizer.json') {
        const body = out.Body;
        out.Body = { transformToByteArray: async () => ((bodyRead = true), body.transformToByteArray()), destroy: () => body.destroy() };
      }
      return out;
    }) as any;
    await plan(rewardRun('identical'), files);
    expect(files.calls).toContain('Get base-models/qwen2.5-0.5b/tokenizer.json');
    expect(bodyRead).toBe(false);
  });

  test('reads nothing for a registered reward model trained on this base model (its lineage), nor for a Hub id base model', async () => {
    const files = reader();
    await plan(ARN, files, BASE, registryOf('reward', { modelData: rewardRun('other') }));
    expect(files.calls).toEqual([]);
    await planRunAndWriteGraders({ request: { ...grpoRequest(rewardRun('other')).request, baseModel: 'Qwen/Qwen2.5-0.5B' } }, { ...ENV, allowHubModels: true }, s3, undefined, files);
    expect(files.calls).toEqual([]);
  });

  test('a reward model without tokenizer.json (sentencepiece only) is left to the training job\'s check', async () => {
    const files = reader();
    await plan(rewardRun('sentencepiece'), files);
    expect(files.calls.filter((c) => c.startsWith('Get'))).toEqual([]);
  });
});
