import { Command, CommanderError } from 'commander';
import { registerCheckpointsCommand } from './commands/checkpoints';
import { registerDatasetCommands } from './commands/datasets';
import { registerEstimateCommand } from './commands/estimate';
import { registerEventsCommand } from './commands/events';
import { registerModelCommands } from './commands/models';
import { registerRunCommands } from './commands/runs';
import { registerStageModelCommand } from './commands/stage-model';
import { CliError, describeAwsError } from './errors';
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
    .exitOverride();
  registerDatasetCommands(program, ctx);
  registerStageModelCommand(program, ctx);
  registerRunCommands(program, ctx);
  registerEventsCommand(program, ctx);
  registerCheckpointsCommand(program, ctx);
  registerModelCommands(program, ctx);
  registerEstimateCommand(program, ctx);
  return program;
}

/**
 * Runs the CLI on `argv` (the arguments after the program name) and returns the exit code:
 * 0 success, 1 failure (or invalid data, a failed run), 2 a run rejected by the gate; usage
 * errors are commander's (1).
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
    if (e instanceof CommanderError) return e.exitCode;
    if (e instanceof CliError) {
      ctx.io.err(`error: ${e.message}\n`);
      return e.exitCode;
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
