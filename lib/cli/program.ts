import { Command, CommanderError } from 'commander';
import { registerBenchmarkCommand } from './commands/benchmarks';
import { registerCheckpointsCommand } from './commands/checkpoints';
import { registerDatasetCommands } from './commands/datasets';
import { registerEstimateCommand } from './commands/estimate';
import { registerEvalCommand } from './commands/eval';
import { registerEventsCommand } from './commands/events';
import { registerModelCommands } from './commands/models';
import { registerRunCommands } from './commands/runs';
import { registerStageModelCommand } from './commands/stage-model';
import { CliError, describeAwsError, isCredentialsOrRegionError, missingProfileMessage } from './errors';
import { CliIo, processIo } from './io';
import { AwsClients, ClientOptions, createAwsClients, RunClient } from './run-client';

/** What the CLI runs against: injected so tests run it in-process with captured output. */
export interface CliDeps {
  readonly io: CliIo;
  /** Builds the AWS clients for `--region`/`--profile`. */
  readonly clients: (options: ClientOptions) => AwsClients;
  /** Waits between polls (`watch`, `logs --follow`). */
  readonly sleep: (ms: number) => Promise<void>;
  readonly now: () => Date;
}

/** The options every command takes. */
export interface GlobalOptions {
  readonly stack: string;
  readonly region?: string;
  readonly profile?: string;
  readonly json: boolean;
}

export const DEFAULT_STACK = 'Tuneyard';

/** What a command's action gets: the dependencies, its options, and where its exit code goes. */
export class CommandContext {
  exitCode = 0;
  private client?: RunClient;
  private clientsCache?: AwsClients;
  global: GlobalOptions = { stack: DEFAULT_STACK, json: false };

  constructor(readonly deps: CliDeps) {}

  get io(): CliIo {
    return this.deps.io;
  }

  /** Reads the global options of the command being run. */
  use(command: Command): GlobalOptions {
    const o = command.optsWithGlobals() as Partial<GlobalOptions>;
    this.global = { stack: o.stack ?? DEFAULT_STACK, region: o.region, profile: o.profile, json: Boolean(o.json) };
    return this.global;
  }

  clients(): AwsClients {
    this.clientsCache ??= this.deps.clients({ region: this.global.region, profile: this.global.profile });
    return this.clientsCache;
  }

  runClient(): RunClient {
    this.client ??= new RunClient(this.clients(), this.global.stack);
    return this.client;
  }

  /** Prints `value` as JSON with --json, `text` otherwise. */
  print(value: unknown, text: string): void {
    this.io.out(this.global.json ? JSON.stringify(value, null, 2) + '\n' : text);
  }

  /** The region the clients resolved, for error messages. */
  async region(): Promise<string | undefined> {
    if (this.global.region) return this.global.region;
    if (!this.clientsCache) return undefined;
    try {
      return await this.clientsCache.cloudformation.config.region();
    } catch {
      return undefined;
    }
  }
}

/** The `tuneyard` program. Each call builds a fresh one (commander keeps parse state). */
export function buildProgram(ctx: CommandContext): Command {
  const program = new Command('tuneyard')
    .description('Fine-tune LLMs in your own AWS account: validate and upload datasets, start and watch training runs, serve models.')
    .version(packageVersion(), '-V, --version')
    .option('--stack <name>', 'CloudFormation stack of the Tuneyard plane', DEFAULT_STACK)
    .option('--region <region>', 'AWS region (default: AWS_REGION or your profile\'s region)')
    .option('--profile <profile>', 'AWS profile from ~/.aws/config (default: AWS_PROFILE or the default chain)')
    .option('--json', 'print machine-readable JSON instead of text', false)
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ writeOut: (s) => ctx.io.out(s), writeErr: (s) => ctx.io.err(s) })
    // each command's help lists --stack, --region, --profile and --json too (inherited by the commands added below)
    .configureHelp({ showGlobalOptions: true })
    .exitOverride();
  registerDatasetCommands(program, ctx);
  registerStageModelCommand(program, ctx);
  registerBenchmarkCommand(program, ctx);
  registerRunCommands(program, ctx);
  registerEventsCommand(program, ctx);
  registerCheckpointsCommand(program, ctx);
  registerEvalCommand(program, ctx);
  registerModelCommands(program, ctx);
  registerEstimateCommand(program, ctx);
  for (const command of program.commands) {
    const examples = EXAMPLES[command.name()];
    if (examples) addExamples(command, examples);
  }
  return program;
}

/** Exit codes of every command (the README's "Exit codes" lists them). */
export const EXIT_CODES = {
  ok: 0,
  /** An error, invalid data, a failed run, or (estimate) a run that fits no GPU. */
  failure: 1,
  /** The eval gate rejected the run (`watch`, `train --wait`; see `runExitCode`). */
  gateRejected: 2,
  /** A usage error: an unknown command or option, a missing argument or option value, an invalid value (sysexits.h EX_USAGE). */
  usage: 64,
} as const;

/** Examples shown at the end of a command's `--help`. */
export const EXAMPLES: Record<string, readonly string[]> = {
  validate: [
    'tuneyard validate train.jsonl',
    'tuneyard validate train.jsonl --method dpo --max-length 4096',
    'tuneyard validate train.jsonl.gz --eval eval.json --strict',
    'zcat export.jsonl.gz | tuneyard validate -',
  ],
  upload: [
    'tuneyard upload train.jsonl --name support-chats',
    'tuneyard upload train.jsonl --eval eval.jsonl --name support-chats',
    'tuneyard upload train.jsonl.gz --eval eval.jsonl --name support-chats --allow-overlap',
  ],
  datasets: ['tuneyard datasets', 'tuneyard datasets support-chats --json'],
  'stage-model': ['tuneyard stage-model ./Llama-3.1-8B-Instruct --name llama-3.1-8b-instruct'],
  'stage-benchmark': ['tuneyard stage-benchmark mmlu-sample.jsonl --name mmlu-sample'],
  train: [
    'tuneyard train --dataset support-chats --base-model s3://<data bucket>/base-models/llama-3.1-8b/ --method qlora --batch-size 2 --gradient-accumulation 8 --epochs 2',
    'tuneyard train --dataset support-chats@<sha256> --base-model s3://<data bucket>/base-models/llama-3.1-8b/ --recipe recipe.json --wait',
    'tuneyard train --dataset support-chats --base-model s3://<data bucket>/base-models/llama-3.1-8b/ --graders graders.json --min-grader-mean exact=0.8 --benchmark mmlu-sample --max-benchmark-drop 0.02',
    'tuneyard train --dataset maths-prompts --base-model s3://<data bucket>/base-models/qwen2.5-7b-instruct/ --method grpo --graders graders.json',
    'tuneyard train --dataset chat-prompts --base-model s3://<data bucket>/base-models/llama-3.1-8b/ --method rloo --reward-model 3',
  ],
  watch: ['tuneyard watch support-chats-qlora-5d0e7a1b2c3f', 'tuneyard watch support-chats-qlora-5d0e7a1b2c3f --json --interval 60'],
  runs: ['tuneyard runs', 'tuneyard runs --status FAILED --max 5'],
  describe: ['tuneyard describe support-chats-qlora-5d0e7a1b2c3f', 'tuneyard describe support-chats-qlora-5d0e7a1b2c3f --json'],
  cancel: ['tuneyard cancel support-chats-qlora-5d0e7a1b2c3f --reason "wrong dataset"'],
  logs: ['tuneyard logs support-chats-qlora-5d0e7a1b2c3f --tail 50', 'tuneyard logs support-chats-qlora-5d0e7a1b2c3f --follow'],
  events: ['tuneyard events support-chats-qlora-5d0e7a1b2c3f'],
  checkpoints: ['tuneyard checkpoints support-chats-qlora-5d0e7a1b2c3f'],
  eval: ['tuneyard eval support-chats-qlora-5d0e7a1b2c3f --out review/', 'tuneyard eval support-chats-qlora-5d0e7a1b2c3f --ab-results review/ab-review.csv'],
  models: ['tuneyard models', 'tuneyard models --kind reward', 'tuneyard models --region eu-west-1 --json'],
  deploy: ['tuneyard deploy 3 --endpoint chat --adapter support --approve --wait', 'tuneyard deploy 3 --endpoint chat-merged'],
  invoke: ['tuneyard invoke --endpoint chat --adapter support "Where is my order?"'],
  estimate: [
    'tuneyard estimate --base-model meta-llama/Llama-3.1-8B-Instruct --method qlora --tokens 20000000',
    'tuneyard estimate --base-model Qwen/Qwen2.5-7B-Instruct --method lora --tokens 5000000 --instance ml.g6e.xlarge --batch-size 2',
    'tuneyard estimate --base-model s3://<data bucket>/base-models/house-model/ --base-model-parameters 13 --method qlora --tokens 1000000 --json',
  ],
};

/** Appends an "Examples:" section to a command's help (commands that register themselves elsewhere may call it too). */
export function addExamples(command: Command, examples: readonly string[]): void {
  command.addHelpText('after', `\nExamples:\n${examples.map((e) => `  $ ${e}`).join('\n')}\n`);
}

/**
 * Runs the CLI on `argv` (the arguments after the program name) and returns the exit code
 * ({@link EXIT_CODES}): 0 success, 1 failure (or invalid data, a failed run, a run that fits no GPU),
 * 2 a run rejected by the gate, 64 a usage error.
 */
export async function runCli(argv: readonly string[], deps: Partial<CliDeps> = {}): Promise<number> {
  const ctx = new CommandContext({
    io: deps.io ?? processIo,
    clients: deps.clients ?? createAwsClients,
    sleep: deps.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms))),
    now: deps.now ?? (() => new Date()),
  });
  const program = buildProgram(ctx);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return ctx.exitCode;
  } catch (e) {
    // commander has printed the usage error (or the help / version, which exit 0)
    if (e instanceof CommanderError) return e.exitCode === 0 ? EXIT_CODES.ok : EXIT_CODES.usage;
    if (e instanceof CliError) {
      ctx.io.err(`error: ${e.message}\n`);
      return e.exitCode;
    }
    const missingProfile = ctx.global.profile && isCredentialsOrRegionError(e) ? missingProfileMessage(ctx.global.profile) : undefined;
    if (missingProfile) {
      ctx.io.err(`error: ${missingProfile}\n`);
      return EXIT_CODES.failure;
    }
    const known = describeAwsError(e, { stack: ctx.global.stack, region: await ctx.region(), profile: ctx.global.profile });
    if (known) {
      ctx.io.err(`error: ${known}\n`);
      return 1;
    }
    const err = e as Error;
    ctx.io.err(`error: ${err?.name && err.name !== 'Error' ? `${err.name}: ` : ''}${err?.message ?? String(e)}\n`);
    return 1;
  }
}

function packageVersion(): string {
  // The package.json sits two folders up from both lib/cli (ts) and dist/lib/cli (js) + one.
  for (const candidate of ['../../package.json', '../../../package.json']) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const pkg = require(candidate) as { name?: string; version?: string };
      if (pkg.name === 'tuneyard' && pkg.version) return pkg.version;
    } catch {
      // try the next location
    }
  }
  return '0.0.0';
}
