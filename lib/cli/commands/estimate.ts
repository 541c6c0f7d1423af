import { Command, Option } from 'commander';
import { GPU_INSTANCES, gpuInstance } from '../../instances';
import { Distribution, estimateTrainingMemory, resolveParameters } from '../../preflight';
import { estimateCost, estimateTrainingHours, PRICE_REGION, PRICES_AS_OF, SPOT_DISCOUNT } from '../../pricing';
import { DISTRIBUTIONS, METHODS, Method, RECIPE_FIELDS } from '../../recipe';
import { positiveInt, positiveNumber } from '../args';
import { CliError } from '../errors';
import { count, table, usd } from '../format';
import type { CommandContext } from '../program';

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
}

export interface InstanceEstimate {
  readonly instanceType: string;
  readonly instanceCount: number;
  readonly gpus: number;
  readonly distribution: Distribution;
  readonly requiredGiB: number;
  readonly availableGiB: number;
  readonly fits: boolean;
  readonly hours: number;
  readonly onDemandUsd?: number;
  readonly spotUsd?: number;
  readonly advice: string;
}

/**
 * The distribution an estimate assumes when none is given: one process on a one-GPU job; on more
 * GPUs, FSDP (shards weights and optimizer state) except for QLoRA, which replicates (DDP).
 */
export function defaultDistribution(method: Method, gpus: number): Distribution {
  if (gpus <= 1) return 'none';
  return method === 'qlora' ? 'ddp' : 'fsdp';
}

/** Memory, time and cost of one job on one instance type. */
export function estimateOn(instanceType: string, opts: EstimateOptions, parametersBillions: number): InstanceEstimate {
  const instance = gpuInstance(instanceType);
  const totalGpus = instance.gpus * opts.instanceCount;
  const distribution = opts.distribution ?? defaultDistribution(opts.method, totalGpus);
  const memory = estimateTrainingMemory({
    method: opts.method,
    parametersBillions,
    maxLength: opts.maxLength,
    batchSize: opts.batchSize,
    gradientCheckpointing: true,
    loraR: opts.loraR,
    instanceType,
    instanceCount: opts.instanceCount,
    distribution,
  });
  // One process ("none") trains on one GPU, whatever the instance has.
  const gpus = distribution === 'none' ? 1 : totalGpus;
  const hours = estimateTrainingHours({ gpuModel: instance.gpuModel, gpus, method: opts.method, paramsB: parametersBillions, tokens: opts.tokens, epochs: opts.epochs });
  const cost = estimateCost(instanceType, opts.instanceCount, hours);
  return {
    instanceType,
    instanceCount: opts.instanceCount,
    gpus,
    distribution,
    requiredGiB: memory.requiredGiB,
    availableGiB: memory.availableGiB,
    fits: memory.fits,
    hours,
    onDemandUsd: cost.onDemandUsd,
    spotUsd: cost.spotUsd,
    advice: memory.advice,
  };
}

export function registerEstimateCommand(program: Command, ctx: CommandContext): void {
  program
    .command('estimate')
    .description('Preflight a run: GPU memory (fits or not), training hours and cost on demand vs spot. Local: calls no AWS API.')
    .requiredOption('--base-model <model>', 'base model (its name must state its size, e.g. Llama-3.1-8B, or pass --base-model-parameters)')
    .option('--base-model-parameters <billions>', 'parameters of the base model in billions', positiveNumber)
    .addOption(new Option('--method <method>', 'training method').choices(METHODS).makeOptionMandatory())
    .requiredOption('--tokens <n>', 'tokens in one pass over the training data (`tuneyard validate` estimates it)', positiveInt)
    .option('--instance <type>', 'one instance type (default: every GPU instance type, best first)')
    .option('--instance-count <n>', 'instances', positiveInt, 1)
    .option('--epochs <n>', 'passes over the data', positiveNumber, RECIPE_FIELDS.epochs.default)
    .option('--max-length <tokens>', 'tokens per sequence', positiveInt, RECIPE_FIELDS.maxLength.default)
    .option('--batch-size <n>', 'sequences per GPU per step', positiveInt, RECIPE_FIELDS.batchSize.default)
    .option('--lora-r <n>', 'LoRA rank', positiveInt, RECIPE_FIELDS.loraR.default)
    .addOption(new Option('--distribution <d>', 'how the job uses several GPUs (default: fsdp, or ddp for qlora; none on one GPU)').choices(DISTRIBUTIONS))
    .action(async (opts: EstimateOptions, command: Command) => {
      ctx.use(command);
      let parameters: number;
      try {
        parameters = resolveParameters(opts.baseModel, opts.baseModelParameters);
      } catch (e) {
        throw new CliError(`${(e as Error).message.replace('set baseModelParameters', 'pass --base-model-parameters')}`);
      }
      let types: string[];
      if (opts.instance) {
        try {
          gpuInstance(opts.instance);
        } catch (e) {
          throw new CliError((e as Error).message);
        }
        types = [opts.instance];
      } else {
        types = [...GPU_INSTANCES.keys()];
      }
      const estimates = types.map((t) => estimateOn(t, opts, parameters));
      if (!opts.instance) estimates.sort(byBest);
      const assumptions = {
        parametersBillions: parameters,
        prices: `SageMaker training on-demand, ${PRICE_REGION}, as of ${PRICES_AS_OF} (lib/pricing.ts)`,
        spotDiscount: SPOT_DISCOUNT,
        throughput: 'tokens/s per GPU by GPU model and method for an 8B model, scaled by size (lib/pricing.ts); excludes start-up and evaluation',
      };
      const rows = estimates.map((e) => [
        e.instanceType + (e.instanceCount > 1 ? ` x${e.instanceCount}` : ''),
        `${e.gpus}${e.distribution === 'none' ? '' : ` ${e.distribution}`}`,
        `${e.requiredGiB.toFixed(1)}`,
        `${e.availableGiB}`,
        e.fits ? 'yes' : 'no',
        e.fits ? hours(e.hours) : '-',
        e.fits ? usd(e.onDemandUsd) : '-',
        e.fits ? usd(e.spotUsd) : '-',
      ]);
      let text = `${opts.method} of ${opts.baseModel} (~${parameters}B parameters), ${count(opts.tokens)} tokens x ${opts.epochs} epoch${opts.epochs === 1 ? '' : 's'}\n`;
      text += table(['INSTANCE', 'GPUS', 'NEED GiB/GPU', 'HAVE GiB/GPU', 'FITS', 'HOURS', 'ON-DEMAND', `SPOT (-${Math.round(SPOT_DISCOUNT * 100)}%)`], rows);
      if (opts.instance) text += `${estimates[0].advice}\n`;
      text += `estimates only: ${assumptions.prices}; spot assumed ${Math.round(SPOT_DISCOUNT * 100)}% off; time from an assumed throughput table, excluding start-up and evaluation.\n`;
      ctx.print({ assumptions, estimates }, text);
      if (opts.instance && !estimates[0].fits) ctx.exitCode = 1;
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
