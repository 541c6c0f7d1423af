import { Annotations, Token } from 'aws-cdk-lib';
import { IConstruct } from 'constructs';
import { TuneyardValidationError } from '../../lib/errors';
import { findGpuInstance, GPU_INSTANCES, GpuInstance } from '../../lib/instances';
import { estimateInferenceMemory, MemoryEstimate, parametersFromName } from '../../lib/preflight';

/** What Tuneyard knows of a model family: its size and attention heads (from the models' config.json). */
export interface KnownModel {
  readonly parametersBillions: number;
  readonly attentionHeads: number;
}

/**
 * Attention heads of common base models. vLLM splits the heads across GPUs, so the tensor
 * parallel degree must divide `num_attention_heads`. Matched on the model name, case-insensitive.
 */
export const KNOWN_MODELS: ReadonlyArray<{ readonly pattern: RegExp; readonly model: KnownModel }> = [
  { pattern: /llama-3(\.\d)?-1b/i, model: { parametersBillions: 1.2, attentionHeads: 32 } },
  { pattern: /llama-3(\.\d)?-3b/i, model: { parametersBillions: 3.2, attentionHeads: 24 } },
  { pattern: /llama-3(\.\d)?-8b/i, model: { parametersBillions: 8, attentionHeads: 32 } },
  { pattern: /llama-3(\.\d)?-70b/i, model: { parametersBillions: 70, attentionHeads: 64 } },
  { pattern: /mistral-7b/i, model: { parametersBillions: 7.2, attentionHeads: 32 } },
  { pattern: /qwen2\.5-0\.5b/i, model: { parametersBillions: 0.5, attentionHeads: 14 } },
  { pattern: /qwen2\.5-1\.5b/i, model: { parametersBillions: 1.5, attentionHeads: 12 } },
  { pattern: /qwen2\.5-3b/i, model: { parametersBillions: 3.1, attentionHeads: 16 } },
  { pattern: /qwen2\.5-7b/i, model: { parametersBillions: 7.6, attentionHeads: 28 } },
  { pattern: /qwen2\.5-14b/i, model: { parametersBillions: 14.8, attentionHeads: 40 } },
  { pattern: /qwen2\.5-32b/i, model: { parametersBillions: 32.8, attentionHeads: 40 } },
  { pattern: /qwen2\.5-72b/i, model: { parametersBillions: 72.7, attentionHeads: 64 } },
  { pattern: /gemma-2-9b/i, model: { parametersBillions: 9.2, attentionHeads: 16 } },
  { pattern: /gemma-2-27b/i, model: { parametersBillions: 27.2, attentionHeads: 32 } },
];

/** The known model a name refers to, if any. */
export function findKnownModel(name: string): KnownModel | undefined {
  return KNOWN_MODELS.find((k) => k.pattern.test(name))?.model;
}

/** What the serving preflight checks. */
export interface ServingFitInput {
  readonly instanceType: string;
  /** The model's name (Hugging Face id or a path that names it), for the size and head count. */
  readonly modelName?: string;
  readonly parametersBillions?: number;
  readonly attentionHeads?: number;
  /** Explicit tensor parallel degree; default: every GPU of the instance. */
  readonly tensorParallelDegree?: number;
  readonly maxModelLength: number;
  readonly gpuMemoryUtilization: number;
  readonly quantization?: 'bf16' | 'fp8' | 'awq-int4';
}

/** The outcome of a passing preflight. */
export interface ServingFit {
  /** The instance's specification; undefined for an instance type Tuneyard does not know. */
  readonly instance?: GpuInstance;
  readonly tensorParallelDegree: number;
  /** The model's size in billions of parameters, when known. */
  readonly parametersBillions?: number;
  /** The memory estimate, when the model's size is known. */
  readonly estimate?: MemoryEstimate;
  /** Why a check was skipped, for a warning. */
  readonly skipped: string[];
}

/**
 * Checks that the model fits the instance before any GPU is paid for: the tensor parallel degree is
 * at most the instance's GPUs and divides both the GPU count and the model's attention heads, and
 * the weights plus KV cache fit in the share of each GPU that vLLM may use. Throws with the numbers
 * and the fix when they do not.
 */
export function checkServingFit(scope: IConstruct, input: ServingFitInput): ServingFit {
  const skipped: string[] = [];
  const instance = findGpuInstance(input.instanceType);
  const tp = input.tensorParallelDegree ?? instance?.gpus;
  if (tp === undefined) {
    throw new TuneyardValidationError(
      `instance type ${input.instanceType} is not a GPU instance Tuneyard knows, so the tensor parallel degree cannot default to its GPU count. ` +
        `Set vllm.tensorParallelDegree, or use a known type (e.g. ml.g5.2xlarge, ml.g6e.12xlarge, ml.p4d.24xlarge).`,
      scope,
    );
  }
  if (!Number.isInteger(tp) || tp < 1) {
    throw new TuneyardValidationError(`vllm.tensorParallelDegree must be a whole number of GPUs, at least 1; got ${tp}.`, scope);
  }
  if (instance) {
    if (tp > instance.gpus) {
      throw new TuneyardValidationError(
        `tensor parallel degree ${tp} needs ${tp} GPUs; ${instance.instanceType} has ${instance.gpus}. ` +
          `Use tensorParallelDegree ${instance.gpus} or less, or an instance with ${tp} GPUs (${instancesWith(tp)}).`,
        scope,
      );
    }
    if (instance.gpus % tp !== 0) {
      throw new TuneyardValidationError(
        `tensor parallel degree ${tp} does not divide the ${instance.gpus} GPUs of ${instance.instanceType}, so GPUs would sit idle. ` +
          `Use one of ${divisors(instance.gpus).join(', ')}.`,
        scope,
      );
    }
  } else {
    skipped.push(`instance type ${input.instanceType} is not in Tuneyard's GPU table`);
  }

  const known = input.modelName ? findKnownModel(input.modelName) : undefined;
  const heads = input.attentionHeads ?? known?.attentionHeads;
  if (heads !== undefined && heads % tp !== 0) {
    throw new TuneyardValidationError(
      `tensor parallel degree ${tp} does not divide the ${heads} attention heads of ${input.modelName ?? 'the model'} (vLLM splits heads evenly across GPUs). ` +
        `Use one of ${divisors(heads).filter((d) => !instance || (d <= instance.gpus && instance.gpus % d === 0)).join(', ')}` +
        `${instance ? ` on ${instance.instanceType}` : ''}, or another instance type.`,
      scope,
    );
  }
  if (heads === undefined) skipped.push('the attention head count is unknown (set attentionHeads)');

  const billions = input.parametersBillions ?? known?.parametersBillions ?? (input.modelName ? parametersFromName(input.modelName) : undefined);
  let estimate: MemoryEstimate | undefined;
  if (billions === undefined) {
    skipped.push('the model size is unknown (set parametersBillions, or a modelName that states it such as Llama-3.1-8B)');
  } else if (instance) {
    estimate = estimateInferenceMemory({
      parametersBillions: billions,
      quantization: input.quantization,
      maxModelLength: input.maxModelLength,
      instanceType: instance.instanceType,
      tensorParallel: tp,
      gpuMemoryUtilization: input.gpuMemoryUtilization,
    });
    if (!estimate.fits) {
      const bigger = smallestFit(billions, input);
      throw new TuneyardValidationError(
        `${capitalise(estimate.advice)} ` +
          `(weights ${estimate.breakdown.weights} GiB + KV cache ${estimate.breakdown.activations} GiB + overhead ${estimate.breakdown.overhead} GiB)` +
          `${bigger ? ` The smallest instance that fits is ${bigger}.` : ''}`,
        scope,
      );
    }
  }
  return { instance, tensorParallelDegree: tp, parametersBillions: billions, estimate, skipped };
}

/**
 * The share of an instance's host memory (RAM) that Tuneyard reserves for the model copies on it
 * (inference components' `MinMemoryRequiredInMb`, summed over the copies the GPUs allow). The rest
 * is left to the OS, Docker and SageMaker's agents on the host; AWS does not publish how much those
 * take, and a copy that asks for all of the host's memory is never placed (16384 MiB on a 16 GiB
 * ml.g5.xlarge). Three quarters leaves 4 GiB of a 16 GiB host free and grows with the host.
 * The reservation is a floor for placement, not a cap: vLLM may use more when it is free.
 */
export const COPY_HOST_MEMORY_SHARE = 0.75;

/**
 * Host memory reserved per copy of the model, in MiB: given, or the copy's GPUs' part of
 * {@link COPY_HOST_MEMORY_SHARE} of the instance's RAM (ml.g5.xlarge: 12288; ml.g5.12xlarge at
 * tensor parallel 2: 73728). Fails when the copies that the instance's GPUs hold would need more
 * than its whole memory, and warns (`tuneyard:copy-memory-tight`) above Tuneyard's share.
 */
export function copyMemoryMb(scope: IConstruct, instance: GpuInstance | undefined, gpusPerCopy: number, given?: number): number {
  if (given !== undefined && Token.isUnresolved(given)) return given;
  if (given !== undefined && (!Number.isInteger(given) || given < 128)) {
    throw new TuneyardValidationError(`inferenceComponents.minMemoryRequiredInMb must be a whole number of MiB, at least 128 (SageMaker's minimum); got ${given}.`, scope);
  }
  if (!instance) {
    if (given !== undefined) return given;
    throw new TuneyardValidationError(
      'the instance type is not in Tuneyard\'s table, so the host memory of each model copy cannot be derived from its RAM. ' +
        'Set inferenceComponents.minMemoryRequiredInMb (e.g. 75% of the instance\'s memory in MiB, divided by the copies per instance).',
      scope,
    );
  }
  const copies = Math.max(1, Math.floor(instance.gpus / gpusPerCopy));
  const hostMb = instance.hostMemoryGiB * 1024;
  const share = Math.floor((hostMb * COPY_HOST_MEMORY_SHARE) / copies);
  if (given === undefined) return share;
  if (given * copies >= hostMb) {
    throw new TuneyardValidationError(
      `inferenceComponents.minMemoryRequiredInMb ${given} × ${copies} cop${copies === 1 ? 'y' : 'ies'} per instance needs ${given * copies} MiB; ` +
        `${instance.instanceType} has ${hostMb} MiB (${instance.hostMemoryGiB} GiB) of host memory, part of which the OS and SageMaker's agents keep, so SageMaker cannot place the copies. ` +
        `Use ${share} or less (leave it unset for that default), or an instance with more memory.`,
      scope,
    );
  }
  if (given > share) {
    Annotations.of(scope).addWarningV2(
      'tuneyard:copy-memory-tight',
      `inferenceComponents.minMemoryRequiredInMb ${given} leaves less than a quarter of ${instance.instanceType}'s ${instance.hostMemoryGiB} GiB to the OS and SageMaker's agents; ` +
        `SageMaker may fail to place the copies. ${share} MiB is Tuneyard's default.`,
    );
  }
  return given;
}

function instancesWith(gpus: number): string {
  const types = [...GPU_INSTANCES.values()].filter((i) => i.gpus >= gpus && i.gpus % gpus === 0).map((i) => i.instanceType);
  return types.slice(0, 4).join(', ') || 'none known';
}

function divisors(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i + 1).filter((d) => n % d === 0);
}

/** The cheapest-looking (least total GPU memory) known instance that fits the model with every GPU in use. */
function smallestFit(billions: number, input: ServingFitInput): string | undefined {
  const candidates = [...GPU_INSTANCES.values()].sort((a, b) => a.gpus * a.gpuMemoryGiB - b.gpus * b.gpuMemoryGiB || a.vcpus - b.vcpus);
  for (const candidate of candidates) {
    const estimate = estimateInferenceMemory({
      parametersBillions: billions,
      quantization: input.quantization,
      maxModelLength: input.maxModelLength,
      instanceType: candidate.instanceType,
      tensorParallel: candidate.gpus,
      gpuMemoryUtilization: input.gpuMemoryUtilization,
    });
    if (estimate.fits) return `${candidate.instanceType} (tensorParallelDegree ${candidate.gpus})`;
  }
  return undefined;
}

function capitalise(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
