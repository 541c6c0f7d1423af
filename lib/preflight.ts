import { GpuInstance, gpuInstance } from './instances';
import type { Method } from './recipe';

/**
 * GPU memory estimates for training and serving, so a recipe that cannot fit fails before a GPU
 * is paid for (at synth for a construct's default recipe, before the run starts for a request).
 *
 * The estimates are deliberately simple and a little pessimistic: model shapes come from the
 * parameter count (a Llama-like decoder with grouped-query attention and a 128k vocabulary),
 * activations follow Korthikanti et al. (2022) with flash attention (no s² term), and a fixed
 * framework overhead covers the CUDA context, allocator fragmentation and NCCL buffers.
 */

const GIB = 1024 ** 3;
/** CUDA context, allocator fragmentation, NCCL buffers. */
export const FRAMEWORK_OVERHEAD_GIB = 2;
/** Bytes per parameter of the frozen or trained weights. */
const BF16 = 2;
/** NF4 with double quantisation: 4 bits plus the quantisation constants (~0.55 B/param in practice). */
const NF4 = 0.55;
/** Mixed-precision AdamW per trainable parameter: bf16 gradient + fp32 master weight + fp32 m + fp32 v. */
const ADAMW_STATE = 2 + 4 + 4 + 4;
/** The vocabulary assumed for the logits (Llama 3: 128,256). */
const VOCAB = 128_256;

/** The shape of a decoder model, derived from its size. */
export interface ModelShape {
  readonly hiddenSize: number;
  readonly layers: number;
  /** MLP width. */
  readonly intermediateSize: number;
  /** Key/value width (grouped-query attention: a quarter of the hidden size). */
  readonly kvSize: number;
}

// Reference shapes of common open models (billions of parameters → hidden size, layers).
const REFERENCE_SHAPES: Array<[billions: number, hidden: number, layers: number]> = [
  [0.135, 576, 30],
  [0.5, 896, 24],
  [1, 2048, 16],
  [1.5, 1536, 28],
  [3, 3072, 28],
  [7, 4096, 32],
  [8, 4096, 32],
  [13, 5120, 40],
  [14, 5120, 48],
  [32, 5120, 64],
  [70, 8192, 80],
  [110, 8192, 96],
  [405, 16384, 126],
];

/** The reference shape nearest to a parameter count (by ratio). */
export function modelShape(parametersBillions: number): ModelShape {
  let best = REFERENCE_SHAPES[0];
  for (const shape of REFERENCE_SHAPES) {
    if (Math.abs(Math.log(shape[0] / parametersBillions)) < Math.abs(Math.log(best[0] / parametersBillions))) best = shape;
  }
  const [, hiddenSize, layers] = best;
  return { hiddenSize, layers, intermediateSize: Math.round(3.5 * hiddenSize), kvSize: hiddenSize / 4 };
}

/**
 * The parameter count (in billions) that a model name or path states: `Llama-3.1-8B-Instruct` → 8,
 * `Qwen2.5-0.5B` → 0.5, `s3://b/base-models/mistral-7b/` → 7, `SmolLM2-135M` → 0.135.
 * Returns undefined when the name states none (or a mixture-of-experts size such as `8x7B`).
 */
export function parametersFromName(name: string): number | undefined {
  if (/\d+x\d+(\.\d+)?[bm](?![a-z0-9])/i.test(name)) return undefined;
  const matches = [...name.matchAll(/(?:^|[^a-z0-9.])(\d+(?:\.\d+)?)([bm])(?![a-z0-9])/gi)];
  if (matches.length === 0) return undefined;
  const [, value, unit] = matches[matches.length - 1];
  const n = Number(value);
  if (!(n > 0)) return undefined;
  return unit.toLowerCase() === 'm' ? n / 1000 : n;
}

/**
 * The parameter count of a base model: `explicit` when given, otherwise read from the name.
 * Throws, asking for `baseModelParameters`, when neither tells.
 */
export function resolveParameters(baseModel: string, explicit?: number): number {
  if (explicit !== undefined) {
    if (!(explicit > 0)) throw new Error(`baseModelParameters must be a positive number of billions, got ${explicit}`);
    return explicit;
  }
  const fromName = parametersFromName(baseModel);
  if (fromName === undefined) {
    throw new Error(
      `cannot tell the size of base model "${baseModel}" from its name; set baseModelParameters to its parameter count ` +
        'in billions (e.g. 8 for an 8B model) so the GPU memory preflight can run',
    );
  }
  return fromName;
}

export type Distribution = 'none' | 'ddp' | 'fsdp' | 'deepspeed';

/** What decides the GPU memory of a training job. */
export interface TrainingMemoryInput {
  readonly method: Method;
  /** Parameters of the base model in billions. */
  readonly parametersBillions: number;
  /** Tokens per sequence. */
  readonly maxLength: number;
  /** Sequences per GPU per step. */
  readonly batchSize: number;
  readonly gradientCheckpointing: boolean;
  /** LoRA rank (ignored for full training). */
  readonly loraR: number;
  /** The LoRA target modules: `all-linear` or module names. @default 'all-linear' */
  readonly targetModules?: 'all-linear' | readonly string[];
  /** DPO only: a LoRA adapter (true) or all weights (false). @default true */
  readonly useLora?: boolean;
  readonly instanceType: string;
  readonly instanceCount: number;
  readonly distribution: Distribution;
}

/** Per-GPU GiB, by what uses it. */
export interface MemoryBreakdown {
  readonly weights: number;
  readonly gradientsAndOptimizer: number;
  readonly activations: number;
  readonly overhead: number;
}

export interface MemoryEstimate {
  /** Estimated GiB needed on each GPU. */
  readonly requiredGiB: number;
  /** GiB of one GPU of the instance type. */
  readonly availableGiB: number;
  readonly fits: boolean;
  readonly breakdown: MemoryBreakdown;
  /** How the weights and optimizer state are spread: the number of GPUs they are sharded over. */
  readonly shardedOver: number;
  /** One line that says what the estimate means and, when it does not fit, what to change. */
  readonly advice: string;
}

/** Trainable parameters of a LoRA adapter of rank r on the given modules. */
export function loraParameters(shape: ModelShape, r: number, targetModules: 'all-linear' | readonly string[] = 'all-linear'): number {
  const { hiddenSize: h, intermediateSize: i, kvSize: kv } = shape;
  // in + out features of each Llama-style linear layer
  const modules: Record<string, number> = {
    q_proj: 2 * h,
    k_proj: h + kv,
    v_proj: h + kv,
    o_proj: 2 * h,
    gate_proj: h + i,
    up_proj: h + i,
    down_proj: h + i,
  };
  const average = Object.values(modules).reduce((a, b) => a + b, 0) / Object.keys(modules).length;
  const names = targetModules === 'all-linear' ? Object.keys(modules) : targetModules;
  const perLayer = names.reduce((sum, name) => sum + (modules[name] ?? average), 0);
  return shape.layers * r * perLayer;
}

/** Estimates the GPU memory of a fine-tuning job, per GPU, and whether it fits the instance. */
export function estimateTrainingMemory(input: TrainingMemoryInput): MemoryEstimate {
  const instance = gpuInstance(input.instanceType);
  const { breakdown, requiredGiB, shards } = trainingMemory(input, instance);
  const fits = requiredGiB <= instance.gpuMemoryGiB;
  return {
    requiredGiB,
    availableGiB: instance.gpuMemoryGiB,
    fits,
    breakdown,
    shardedOver: shards,
    advice: trainingAdvice(input, instance, requiredGiB, fits),
  };
}

function trainingMemory(input: TrainingMemoryInput, instance: GpuInstance): { breakdown: MemoryBreakdown; requiredGiB: number; shards: number } {
  const params = input.parametersBillions * 1e9;
  const shape = modelShape(input.parametersBillions);
  const full = input.method === 'sft' || (input.method === 'dpo' && input.useLora === false);
  const sharded = input.distribution === 'fsdp' || input.distribution === 'deepspeed';
  const shards = sharded ? instance.gpus * input.instanceCount : 1;

  const weightBytes = params * (input.method === 'qlora' ? NF4 : BF16);
  // DPO on all weights keeps a frozen reference copy; with LoRA the reference is the base with the adapter disabled.
  const referenceBytes = input.method === 'dpo' && full ? params * BF16 : 0;
  const trainable = full ? params : loraParameters(shape, input.loraR, input.targetModules);
  // A LoRA adapter's own weights are bf16 too.
  const adapterBytes = full ? 0 : trainable * BF16;
  const optimizerBytes = trainable * ADAMW_STATE;

  // DPO runs the chosen and the rejected sequence of each pair.
  const sequences = input.batchSize * (input.method === 'dpo' ? 2 : 1);
  const tokens = sequences * input.maxLength;
  const perLayerFull = 34 * tokens * shape.hiddenSize; // bytes of one layer's activations (bf16, flash attention)
  const layerActivations = input.gradientCheckpointing
    ? shape.layers * tokens * shape.hiddenSize * BF16 + perLayerFull // saved layer inputs + one layer recomputed
    : shape.layers * perLayerFull;
  const logits = tokens * VOCAB * 4; // fp32 logits for the loss

  const breakdown: MemoryBreakdown = {
    weights: round((weightBytes + referenceBytes + adapterBytes) / shards / GIB),
    gradientsAndOptimizer: round(optimizerBytes / shards / GIB),
    activations: round((layerActivations + logits) / GIB),
    overhead: FRAMEWORK_OVERHEAD_GIB,
  };
  const requiredGiB = round(breakdown.weights + breakdown.gradientsAndOptimizer + breakdown.activations + breakdown.overhead);
  return { breakdown, requiredGiB, shards };
}

function trainingAdvice(input: TrainingMemoryInput, instance: GpuInstance, required: number, fits: boolean): string {
  const what = `${METHOD_NAMES[input.method]} of ${aModel(input.parametersBillions)} at maxLength ${input.maxLength}, batchSize ${input.batchSize}`;
  const has = `${instance.instanceType} has ${instance.gpuMemoryGiB} GiB per GPU`;
  if (fits) return `${what} needs ~${required} GiB per GPU; ${has}.`;
  const fixes: string[] = [];
  const sharded = input.distribution === 'fsdp' || input.distribution === 'deepspeed';
  if (input.method === 'sft' || (input.method === 'dpo' && input.useLora === false)) fixes.push('use qlora (or lora)');
  if (input.method === 'lora') fixes.push('use qlora');
  if (input.batchSize > 1) fixes.push('lower batchSize (raise gradientAccumulation to keep the effective batch)');
  if (!input.gradientCheckpointing) fixes.push('turn on gradientCheckpointing');
  if (instance.gpus * input.instanceCount > 1 && !sharded && input.method !== 'qlora') fixes.push('shard with distribution "fsdp"');
  const bigger = biggerInstance(input, instance);
  if (bigger) fixes.push(`use ${bigger}`);
  return `${what} needs ~${required} GiB per GPU; ${has}: ${fixes.join(', or ')}.`;
}

/** The first larger instance that fits the same job (sharded with FSDP when the method allows it), if any. */
function biggerInstance(input: TrainingMemoryInput, current: GpuInstance): string | undefined {
  for (const candidate of ['ml.g6e.2xlarge', 'ml.g6e.12xlarge', 'ml.g6e.48xlarge', 'ml.p4d.24xlarge', 'ml.p4de.24xlarge', 'ml.p5.48xlarge', 'ml.p5e.48xlarge']) {
    const spec = gpuInstance(candidate);
    if (candidate === current.instanceType || spec.gpuMemoryGiB * spec.gpus <= current.gpuMemoryGiB * current.gpus) continue;
    const shard = input.method !== 'qlora' && spec.gpus > 1;
    const distribution: Distribution = shard ? 'fsdp' : input.distribution === 'none' ? 'none' : 'ddp';
    const { requiredGiB } = trainingMemory({ ...input, instanceType: candidate, instanceCount: 1, distribution }, spec);
    if (requiredGiB <= spec.gpuMemoryGiB) return shard && input.distribution !== 'fsdp' ? `${candidate} with distribution "fsdp"` : candidate;
  }
  return undefined;
}

const METHOD_NAMES: Record<Method, string> = { sft: 'full SFT', lora: 'LoRA', qlora: 'QLoRA', dpo: 'DPO' };

/** What decides the GPU memory of a vLLM endpoint. */
export interface InferenceMemoryInput {
  /** Parameters of the served model in billions. */
  readonly parametersBillions: number;
  /** Weight precision. @default 'bf16' */
  readonly quantization?: 'bf16' | 'fp8' | 'awq-int4';
  /** Context length each sequence may reach (vLLM `--max-model-len`). */
  readonly maxModelLength: number;
  /** Sequences served at once (vLLM `--max-num-seqs`) that must fit the KV cache at full length. @default 1 */
  readonly concurrentSequences?: number;
  readonly instanceType: string;
  /** GPUs the model is split over (vLLM `--tensor-parallel-size`). @default every GPU of the instance */
  readonly tensorParallel?: number;
  /** Share of GPU memory vLLM may use (`--gpu-memory-utilization`). @default 0.9 */
  readonly gpuMemoryUtilization?: number;
}

/** Estimates the GPU memory a vLLM endpoint needs: weights plus KV cache headroom, per GPU. */
export function estimateInferenceMemory(input: InferenceMemoryInput): MemoryEstimate {
  const instance = gpuInstance(input.instanceType);
  const tp = input.tensorParallel ?? instance.gpus;
  if (!Number.isInteger(tp) || tp < 1 || tp > instance.gpus) {
    throw new Error(`tensorParallel must be a whole number from 1 to ${instance.gpus} on ${instance.instanceType}, got ${tp}`);
  }
  const shape = modelShape(input.parametersBillions);
  const bytesPerParam = { bf16: 2, fp8: 1, 'awq-int4': 0.55 }[input.quantization ?? 'bf16'];
  const weights = (input.parametersBillions * 1e9 * bytesPerParam) / tp;
  // K and V, per layer, per token, bf16.
  const kvPerToken = 2 * shape.layers * shape.kvSize * BF16;
  const kv = (kvPerToken * input.maxModelLength * (input.concurrentSequences ?? 1)) / tp;
  const utilization = input.gpuMemoryUtilization ?? 0.9;
  const breakdown: MemoryBreakdown = {
    weights: round(weights / GIB),
    gradientsAndOptimizer: 0,
    activations: round(kv / GIB),
    overhead: FRAMEWORK_OVERHEAD_GIB,
  };
  const requiredGiB = round(breakdown.weights + breakdown.activations + breakdown.overhead);
  const availableGiB = round(instance.gpuMemoryGiB * utilization);
  const fits = requiredGiB <= availableGiB;
  const what = `serving ${aModel(input.parametersBillions)} (${input.quantization ?? 'bf16'}) at ${input.maxModelLength} tokens over ${tp} GPU(s)`;
  return {
    requiredGiB,
    availableGiB,
    fits,
    breakdown,
    shardedOver: tp,
    advice: fits
      ? `${what} needs ~${requiredGiB} GiB per GPU; ${instance.instanceType} gives vLLM ${availableGiB} GiB per GPU.`
      : `${what} needs ~${requiredGiB} GiB per GPU; ${instance.instanceType} gives vLLM ${availableGiB} GiB per GPU: ` +
        'use an instance with more or larger GPUs, a shorter maxModelLength, or a quantized model.',
  };
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}

/** "an 8B model", "a 70B model", "a 500M model". */
function aModel(billions: number): string {
  const size = billions < 1 ? `${Math.round(billions * 1000)}M` : `${billions}B`;
  return `${/^(8|11|18|80)/.test(size) ? 'an' : 'a'} ${size} model`;
}
