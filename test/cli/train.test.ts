/**
 * `tuneyard train` against moto with the real SDK clients: the recipe flags, and what it refuses
 * before starting a run. The plane is a stand-in stack (test/cli/moto-plane.ts) whose outputs say
 * what the real stack's do: Hub models off, the bundled image's minimum compute capability 7.5.
 * Nothing here runs the pipeline: moto leaves executions RUNNING; the tests read back the
 * execution input (the RunRequest) that train started.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3ServiceException } from '@aws-sdk/client-s3';
import { DescribeExecutionCommand, ListExecutionsCommand } from '@aws-sdk/client-sfn';
import { estimateOn } from '../../lib/cli/commands/estimate';
import { planForCli } from '../../lib/cli/commands/runs';
import { parseRunRequest } from '../../lib/run-request';
import { makeChatTemplateTokenizers, makeTokenizers } from '../support/tokenizers';
import { startMotoPlane, MotoPlane } from './moto-plane';
import { cli } from './support';

const BUCKET = 'tuneyard-data-train';
const BASE = `s3://${BUCKET}/base-models/qwen2.5-0.5b-instruct/`;
let plane: MotoPlane;
let tmp: string;
let chat: string;
let pairs: string;

beforeAll(async () => {
  plane = await startMotoPlane({ bucket: BUCKET, outputs: { AllowHubModels: 'false', MinComputeCapability: '7.5' } });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tuneyard-train-'));
  const chatFile = path.join(tmp, 'chat.jsonl');
  const rows = Array.from({ length: 40 }, (_, i) => JSON.stringify({ messages: [{ role: 'user', content: `question ${i} ${'q'.repeat(200)}` }, { role: 'assistant', content: `answer ${i}` }] }));
  fs.writeFileSync(chatFile, rows.join('\n') + '\n');
  const pairsFile = path.join(tmp, 'pairs.jsonl');
  fs.writeFileSync(pairsFile, JSON.stringify({ prompt: 'Hi', chosen: 'Hello! How can I help?', rejected: 'What.' }) + '\n');
  for (const [file, name] of [
    [chatFile, 'chats'],
    [pairsFile, 'pairs'],
  ]) {
    const up = await cli(['upload', file, '--name', name, '--json'], { clients: plane.factory });
    expect({ code: up.code, stderr: up.stderr }).toEqual({ code: 0, stderr: '' });
  }
  chat = 'chats';
  pairs = 'pairs';
  await plane.clients.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'base-models/qwen2.5-0.5b-instruct/config.json', Body: '{"model_type":"qwen2"}' }));
}, 120_000);

afterAll(async () => {
  await plane?.stop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

async function executions(): Promise<string[]> {
  const stateMachineArn = 'arn:aws:states:us-east-1:123456789012:stateMachine:TuneyardPipeline';
  const out = await plane.clients.sfn.send(new ListExecutionsCommand({ stateMachineArn }));
  return (out.executions ?? []).map((e) => e.name!).sort();
}

async function startedRequest(executionArn: string) {
  const out = await plane.clients.sfn.send(new DescribeExecutionCommand({ executionArn }));
  return JSON.parse(out.input!);
}

describe('train flags', () => {
  test('map into the recipe, and a flag wins over the same field of --recipe', async () => {
    // GIVEN a recipe file
    const recipe = path.join(tmp, 'recipe.json');
    fs.writeFileSync(recipe, JSON.stringify({ method: 'lora', epochs: 3, batchSize: 8, loraR: 32, warmupRatio: 0.1 }));

    // WHEN train overrides some of its fields and sets others with flags
    const { code, stdout, stderr } = await cli(
      [
        'train', '--dataset', chat, '--base-model', BASE, '--recipe', recipe, '--epochs', '2', '--lora-r', '8', '--learning-rate', '1e-4',
        '--gradient-accumulation', '2', '--lora-alpha', '16', '--lora-dropout', '0.1', '--max-length', '1024', '--target-modules', 'q_proj,v_proj',
        '--lr-scheduler', 'linear', '--merge', '--save-steps', '50', '--weight-decay', '0.01', '--max-steps', '500', '--instance', 'ml.g5.xlarge', '--no-spot', '--json',
      ],
      { clients: plane.factory },
    );

    // THEN the started request's recipe has the flags' values over the file's
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const out = JSON.parse(stdout);
    const request = await startedRequest(out.executionArn);
    expect(request.recipe).toEqual({
      method: 'lora',
      epochs: 2,
      batchSize: 8,
      loraR: 8,
      warmupRatio: 0.1,
      learningRate: 1e-4,
      gradientAccumulation: 2,
      loraAlpha: 16,
      loraDropout: 0.1,
      maxLength: 1024,
      targetModules: ['q_proj', 'v_proj'],
      lrScheduler: 'linear',
      merge: true,
      saveSteps: 50,
      weightDecay: 0.01,
      maxSteps: 500,
    });
    expect(request).toMatchObject({ instanceType: 'ml.g5.xlarge', spot: false });
    // AND the cost printed is the estimate command's for the dataset's tokens and the run's recipe (its steps as passes over the rows)
    const manifest = JSON.parse(await (await plane.clients.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: `datasets/chats/${request.dataset.sha256}/manifest.json` }))).Body!.transformToString());
    const expected = estimateOn('ml.g5.xlarge', { baseModel: BASE, method: 'lora', instanceCount: 1, tokens: manifest.files.train.tokens, epochs: (500 * 8 * 2) / manifest.files.train.rows, maxLength: 1024, batchSize: 8, loraR: 8, distribution: 'none' }); // --max-steps 500 of 8 x 2 rows
    expect(out.estimate).toEqual(JSON.parse(JSON.stringify(expected)));
    expect(out.estimate.onDemandUsd).toBeGreaterThan(0);
  });

  test('text output: the preflight, then the time and cost with spot', async () => {
    const { code, stdout } = await cli(['train', '--dataset', chat, '--base-model', BASE, '--method', 'qlora', '--epochs', '3'], { clients: plane.factory });
    expect(stdout).toMatch(
      /^started run chats-qlora-[0-9a-f]{12}\n {2}QLoRA of .+ at maxLength 2048, batchSize 4 needs ~[\d.]+ GiB per GPU; ml\.g5\.2xlarge has 24 GiB per GPU\.\n {2}estimated ~\S+ h of training on 1 x ml\.g5\.2xlarge: <?\$[\d.]+ with spot \(<?\$[\d.]+ on demand\); an estimate, excluding start-up and evaluation \(see `tuneyard estimate`\)\n {2}watch it: tuneyard watch chats-qlora-[0-9a-f]{12}\n$/,
    );
    expect(code).toBe(0);
  });

  test('a bad flag value is a usage error naming the flag', async () => {
    const { code, stderr } = await cli(['train', '--dataset', chat, '--base-model', BASE, '--lora-dropout', '1.5']);
    expect(stderr).toMatch(/^error: option '--lora-dropout <p>' argument '1\.5' is invalid\. must be a number from 0 to below 1\./);
    expect(code).toBe(64); // a usage error
  });

  test('a flag that does not apply to the method is named with its flag; a recipe file field with its file', async () => {
    const before = await executions();
    const flag = await cli(['train', '--dataset', chat, '--base-model', BASE, '--method', 'sft', '--lora-r', '8'], { clients: plane.factory });
    expect(flag.stderr).toMatch(/^error: invalid RunRequest:\n {2}- recipe\.loraR \(--lora-r\): loraR applies to method lora or qlora or dpo or reward or grpo or rloo only/);
    expect(flag.stderr).toContain('every recipe field: the README\'s "Recipe reference"');
    expect(flag.code).toBe(1);

    const recipe = path.join(tmp, 'bad-recipe.json');
    fs.writeFileSync(recipe, JSON.stringify({ method: 'lora', epochs: -1 }));
    const file = await cli(['train', '--dataset', chat, '--base-model', BASE, '--recipe', recipe], { clients: plane.factory });
    expect(file.stderr).toContain(`  - recipe.epochs (in ${recipe}): must be above 0 (got -1)`);
    expect(file.code).toBe(1);
    expect(await executions()).toEqual(before);
  });

  test('a request field set by a flag is named with the flag', async () => {
    const { code, stderr } = await cli(['train', '--dataset', chat, '--base-model', BASE, '--instance-count', '17'], { clients: plane.factory });
    expect(stderr).toMatch(/^error: invalid RunRequest:\n {2}- instanceCount \(--instance-count\): must be at most 16 \(got 17\)/);
    expect(code).toBe(1);
  });

  test('--help lists the recipe flags, says a flag wins over --recipe and points at the recipe reference', async () => {
    const { stdout } = await cli(['train', '--help']);
    for (const flag of ['--epochs', '--batch-size', '--gradient-accumulation', '--learning-rate', '--lora-r', '--lora-alpha', '--lora-dropout', '--max-length', '--instance', '--instance-count', '--no-spot']) {
      expect(stdout).toContain(`  ${flag} `);
    }
    expect(stdout.replace(/\s+/g, ' ')).toContain('(every field: the README\'s "Recipe reference"); a flag below wins over the same field in the file');
  });
});

describe('train refuses what the pipeline would, before starting anything', () => {
  let before: string[];
  beforeEach(async () => {
    before = await executions();
  });
  afterEach(async () => {
    expect(await executions()).toEqual(before);
  });

  test('--method dpo on a chat dataset (ValidateDataset\'s check, from the version\'s manifest)', async () => {
    const { code, stderr } = await cli(['train', '--dataset', chat, '--base-model', BASE, '--method', 'dpo'], { clients: plane.factory });
    expect(stderr).toMatch(
      /^error: dataset chats@[0-9a-f]{64}: method dpo needs preference pairs \(\{"prompt","chosen","rejected"\}\); the file is chat\. Use --method sft, lora or qlora, or convert the data to pairs \(not-preference; the pipeline's ValidateDataset would fail the run\)\n$/,
    );
    expect(code).toBe(1);
  });

  test('--method lora on preference pairs', async () => {
    const { code, stderr } = await cli(['train', '--dataset', pairs, '--base-model', BASE, '--method', 'lora'], { clients: plane.factory });
    expect(stderr).toMatch(/^error: dataset pairs@[0-9a-f]{64}: method lora trains on responses, but the file holds preference pairs \(preference\); use method dpo \(preference-for-sft;/);
    expect(code).toBe(1);
  });

  test('a Hub id while the plane (output AllowHubModels false) keeps jobs network-isolated', async () => {
    const { code, stderr } = await cli(['train', '--dataset', chat, '--base-model', 'Qwen/Qwen2.5-0.5B-Instruct', '--method', 'lora'], { clients: plane.factory });
    expect(stderr).toBe(
      'error: baseModel: "Qwen/Qwen2.5-0.5B-Instruct" is a Hugging Face Hub id, but training jobs run with network isolation and cannot download it. ' +
        `Stage the model folder under s3://${BUCKET}/base-models/<name>/ and pass that s3:// URI, or deploy the plane with training.allowHubModels true.\n` +
        '  stage it: hf download Qwen/Qwen2.5-0.5B-Instruct --local-dir qwen2.5-0.5b-instruct && tuneyard stage-model qwen2.5-0.5b-instruct --name qwen2.5-0.5b-instruct\n',
    );
    expect(code).toBe(1);
  });

  test('a base model folder that does not exist, and one without config.json', async () => {
    const missing = await cli(['train', '--dataset', chat, '--base-model', `s3://${BUCKET}/base-models/llama-3.2-1b/`, '--method', 'lora'], { clients: plane.factory });
    expect(missing.stderr).toBe(
      `error: baseModel: s3://${BUCKET}/base-models/llama-3.2-1b/ is empty or does not exist, so the training job could not load a model from it. ` +
        'Stage a Hugging Face model folder there: `hf download <model id> --local-dir DIR`, then `tuneyard stage-model DIR --name llama-3.2-1b`\n',
    );
    expect(missing.code).toBe(1);

    await plane.clients.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'base-models/gemma-2b/model.safetensors', Body: 'weights' }));
    const noConfig = await cli(['train', '--dataset', chat, '--base-model', `s3://${BUCKET}/base-models/gemma-2b`, '--method', 'lora'], { clients: plane.factory });
    expect(noConfig.stderr).toMatch(new RegExp(`^error: baseModel: s3://${BUCKET}/base-models/gemma-2b/ has no config\\.json \\(1 other object\\), so the training job could not load a model from it\\.`));
    expect(noConfig.code).toBe(1);
  });

  test('an instance whose GPU the training image cannot run (output MinComputeCapability 7.5)', async () => {
    const { code, stderr } = await cli(['train', '--dataset', chat, '--base-model', BASE, '--method', 'qlora', '--instance', 'ml.p3.2xlarge'], { clients: plane.factory });
    expect(stderr).toMatch(/^error: instanceType \(--instance\): ml\.p3\.2xlarge has V100 GPUs \(compute capability 7\.0\), which the training image's CUDA build cannot run/);
    expect(code).toBe(1);
  });

  test('a run that does not fit: the advice names the flags that fix it', async () => {
    await plane.clients.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'base-models/house-llm/config.json', Body: '{}' }));
    const { code, stderr } = await cli(
      ['train', '--dataset', chat, '--base-model', `s3://${BUCKET}/base-models/house-llm/`, '--base-model-parameters', '70', '--method', 'lora', '--batch-size', '8'],
      { clients: plane.factory },
    );
    expect(stderr).toMatch(/^error: the run does not fit in GPU memory: LoRA of .+ at maxLength 2048, batchSize 8 needs ~[\d.]+ GiB per GPU; ml\.g5\.2xlarge has 24 GiB per GPU: use qlora \(--method qlora\), or lower --batch-size \(raise --gradient-accumulation to keep the effective batch\)/);
    expect(code).toBe(1);
  });

  test('a base model whose size neither its name nor a manifest tells: asks for --base-model-parameters', async () => {
    await plane.clients.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'base-models/mystery/config.json', Body: '{}' }));
    const { code, stderr } = await cli(['train', '--dataset', chat, '--base-model', `s3://${BUCKET}/base-models/mystery/`, '--method', 'lora'], { clients: plane.factory });
    expect(stderr).toMatch(/^error: cannot tell the size of base model "s3:\/\/[^"]+\/mystery\/" from its name; pass --base-model-parameters to its parameter count/);
    expect(code).toBe(1);
  });
});

describe('train --method grpo', () => {
  test('a prompt-only dataset uploaded with --method grpo trains with --graders and --reward-model, the request carrying both', async () => {
    // GIVEN prompt-only training rows and eval rows with reference answers, uploaded for grpo (upload refuses them otherwise)
    const prompts = path.join(tmp, 'prompts.jsonl');
    fs.writeFileSync(prompts, Array.from({ length: 20 }, (_, i) => JSON.stringify({ messages: [{ role: 'user', content: `What is ${i} + ${i}?` }], reference: String(2 * i) })).join('\n') + '\n');
    const answers = path.join(tmp, 'answers.jsonl');
    fs.writeFileSync(answers, Array.from({ length: 5 }, (_, i) => JSON.stringify({ messages: [{ role: 'user', content: `What is ${i} x 3?` }, { role: 'assistant', content: String(3 * i) }], reference: String(3 * i) })).join('\n') + '\n');
    const refused = await cli(['upload', prompts, '--name', 'sums', '--eval', answers, '--json'], { clients: plane.factory });
    expect(refused.code).not.toBe(0);
    const up = await cli(['upload', prompts, '--name', 'sums', '--eval', answers, '--method', 'grpo', '--json'], { clients: plane.factory });
    expect({ code: up.code, stderr: up.stderr }).toEqual({ code: 0, stderr: '' });
    const graders = path.join(tmp, 'grpo-graders.json');
    fs.writeFileSync(graders, JSON.stringify([{ type: 'string_check', name: 'exact', input: '{{ sample.output_text }}', reference: '{{ item.reference }}', operation: 'eq' }]));
    const rewardModel = `s3://${BUCKET}/artifacts/rm-run/tuneyard-rm-run-train/output/model/`;
    // WHEN
    const { code, stdout, stderr } = await cli(
      ['train', '--dataset', 'sums', '--base-model', BASE, '--method', 'grpo', '--graders', graders, '--reward-model', rewardModel, '--batch-size', '2', '--json'],
      { clients: plane.factory },
    );
    // THEN the run starts with the grpo request PlanRun plans
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const request = await startedRequest(JSON.parse(stdout).executionArn);
    expect(request).toMatchObject({ recipe: { method: 'grpo', batchSize: 2 }, rewardModel, graders: [expect.objectContaining({ name: 'exact' })] });
    // AND --min-reward-gain sets the gate of its reward (a loss may be tolerated); a method without a reward refuses it, naming the flag
    const gated = await cli(
      ['train', '--dataset', 'sums', '--base-model', BASE, '--method', 'grpo', '--graders', graders, '--batch-size', '2', '--min-reward-gain', '-0.1', '--json'],
      { clients: plane.factory },
    );
    expect({ code: gated.code, stderr: gated.stderr }).toEqual({ code: 0, stderr: '' });
    expect((await startedRequest(JSON.parse(gated.stdout).executionArn)).thresholds).toEqual({ maxForgettingIncrease: 0.1, minRewardGain: -0.1 });
    const lora = await cli(['train', '--dataset', 'sums', '--base-model', BASE, '--method', 'lora', '--min-reward-gain', '0.1'], { clients: plane.factory });
    expect(lora.code).toBe(1);
    expect(lora.stderr).toMatch(/ {2}- thresholds\.minRewardGain \(--min-reward-gain\): applies to recipe\.method "grpo" or "rloo" only/);
    expect((await cli(['train', '--dataset', 'sums', '--base-model', BASE, '--method', 'grpo', '--min-reward-gain', 'more'])).stderr).toMatch(/option '--min-reward-gain <gain>' argument 'more' is invalid\. must be a number\./);
    // AND without a reward source it is refused before anything starts, naming the flags
    const none = await cli(['train', '--dataset', 'sums', '--base-model', BASE, '--method', 'grpo', '--batch-size', '2'], { clients: plane.factory });
    expect(none.code).not.toBe(0);
    expect(none.stderr).toMatch(/graders.*needs a reward source/);
  });
});

describe('train with cosine graders', () => {
  test('--embedding-model sets the encoder cosine graders embed with (the request\'s embeddingModel); without it the run is refused naming the flag', async () => {
    // GIVEN a cosine text_similarity grader and an encoder staged under base-models/
    const graders = path.join(tmp, 'cosine-graders.json');
    fs.writeFileSync(graders, JSON.stringify([{ type: 'text_similarity', name: 'close', input: '{{ sample.output_text }}', reference: '{{ item.reference }}', evaluation_metric: 'cosine' }]));
    const encoder = `s3://${BUCKET}/base-models/all-minilm-l6-v2/`;
    const train = (...extra: string[]) => cli(['train', '--dataset', chat, '--base-model', BASE, '--graders', graders, ...extra, '--json'], { clients: plane.factory });
    // WHEN it trains without the encoder, and with it
    const without = await train();
    const withEncoder = await train('--embedding-model', encoder);
    // THEN the first is refused, naming the flag; the second starts with the encoder in its request
    expect(without.code).toBe(1);
    expect(without.stderr).toMatch(/embeddingModel \(--embedding-model\): missing; graders\[0\] \("close"\) uses the cosine metric/);
    expect({ code: withEncoder.code, stderr: withEncoder.stderr }).toEqual({ code: 0, stderr: '' });
    expect((await startedRequest(JSON.parse(withEncoder.stdout).executionArn)).embeddingModel).toBe(encoder);
  });
});

describe('train --method rloo (RLHF)', () => {
  test('a prompt-only dataset trains against --reward-model; without one, or with --merge, it is refused before anything starts, naming the flag and the fix', async () => {
    // GIVEN prompt-only training rows, uploaded for rloo (upload refuses them otherwise), and eval rows with answers
    const prompts = path.join(tmp, 'rlhf-prompts.jsonl');
    fs.writeFileSync(prompts, Array.from({ length: 16 }, (_, i) => JSON.stringify({ messages: [{ role: 'user', content: `Write a friendly reply to message ${i}.` }] })).join('\n') + '\n');
    const answers = path.join(tmp, 'rlhf-answers.jsonl');
    fs.writeFileSync(answers, Array.from({ length: 4 }, (_, i) => JSON.stringify({ messages: [{ role: 'user', content: `Say hi ${i}` }, { role: 'assistant', content: `Hi ${i}!` }] })).join('\n') + '\n');
    const up = await cli(['upload', prompts, '--name', 'rlhf', '--eval', answers, '--method', 'rloo', '--json'], { clients: plane.factory });
    expect({ code: up.code, stderr: up.stderr }).toEqual({ code: 0, stderr: '' });
    const rewardModel = `s3://${BUCKET}/artifacts/rm-run/tuneyard-rm-run-train/output/model/`;
    // WHEN it names no reward model
    const none = await cli(['train', '--dataset', 'rlhf', '--base-model', BASE, '--method', 'rloo'], { clients: plane.factory });
    // THEN it is refused, naming the flag and how to get a reward model
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/ {2}- rewardModel \(--reward-model\): missing; recipe\.method "rloo" \(RLHF\) optimises the model against a registered reward model.*train one with a method "reward" run/);
    // AND merge is not an rloo field (it writes an adapter only)
    const merged = await cli(['train', '--dataset', 'rlhf', '--base-model', BASE, '--method', 'rloo', '--reward-model', rewardModel, '--merge'], { clients: plane.factory });
    expect(merged.code).toBe(1);
    expect(merged.stderr).toMatch(/recipe\.merge \(--merge\): merge applies to method lora or qlora or dpo only and has no effect with method "rloo"/);
    // WHEN it names one
    const { code, stdout, stderr } = await cli(['train', '--dataset', 'rlhf', '--base-model', BASE, '--method', 'rloo', '--reward-model', rewardModel, '--json'], { clients: plane.factory });
    // THEN the run starts with the rloo request PlanRun plans, its preflight counting the reward model
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const out = JSON.parse(stdout);
    expect(out.preflight.fits).toBe(true);
    expect(out.runId).toMatch(/^rlhf-rloo-[0-9a-f]{12}$/);
    expect(await startedRequest(out.executionArn)).toMatchObject({ recipe: { method: 'rloo' }, rewardModel });
  });
});

test('a reward model of another tokenizer family is refused before anything starts, as PlanRun refuses it; one of the same vocabulary trains', async () => {
  // GIVEN a staged base model and two reward runs' model folders, their tokenizer.json files built by the tokenizers library
  const dir = path.join(tmp, 'tokenizers');
  const python = makeTokenizers(dir);
  const put = (key: string, file: string) => plane.clients.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: fs.readFileSync(file) }));
  const base = 'base-models/vocab-base/';
  await put(`${base}config.json`, path.join(dir, 'bpe', 'tokenizer_config.json'));
  await put(`${base}tokenizer.json`, path.join(dir, 'bpe', 'tokenizer.json'));
  for (const [run, tokenizer] of [['rm-other', 'bpe-other'], ['rm-same', 'bpe-reformatted']] as const) {
    await put(`artifacts/${run}/job/output/model/full/config.json`, path.join(dir, 'bpe', 'tokenizer_config.json'));
    await put(`artifacts/${run}/job/output/model/full/tokenizer.json`, path.join(dir, tokenizer, 'tokenizer.json'));
  }
  const prompts = path.join(tmp, 'vocab-prompts.jsonl');
  fs.writeFileSync(prompts, Array.from({ length: 8 }, (_, i) => JSON.stringify({ prompt: `Say something kind, number ${i}.` })).join('\n') + '\n');
  expect((await cli(['upload', prompts, '--name', 'vocab', '--method', 'rloo', '--json'], { clients: plane.factory })).code).toBe(0);
  const train = (run: string) =>
    cli(['train', '--dataset', 'vocab', '--base-model', `s3://${BUCKET}/${base}`, '--base-model-parameters', '0.5', '--method', 'rloo', '--reward-model', `s3://${BUCKET}/artifacts/${run}/job/output/model/`, '--json'], { clients: plane.factory });
  // WHEN it trains against the reward model of another vocabulary
  const other = await train('rm-other');
  // THEN it is refused (exit 1), naming the flag, both sizes and the fix, and nothing starts
  expect(other.code).toBe(1);
  expect(other.stdout).toBe('');
  expect(other.stderr).toContain(`rewardModel (--reward-model): the reward model's vocabulary (${python.cases['bpe-other'].size} tokens,`);
  expect(other.stderr).toContain(`is not the policy's base model's ("s3://${BUCKET}/${base}": ${python.cases.bpe.size} tokens;`);
  expect(other.stderr).toMatch(/Use a reward model trained \(method=reward\) on this base model or one of its tokenizer family/);
  // AND the same vocabulary in another file layout trains
  const same = await train('rm-same');
  expect({ code: same.code, stderr: same.stderr }).toEqual({ code: 0, stderr: '' });
  expect(JSON.parse(same.stdout).runId).toMatch(/^vocab-rloo-[0-9a-f]{12}$/);
});

test('a reward model the CLI user may not read (AccessDenied on artifacts/) does not block the run: PlanRun compares the vocabularies with its own role', async () => {
  // GIVEN a staged base model and a reward run's model folder of another vocabulary, which the CLI user's S3 access refuses to list or read
  const dir = path.join(tmp, 'tokenizers-denied');
  makeTokenizers(dir);
  const put = (key: string, file: string) => plane.clients.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: fs.readFileSync(file) }));
  const base = 'base-models/vocab-denied-base/';
  await put(`${base}config.json`, path.join(dir, 'bpe', 'tokenizer_config.json'));
  await put(`${base}tokenizer.json`, path.join(dir, 'bpe', 'tokenizer.json'));
  await put('artifacts/rm-denied/job/output/model/full/config.json', path.join(dir, 'bpe', 'tokenizer_config.json'));
  await put('artifacts/rm-denied/job/output/model/full/tokenizer.json', path.join(dir, 'bpe-other', 'tokenizer.json'));
  const denied: string[] = [];
  const s3 = new Proxy(plane.clients.s3, {
    get(target, prop, receiver) {
      if (prop !== 'send') return Reflect.get(target, prop, receiver);
      return async (command: { input: { Prefix?: string; Key?: string } }) => {
        const key = command.input.Prefix ?? command.input.Key ?? '';
        if ((command instanceof ListObjectsV2Command || command instanceof GetObjectCommand) && key.startsWith('artifacts/')) {
          denied.push(key);
          throw new S3ServiceException({ name: 'AccessDenied', $fault: 'client', $metadata: { httpStatusCode: 403 }, message: 'Access Denied' });
        }
        return target.send(command as never);
      };
    },
  });
  const prompts = path.join(tmp, 'vocab-denied-prompts.jsonl');
  fs.writeFileSync(prompts, Array.from({ length: 8 }, (_, i) => JSON.stringify({ prompt: `Say something kind, number ${i}.` })).join('\n') + '\n');
  expect((await cli(['upload', prompts, '--name', 'vocab-denied', '--method', 'rloo', '--json'], { clients: plane.factory })).code).toBe(0);
  // WHEN it trains against that reward model
  const run = await cli(
    ['train', '--dataset', 'vocab-denied', '--base-model', `s3://${BUCKET}/${base}`, '--base-model-parameters', '0.5', '--method', 'rloo', '--reward-model', `s3://${BUCKET}/artifacts/rm-denied/job/output/model/`, '--json'],
    { clients: () => ({ ...plane.clients, s3 }) },
  );
  // THEN the run starts, and stderr says which check was left to PlanRun and why
  expect(denied.length).toBeGreaterThan(0);
  expect(run.code).toBe(0);
  expect(JSON.parse(run.stdout).runId).toMatch(/^vocab-denied-rloo-[0-9a-f]{12}$/);
  expect(run.stderr).toContain('warning: the reward model\'s vocabulary was not compared with the base model\'s here (AccessDenied: Access Denied');
  expect(run.stderr).toContain('PlanRun compares them with the pipeline\'s role before any job starts');
});

test('a grpo/rloo base model without a chat template is refused before anything starts, as PlanRun refuses it, naming the recipe field; AccessDenied on it is a warning', async () => {
  // GIVEN base models staged with tokenizers saved by transformers: one without a chat template, one with chat_template.jinja
  const dir = path.join(tmp, 'chat-templates');
  const python = makeChatTemplateTokenizers(dir);
  expect([python.none.truthy, python.jinja.truthy]).toEqual([false, true]);
  for (const name of ['none', 'jinja']) {
    await plane.clients.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `base-models/ct-${name}/config.json`, Body: '{"model_type":"qwen2"}' }));
    for (const f of python[name].files) {
      await plane.clients.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `base-models/ct-${name}/${f}`, Body: fs.readFileSync(path.join(dir, name, f)) }));
    }
  }
  const prompts = path.join(tmp, 'ct-prompts.jsonl');
  fs.writeFileSync(prompts, Array.from({ length: 8 }, (_, i) => JSON.stringify({ prompt: `Say something kind, number ${i}.` })).join('\n') + '\n');
  expect((await cli(['upload', prompts, '--name', 'ct', '--method', 'rloo', '--json'], { clients: plane.factory })).code).toBe(0);
  const recipe = path.join(tmp, 'ct-recipe.json');
  fs.writeFileSync(recipe, JSON.stringify({ method: 'rloo', chatTemplate: 'chatml' }));
  const rewardModel = `s3://${BUCKET}/artifacts/rm-run/tuneyard-rm-run-train/output/model/`;
  const train = (base: string, extra: string[] = ['--method', 'rloo'], clients = plane.factory) =>
    cli(['train', '--dataset', 'ct', '--base-model', `s3://${BUCKET}/base-models/${base}/`, '--base-model-parameters', '0.5', '--reward-model', rewardModel, ...extra, '--json'], { clients });
  // WHEN it trains on the base model without a chat template
  const refused = await train('ct-none');
  // THEN it is refused (exit 1), nothing starts, and the fix names the recipe field (no flag sets it)
  expect(refused.code).toBe(1);
  expect(refused.stdout).toBe('');
  expect(refused.stderr).toContain(`recipe.chatTemplate: the base model's tokenizer ("s3://${BUCKET}/base-models/ct-none/") has no chat template`);
  expect(refused.stderr).toContain('a rloo run asks its prompts as a chat');
  expect(refused.stderr).toContain('Set "chatTemplate": "chatml" in the --recipe file, or use a base model that ships a chat template');
  // AND with chatTemplate in the recipe, or on a base model that ships a template, it trains
  for (const run of [await train('ct-none', ['--recipe', recipe]), await train('ct-jinja')]) {
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
  }
  // AND a CLI user who may not read tokenizer_config.json is warned, and the run starts (PlanRun checks with its role)
  const s3 = new Proxy(plane.clients.s3, {
    get(target, prop, receiver) {
      if (prop !== 'send') return Reflect.get(target, prop, receiver);
      return async (command: { input: { Key?: string } }) => {
        if (command instanceof GetObjectCommand && command.input.Key?.endsWith('/tokenizer_config.json')) {
          throw new S3ServiceException({ name: 'AccessDenied', $fault: 'client', $metadata: { httpStatusCode: 403 }, message: 'Access Denied' });
        }
        return target.send(command as never);
      };
    },
  });
  const denied = await train('ct-none', ['--method', 'rloo', '--seed', '7'], () => ({ ...plane.clients, s3 }));
  expect(denied.code).toBe(0);
  expect(denied.stderr).toContain("warning: the base model's chat template was not looked for here (AccessDenied: Access Denied");
  expect(denied.stderr).toContain("PlanRun looks for it with the pipeline's role before any job starts");
});

test('train sizes a staged model whose name does not tell from the parameters stage-model counted', async () => {
  await plane.clients.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'base-models/house-model/config.json', Body: '{}' }));
  await plane.clients.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: 'base-models/house-model/tuneyard-model.json', Body: JSON.stringify({ name: 'house-model', parameters: 1_543_714_304, files: {} }) }));
  const { code, stdout } = await cli(['train', '--dataset', chat, '--base-model', `s3://${BUCKET}/base-models/house-model/`, '--method', 'qlora', '--json'], { clients: plane.factory });
  expect(code).toBe(0);
  expect((await startedRequest(JSON.parse(stdout).executionArn)).baseModelParameters).toBe(1.54);
});

test('the plane settings reach planRun: a plane that allows Hub models plans a Hub id without network isolation', () => {
  const request = parseRunRequest({ dataset: { name: 'chats', sha256: 'a'.repeat(64) }, baseModel: 'Qwen/Qwen2.5-0.5B-Instruct', recipe: { method: 'lora' } });
  const plane = { stackName: 'Tuneyard', stateMachineArn: 'arn:x', dataBucketName: BUCKET };
  expect(planForCli(request, { ...plane, allowHubModels: true }).enableNetworkIsolation).toBe(false);
  expect(() => planForCli(request, { ...plane, allowHubModels: false })).toThrow(/is a Hugging Face Hub id, but training jobs run with network isolation/);
  // a plane whose outputs do not say: its own PlanRun decides
  expect(planForCli(request, plane).enableNetworkIsolation).toBe(false);
});
