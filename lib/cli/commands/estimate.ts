import { Command, Option } from 'commander';
import { GPU_INSTANCES, gpuInstance } from '../../instances';
import { Distribution, estimateTrainingMemory, MemoryBreakdown, ModelShape, OPTIMIZER_STATE_BYTES, resolveModel, ResolvedModel } from '../../preflight';
import {
  ACROSS_INSTANCE_SCALING,
  estimateCost,
  estimateTrainingHours,
  IN_INSTANCE_SCALING,
  PRICE_REGION,
  PRICES_AS_OF,
  scalingEfficiency,
  SPOT_DISCOUNT,
} from '../../pricing';
import { DEFAULT_JUDGE_MAX_ITEMS, JUDGE_MAX_ITEMS_CAP, judgeCost } from '../../judge';
import { COMPLETION_FIELDS, DISTRIBUTIONS, isOnlineRl, METHODS, Method, RECIPE_FIELDS } from '../../recipe';
import { DEFAULT_EVALUATION } from '../../run-request';
import { positiveInt, positiveNumber } from '../args';
import { CliError } from '../errors';
import { count, table, usd } from '../format';
import type { CommandContext } from '../program';
import { judgeCostText } from './runs';

export interface EstimateOptions {
  readonly baseModel: string;
  readonly baseModelParameters?: number;
  readonly method: Method;
  readonly instance?: string;
  readonly instanceCount: number;
  readonly tokens: number;
  readonly epochs: number;
  readonly maxLength: number;
  readonly batchSize: number;
  readonly loraR: number;
  readonly distribution?: Distribution;
  /** The recipe's optimizer (`optim`). @default 'adamw_torch_fused' */
  readonly optim?: string;
  /** The recipe's `useLigerKernel`. @default false */
  readonly useLigerKernel?: boolean;
  /** A Bedrock judge model: its cost at most is estimated too. */
  readonly judge?: string;
  readonly judgeMaxItems?: number;
  readonly maxNewTokens?: number;
}

/** The judge's calls and cost at most for `--judge` (pairwise in both orders over at most the items the evaluation answers). */
export function judgeEstimate(opts: Pick<EstimateOptions, 'judge' | 'judgeMaxItems' | 'maxNewTokens'>) {
  if (opts.judgeMaxItems !== undefined && !opts.judge) throw new CliError('--judge-max-items needs --judge MODEL_ID');
  if (!opts.judge) return undefined;
  if (opts.judgeMaxItems !== undefined && opts.judgeMaxItems > JUDGE_MAX_ITEMS_CAP) throw new CliError(`--judge-max-items ${opts.judgeMaxItems} is above the cap of ${JUDGE_MAX_ITEMS_CAP}`);
  const maxItems = Math.min(opts.judgeMaxItems ?? DEFAULT_JUDGE_MAX_ITEMS, DEFAULT_EVALUATION.maxGenerations);
  return { modelId: opts.judge, maxItems, maxCalls: 2 * maxItems, cost: judgeCost(opts.judge, maxItems, true, 0, opts.maxNewTokens ?? DEFAULT_EVALUATION.maxNewTokens) };
}

export interface InstanceEstimate {
  readonly instanceType: string;
  readonly instanceCount: number;
  readonly gpus: number;
  readonly distribution: Distribution;
  /** The dtypes the trainer uses on this GPU, e.g. `bf16`, `fp32 (T4 has no bf16)`. */
  readonly precision: string;
  readonly requiredGiB: number;
  readonly availableGiB: number;
  readonly fits: boolean;
  /** Per-GPU GiB by what uses it. */
  readonly breakdown: MemoryBreakdown;
  /** The share of linear multi-GPU speed-up assumed (1 on one GPU). */
  readonly scalingEfficiency: number;
  readonly hours: number;
  readonly onDemandUsd?: number;
  readonly spotUsd?: number;
  readonly advice: string;
}

/** What `tuneyard estimate` computes: the model as sized, the assumptions, one estimate per instance type (best first). */
export interface EstimateReport {
  readonly model: { readonly name: string; readonly parametersBillions: number; readonly known: boolean; readonly shape: ModelShape };
  readonly assumptions: Record<string, unknown>;
  readonly estimates: readonly InstanceEstimate[];
}

/**
 * The distribution an estimate assumes when none is given: one process on a one-GPU job; on more
 * GPUs, FSDP (shards weights and optimizer state) except for QLoRA, which replicates (DDP), and the
 * online RL methods (grpo, rloo), which run with none or ddp only.
 */
export function defaultDistribution(method: Method, gpus: number): Distribution {
  if (gpus <= 1) return 'none';
  return method === 'qlora' || isOnlineRl(method) ? 'ddp' : 'fsdp';
}

/** The base model as the estimate sizes it; a model it cannot size is a CliError naming --base-model-parameters. */
export function estimateModel(opts: Pick<EstimateOptions, 'baseModel' | 'baseModelParameters'>): ResolvedModel {
  try {
    return resolveModel(opts.baseModel, opts.baseModelParameters);
  } catch (e) {
    throw new CliError((e as Error).message.replace('set baseModelParameters', 'pass --base-model-parameters'));
  }
}

/** Memory, time and cost of one job on one instance type (for `train`, which prints a run's estimated cost). */
export function estimateOn(instanceType: string, opts: EstimateOptions, sized: ResolvedModel | number = estimateModel(opts)): InstanceEstimate {
  // A parameter count (as `train` passes it) sizes the run like --base-model-parameters.
  const model = typeof sized === 'number' ? estimateModel({ baseModel: opts.baseModel, baseModelParameters: sized }) : sized;
  const instance = gpuInstance(instanceType);
  const totalGpus = instance.gpus * opts.instanceCount;
  const distribution = opts.distribution ?? defaultDistribution(opts.method, totalGpus);
  const memory = estimateTrainingMemory({
    method: opts.method,
    parametersBillions: model.parametersBillions,
    baseModel: opts.baseModel,
    maxLength: opts.maxLength,
    batchSize: opts.batchSize,
    gradientCheckpointing: true,
    loraR: opts.loraR,
    optim: opts.optim,
    useLigerKernel: opts.useLigerKernel,
    instanceType,
    instanceCount: opts.instanceCount,
    distribution,
  });
  // One process ("none") trains on one GPU, whatever the instance has.
  const gpus = distribution === 'none' ? 1 : totalGpus;
  const instances = distribution === 'none' ? 1 : opts.instanceCount;
  const efficiency = scalingEfficiency(gpus, instances);
  const hours = estimateTrainingHours({ gpuModel: instance.gpuModel, gpus, instances, method: opts.method, paramsB: model.parametersBillions, tokens: opts.tokens, epochs: opts.epochs });
  const cost = estimateCost(instanceType, opts.instanceCount, hours);
  return {
    instanceType,
    instanceCount: opts.instanceCount,
    gpus,
    distribution,
    precision: memory.precision!.label,
    requiredGiB: memory.requiredGiB,
    availableGiB: memory.availableGiB,
    fits: memory.fits,
    breakdown: memory.breakdown,
    scalingEfficiency: Math.round(efficiency * 1000) / 1000,
    hours,
    onDemandUsd: cost.onDemandUsd,
    spotUsd: cost.spotUsd,
    advice: memory.advice,
  };
}

/** The estimate of a run on `opts.instance`, or on every GPU instance type Tuneyard knows, fitting and cheapest first. */
export function estimateRun(opts: EstimateOptions): EstimateReport {
  const model = estimateModel(opts);
  let types: string[];
  if (opts.instance) {
    try {
      gpuInstance(opts.instance);
    } catch (e) {
      throw new CliError(`--instance: ${(e as Error).message}`);
    }
    types = [opts.instance];
  } else {
    types = [...GPU_INSTANCES.keys()];
  }
  const estimates = types.map((t) => estimateOn(t, opts, model));
  if (!opts.instance) estimates.sort(byBest);
  return {
    model: { name: model.shape.name, parametersBillions: model.parametersBillions, known: model.known, shape: model.shape },
    assumptions: {
      parametersBillions: model.parametersBillions,
      modelShape: model.shape.source,
      precision: 'the trainer\'s: bf16 mixed precision on GPUs of compute capability 8.0 or more, fp16 on T4/V100; all weights trained as fp32 master weights',
      prices: `SageMaker training on-demand, ${PRICE_REGION}, as of ${PRICES_AS_OF} (lib/pricing.ts)`,
      spotDiscount: SPOT_DISCOUNT,
      throughput: 'tokens/s per GPU by GPU model and method for an 8B model, scaled by size (lib/pricing.ts); excludes start-up and evaluation',
      multiGpuEfficiency: {
        inInstance: IN_INSTANCE_SCALING,
        acrossInstances: ACROSS_INSTANCE_SCALING,
        source: `${IN_INSTANCE_SCALING} of linear on 2-8 GPUs of one instance (a planning assumption); across instances, further per-GPU losses from Hugging Face's Ultra-Scale Playbook (lib/pricing.ts)`,
      },
      sequences: 'every sequence maxLength tokens long (the worst case; shorter rows need less activation memory)',
      ...(isOnlineRl(opts.method)
        ? {
            onlineRl:
              `batchSize x ${RECIPE_FIELDS.gradientAccumulation.default} completions generated and scored at once (gradientAccumulation's default: TRL generates every accumulated step's completions together) of at most ${RECIPE_FIELDS[COMPLETION_FIELDS[opts.method].maxCompletionLength].default} new tokens (${COMPLETION_FIELDS[opts.method].maxCompletionLength}'s default), their KV cache and log-probabilities; ` +
              (opts.method === 'rloo'
                ? 'a reward model of the base model\'s size beside the policy (rloo always has one); throughput a tenth of LoRA\'s (generation dominates)'
                : 'no reward model (graders; a registered reward model adds its weights); throughput a tenth of LoRA\'s (generation dominates)'),
          }
        : {}),
    },
    estimates,
  };
}

/** `weights 7.3, LoRA adapter 0.2, ...` for one instance's breakdown. */
export function breakdownLine(b: MemoryBreakdown): string {
  const parts: Array<[string, number]> = [
    ['weights', b.weights],
    ['LoRA adapter', b.trainable],
    ['gradients', b.gradients],
    ['optimizer state', b.optimizer],
    ['activations and logits', b.activations],
    ['CUDA context and allocator', b.overhead],
  ];
  return parts.map(([name, gib]) => `${name} ${gib.toFixed(1)}`).join(', ');
}

export function registerEstimateCommand(program: Command, ctx: CommandContext): void {
  program
    .command('estimate')
    .description('Preflight a run: GPU memory (fits or not, and what uses it), training hours and cost on demand vs spot. Local: calls no AWS API. Exits 1 when nothing fits.')
    .requiredOption('--base-model <model>', 'base model: a known family (Llama 3.x, Mistral 7B, Qwen2.5, Gemma 2/3, Phi-3/4) or a name that states its size, e.g. org/model-8B (or pass --base-model-parameters)')
    .option('--base-model-parameters <billions>', 'parameters of the base model in billions, when Tuneyard does not know it', positiveNumber)
    .addOption(new Option('--method <method>', 'training method').choices(METHODS).makeOptionMandatory())
    .requiredOption('--tokens <n>', 'tokens in one pass over the training data (`tuneyard validate` estimates it)', positiveInt)
    .option('--instance <type>', 'one instance type (default: every GPU instance type, best first)')
    .option('--instance-count <n>', 'instances', positiveInt, 1)
    .option('--epochs <n>', 'passes over the data', positiveNumber, RECIPE_FIELDS.epochs.default)
    .option('--max-length <tokens>', 'tokens per sequence', positiveInt, RECIPE_FIELDS.maxLength.default)
    .option('--batch-size <n>', 'sequences per GPU per step', positiveInt, RECIPE_FIELDS.batchSize.default)
    .option('--lora-r <n>', 'LoRA rank', positiveInt, RECIPE_FIELDS.loraR.default)
    .addOption(new Option('--distribution <d>', 'how the job uses several GPUs (default: fsdp, or ddp for qlora, grpo and rloo; none on one GPU)').choices(DISTRIBUTIONS))
    .addOption(new Option('--optim <name>', 'optimizer (recipe optim; 8-bit ones hold a quarter of AdamW\'s state)').choices(Object.keys(OPTIMIZER_STATE_BYTES)).default(RECIPE_FIELDS.optim.default))
    .option('--judge <model id>', 'also the LLM judge\'s Bedrock cost at most (pairwise, both orders; README "The LLM judge")')
    .option('--judge-max-items <n>', `answers the judge judges at most (default: ${DEFAULT_JUDGE_MAX_ITEMS}, at most ${JUDGE_MAX_ITEMS_CAP})`, positiveInt)
    .option('--max-new-tokens <n>', 'tokens an evaluation answer may have at most (the judge reads two answers a call)', positiveInt, DEFAULT_EVALUATION.maxNewTokens)
    .option('--use-liger-kernel', 'Liger\'s kernels (recipe useLigerKernel): RMSNorm and SwiGLU keep less of each layer (TRL\'s fused LM head computes the loss either way)', false)
    .action(async (opts: EstimateOptions, command: Command) => {
      ctx.use(command);
      const report = estimateRun(opts);
      const { estimates, model } = report;
      const rows = estimates.map((e) => [
        e.instanceType + (e.instanceCount > 1 ? ` x${e.instanceCount}` : ''),
        `${e.gpus}${e.distribution === 'none' ? '' : ` ${e.distribution}`}`,
        e.precision,
        `${e.requiredGiB.toFixed(1)}`,
        `${e.availableGiB}`,
        e.fits ? 'yes' : 'no',
        e.fits ? hours(e.hours) : '-',
        e.fits ? usd(e.onDemandUsd) : '-',
        e.fits ? usd(e.spotUsd) : '-',
      ]);
      const sized = model.known ? `${model.name}, ${model.parametersBillions}B parameters, shape from ${model.shape.source}` : `~${model.parametersBillions}B parameters, shape ${model.shape.source}`;
      let text = `${opts.method} of ${opts.baseModel} (${sized}), ${count(opts.tokens)} tokens x ${opts.epochs} epoch${opts.epochs === 1 ? '' : 's'}\n`;
      text += table(['INSTANCE', 'GPUS', 'DTYPE', 'NEED GiB/GPU', 'HAVE GiB/GPU', 'FITS', 'HOURS', 'ON-DEMAND', `SPOT (-${Math.round(SPOT_DISCOUNT * 100)}%)`], rows);
      // the breakdown of the best fitting instance, else of the one that comes closest
      const shown = estimates.find((e) => e.fits) ?? estimates.reduce((a, b) => (b.requiredGiB / b.availableGiB < a.requiredGiB / a.availableGiB ? b : a));
      text += `memory per GPU on ${shown.instanceType} (GiB): ${breakdownLine(shown.breakdown)} = ${shown.requiredGiB.toFixed(1)}\n`;
      if (opts.instance) text += `${shown.advice}\n`;
      const multi = estimates.find((e) => e.fits && e.gpus > 1);
      text +=
        `estimates only: ${report.assumptions.prices}; spot assumed ${Math.round(SPOT_DISCOUNT * 100)}% off; time from an assumed throughput table, excluding start-up and evaluation` +
        `${multi ? `; several GPUs assumed ${IN_INSTANCE_SCALING} as fast as linear in one instance (less across instances)` : ''}; every sequence assumed maxLength tokens.\n`;
      const judge = judgeEstimate(opts);
      if (judge) text += `${judgeCostText(judge)}\n`;
      ctx.print(judge ? { ...report, judge } : report, text);
      if (!estimates.some((e) => e.fits)) {
        ctx.io.err(
          opts.instance
            ? `error: does not fit: ${shown.advice}\n`
            : `error: nothing fits: no GPU instance type Tuneyard knows has room for this run (the least it needs is ~${Math.min(...estimates.map((e) => e.requiredGiB)).toFixed(1)} GiB per GPU); ` +
                'lower --batch-size or --max-length, use --method qlora, or spread it over --instance-count instances with --distribution fsdp\n',
        );
        ctx.exitCode = 1;
      }
    });
}

/** Fitting instances first, cheapest (on demand) first; unpriced ones after priced. */
function byBest(a: InstanceEstimate, b: InstanceEstimate): number {
  if (a.fits !== b.fits) return a.fits ? -1 : 1;
  const ca = a.onDemandUsd ?? Infinity;
  const cb = b.onDemandUsd ?? Infinity;
  if (ca !== cb) return ca - cb;
  return a.instanceType.localeCompare(b.instanceType);
}

function hours(h: number): string {
  return h < 0.1 ? '<0.1' : h.toFixed(1);
}
