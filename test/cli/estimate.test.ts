import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createAwsClients } from '../../lib/cli/run-client';
import { IN_INSTANCE_SCALING, scalingEfficiency } from '../../lib/pricing';
import { cli, fakeClients, PLANE_OUTPUTS } from './support';

describe('estimate: what it tells', () => {
  test('prints the dtype per GPU and the memory breakdown, in text and in --json', async () => {
    const args = ['estimate', '--base-model', 'meta-llama/Llama-3.2-1B', '--method', 'lora', '--tokens', '1000000', '--instance', 'ml.g4dn.xlarge', '--batch-size', '1'];
    const text = await cli(args);
    // T4: the trainer's mixed precision is fp16 there
    expect(text.stdout).toMatch(/^ml\.g4dn\.xlarge +1 +fp16 \(T4 has no bf16\) +[\d.]+ +16 +yes/m);
    expect(text.stdout).toMatch(
      /^memory per GPU on ml\.g4dn\.xlarge \(GiB\): weights [\d.]+, LoRA adapter [\d.]+, gradients [\d.]+, optimizer state [\d.]+, activations and logits [\d.]+, CUDA context and allocator [\d.]+ = [\d.]+$/m,
    );
    expect(text.stdout).toContain('Llama 3.2 1B, 1.24B parameters, shape from https://huggingface.co/meta-llama/Llama-3.2-1B/blob/main/config.json');
    const json = JSON.parse((await cli([...args, '--json'])).stdout);
    const [t4] = json.estimates;
    expect(t4.precision).toBe('fp16 (T4 has no bf16)');
    expect(Object.keys(t4.breakdown).sort()).toEqual(['activations', 'gradients', 'optimizer', 'overhead', 'trainable', 'weights']);
    const sum = Object.values(t4.breakdown as Record<string, number>).reduce((a, b) => a + b, 0);
    expect(sum).toBeCloseTo(t4.requiredGiB, 0);
    expect(json.model).toMatchObject({ name: 'Llama 3.2 1B', known: true, shape: { vocabSize: 128_256, kvHeads: 8 } });
  });

  test('QLoRA on a T4 computes in fp16; on an A10G in bf16', async () => {
    const { stdout } = await cli(['estimate', '--base-model', 'Qwen/Qwen2.5-1.5B', '--method', 'qlora', '--tokens', '1000000', '--json']);
    const { estimates } = JSON.parse(stdout);
    const by = (t: string) => estimates.find((e: { instanceType: string }) => e.instanceType === t);
    expect(by('ml.g4dn.xlarge').precision).toBe('nf4 weights, fp16 compute (T4 has no bf16)');
    expect(by('ml.g5.xlarge').precision).toBe('nf4 weights, bf16 compute');
  });

  test('an unknown model is sized from its parameters, and the output says what was assumed', async () => {
    const { stdout, code } = await cli(['estimate', '--base-model', 's3://b/base-models/house-model/', '--base-model-parameters', '13', '--method', 'qlora', '--tokens', '1000', '--instance', 'ml.g6e.xlarge', '--batch-size', '1']);
    expect(stdout).toMatch(/~13B parameters, shape assumed from 13B parameters: a Llama-like decoder/);
    expect(code).toBe(0);
  });

  test('several GPUs are slower than linear, with the figure stated', async () => {
    const args = ['estimate', '--base-model', 'meta-llama/Llama-3.1-8B', '--method', 'lora', '--tokens', '10000000', '--json'];
    const one = JSON.parse((await cli([...args, '--instance', 'ml.g6e.xlarge'])).stdout).estimates[0];
    const four = JSON.parse((await cli([...args, '--instance', 'ml.g6e.12xlarge'])).stdout);
    expect(four.estimates[0]).toMatchObject({ gpus: 4, scalingEfficiency: IN_INSTANCE_SCALING });
    // same GPU (L40S): four of them take more than a quarter of one's time
    expect(four.estimates[0].hours).toBeCloseTo(one.hours / (4 * IN_INSTANCE_SCALING), 5);
    expect(four.assumptions.multiGpuEfficiency.source).toMatch(/Ultra-Scale Playbook/);
    expect(IN_INSTANCE_SCALING).toBeLessThan(1);
    // across instances it drops further, and never rises with more GPUs
    expect(scalingEfficiency(16, 2)).toBeLessThan(scalingEfficiency(8, 1));
    expect(scalingEfficiency(64, 8)).toBeLessThan(scalingEfficiency(32, 4));
    expect(scalingEfficiency(1)).toBe(1);
  });
});

describe('estimate --method rloo (RLHF)', () => {
  test('counts a reward model of the base model\'s size beside the policy, prices it at the online RL throughput, says what it assumed, and spreads it with ddp (rloo runs no fsdp)', async () => {
    const args = ['estimate', '--base-model', 'meta-llama/Llama-3.1-8B', '--tokens', '1000000', '--instance', 'ml.p4de.24xlarge', '--instance-count', '1', '--json'];
    const rloo = JSON.parse((await cli([...args, '--method', 'rloo', '--distribution', 'none'])).stdout);
    const grpo = JSON.parse((await cli([...args, '--method', 'grpo', '--distribution', 'none'])).stdout);
    const lora = JSON.parse((await cli([...args, '--method', 'lora', '--distribution', 'none'])).stdout);
    // an 8B reward model in bf16 (~14.9 GiB) beside the policy: grpo here has graders only
    expect(rloo.estimates[0].breakdown.weights - grpo.estimates[0].breakdown.weights).toBeCloseTo((8.03e9 * 2) / 2 ** 30, 0);
    expect(rloo.estimates[0].precision).toBe('bf16');
    // generation dominates: a tenth of LoRA's tokens per second
    expect(rloo.estimates[0].hours).toBeCloseTo(10 * lora.estimates[0].hours, 5);
    expect(rloo.assumptions.onlineRl).toMatch(/at most 256 new tokens \(rlooMaxCompletionLength's default\).*a reward model of the base model's size/);
    expect(rloo.assumptions.onlineRl).toMatch(/^batchSize x 4 completions generated and scored at once \(gradientAccumulation's default/);
    expect(lora.assumptions).not.toHaveProperty('onlineRl');
    // on the instance's 8 GPUs without --distribution: ddp (the trainer refuses fsdp and deepspeed for rloo)
    const spread = JSON.parse((await cli(['estimate', '--base-model', 'meta-llama/Llama-3.1-8B', '--tokens', '1000000', '--instance', 'ml.p4de.24xlarge', '--method', 'rloo', '--json'])).stdout);
    expect(spread.estimates[0]).toMatchObject({ gpus: 8, distribution: 'ddp' });
  });
});

describe('estimate: exit codes', () => {
  test('exits 1 when no instance type fits, saying so, without --instance', async () => {
    const { code, stdout, stderr } = await cli(['estimate', '--base-model', 'meta-llama/Llama-3.1-70B', '--method', 'sft', '--tokens', '1000000', '--batch-size', '64']);
    expect(stdout).not.toMatch(/ yes /);
    expect(stderr).toMatch(/^error: nothing fits: no GPU instance type Tuneyard knows has room for this run \(the least it needs is ~[\d.]+ GiB per GPU\); lower --batch-size/);
    expect(code).toBe(1);
  });

  test('exits 0 when something fits', async () => {
    const { code, stderr } = await cli(['estimate', '--base-model', 'meta-llama/Llama-3.1-8B', '--method', 'qlora', '--tokens', '1000000']);
    expect(stderr).toBe('');
    expect(code).toBe(0);
  });
});

describe('estimate --judge: the LLM judge\'s cost bound', () => {
  const args = ['estimate', '--base-model', 'Qwen/Qwen2.5-0.5B', '--method', 'lora', '--tokens', '100000', '--instance', 'ml.g5.xlarge'];

  test('prints the judge\'s items, calls and cost at most, priced from the table, the same as a run\'s plan states', async () => {
    const { stdout, code } = await cli([...args, '--judge', 'amazon.nova-pro-v1:0', '--judge-max-items', '50', '--max-new-tokens', '100']);
    // 50 items x 2 orders: 100 calls of (400 + 3 x 100) tokens in and 150 out at $0.0008 / $0.0032 per 1k
    const usd = (100 * 700 * 0.0008 + 100 * 150 * 0.0032) / 1000;
    expect(stdout).toContain(`judge amazon.nova-pro-v1:0: at most 50 items, 100 Bedrock calls, ~$${usd.toFixed(2)}, an estimate (`);
    expect(code).toBe(0);
    const json = JSON.parse((await cli([...args, '--judge', 'amazon.nova-pro-v1:0', '--judge-max-items', '50', '--max-new-tokens', '100', '--json'])).stdout);
    expect(json.judge).toMatchObject({ modelId: 'amazon.nova-pro-v1:0', maxItems: 50, maxCalls: 100, cost: { inputTokens: 70_000, outputTokens: 15_000 } });
    expect(json.judge.cost.usd).toBeCloseTo(usd, 10);
  });

  test('judges no more items than the evaluation answers; a model without a price is unpriced; --judge-max-items needs --judge', async () => {
    const capped = JSON.parse((await cli([...args, '--judge', 'amazon.nova-lite-v1:0', '--judge-max-items', '900', '--json'])).stdout);
    expect(capped.judge).toMatchObject({ maxItems: 200, maxCalls: 400 });
    const unpriced = await cli([...args, '--judge', 'example.unlisted-model-v1:0']);
    expect(unpriced.stdout).toMatch(/^judge example\.unlisted-model-v1:0: at most 100 items, 200 Bedrock calls, unpriced/m);
    const alone = await cli([...args, '--judge-max-items', '5']);
    expect(alone.stderr).toBe('error: --judge-max-items needs --judge MODEL_ID\n');
    expect(alone.code).toBe(1);
  });
});

describe('estimate: the recipe fields that change the memory', () => {
  test('the recipe defaults (batch 4 x 2048) fit QLoRA of Llama 3.1 8B on an A10G (the loss never builds the logits); batch 16 does not, and the advice says what fits', async () => {
    const args = ['estimate', '--base-model', 'meta-llama/Llama-3.1-8B-Instruct', '--method', 'qlora', '--tokens', '1000000', '--instance', 'ml.g5.2xlarge'];
    const defaults = await cli(args);
    expect(defaults.stdout).toMatch(/^ml\.g5\.2xlarge +1 +nf4 weights, bf16 compute +1\d\.\d +24 +yes /m);
    expect(defaults.code).toBe(0);
    const big = await cli([...args, '--batch-size', '16']);
    expect(big.stderr).toMatch(/^error: does not fit: QLoRA of Llama 3\.1 8B .*batchSize 16 .*: lower batchSize/);
    expect(big.code).toBe(1);
    const liger = JSON.parse((await cli([...args, '--use-liger-kernel', '--json'])).stdout).estimates[0];
    const plain = JSON.parse((await cli([...args, '--json'])).stdout).estimates[0];
    expect(liger.breakdown.activations).toBeLessThan(plain.breakdown.activations);
  });

  test('--optim adamw_8bit holds a quarter of the optimizer state of full SFT', async () => {
    const args = ['estimate', '--base-model', 'Qwen/Qwen2.5-0.5B', '--method', 'sft', '--tokens', '1000', '--instance', 'ml.g6e.xlarge', '--json'];
    const adamw = JSON.parse((await cli(args)).stdout).estimates[0].breakdown.optimizer;
    const eightBit = JSON.parse((await cli([...args, '--optim', 'adamw_8bit'])).stdout).estimates[0].breakdown.optimizer;
    expect(eightBit / adamw).toBeCloseTo(0.25, 1);
  });
});

describe('usage errors', () => {
  test.each([
    [['runs', '--colour'], /^error: unknown option '--colour'/],
    [['watch'], /^error: missing required argument 'run'/],
    [['estimate', '--method', 'lora', '--tokens', '1'], /^error: required option '--base-model <model>' not specified/],
    [['estimate', '--base-model', 'x-8b', '--method', 'lora', '--tokens', 'many'], /^error: option '--tokens <n>' argument 'many' is invalid/],
    [['fly'], /^error: unknown command 'fly'/],
  ])('%j exits 64 (usage), not 1 (failure) or 2 (gate)', async (argv, message) => {
    const { code, stderr } = await cli(argv);
    expect(stderr).toMatch(message);
    expect(code).toBe(64);
  });

  test('--help and --version still exit 0', async () => {
    expect((await cli(['--help'])).code).toBe(0);
    expect((await cli(['--version'])).code).toBe(0);
    expect((await cli(['estimate', '--help'])).code).toBe(0);
  });
});

describe('subcommand help', () => {
  test.each(['validate', 'upload', 'train', 'watch', 'runs', 'describe', 'cancel', 'logs', 'models', 'deploy', 'invoke', 'estimate'])(
    '%s --help shows the global options and examples of itself',
    async (command) => {
      const { stdout, code } = await cli([command, '--help']);
      expect(stdout).toMatch(/^Global Options:\n(.*\n)*? {2}--stack <name> /m);
      expect(stdout).toMatch(/ {2}--profile <profile> /);
      expect(stdout).toMatch(new RegExp(`^Examples:\\n {2}\\$ tuneyard ${command}( |$)`, 'm'));
      expect(code).toBe(0);
    },
  );
});

describe('runs --status', () => {
  test('with no match names the status instead of saying there are no runs', async () => {
    const { factory, calls } = fakeClients({ ...PLANE_OUTPUTS, ListExecutionsCommand: () => ({ executions: [] }) });
    const { code, stdout } = await cli(['runs', '--status', 'FAILED'], { clients: factory });
    expect(stdout).toBe('no FAILED runs: list every run with `tuneyard runs`\n');
    expect(calls.find((c) => c.command === 'ListExecutionsCommand')?.input).toMatchObject({ statusFilter: 'FAILED' });
    expect(code).toBe(0);
  });
});

describe('--profile', () => {
  const saved = { ...process.env };
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tuneyard-profile-'));
    fs.writeFileSync(path.join(dir, 'config'), '[default]\nregion = us-east-1\n[profile ml]\nregion = eu-west-1\n[sso-session corp]\nsso_region = us-east-1\n');
    fs.writeFileSync(path.join(dir, 'credentials'), '[ci]\naws_access_key_id = AKIAEXAMPLE\naws_secret_access_key = example\n');
    process.env.AWS_CONFIG_FILE = path.join(dir, 'config');
    process.env.AWS_SHARED_CREDENTIALS_FILE = path.join(dir, 'credentials');
    process.env.AWS_EC2_METADATA_DISABLED = 'true';
    delete process.env.AWS_REGION;
    delete process.env.AWS_PROFILE;
  });
  afterEach(() => {
    process.env = { ...saved };
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test.each([[[]], [['--region', 'us-east-1']]])('a profile that does not exist is named, with where profiles are read from (%j)', async (extra) => {
    // the real SDK clients: without a region the SDK fails on the region first, with one on the credentials
    const { code, stderr } = await cli(['runs', '--profile', 'nope', ...extra], { clients: createAwsClients });
    expect(stderr).toBe(
      `error: AWS profile "nope" (--profile or AWS_PROFILE) not found in ${path.join(dir, 'config')} or ${path.join(dir, 'credentials')} ` +
        '(AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE move them); profiles there: ci, default, ml. ' +
        'Create it with `aws configure --profile nope` (or `aws configure sso --profile nope`), or pass an existing one\n',
    );
    expect(code).toBe(1);
  });
});
