/**
 * The README's "First run" walkthrough, command by command, in its order, against moto with the
 * real SDK clients. The commands are read from the README, so the walkthrough cannot drift from
 * what is tested: a command the test has no check for fails it.
 *
 * What ran and what stood in (moto is not AWS, and this machine has no network or GPU):
 * - `hf download MODEL --local-dir DIR`: replaced by a tiny Qwen2 model and tokenizer that
 *   transformers saves into DIR (save_pretrained: config.json, model.safetensors, tokenizer files),
 *   the layout `hf download` leaves; everything after it runs as written.
 * - The pipeline: a stand-in state machine with the real pipeline's stage names (PIPELINE_STATES),
 *   Pass states run by moto's Step Functions parser, so a run ends SUCCEEDED. The work the real
 *   stages do is played by the test right after `train` started the run: the training job
 *   (CreateTrainingJob in moto: born Completed), its log lines, a checkpoint in S3, and the model
 *   package Register creates. No PlanRun, ValidateDataset, training or evaluation ran.
 * - The plane: a stand-in stack with the real stack's outputs (AllowHubModels false,
 *   MinComputeCapability 7.5, the model package group).
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CreateLogGroupCommand, CreateLogStreamCommand, PutLogEventsCommand } from '@aws-sdk/client-cloudwatch-logs';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { CreateModelPackageGroupCommand, CreateTrainingJobCommand } from '@aws-sdk/client-sagemaker';
import { PIPELINE_STATES } from '../../constructs/fine-tuning-pipeline/fine-tuning-pipeline';
import { MODEL_MANIFEST } from '../../lib/cli/commands/stage-model';
import { RunClient } from '../../lib/cli/run-client';
import { startMotoPlane, MotoPlane } from './moto-plane';
import { PLAN_RUN_ENV, registerState } from './register-state';
import { cli, CliResult } from './support';

const BUCKET = 'tuneyard-data-first-run';
const GROUP = 'tuneyard-models-first-run';
const README = path.join(__dirname, '..', '..', 'README.md');

/** The stand-in pipeline: the real stage names, in the order a successful run passes them. */
const STAGES = [
  PIPELINE_STATES.planRun,
  PIPELINE_STATES.validateDataset,
  PIPELINE_STATES.train,
  PIPELINE_STATES.evaluate,
  PIPELINE_STATES.readEvalReport,
  PIPELINE_STATES.gate,
  PIPELINE_STATES.register,
  PIPELINE_STATES.notifySucceeded,
  PIPELINE_STATES.succeeded,
];
const DEFINITION = {
  StartAt: STAGES[0],
  States: Object.fromEntries(
    STAGES.map((name, i) => [name, i === STAGES.length - 1 ? { Type: 'Succeed' } : { Type: 'Pass', Next: STAGES[i + 1] }]),
  ),
};

/** The `$ ` lines of the README's "First run" section. */
function walkthroughCommands(): string[] {
  const text = fs.readFileSync(README, 'utf8');
  const start = text.indexOf('\n### First run\n');
  expect(start).toBeGreaterThan(0);
  const end = text.indexOf('\n### ', start + 1);
  return text
    .slice(start, end)
    .split('\n')
    .filter((line) => line.startsWith('$ '))
    .map((line) => line.slice(2));
}

/** The output the README's "First run" section shows under `$ <command>` (its lines up to the next `$ ` line). */
function readmeOutput(command: string): string[] {
  const text = fs.readFileSync(README, 'utf8');
  const start = text.indexOf('\n### First run\n');
  const lines = text.slice(start, text.indexOf('\n### ', start + 1)).split('\n');
  const at = lines.indexOf(`$ ${command}`);
  expect(at).toBeGreaterThan(0);
  const end = lines.findIndex((line, i) => i > at && (line.startsWith('$ ') || line.startsWith('```')));
  return lines.slice(at + 1, end);
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** What `hf download --local-dir DIR` leaves, made here: a tiny Qwen2 model and its tokenizer, saved by transformers. */
function saveTinyModel(dir: string): void {
  const venv = process.env.TUNEYARD_VENV ?? execFileSync('bash', [path.join(__dirname, '..', '..', 'scripts', 'python-env.sh')], { encoding: 'utf8' }).trim();
  const script = `
import sys, torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM
folder = sys.argv[1]
core = Tokenizer(models.BPE())
core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
core.decoder = decoders.ByteLevel()
special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
core.train_from_iterator(["How do I reset my password? Open settings and choose reset."] * 20, trainers.BpeTrainer(vocab_size=300, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>")
tokenizer.save_pretrained(folder)
torch.manual_seed(0)
config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128)
Qwen2ForCausalLM(config).save_pretrained(folder)
`;
  execFileSync(path.join(venv, 'bin', 'python'), ['-c', script, dir], { env: { ...process.env, HF_HUB_OFFLINE: '1' }, stdio: 'pipe' });
}

let plane: MotoPlane;
let tmp: string;
const cwd = process.cwd();

beforeAll(async () => {
  plane = await startMotoPlane({
    bucket: BUCKET,
    definition: DEFINITION,
    executeStateMachine: true,
    outputs: { AllowHubModels: 'false', MinComputeCapability: '7.5', ModelPackageGroupName: GROUP },
  });
  await plane.clients.sagemaker.send(new CreateModelPackageGroupCommand({ ModelPackageGroupName: GROUP }));
  await plane.clients.logs.send(new CreateLogGroupCommand({ logGroupName: '/aws/sagemaker/TrainingJobs' }));
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tuneyard-first-run-'));
  // The walkthrough's data file, in the folder the commands run in.
  const rows = Array.from({ length: 30 }, (_, i) =>
    JSON.stringify({ messages: [{ role: 'user', content: `How do I reset password ${i}?` }, { role: 'assistant', content: `Open settings, choose reset, and follow step ${i}.` }] }),
  );
  fs.writeFileSync(path.join(tmp, 'support-chats.jsonl'), rows.join('\n') + '\n');
  process.chdir(tmp);
}, 120_000);

afterAll(async () => {
  process.chdir(cwd);
  await plane?.stop();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

/** What the pipeline's stages would have made for the run: its training job, log lines, a checkpoint, the registered model. */
async function playThePipeline(runId: string): Promise<string[]> {
  const job = `tuneyard-${runId}-train`;
  await plane.clients.sagemaker.send(
    new CreateTrainingJobCommand({
      TrainingJobName: job,
      AlgorithmSpecification: { TrainingImage: '123456789012.dkr.ecr.us-east-1.amazonaws.com/tuneyard-trainer:latest', TrainingInputMode: 'File' },
      RoleArn: 'arn:aws:iam::123456789012:role/TuneyardTraining',
      OutputDataConfig: { S3OutputPath: `s3://${BUCKET}/artifacts/${runId}/` },
      ResourceConfig: { InstanceType: 'ml.g5.xlarge', InstanceCount: 1, VolumeSizeInGB: 60 },
      StoppingCondition: { MaxRuntimeInSeconds: 86400 },
    }),
  );
  const lines = ['tuneyard-metrics: step=5 train_loss=2.31 epoch=1', 'tuneyard-metrics: step=10 train_loss=1.87 epoch=2'];
  const logStreamName = `${job}/algo-1-1764590000`;
  await plane.clients.logs.send(new CreateLogStreamCommand({ logGroupName: '/aws/sagemaker/TrainingJobs', logStreamName }));
  const t = Date.now() - 60_000;
  await plane.clients.logs.send(new PutLogEventsCommand({ logGroupName: '/aws/sagemaker/TrainingJobs', logStreamName, logEvents: lines.map((message, i) => ({ timestamp: t + i, message })) }));
  const files = { 'adapter_model.safetensors': 'w'.repeat(4096), 'trainer_state.json': '{"global_step":10}' };
  for (const [name, body] of Object.entries(files)) {
    await plane.clients.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `checkpoints/${runId}/checkpoint-10/${name}`, Body: body }));
  }
  const manifest = { files: Object.fromEntries(Object.entries(files).map(([k, v]) => [k, v.length])) };
  await plane.clients.s3.send(new PutObjectCommand({ Bucket: BUCKET, Key: `checkpoints/${runId}/checkpoint-10/tuneyard-checkpoint.json`, Body: JSON.stringify(manifest) }));
  // the Register state, on the plan PlanRun makes of the request `train` started the run with
  const client = new RunClient(plane.clients, 'Tuneyard');
  const request = JSON.parse((await client.describeExecution(await client.executionArn(runId))).input!);
  const register = registerState(GROUP, plane.clients.sagemaker, { ...PLAN_RUN_ENV, bucketName: BUCKET });
  await register(request, { evalLossRatio: 0.92, forgettingIncrease: 0.01 });
  return lines;
}

test('the README\'s first run, from hf download to a finished run, on moto', async () => {
  const commands = walkthroughCommands();
  expect(commands.map((c) => c.split(' ').slice(0, 2).join(' '))).toEqual([
    'hf download',
    'tuneyard stage-model',
    'tuneyard validate',
    'tuneyard upload',
    'tuneyard train',
    'tuneyard watch',
    'tuneyard events',
    'tuneyard logs',
    'tuneyard checkpoints',
    'tuneyard models',
  ]);
  let runId = '';
  let modelDir = '';
  let logLines: string[] = [];
  const transcript: string[] = [];

  for (const command of commands) {
    const argv = command.replace(/<data bucket>/g, BUCKET).replace(/<run id>/g, runId).split(/ +/);
    if (argv[0] === 'hf') {
      // `hf download MODEL --local-dir DIR`: no network here; DIR gets what transformers saves
      modelDir = argv[argv.indexOf('--local-dir') + 1];
      expect(modelDir).toBeTruthy();
      saveTinyModel(path.join(tmp, modelDir));
      transcript.push(`$ ${command}\n(stand-in: a tiny Qwen2 saved with save_pretrained into ${modelDir}/)`);
      continue;
    }
    expect(argv[0]).toBe('tuneyard');
    const result: CliResult = await cli(argv.slice(1), { clients: plane.factory });
    transcript.push(`$ ${argv.join(' ')}\n${result.stdout}${result.stderr}[exit ${result.code}]`);
    const context = `\n--- transcript so far ---\n${transcript.join('\n')}`;
    expect({ command, code: result.code, context }).toMatchObject({ command, code: 0 });

    switch (argv[1]) {
      case 'stage-model': {
        expect(result.stdout).toMatch(/^staged qwen2\.5-0\.5b-instruct: \d+ files, [\d.]+ KiB, \d+K parameters \(\d+ uploaded, 0 already there\)\n/);
        // every file of the saved model is in S3 with its bytes, and the manifest lists it
        const manifest = JSON.parse(await (await plane.clients.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: `base-models/qwen2.5-0.5b-instruct/${MODEL_MANIFEST}` }))).Body!.transformToString());
        const saved = fs.readdirSync(path.join(tmp, modelDir)).filter((f) => !f.startsWith('.')).sort();
        expect(saved).toEqual(expect.arrayContaining(['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']));
        expect(Object.keys(manifest.files).sort()).toEqual(saved);
        for (const file of saved) {
          const object = await plane.clients.s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: `base-models/qwen2.5-0.5b-instruct/${file}` }));
          expect(sha256(Buffer.from(await object.Body!.transformToByteArray()))).toBe(sha256(fs.readFileSync(path.join(tmp, modelDir, file))));
        }
        break;
      }
      case 'validate':
        expect(result.stdout).toMatch(/^support-chats\.jsonl: ok$/m);
        break;
      case 'upload':
        expect(result.stdout).toMatch(/^uploaded support-chats@[0-9a-f]{64}\n/);
        break;
      case 'train': {
        const started = /^started run (support-chats-lora-[0-9a-f]{12})\n {2}.+ needs ~[\d.]+ GiB per GPU; ml\.g5\.xlarge has 24 GiB per GPU\.\n {2}estimated ~\S+ h of training on 1 x ml\.g5\.xlarge: <?\$[\d.]+ with spot \(<?\$[\d.]+ on demand\); .*\n {2}watch it: tuneyard watch \1\n$/.exec(result.stdout);
        expect(started).not.toBeNull();
        runId = started![1];
        logLines = await playThePipeline(runId);
        break;
      }
      case 'watch':
        expect(result.stdout.trimEnd().split('\n').pop()).toMatch(new RegExp(`^\\[SUCCEEDED\\] ${PIPELINE_STATES.succeeded} \\| job Completed/Completed \\| elapsed `));
        expect(result.stderr).toBe(`run ${runId} succeeded\n`);
        break;
      case 'events': {
        const lines = result.stdout.split('\n');
        expect(lines[0]).toBe(`run ${runId}: SUCCEEDED`);
        expect(lines.slice(2, 2 + STAGES.length).map((l) => [l.split(/ +/)[0], l.split(/ +/).pop()])).toEqual(STAGES.map((s) => [s, 'succeeded']));
        expect(result.stdout).toContain(`training job tuneyard-${runId}-train: Completed\n`);
        break;
      }
      case 'logs':
        expect(result.stdout).toBe(logLines.join('\n') + '\n');
        break;
      case 'checkpoints':
        expect(result.stdout).toMatch(/^10 +4\.\d KiB +3 +\S+ +yes$/m);
        break;
      case 'models': {
        // the columns the README shows, and the run's model registered as the pipeline registers it
        const [header, row] = result.stdout.trimEnd().split('\n');
        expect(header.split(/ {2,}/)).toEqual(readmeOutput(command)[0].split(/ {2,}/));
        expect(row).toMatch(new RegExp(`^1 +generative +lora +PendingManualApproval +\\S+ +${runId} +- +recipe epochs=2 method=lora$`));
        break;
      }
      default:
        throw new Error(`the walkthrough runs \`${command}\`, which this test does not check: add a check for it`);
    }
  }
  // what ran, for the record: TUNEYARD_WALKTHROUGH_TRANSCRIPT=FILE writes it there
  if (process.env.TUNEYARD_WALKTHROUGH_TRANSCRIPT) fs.writeFileSync(path.resolve(cwd, process.env.TUNEYARD_WALKTHROUGH_TRANSCRIPT), transcript.join('\n') + '\n');
}, 180_000);
