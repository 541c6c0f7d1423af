import * as fs from 'node:fs';
import { Command, InvalidArgumentError, Option } from 'commander';
import { methodError } from '../../datasets';
import { MULTIPLE_CHOICE_FORMAT } from '../../datasets/multiple-choice';
import type { DatasetFormat } from '../../datasets';
import { GraderConfig, GradersError, parseGraders } from '../../graders';
import type { JudgePlan } from '../../judge';
import { gpuInstance } from '../../instances';
import { DATA_PREFIXES } from '../../layout';
import { resolveParameters } from '../../preflight';
import { chatTemplateProblem, rewardVocabularyProblem } from '../../reward-vocabulary';
import { DISTRIBUTIONS, LR_SCHEDULERS, METHODS, OVERLONG_ROWS, Recipe, RECIPE_FIELDS, resolveRecipe } from '../../recipe';
import { GATE_REJECTED_ERROR, parseRunRequest, PlanLookups, planRun, registeredRewardModel, RunPlan, RunRequest, RunRequestError, runIdFor } from '../../run-request';
import { nonNegativeNumber, positiveInt, positiveNumber } from '../args';
import { CliError } from '../errors';
import { duration, metric, table, time, usd } from '../format';
import type { CommandContext } from '../program';
import { DatasetManifest, LogLine, Plane, RunClient, RunStatus } from '../run-client';
import { estimateOn, InstanceEstimate } from './estimate';
import { MODEL_MANIFEST } from './stage-model';


/** Exit codes of `watch` (and `train --wait`): 0 succeeded, 1 failed/aborted/timed out, 2 rejected by the gate. */
export function runExitCode(status: Pick<RunStatus, 'status' | 'error'>): number | undefined {
  if (status.status === 'RUNNING' || status.status === 'PENDING_REDRIVE') return undefined;
  if (status.status === 'SUCCEEDED') return 0;
  if (status.status === 'FAILED' && status.error === GATE_REJECTED_ERROR) return 2;
  return 1;
}

/** A value from 0 to below 1 (dropout, warmup share). */
function fraction(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0 || n >= 1) throw new InvalidArgumentError('must be a number from 0 to below 1.');
  return n;
}

function wholeNumber(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n)) throw new InvalidArgumentError('must be a whole number.');
  return n;
}

/** A share from 0 to 1 (a win rate, an accuracy drop). */
function share(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0 || n > 1) throw new InvalidArgumentError('must be a number from 0 to 1.');
  return n;
}

/** Any finite number, negative ones too (a reward gain may be allowed to fall a little). */
function finiteNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError('must be a number.');
  return n;
}

/** `--min-grader-mean name=min`, collected into {name: min}. */
function graderMinimum(value: string, all: Record<string, number>): Record<string, number> {
  const at = value.lastIndexOf('=');
  const name = value.slice(0, at);
  const min = Number(value.slice(at + 1));
  if (at < 1 || value.slice(at + 1).trim() === '' || !Number.isFinite(min)) throw new InvalidArgumentError(`"${value}": give a grader name and its minimum mean, e.g. exact=0.8.`);
  return { ...all, [name]: min };
}

/** `all-linear`, or module names separated by commas. */
function moduleList(value: string): 'all-linear' | string[] {
  return value === 'all-linear' ? value : value.split(',').map((m) => m.trim()).filter(Boolean);
}

type RecipeField = Exclude<keyof Recipe, 'method'>;

/**
 * `train`'s recipe flags: each sets one recipe field, under the name commander gives the flag
 * (`--batch-size` is `batchSize`), and wins over the same field in `--recipe`.
 */
export const RECIPE_FLAGS: ReadonlyArray<{ field: RecipeField; flag: string; help: string; parse?: (value: string) => unknown; choices?: readonly string[] }> = [
  { field: 'epochs', flag: '--epochs <n>', help: 'passes over the training data (fractions allowed)', parse: positiveNumber },
  { field: 'maxSteps', flag: '--max-steps <n>', help: 'optimiser steps to train for, instead of --epochs', parse: positiveInt },
  { field: 'batchSize', flag: '--batch-size <n>', help: 'sequences per GPU per step (lower it when the run does not fit)', parse: positiveInt },
  { field: 'gradientAccumulation', flag: '--gradient-accumulation <n>', help: 'steps per optimiser update (raise it with a lower --batch-size to keep the effective batch)', parse: positiveInt },
  { field: 'learningRate', flag: '--learning-rate <lr>', help: 'peak learning rate (default: the trainer\'s for the method: lora/qlora 2e-4, sft 1e-5, dpo 5e-6)', parse: positiveNumber },
  { field: 'lrScheduler', flag: '--lr-scheduler <name>', help: 'learning-rate schedule after warmup', choices: LR_SCHEDULERS },
  { field: 'warmupRatio', flag: '--warmup-ratio <r>', help: 'share of the steps spent warming up', parse: fraction },
  { field: 'weightDecay', flag: '--weight-decay <w>', help: 'AdamW weight decay', parse: nonNegativeNumber },
  { field: 'maxLength', flag: '--max-length <tokens>', help: 'tokens per sequence', parse: positiveInt },
  { field: 'overlongRows', flag: '--overlong-rows <rule>', help: 'rows longer than --max-length', choices: OVERLONG_ROWS },
  { field: 'loraR', flag: '--lora-r <n>', help: 'LoRA rank (lora, qlora, dpo)', parse: positiveInt },
  { field: 'loraAlpha', flag: '--lora-alpha <n>', help: 'LoRA scaling numerator', parse: positiveInt },
  { field: 'loraDropout', flag: '--lora-dropout <p>', help: 'dropout on the LoRA input', parse: fraction },
  { field: 'targetModules', flag: '--target-modules <names>', help: '"all-linear" or module names separated by commas (q_proj,v_proj)', parse: moduleList },
  { field: 'distribution', flag: '--distribution <d>', help: 'how a job uses several GPUs (ddp or fsdp for more than one)', choices: DISTRIBUTIONS },
  { field: 'packing', flag: '--packing', help: 'sft/lora/qlora: pack sequences into --max-length blocks' },
  { field: 'merge', flag: '--merge', help: 'LoRA methods: also write the merged model (a single-model endpoint serves it)' },
  { field: 'evalSteps', flag: '--eval-steps <n>', help: 'optimiser steps between evaluations', parse: positiveInt },
  { field: 'saveSteps', flag: '--save-steps <n>', help: 'optimiser steps between checkpoints', parse: positiveInt },
  { field: 'dpoBeta', flag: '--dpo-beta <beta>', help: 'DPO temperature', parse: positiveNumber },
  { field: 'seed', flag: '--seed <n>', help: 'seed for initialisation, data order and the split', parse: wholeNumber },
];

/** The README section that lists every recipe field. */
export const RECIPE_REFERENCE = 'the README\'s "Recipe reference"';

type TrainOptions = {
  dataset: string;
  baseModel: string;
  baseModelParameters?: number;
  method?: string;
  recipe?: string;
  instance?: string;
  instanceCount?: number;
  spot: boolean;
  maxRuntimeHours?: number;
  maxEvalLossRatio?: number;
  maxForgettingIncrease?: number;
  autoApprove?: boolean;
  deployEndpoint?: string;
  adapter?: string;
  runName?: string;
  graders?: string;
  rewardModel?: string;
  benchmark: string[];
  maxGenerations?: number;
  maxNewTokens?: number;
  minGraderMean: Record<string, number>;
  minRewardGain?: number;
  embeddingModel?: string;
  minJudgeWinRate?: number;
  maxBenchmarkDrop?: number;
  judge?: string;
  judgeMaxItems?: number;
  wait?: boolean;
  interval: number;
} & { [K in RecipeField]?: unknown };

export function registerRunCommands(program: Command, ctx: CommandContext): void {
  const train = program
    .command('train')
    .description(
      'Start a fine-tuning run. Before starting it checks what the pipeline would refuse (request, GPU memory, dataset format for the method, ' +
        'base model folder, Hub ids) and prints the estimated cost. Starting the same request again does not start a second run.',
    )
    .requiredOption('--dataset <name@sha256|name>', 'dataset version from `tuneyard upload` (a bare name: its newest version)')
    .requiredOption('--base-model <model>', 's3://<bucket>/base-models/<name>/ (staged with `tuneyard stage-model`) or a Hugging Face Hub id (when the plane allows Hub models)')
    .option('--base-model-parameters <billions>', 'parameters of the base model in billions, when its name does not tell', positiveNumber)
    .addOption(new Option('--method <method>', 'training method (default: the recipe\'s, else lora)').choices(METHODS))
    .option('--recipe <file>', `JSON recipe: method and hyperparameters (every field: ${RECIPE_REFERENCE}); a flag below wins over the same field in the file`);
  for (const spec of RECIPE_FLAGS) {
    const fieldDefault = RECIPE_FIELDS[spec.field].default;
    const help = `${spec.help} (recipe.${spec.field}${fieldDefault !== undefined && typeof fieldDefault !== 'boolean' ? `; default: ${fieldDefault}` : ''})`;
    const option = new Option(spec.flag, help);
    if (spec.choices) option.choices(spec.choices);
    if (spec.parse) option.argParser(spec.parse);
    train.addOption(option);
  }
  train
    .option('--instance <type>', 'SageMaker GPU instance type (default: ml.g5.2xlarge)')
    .option('--instance-count <n>', 'instances (more than 1 needs --distribution ddp or fsdp)', positiveInt)
    .option('--no-spot', 'use on-demand instead of managed spot capacity')
    .option('--max-runtime-hours <hours>', 'training time limit (default: 24)', positiveNumber)
    .option('--max-eval-loss-ratio <ratio>', 'gate: tuned/base eval loss at most this (default: 1.0)', positiveNumber)
    .option('--max-forgetting-increase <n>', 'gate: probe loss increase at most this (default: 0.1)', nonNegativeNumber)
    .option('--auto-approve', 'register the model as Approved instead of PendingManualApproval')
    .option('--deploy-endpoint <name>', 'after approval, deploy to this vLLM endpoint (with --adapter when it serves adapters as inference components)')
    .option('--adapter <name>', 'the adapter name on --deploy-endpoint')
    .option('--run-name <label>', 'a label for people (part of the request, so it also makes a new run id)')
    .option('--graders <file>', 'JSON list of graders that score the base and tuned answers to the eval rows (OpenAI grader JSON carries over; README "Graders")')
    .option('--reward-model <model>', "methods rloo (required: RLHF against it) and grpo (with or instead of --graders): the registered reward model that rewards the completions: a model version (e.g. 3) or model package ARN of kind=reward (`tuneyard models`), or a reward run's s3:// model data folder")
    .option('--embedding-model <s3 folder>', "the encoder that --graders with evaluation_metric cosine embed answers with: an s3://<bucket>/base-models/<name>/ folder staged with `tuneyard stage-model` (required by cosine graders)")
    .option('--benchmark <name[@version]>', 'a multiple-choice benchmark from `tuneyard stage-benchmark` whose accuracy the evaluation compares, base vs tuned (repeatable)', (v: string, all: string[]) => [...all, v], [])
    .option('--max-generations <n>', 'eval prompts each model answers for the graders (default: 200; 0: none)', wholeNumber)
    .option('--max-new-tokens <n>', 'tokens an answer may have at most (default: 256)', positiveInt)
    .option('--min-grader-mean <name=min>', 'gate: the tuned answers\' mean score of this grader (of --graders) at least min (repeatable)', graderMinimum, {})
    .option('--min-reward-gain <gain>', 'gate of grpo and rloo runs: the run\'s mean reward of the tuned answers to the eval prompts minus the base\'s at least this (default: 0)', finiteNumber)
    .option('--judge <model id>', "an LLM judge on Amazon Bedrock (one of the pipeline's judgeModelIds): base vs tuned answers in both orders, and the --graders of type score_model/label_model (README \"The LLM judge\")")
    .option('--judge-max-items <n>', 'answers the judge judges at most (default: 100, at most 1000): its cost bound', wholeNumber)
    .option('--min-judge-win-rate <rate>', 'gate: the LLM judge\'s win rate of the tuned model over the base at least this (0-1; needs a judge)', share)
    .option('--max-benchmark-drop <fraction>', 'gate: each --benchmark\'s accuracy, base minus tuned, at most this (0.02: 2 points)', share)
    .option('--wait', 'watch the run until it ends (exit code as `tuneyard watch`)')
    .option('--interval <seconds>', 'seconds between polls with --wait', positiveNumber, 15)
    .action(async (opts: TrainOptions, command: Command) => {
      ctx.use(command);
      const client = ctx.runClient();
      const dataset = await resolveDataset(ctx, opts.dataset);
      const plane = await client.plane();
      const baseModelParameters = opts.baseModelParameters ?? (await stagedParameters(client, plane, opts.baseModel));
      const benchmarkDatasets = [];
      for (const benchmark of opts.benchmark ?? []) benchmarkDatasets.push(await resolveDataset(ctx, benchmark, 'stage-benchmark'));
      // a registered reward model (grpo, rloo), by version or ARN: read from the registry as PlanRun reads it (model data, lineage kind)
      const registered = opts.rewardModel !== undefined && !opts.rewardModel.startsWith('s3://') ? await client.describeModel(opts.rewardModel) : undefined;
      const rewardModel = registered ? registeredRewardModel(registered) : undefined;
      const request = buildRunRequest({ ...opts, baseModelParameters, ...(registered ? { rewardModel: registered.ModelPackageArn } : {}) }, dataset, benchmarkDatasets);
      // The data first (a DPO run on chat rows needs other data, not another instance), then PlanRun's checks, then the model folder.
      const manifest = await client.datasetManifest(request.dataset);
      if (!manifest) {
        throw new CliError(`dataset ${request.dataset.name}@${request.dataset.sha256} not found in ${plane.dataBucketName}: upload it with \`tuneyard upload FILE --name ${request.dataset.name}\``);
      }
      checkDatasetFormat(request, manifest);
      for (const benchmark of request.benchmarkDatasets ?? []) await checkBenchmark(client, plane, benchmark);
      const plan = planForCli(request, plane, { rewardModel });
      await checkBaseModel(client, plane, request.baseModel);
      // a reward model of another tokenizer family: refused here as PlanRun refuses it (both tokenizer.json files read)
      const vocabulary = await rewardVocabularyProblem({ request, plan }, { rewardModel }, client.clients.s3).catch((e: unknown) => {
        // the CLI user may not read artifacts/ (or the base model's folder): PlanRun, whose role reads both, checks it
        if (!isAccessDenied(e)) throw e;
        ctx.io.err(
          `warning: the reward model's vocabulary was not compared with the base model's here (${(e as Error).name}: ${(e as Error).message}); ` +
            "PlanRun compares them with the pipeline's role before any job starts\n",
        );
        return undefined;
      });
      if (vocabulary) throw new CliError(planMessage(vocabulary, request));
      // a grpo/rloo base model without a chat template: refused here as PlanRun refuses it (tokenizer_config.json read)
      const chatTemplate = await chatTemplateProblem({ request }, client.clients.s3).catch((e: unknown) => {
        if (!isAccessDenied(e)) throw e;
        ctx.io.err(
          `warning: the base model's chat template was not looked for here (${(e as Error).name}: ${(e as Error).message}); ` +
            "PlanRun looks for it with the pipeline's role before any job starts\n",
        );
        return undefined;
      });
      if (chatTemplate) throw new CliError(chatTemplate.replace('Set recipe.chatTemplate to "chatml"', 'Set "chatTemplate": "chatml" in the --recipe file'));
      const cost = costEstimate(request, plan, manifest);
      const runId = runIdFor(request);
      const started = await client.startRun(runId, request);
      ctx.print(
        { runId, executionArn: started.executionArn, existing: started.existing, trainingJobName: plan.trainingJobName, preflight: plan.preflight, estimate: cost },
        started.existing
          ? `run ${runId} already exists for this request: nothing started\n  watch it: tuneyard watch ${runId}\n`
          : `started run ${runId}\n  ${plan.preflight.advice}\n${cost ? `  ${costText(cost, request.spot)}\n` : ''}${plan.judge ? `  ${judgeCostText(plan.judge)}\n` : ''}  watch it: tuneyard watch ${runId}\n`,
      );
      if (opts.wait) ctx.exitCode = await watchRun(ctx, runId, opts.interval);
    });

  program
    .command('watch')
    .description('Follow a run: pipeline stage, training job status, loss, elapsed and estimated time. Exits 0 succeeded, 1 failed, 2 rejected by the gate.')
    .argument('<run>', 'run id (or execution ARN)')
    .option('--interval <seconds>', 'seconds between polls', positiveNumber, 15)
    .action(async (run: string, opts: { interval: number }, command: Command) => {
      ctx.use(command);
      ctx.exitCode = await watchRun(ctx, run, opts.interval);
    });

  program
    .command('runs')
    .description('List runs, newest first.')
    .option('--max <n>', 'how many', positiveInt, 20)
    .addOption(new Option('--status <status>', 'only runs in this state').choices(['RUNNING', 'SUCCEEDED', 'FAILED', 'TIMED_OUT', 'ABORTED']))
    .action(async (opts: { max: number; status?: string }, command: Command) => {
      ctx.use(command);
      const runs = await ctx.runClient().listRuns(opts.max, opts.status);
      const rows = runs.map((r) => [r.name ?? '-', r.status ?? '-', time(r.startDate), r.stopDate ? duration(r.stopDate.getTime() - (r.startDate?.getTime() ?? 0)) : '-']);
      ctx.print(
        runs.map((r) => ({ runId: r.name, status: r.status, startDate: r.startDate, stopDate: r.stopDate, executionArn: r.executionArn })),
        runs.length
          ? table(['RUN', 'STATUS', 'STARTED', 'DURATION'], rows)
          : opts.status
            ? `no ${opts.status} runs: list every run with \`tuneyard runs\`\n`
            : 'no runs yet: start one with `tuneyard train`\n',
      );
    });

  program
    .command('describe')
    .description('Show a run: its request, stage, training job and outcome.')
    .argument('<run>', 'run id (or execution ARN)')
    .action(async (run: string, _opts: unknown, command: Command) => {
      ctx.use(command);
      const status = await ctx.runClient().describeRun(run);
      ctx.print(status, describeText(status, ctx.deps.now()));
    });

  program
    .command('cancel')
    .description('Stop a run: its execution, and its training job when that is still in progress.')
    .argument('<run>', 'run id (or execution ARN)')
    .option('--reason <text>', 'why: recorded with your identity in the stopped execution and its notification')
    .action(async (run: string, opts: { reason?: string }, command: Command) => {
      ctx.use(command);
      const result = await ctx.runClient().cancelRun(run, opts.reason);
      const parts = [
        result.executionStopped ? 'execution stopped' : 'execution had already ended',
        result.trainingJobStopped ? 'training job stopping' : 'no training job in progress',
      ];
      ctx.print(result, `run ${result.runId}: ${parts.join('; ')}\n`);
    });

  program
    .command('logs')
    .description('Print the training job\'s logs (CloudWatch Logs, /aws/sagemaker/TrainingJobs). Fails on a run that does not exist.')
    .argument('<run>', 'run id (or execution ARN)')
    .option('--tail <n>', 'only the last n lines', positiveInt)
    .option('--follow', 'keep printing new lines until the training job or the run ends (succeeded, failed, stopped, cancelled, timed out)')
    .option('--interval <seconds>', 'seconds between polls with --follow', positiveNumber, 10)
    .action(async (run: string, opts: { tail?: number; follow?: boolean; interval: number }, command: Command) => {
      ctx.use(command);
      const client = ctx.runClient();
      // An unknown run fails here (exit 1, how to list runs) instead of printing nothing.
      const found = await client.findRun(run);
      const { executionArn, runId } = found;
      let execution = found.execution;
      let since: number | undefined;
      let printed = new Set<string>();
      const collected: LogLine[] = [];
      for (;;) {
        const lines = await client.trainingLogs(runId, { startTime: since, limit: since === undefined ? opts.tail : undefined });
        const seen = new Set<string>();
        for (const line of lines) {
          const key = `${line.stream}\u0000${line.timestamp}\u0000${line.message}`;
          seen.add(key);
          if (printed.has(key)) continue;
          // --json: one array; with --follow, one JSON object per line as the lines come (JSON Lines).
          if (!ctx.global.json) ctx.io.out(`${line.message.replace(/\n$/, '')}\n`);
          else if (opts.follow) ctx.io.out(JSON.stringify(line) + '\n');
          else collected.push(line);
          since = Math.max(since ?? 0, line.timestamp);
        }
        printed = seen;
        if (!opts.follow) break;
        // The lines written before the end were read above: stop once the job or the whole run has ended.
        if (execution.status !== 'RUNNING') break;
        const job = await client.trainingJob(runId);
        if (job && job.status !== 'InProgress' && job.status !== 'Stopping') break;
        await ctx.deps.sleep(opts.interval * 1000);
        execution = await client.describeExecution(executionArn);
      }
      if (ctx.global.json && !opts.follow) ctx.io.out(JSON.stringify(collected, null, 2) + '\n');
    });
}

/** `name@sha256` as given, or a bare name resolved to its newest version. */
async function resolveDataset(ctx: CommandContext, value: string, command: 'upload' | 'stage-benchmark' = 'upload'): Promise<{ name: string; sha256: string }> {
  const at = value.indexOf('@');
  if (at >= 0) return { name: value.slice(0, at), sha256: value.slice(at + 1) };
  const latest = await ctx.runClient().latestDatasetVersion(value);
  if (!latest) throw new CliError(`${command === 'upload' ? 'dataset' : 'benchmark'} "${value}" has no versions: ${command === 'upload' ? 'upload' : 'stage'} one with \`tuneyard ${command} FILE --name ${value}\``);
  return latest;
}

/** The RunRequest of `train`'s options, validated (errors name the field and the fix). */
export function buildRunRequest(opts: TrainOptions, dataset: { name: string; sha256: string }, benchmarkDatasets: Array<{ name: string; sha256: string }> = []): RunRequest {
  let recipe: Record<string, unknown> = {};
  if (opts.recipe) {
    let text: string;
    try {
      text = fs.readFileSync(opts.recipe, 'utf8');
    } catch (e) {
      throw new CliError(`${opts.recipe}: cannot read the recipe (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    try {
      recipe = JSON.parse(text);
    } catch (e) {
      throw new CliError(`${opts.recipe}: not valid JSON (${(e as Error).message})`);
    }
    if (!recipe || typeof recipe !== 'object' || Array.isArray(recipe)) throw new CliError(`${opts.recipe}: a recipe is a JSON object such as {"method":"lora","epochs":2}`);
  }
  if (opts.adapter && !opts.deployEndpoint) throw new CliError('--adapter needs --deploy-endpoint NAME');
  const graders = opts.graders === undefined ? undefined : readGraders(opts.graders);
  const flags: Record<string, unknown> = {};
  for (const { field } of RECIPE_FLAGS) if (opts[field] !== undefined) flags[field] = opts[field];
  const minGraderMean = Object.keys(opts.minGraderMean ?? {}).length ? opts.minGraderMean : undefined;
  const gate = {
    maxEvalLossRatio: opts.maxEvalLossRatio,
    maxForgettingIncrease: opts.maxForgettingIncrease,
    minGraderMean,
    minRewardGain: opts.minRewardGain,
    minJudgeWinRate: opts.minJudgeWinRate,
    maxBenchmarkDrop: opts.maxBenchmarkDrop,
  };
  const thresholds = Object.values(gate).some((v) => v !== undefined) ? gate : undefined;
  const evaluation = opts.maxGenerations !== undefined || opts.maxNewTokens !== undefined ? { maxGenerations: opts.maxGenerations, maxNewTokens: opts.maxNewTokens } : undefined;
  const raw = {
    dataset,
    baseModel: opts.baseModel,
    baseModelParameters: opts.baseModelParameters,
    recipe: { ...recipe, ...flags, method: opts.method ?? recipe.method ?? 'lora' },
    instanceType: opts.instance,
    instanceCount: opts.instanceCount,
    spot: opts.spot,
    maxRuntimeHours: opts.maxRuntimeHours,
    thresholds,
    autoApprove: opts.autoApprove ?? false,
    deploy: opts.deployEndpoint ? { endpointName: opts.deployEndpoint, adapterName: opts.adapter } : null,
    runName: opts.runName,
    graders,
    rewardModel: opts.rewardModel,
    embeddingModel: opts.embeddingModel,
    benchmarkDatasets: benchmarkDatasets.length ? benchmarkDatasets : undefined,
    evaluation,
    judge: opts.judge ? { modelId: opts.judge, maxItems: opts.judgeMaxItems } : undefined,
  };
  if (opts.judgeMaxItems !== undefined && !opts.judge) throw new CliError('--judge-max-items needs --judge MODEL_ID');
  try {
    return parseRunRequest(JSON.parse(JSON.stringify(raw)));
  } catch (e) {
    if (e instanceof RunRequestError) throw new CliError(withFlagNames(e.message, Object.keys(flags), opts.recipe) + `\n  every recipe field: ${RECIPE_REFERENCE}`);
    throw e;
  }
}

/** A graders file, validated (lib/graders.ts): each problem is named by the file and its JSON path. */
function readGraders(file: string): GraderConfig[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new CliError(`${file}: cannot read the graders (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new CliError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  try {
    return parseGraders(value, file);
  } catch (e) {
    if (e instanceof GradersError) throw new CliError(e.message.replace(/^invalid graders/, `${file}: invalid graders`));
    throw e;
  }
}

/** `recipe.<field>` in a RunRequest error, followed by the flag that set it or the recipe file it came from. */
function withFlagNames(message: string, fromFlags: string[], recipeFile?: string): string {
  return message
    .replace(/^( {2}- )recipe\.(\w+)/gm, (whole, lead: string, field: string) => {
      if (fromFlags.includes(field)) return `${lead}recipe.${field} (${RECIPE_FLAGS.find((f) => f.field === field)!.flag.split(' ')[0]})`;
      return recipeFile && field !== 'method' ? `${lead}recipe.${field} (in ${recipeFile})` : whole;
    })
    .replace(/^( {2}- )([\w.]+):/gm, (whole, lead: string, field: string) => (REQUEST_FLAGS[field] ? `${lead}${field} (${REQUEST_FLAGS[field]}):` : whole));
}

/** The flags of the RunRequest fields whose names differ from them, for messages. */
const REQUEST_FLAGS: Record<string, string> = {
  instanceType: '--instance',
  instanceCount: '--instance-count',
  maxRuntimeHours: '--max-runtime-hours',
  'thresholds.maxEvalLossRatio': '--max-eval-loss-ratio',
  'thresholds.maxForgettingIncrease': '--max-forgetting-increase',
  'thresholds.minRewardGain': '--min-reward-gain',
  'thresholds.minJudgeWinRate': '--min-judge-win-rate',
  'thresholds.maxBenchmarkDrop': '--max-benchmark-drop',
  benchmarkDatasets: '--benchmark',
  'evaluation.maxGenerations': '--max-generations',
  'evaluation.maxNewTokens': '--max-new-tokens',
  'deploy.endpointName': '--deploy-endpoint',
  'deploy.adapterName': '--adapter',
  runName: '--run-name',
  rewardModel: '--reward-model',
  embeddingModel: '--embedding-model',
};

const PLACEHOLDER_KEY = 'arn:aws:kms:us-east-1:000000000000:key/preflight';

/**
 * PlanRun's own checks (`planRun`: the request against the plane, the instance, GPU memory, the API
 * limits, Hub ids against the plane's AllowHubModels output, old GPUs against its
 * MinComputeCapability), run before anything starts. The KMS keys are placeholders: they only
 * shape the plan. A plane whose outputs do not say whether it allows Hub ids lets them through
 * here; its PlanRun decides.
 */
export function planForCli(request: RunRequest, plane: Plane, lookups: PlanLookups = {}): RunPlan {
  try {
    return planRun(request, {
      bucketName: plane.dataBucketName,
      volumeKmsKeyArn: PLACEHOLDER_KEY,
      outputKmsKeyArn: PLACEHOLDER_KEY,
      allowHubModels: plane.allowHubModels ?? true,
      jobNamePrefix: plane.trainingJobPrefix,
      minComputeCapability: plane.minComputeCapability,
    }, lookups);
  } catch (e) {
    if (e instanceof RunRequestError) throw new CliError(planMessage(e.message, request));
    throw e;
  }
}

/** The flags that change a recipe field named in the preflight's advice. */
const ADVICE_FLAGS: Array<[RegExp, string]> = [
  [/\buse qlora\b/, 'use qlora (--method qlora)'],
  [/\blower batchSize \(raise gradientAccumulation/, 'lower --batch-size (raise --gradient-accumulation'],
  [/\bturn on gradientCheckpointing\b/, 'turn on gradientCheckpointing (recipe)'],
  [/\bshard with distribution "fsdp"/, 'shard with --distribution fsdp'],
  [/\buse (ml\.[\w.]+) with distribution "fsdp"/, 'use --instance $1 with --distribution fsdp'],
  [/\buse (ml\.[\w.]+)(?=[,.]|$)/, 'use --instance $1'],
];

/** A planRun message in the CLI's words: flags instead of request fields, and how to stage a Hub model. */
function planMessage(message: string, request: RunRequest): string {
  let text = message
    .replace('set baseModelParameters', 'pass --base-model-parameters')
    .replace(/^(instanceType|instanceCount|maxRuntimeHours|rewardModel):/, (_whole, field: string) => `${field} (${REQUEST_FLAGS[field]}):`);
  if (text.startsWith('the run does not fit in GPU memory:')) {
    const cut = text.lastIndexOf('GPU: ');
    if (cut > 0) {
      let fixes = text.slice(cut + 5);
      for (const [pattern, flag] of ADVICE_FLAGS) fixes = fixes.replace(pattern, flag);
      text = text.slice(0, cut + 5) + fixes;
    }
  }
  if (text.startsWith('baseModel:') && !request.baseModel.startsWith('s3://') && /Hub id/.test(text)) {
    const name = request.baseModel.split('/').pop()!.toLowerCase();
    text += `\n  stage it: hf download ${request.baseModel} --local-dir ${name} && tuneyard stage-model ${name} --name ${name}`;
  }
  return text;
}

/** The check ValidateDataset makes of the dataset's format against the method, from the version's manifest. */
function checkDatasetFormat(request: RunRequest, manifest: DatasetManifest): void {
  if (!manifest.format) return; // a manifest without a format (not written by `tuneyard upload`): the pipeline checks the rows
  if (manifest.format === MULTIPLE_CHOICE_FORMAT) {
    throw new CliError(
      `dataset ${request.dataset.name}@${request.dataset.sha256} is a multiple-choice benchmark (staged with \`tuneyard stage-benchmark\`), not training data: ` +
        `pass it as --benchmark ${request.dataset.name}, and train on a dataset from \`tuneyard upload\``,
    );
  }
  const problem = methodError(manifest.format as DatasetFormat, manifest.files?.train?.rows ?? 1, request.recipe.method);
  if (problem) {
    throw new CliError(
      `dataset ${request.dataset.name}@${request.dataset.sha256}: ${problem.message.replace(/\bUse method (\w+)/, 'Use --method $1')} (${problem.code}; the pipeline's ValidateDataset would fail the run)`,
    );
  }
}

/** A --benchmark must be a staged multiple-choice benchmark: its manifest says so (the evaluation job would fail on other rows). */
async function checkBenchmark(client: RunClient, plane: Plane, benchmark: { name: string; sha256: string }): Promise<void> {
  const manifest = await client.datasetManifest(benchmark);
  const version = `${benchmark.name}@${benchmark.sha256}`;
  if (!manifest) throw new CliError(`--benchmark ${version} not found in ${plane.dataBucketName}: stage it with \`tuneyard stage-benchmark FILE --name ${benchmark.name}\``);
  if (manifest.format !== undefined && manifest.format !== MULTIPLE_CHOICE_FORMAT) {
    throw new CliError(
      `--benchmark ${version} is a ${manifest.format ?? 'unknown'} dataset, not a multiple-choice benchmark: stage the benchmark's items ` +
        '({"question" or "context", "choices", "answer"} per line) with `tuneyard stage-benchmark FILE --name NAME`',
    );
  }
}

/**
 * The size of a staged base model whose name does not tell it, from the parameter count
 * `tuneyard stage-model` wrote into its manifest; undefined when the name tells or no manifest says.
 */
async function stagedParameters(client: RunClient, plane: Plane, baseModel: string): Promise<number | undefined> {
  const bucket = `s3://${plane.dataBucketName}/`;
  if (!baseModel.startsWith(bucket)) return undefined;
  try {
    resolveParameters(baseModel);
    return undefined;
  } catch {
    // the name does not tell: read the manifest
  }
  const folder = baseModel.slice(bucket.length).replace(/\/?$/, '/');
  const text = await client.readObject(`${folder}${MODEL_MANIFEST}`);
  try {
    const parameters = text === undefined ? undefined : (JSON.parse(text) as { parameters?: unknown }).parameters;
    return typeof parameters === 'number' && parameters > 0 ? Number((parameters / 1e9).toPrecision(3)) : undefined;
  } catch {
    return undefined;
  }
}

/** An s3:// base model must be a staged Hugging Face folder: the training job loads config.json from it. */
/** S3's refusal of the caller's permissions (a bucket policy, IAM or a KMS key the caller may not use). */
function isAccessDenied(e: unknown): boolean {
  const name = (e as { name?: string } | null)?.name;
  return name === 'AccessDenied' || name === 'Forbidden' || (e as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode === 403;
}

async function checkBaseModel(client: RunClient, plane: Plane, baseModel: string): Promise<void> {
  if (!baseModel.startsWith('s3://')) return;
  const folder = baseModel.endsWith('/') ? baseModel : `${baseModel}/`;
  const key = folder.slice(`s3://${plane.dataBucketName}/`.length); // planRun refused any other bucket
  if (await client.objectExists(`${key}config.json`)) return;
  const objects = await client.listObjects(key);
  const name = key.slice(DATA_PREFIXES.baseModels.length).replace(/\/$/, '') || 'NAME';
  const what = objects.length ? `has no config.json (${objects.length} other object${objects.length === 1 ? '' : 's'})` : 'is empty or does not exist';
  throw new CliError(
    `baseModel: ${folder} ${what}, so the training job could not load a model from it. ` +
      `Stage a Hugging Face model folder there: \`hf download <model id> --local-dir DIR\`, then \`tuneyard stage-model DIR --name ${name}\``,
  );
}

/** Training time and cost of the run, from the dataset's token count (`tuneyard estimate`'s model); undefined when it cannot tell. */
function costEstimate(request: RunRequest, plan: RunPlan, manifest: DatasetManifest): InstanceEstimate | undefined {
  const tokens = manifest.files?.train?.tokens;
  if (!tokens) return undefined;
  const recipe = resolveRecipe(request.recipe);
  try {
    // --max-steps trains that many optimiser steps whatever the epochs: as passes over the data
    const rows = manifest.files?.train?.rows;
    const processes = recipe.distribution === 'none' ? 1 : gpuInstance(request.instanceType).gpus * request.instanceCount;
    const maxSteps = request.recipe.maxSteps;
    const epochs = maxSteps && rows ? (maxSteps * recipe.batchSize * recipe.gradientAccumulation * processes) / rows : recipe.epochs;
    return estimateOn(
      plan.resourceConfig.InstanceType,
      {
        baseModel: request.baseModel,
        baseModelParameters: request.baseModelParameters,
        method: recipe.method,
        instanceCount: request.instanceCount,
        tokens,
        epochs,
        maxLength: recipe.maxLength,
        batchSize: recipe.batchSize,
        loraR: recipe.loraR,
        distribution: recipe.distribution,
      },
    );
  } catch {
    return undefined; // e.g. no throughput assumption for this GPU
  }
}

/** `estimated ~1.3 h of training: $0.53 with spot ($1.76 on demand); assumptions: tuneyard estimate --help`. */
function costText(e: InstanceEstimate, spot: boolean): string {
  const h = e.hours < 0.1 ? '<0.1' : e.hours.toFixed(1);
  const price =
    e.onDemandUsd === undefined
      ? `no price for ${e.instanceType} in the pricing table`
      : spot
        ? `${usd(e.spotUsd)} with spot (${usd(e.onDemandUsd)} on demand)`
        : `${usd(e.onDemandUsd)} on demand`;
  return `estimated ~${h} h of training on ${e.instanceCount} x ${e.instanceType}: ${price}; an estimate, excluding start-up and evaluation (see \`tuneyard estimate\`)`;
}

/** `judge amazon.nova-pro-v1:0: at most 100 items, 200 Bedrock calls, ~$0.24, an estimate (...)`, or unpriced. */
export function judgeCostText(judge: Pick<JudgePlan, 'modelId' | 'maxItems' | 'maxCalls' | 'cost'>): string {
  const cost = judge.cost === 'unpriced' ? 'unpriced (no price for this model in the pricing table)' : `~${usd(judge.cost.usd)}, an estimate (${judge.cost.assumption}; prices of ${judge.cost.pricesAsOf}; longer prompts cost more)`;
  return `judge ${judge.modelId}: at most ${judge.maxItems} items, ${judge.maxCalls} Bedrock calls, ${cost}`;
}

/** Polls a run and prints a line whenever it changes; returns the exit code of its outcome. */
export async function watchRun(ctx: CommandContext, run: string, intervalSeconds: number): Promise<number> {
  const client = ctx.runClient();
  let last = '';
  for (;;) {
    const status = await client.describeRun(run);
    const line = ctx.global.json ? JSON.stringify(watchJson(status, ctx.deps.now())) : watchLine(status, ctx.deps.now());
    // The elapsed and remaining times change every poll: compare without them, so that a new
    // line means the stage, the job or a metric changed.
    const key = line.replace(/ \| elapsed .*$|"(elapsed|remaining)Seconds":\d+,?/g, '');
    if (key !== last) {
      ctx.io.out(line + '\n');
      last = key;
    }
    const code = runExitCode(status);
    if (code !== undefined) {
      if (!ctx.global.json) ctx.io.err(outcomeText(status) + '\n');
      return code;
    }
    await ctx.deps.sleep(intervalSeconds * 1000);
  }
}

/** Seconds of training left: the training time so far scaled by the epochs still to go. */
export function remainingSeconds(status: RunStatus, now: Date): number | undefined {
  const job = status.trainingJob;
  const epoch = job?.metrics.epoch;
  if (!job?.startTime || job.status !== 'InProgress' || !epoch || epoch <= 0) return undefined;
  const recipe = status.input?.recipe as { epochs?: number } | undefined;
  const total = recipe?.epochs ?? 1;
  if (epoch >= total) return 0;
  const spent = (now.getTime() - job.startTime.getTime()) / 1000;
  return Math.round((spent * (total - epoch)) / epoch);
}

function watchJson(status: RunStatus, now: Date) {
  const job = status.trainingJob;
  return {
    runId: status.runId,
    status: status.status,
    stage: status.stage,
    elapsedSeconds: Math.round(((status.stopDate ?? now).getTime() - (status.startDate ?? now).getTime()) / 1000),
    trainingJob: job && {
      name: job.name,
      status: job.status,
      secondaryStatus: job.secondaryStatus,
      trainLoss: job.metrics.train_loss,
      evalLoss: job.metrics.eval_loss,
      epoch: job.metrics.epoch,
      policyLoss: job.metrics.policy_loss,
      rewardMean: job.metrics.reward_mean,
      kl: job.metrics.kl,
      rewardAccuracy: job.metrics.reward_accuracy,
    },
    remainingSeconds: remainingSeconds(status, now),
    error: status.error,
  };
}

/**
 * The figures `watch` shows, those the job has emitted (training/metrics.json names): the loss (RLOO logs its
 * policy_loss instead of train_loss), the mean reward and KL of the online RL methods, the pairwise accuracy of DPO and
 * reward models, the epoch.
 */
const WATCHED_METRICS = ['train_loss', 'policy_loss', 'eval_loss', 'reward_mean', 'kl', 'reward_accuracy', 'epoch'] as const;

/** One line of `watch`: `[RUNNING] Train | job InProgress/Training | train_loss 1.234 eval_loss 1.3 epoch 0.5 | elapsed 12m 03s, ~24m left`. */
export function watchLine(status: RunStatus, now: Date): string {
  const parts = [`[${status.status}] ${status.stage ?? 'starting'}`];
  const job = status.trainingJob;
  if (job) {
    parts.push(`job ${job.status}${job.secondaryStatus ? `/${job.secondaryStatus}` : ''}`);
    const metrics = WATCHED_METRICS.filter((name) => job.metrics[name] !== undefined).map((name) => `${name} ${metric(job.metrics[name])}`);
    if (metrics.length) parts.push(metrics.join(' '));
  }
  const elapsed = (status.stopDate ?? now).getTime() - (status.startDate ?? now).getTime();
  const left = remainingSeconds(status, now);
  parts.push(`elapsed ${duration(elapsed)}${left !== undefined ? `, ~${duration(left * 1000)} of training left` : ''}`);
  return parts.join(' | ');
}

function outcomeText(status: RunStatus): string {
  switch (runExitCode(status)) {
    case 0:
      return `run ${status.runId} succeeded`;
    case 2:
      return `run ${status.runId} was rejected by the eval gate: ${status.cause ?? ''}`.trimEnd();
    default:
      return `run ${status.runId} ${status.status.toLowerCase().replace('_', ' ')}${status.error ? `: ${status.error}` : ''}${status.cause ? ` (${status.cause})` : ''}`;
  }
}

function describeText(status: RunStatus, now: Date): string {
  const input = (status.input ?? {}) as Partial<RunRequest>;
  const rows: [string, string][] = [
    ['run', status.runId],
    ['status', status.status],
    ['stage', status.stage ?? '-'],
    ['started', time(status.startDate)],
    ['elapsed', duration((status.stopDate ?? now).getTime() - (status.startDate ?? now).getTime())],
  ];
  if (input.dataset) rows.push(['dataset', `${input.dataset.name}@${input.dataset.sha256}`]);
  if (input.baseModel) rows.push(['base model', input.baseModel]);
  if (input.recipe) rows.push(['recipe', JSON.stringify(input.recipe)]);
  if (input.instanceType) rows.push(['instance', `${input.instanceCount ?? 1} x ${input.instanceType}${input.spot === false ? '' : ' (spot)'}`]);
  const job = status.trainingJob;
  if (job) {
    rows.push(['training job', `${job.name}: ${job.status}${job.secondaryStatus ? `/${job.secondaryStatus}` : ''}`]);
    for (const [name, value] of Object.entries(job.metrics)) rows.push([`  ${name}`, metric(value)]);
    if (job.billableSeconds !== undefined) rows.push(['  billable', duration(job.billableSeconds * 1000)]);
    if (job.failureReason) rows.push(['  failure', job.failureReason]);
  }
  if (status.error) rows.push(['error', status.error]);
  if (status.cause) rows.push(['cause', status.cause]);
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n') + '\n';
}
