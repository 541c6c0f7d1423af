import { GpuInstance, gpuInstance } from './instances';
import { isOnlineRl } from './methods';
import { COMPLETION_FIELDS, type Method, RECIPE_FIELDS } from './recipe';

/**
 * GPU memory estimates for training and serving, so a recipe that cannot fit fails before a GPU
 * is paid for (at synth for a construct's default recipe, before the run starts for a request,
 * and in `tuneyard estimate`).
 *
 * The estimate follows what Tuneyard's trainer (training-images/trainer) really holds on each GPU:
 * - the model's real shape for the families users name ({@link MODEL_SHAPES}); other models fall
 *   back to a Llama-like shape for their parameter count, and the estimate says so;
 * - the dtypes the trainer uses on that GPU ({@link trainerPrecision}): bf16 mixed precision where the
 *   GPU's compute capability is 8.0 or more, fp16 on T4/V100; fp32 master weights when all weights train;
 * - the optimizer and gradient state of what trains, activations per layer (gradient checkpointing
 *   keeps each decoder layer's input), the logits of the loss, and the CUDA context and allocator.
 * Every sequence is taken to be maxLength tokens long (the worst case). It is checked against
 * torchtune's published peak memory in preflight.test.ts.
 */

const GIB = 1024 ** 3;
/** ASSUMPTION: the CUDA context with cuBLAS/cuDNN workspaces, which nvidia-smi counts and PyTorch's allocator does not. */
export const CUDA_CONTEXT_GIB = 0.75;
/** ASSUMPTION: the caching allocator reserves this much more than it hands out (fragmentation). */
export const ALLOCATOR_FRAGMENTATION = 0.05;
/** ASSUMPTION: NCCL communicator buffers of a process in a distributed job. */
export const NCCL_BUFFERS_GIB = 0.5;
/**
 * NF4 with double quantisation (bitsandbytes, QLoRA paper section 2): 4 bits per weight, an 8-bit
 * absmax per block of 64 and an fp32 constant per 256 blocks: 4 + 8/64 + 32/(64*256) = 4.127 bits.
 */
const NF4_BYTES = (4 + 8 / 64 + 32 / (64 * 256)) / 8;

/** The shape of a decoder-only model: what decides its weights, LoRA adapter, activations and logits. */
export interface ModelShape {
  /** The model, e.g. `Llama 3.1 8B`, or what was assumed. */
  readonly name: string;
  readonly vocabSize: number;
  readonly layers: number;
  readonly hiddenSize: number;
  /** Attention (query) heads. */
  readonly heads: number;
  /** Key/value heads (grouped-query attention when fewer than `heads`). */
  readonly kvHeads: number;
  readonly headDim: number;
  /** MLP width. */
  readonly intermediateSize: number;
  /** Whether the output projection shares the input embedding's weights. */
  readonly tiedEmbeddings: boolean;
  /** Where the figures come from (a config.json), or the assumption made. */
  readonly source: string;
}

type Shape = Omit<ModelShape, 'name' | 'source'>;
const hf = (repo: string) => `https://huggingface.co/${repo}/blob/main/config.json`;
const shape = (name: string, repo: string, s: Shape): ModelShape => ({ name, source: hf(repo), ...s });

// Shapes from each model's config.json on the Hugging Face Hub (the `source` of each entry):
// vocab_size, num_hidden_layers, hidden_size, num_attention_heads, num_key_value_heads, head_dim
// (hidden_size / heads where the config has none), intermediate_size, tie_word_embeddings.
// Gemma 3 4B/12B/27B: the text_config (their vision tower, ~0.4B parameters, is not counted).
const LLAMA3_VOCAB = 128_256;
const QWEN25_SMALL_VOCAB = 151_936; // 0.5B, 1.5B, 3B
const QWEN25_VOCAB = 152_064; // 7B and larger
const GEMMA3_VOCAB = 262_208;

/** Known model families, matched on the lower-cased model name or path. */
export const MODEL_SHAPES: ReadonlyArray<{ readonly pattern: RegExp; readonly shape: ModelShape }> = [
  { pattern: /llama-?3\.2-1b/, shape: shape('Llama 3.2 1B', 'meta-llama/Llama-3.2-1B', { vocabSize: LLAMA3_VOCAB, layers: 16, hiddenSize: 2048, heads: 32, kvHeads: 8, headDim: 64, intermediateSize: 8192, tiedEmbeddings: true }) },
  { pattern: /llama-?3\.2-3b/, shape: shape('Llama 3.2 3B', 'meta-llama/Llama-3.2-3B', { vocabSize: LLAMA3_VOCAB, layers: 28, hiddenSize: 3072, heads: 24, kvHeads: 8, headDim: 128, intermediateSize: 8192, tiedEmbeddings: true }) },
  { pattern: /llama-?3(\.1)?-8b/, shape: shape('Llama 3.1 8B', 'meta-llama/Llama-3.1-8B', { vocabSize: LLAMA3_VOCAB, layers: 32, hiddenSize: 4096, heads: 32, kvHeads: 8, headDim: 128, intermediateSize: 14336, tiedEmbeddings: false }) },
  { pattern: /llama-?3(\.[13])?-70b/, shape: shape('Llama 3.1 70B', 'meta-llama/Llama-3.1-70B', { vocabSize: LLAMA3_VOCAB, layers: 80, hiddenSize: 8192, heads: 64, kvHeads: 8, headDim: 128, intermediateSize: 28672, tiedEmbeddings: false }) },
  // v0.3's 32,768-token vocabulary (v0.1 and v0.2 have 32,000: 0.01 GiB less).
  { pattern: /mistral-7b/, shape: shape('Mistral 7B', 'mistralai/Mistral-7B-v0.3', { vocabSize: 32_768, layers: 32, hiddenSize: 4096, heads: 32, kvHeads: 8, headDim: 128, intermediateSize: 14336, tiedEmbeddings: false }) },
  { pattern: /qwen2\.5-(coder-)?0\.5b/, shape: shape('Qwen2.5 0.5B', 'Qwen/Qwen2.5-0.5B', { vocabSize: QWEN25_SMALL_VOCAB, layers: 24, hiddenSize: 896, heads: 14, kvHeads: 2, headDim: 64, intermediateSize: 4864, tiedEmbeddings: true }) },
  { pattern: /qwen2\.5-(coder-)?1\.5b/, shape: shape('Qwen2.5 1.5B', 'Qwen/Qwen2.5-1.5B', { vocabSize: QWEN25_SMALL_VOCAB, layers: 28, hiddenSize: 1536, heads: 12, kvHeads: 2, headDim: 128, intermediateSize: 8960, tiedEmbeddings: true }) },
  { pattern: /qwen2\.5-(coder-)?3b/, shape: shape('Qwen2.5 3B', 'Qwen/Qwen2.5-3B', { vocabSize: QWEN25_SMALL_VOCAB, layers: 36, hiddenSize: 2048, heads: 16, kvHeads: 2, headDim: 128, intermediateSize: 11008, tiedEmbeddings: true }) },
  { pattern: /qwen2\.5-(coder-)?7b/, shape: shape('Qwen2.5 7B', 'Qwen/Qwen2.5-7B', { vocabSize: QWEN25_VOCAB, layers: 28, hiddenSize: 3584, heads: 28, kvHeads: 4, headDim: 128, intermediateSize: 18944, tiedEmbeddings: false }) },
  { pattern: /qwen2\.5-(coder-)?14b/, shape: shape('Qwen2.5 14B', 'Qwen/Qwen2.5-14B', { vocabSize: QWEN25_VOCAB, layers: 48, hiddenSize: 5120, heads: 40, kvHeads: 8, headDim: 128, intermediateSize: 13824, tiedEmbeddings: false }) },
  { pattern: /qwen2\.5-(coder-)?32b/, shape: shape('Qwen2.5 32B', 'Qwen/Qwen2.5-32B', { vocabSize: QWEN25_VOCAB, layers: 64, hiddenSize: 5120, heads: 40, kvHeads: 8, headDim: 128, intermediateSize: 27648, tiedEmbeddings: false }) },
  { pattern: /qwen2\.5-72b/, shape: shape('Qwen2.5 72B', 'Qwen/Qwen2.5-72B', { vocabSize: QWEN25_VOCAB, layers: 80, hiddenSize: 8192, heads: 64, kvHeads: 8, headDim: 128, intermediateSize: 29568, tiedEmbeddings: false }) },
  { pattern: /gemma-2-2b/, shape: shape('Gemma 2 2B', 'google/gemma-2-2b', { vocabSize: 256_000, layers: 26, hiddenSize: 2304, heads: 8, kvHeads: 4, headDim: 256, intermediateSize: 9216, tiedEmbeddings: true }) },
  { pattern: /gemma-2-9b/, shape: shape('Gemma 2 9B', 'google/gemma-2-9b', { vocabSize: 256_000, layers: 42, hiddenSize: 3584, heads: 16, kvHeads: 8, headDim: 256, intermediateSize: 14336, tiedEmbeddings: true }) },
  { pattern: /gemma-2-27b/, shape: shape('Gemma 2 27B', 'google/gemma-2-27b', { vocabSize: 256_000, layers: 46, hiddenSize: 4608, heads: 32, kvHeads: 16, headDim: 128, intermediateSize: 36864, tiedEmbeddings: true }) },
  { pattern: /gemma-3-1b/, shape: shape('Gemma 3 1B', 'google/gemma-3-1b-pt', { vocabSize: 262_144, layers: 26, hiddenSize: 1152, heads: 4, kvHeads: 1, headDim: 256, intermediateSize: 6912, tiedEmbeddings: true }) },
  { pattern: /gemma-3-4b/, shape: shape('Gemma 3 4B', 'google/gemma-3-4b-pt', { vocabSize: GEMMA3_VOCAB, layers: 34, hiddenSize: 2560, heads: 8, kvHeads: 4, headDim: 256, intermediateSize: 10240, tiedEmbeddings: true }) },
  { pattern: /gemma-3-12b/, shape: shape('Gemma 3 12B', 'google/gemma-3-12b-pt', { vocabSize: GEMMA3_VOCAB, layers: 48, hiddenSize: 3840, heads: 16, kvHeads: 8, headDim: 256, intermediateSize: 15360, tiedEmbeddings: true }) },
  { pattern: /gemma-3-27b/, shape: shape('Gemma 3 27B', 'google/gemma-3-27b-pt', { vocabSize: GEMMA3_VOCAB, layers: 62, hiddenSize: 5376, heads: 32, kvHeads: 16, headDim: 128, intermediateSize: 21504, tiedEmbeddings: true }) },
  { pattern: /phi-3(\.5)?-mini/, shape: shape('Phi-3 mini (3.8B)', 'microsoft/Phi-3-mini-4k-instruct', { vocabSize: 32_064, layers: 32, hiddenSize: 3072, heads: 32, kvHeads: 32, headDim: 96, intermediateSize: 8192, tiedEmbeddings: false }) },
  { pattern: /phi-3-medium/, shape: shape('Phi-3 medium (14B)', 'microsoft/Phi-3-medium-4k-instruct', { vocabSize: 32_064, layers: 40, hiddenSize: 5120, heads: 40, kvHeads: 10, headDim: 128, intermediateSize: 17920, tiedEmbeddings: false }) },
  { pattern: /phi-4-mini/, shape: shape('Phi-4 mini (3.8B)', 'microsoft/Phi-4-mini-instruct', { vocabSize: 200_064, layers: 32, hiddenSize: 3072, heads: 24, kvHeads: 8, headDim: 128, intermediateSize: 8192, tiedEmbeddings: true }) },
  { pattern: /phi-4(?![-.]?(mini|multimodal))/, shape: shape('Phi-4 (14B)', 'microsoft/phi-4', { vocabSize: 100_352, layers: 40, hiddenSize: 5120, heads: 40, kvHeads: 10, headDim: 128, intermediateSize: 17920, tiedEmbeddings: false }) },
];

/** The shape of a model Tuneyard knows by name (`meta-llama/Llama-3.1-8B-Instruct`, `s3://b/base-models/qwen2.5-7b/`). */
export function knownModel(name: string): ModelShape | undefined {
  const lower = name.toLowerCase().replace(/_/g, '-');
  return MODEL_SHAPES.find((m) => m.pattern.test(lower))?.shape;
}

/** Parameters of a model of this shape: embeddings (and an untied output projection), attention, SwiGLU MLP and norms. */
export function shapeParameters(s: ModelShape): number {
  const embeddings = s.vocabSize * s.hiddenSize * (s.tiedEmbeddings ? 1 : 2);
  return embeddings + s.layers * layerLinearParameters(s) + (2 * s.layers + 1) * s.hiddenSize;
}

/** Parameters of one decoder layer's linear projections (what QLoRA quantizes). */
function layerLinearParameters(s: ModelShape): number {
  const q = s.heads * s.headDim;
  const kv = s.kvHeads * s.headDim;
  return s.hiddenSize * (q + 2 * kv) + q * s.hiddenSize + 3 * s.hiddenSize * s.intermediateSize;
}

// Reference sizes of open models for the fallback shape (billions of parameters → hidden size, layers).
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

/** The vocabulary assumed for a model Tuneyard does not know (Llama 3's; larger than most, so the estimate errs high). */
export const FALLBACK_VOCAB = LLAMA3_VOCAB;

/**
 * The shape assumed for a model Tuneyard does not know, from its parameter count: the hidden size and
 * layers of the open model nearest in size, 128-wide heads with a quarter as many KV heads, an MLP
 * 3.5 times the hidden size and Llama 3's 128,256-token vocabulary, untied.
 */
export function modelShape(parametersBillions: number): ModelShape {
  let best = REFERENCE_SHAPES[0];
  for (const ref of REFERENCE_SHAPES) {
    if (Math.abs(Math.log(ref[0] / parametersBillions)) < Math.abs(Math.log(best[0] / parametersBillions))) best = ref;
  }
  const [, hiddenSize, layers] = best;
  const headDim = hiddenSize % 128 === 0 ? 128 : 64;
  const heads = hiddenSize / headDim;
  return {
    name: `an unknown ${sizeLabel(parametersBillions)} model`,
    vocabSize: FALLBACK_VOCAB,
    layers,
    hiddenSize,
    heads,
    kvHeads: Math.max(1, Math.floor(heads / 4)),
    headDim,
    intermediateSize: Math.round(3.5 * hiddenSize),
    tiedEmbeddings: false,
    source:
      `assumed from ${sizeLabel(parametersBillions)} parameters: a Llama-like decoder (hidden ${hiddenSize}, ${layers} layers, ` +
      `grouped-query attention, a ${FALLBACK_VOCAB.toLocaleString('en-US')}-token vocabulary)`,
  };
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

/** A base model as the estimates see it: its shape, its parameters, and whether the shape is known or assumed. */
export interface ResolvedModel {
  readonly shape: ModelShape;
  /** Parameters in billions: counted from a known shape, else as given or as the name states. */
  readonly parametersBillions: number;
  /** Whether the shape is a known model's (false: assumed from the parameter count). */
  readonly known: boolean;
}

/**
 * The shape and size of a base model: a known model's real shape when the name matches one of
 * {@link MODEL_SHAPES}; otherwise a shape assumed from `explicit` billions or the size the name states.
 * Throws, asking for `baseModelParameters`, when neither tells.
 */
export function resolveModel(baseModel: string, explicit?: number): ResolvedModel {
  if (explicit !== undefined && !(explicit > 0)) throw new Error(`baseModelParameters must be a positive number of billions, got ${explicit}`);
  const known = knownModel(baseModel);
  if (known) return { shape: known, parametersBillions: round2(shapeParameters(known) / 1e9), known: true };
  const billions = explicit ?? parametersFromName(baseModel);
  if (billions === undefined) {
    throw new Error(
      `cannot tell the size of base model "${baseModel}" from its name; set baseModelParameters to its parameter count ` +
        'in billions (e.g. 8 for an 8B model) so the GPU memory preflight can run',
    );
  }
  return { shape: modelShape(billions), parametersBillions: billions, known: false };
}

/**
 * The parameter count of a base model in billions: a known model's, else `explicit` when given,
 * else read from the name. Throws, asking for `baseModelParameters`, when none tells.
 */
export function resolveParameters(baseModel: string, explicit?: number): number {
  return resolveModel(baseModel, explicit).parametersBillions;
}

export type Distribution = 'none' | 'ddp' | 'fsdp' | 'deepspeed';
export type Dtype = 'bf16' | 'fp16' | 'fp32';
const BYTES: Record<Dtype, number> = { bf16: 2, fp16: 2, fp32: 4 };

/** The dtypes Tuneyard's trainer uses for a job (training-images/trainer/tuneyard_trainer/train.py). */
export interface TrainerPrecision {
  /** What matmuls and activations compute in. */
  readonly compute: Dtype;
  /** How the base weights are held: `nf4` (QLoRA's linear layers) or a dtype. */
  readonly weights: 'nf4' | Dtype;
  /** One line for people: `bf16`, `fp32 (T4: no bf16)`, ... */
  readonly label: string;
}

/**
 * The dtypes the trainer uses on this GPU (train.py `compute_dtype()`, `weights_dtype()`,
 * `qlora_compute_dtype()`): mixed precision in bf16 where the GPU has bf16 units (compute capability
 * 8.0 or more: A10G, L4, L40S, A100, H100, H200), in fp16 with loss scaling on T4 and V100 (QLoRA's
 * 4-bit layers compute in fp16 there too). A frozen base (LoRA, DPO with an adapter) is held in the
 * compute dtype; all weights trained on one GPU or DDP are fp32 master weights under autocast; FSDP and
 * DeepSpeed load the compute dtype and keep fp32 shards of what trains.
 */
export function trainerPrecision(method: Method, instance: GpuInstance, distribution: Distribution, useLora = true): TrainerPrecision {
  const bf16 = instance.computeCapability >= 8;
  const compute: Dtype = bf16 ? 'bf16' : 'fp16';
  const adapter = method === 'lora' || method === 'qlora' || isOnlineRl(method) || ((method === 'dpo' || method === 'reward') && useLora);
  const sharded = distribution === 'fsdp' || distribution === 'deepspeed';
  const weights = method === 'qlora' ? 'nf4' : adapter || sharded ? compute : 'fp32';
  const why = bf16 ? '' : ` (${instance.gpuModel} has no bf16)`;
  const label =
    method === 'qlora' ? `nf4 weights, ${compute} compute${why}` : weights === 'fp32' ? `fp32 weights, ${compute} mixed precision${why}` : `${compute}${why}`;
  return { compute, weights, label };
}

/**
 * Bytes of optimizer state per trained parameter, by the recipe's `optim` (transformers' OptimizerNames):
 * AdamW's two fp32 moments; bitsandbytes' 8-bit AdamW keeps them in 8 bits (the paged variants can move
 * them to host memory under pressure: counted on the GPU here, the worst case); Adafactor factors its
 * second moment into a row and a column vector per matrix and keeps no first moment (close to nothing).
 */
export const OPTIMIZER_STATE_BYTES: Readonly<Record<string, number>> = {
  adamw_torch_fused: 8,
  adamw_torch: 8,
  paged_adamw_32bit: 8,
  adamw_8bit: 2,
  paged_adamw_8bit: 2,
  adafactor: 0,
};

/**
 * What a training stack holds per parameter and per logit, beyond the model's shape and the dtypes.
 * {@link TUNEYARD_TRAINER} describes Tuneyard's trainer; the preflight tests describe torchtune's
 * recipes with it to compare against torchtune's published measurements.
 */
export interface TrainerMemoryProfile {
  /** Bytes per LoRA adapter parameter, and per adapter parameter of its gradient. */
  readonly adapterBytes: number;
  readonly adapterGradientBytes: number;
  /** Bytes of AdamW state per adapter parameter (an 8-bit optimizer or Adafactor replaces it, see {@link OPTIMIZER_STATE_BYTES}). */
  readonly adapterOptimizerBytes: number;
  /** QLoRA on one GPU or DDP: bytes per parameter that is not quantized (embeddings, output projection, norms). */
  readonly qloraUnquantizedBytes: number;
  /** Peak bytes per logit (token x vocabulary entry) while a causal-LM loss and its gradient are computed. */
  readonly lossBytesPerLogit: number;
  /** The same for a preference (DPO) loss over the chosen and rejected sequences. */
  readonly preferenceLossBytesPerLogit: number;
  /** A fused LM head computes the loss (the per-logit figures are then unused). */
  readonly fusedLmHead?: FusedLmHead;
}

/**
 * A loss computed through a fused LM head, in tiles: TRL 1.x's SFT and DPO trainers (`add_fused_lm_head`,
 * `trl.kernels.ChunkedLogProbFunction`) project `tokenTile` tokens onto `vocabTile` vocabulary entries at a time in
 * the compute dtype and fold each tile into fp32 per-token statistics; the backward pass recomputes each tile and
 * accumulates the hidden states' gradient (and the output projection's, when it trains) in fp32. The
 * (tokens x vocabulary) logits are never built.
 */
export interface FusedLmHead {
  readonly tokenTile: number;
  readonly vocabTile: number;
}

/**
 * Tuneyard's trainer (transformers, TRL 1.16, PEFT): the adapter is trained in fp32 with fp32 gradients
 * and AdamW state (`fp32_trainable_parameters`); PEFT's `prepare_model_for_kbit_training` casts
 * every parameter QLoRA does not quantize to fp32 (not under FSDP, which keeps them in the compute
 * dtype); the loss of training and of evaluation goes through TRL's fused LM head (`TRL_FUSED_LM_HEAD`,
 * TOKEN_CHUNK_SIZE and _CHUNKED_LOGPROB_CHUNK_SIZE in TRL 1.16), with or without Liger (TRL turns Liger's own
 * fused cross-entropy off). The per-logit figures apply to stacks without a fused head only.
 */
export const TRL_FUSED_LM_HEAD: FusedLmHead = { tokenTile: 4096, vocabTile: 32768 };

export const TUNEYARD_TRAINER: TrainerMemoryProfile = {
  adapterBytes: 4,
  adapterGradientBytes: 4,
  adapterOptimizerBytes: 8,
  qloraUnquantizedBytes: 4,
  lossBytesPerLogit: 12,
  preferenceLossBytesPerLogit: 8,
  fusedLmHead: TRL_FUSED_LM_HEAD,
};

/**
 * Without a fused LM head, Liger's fused linear cross-entropy never holds the whole logits either: it works
 * through chunks of about as many logits as the hidden states hold, in fp32 with their gradient, plus the hidden
 * states' gradient: about 20 bytes per token per hidden unit. Its RMSNorm keeps only its 16-bit input and its
 * SwiGLU recomputes SiLU instead of keeping it (`layerActivationBytes`).
 */
const LIGER_LOSS_BYTES_PER_HIDDEN = 20;

/** Bytes of the fused head's per-token fp32 statistics (running max, sums, target logit, outputs) and targets. */
const FUSED_HEAD_BYTES_PER_TOKEN = 48;

/** What decides the GPU memory of a training job. */
export interface TrainingMemoryInput {
  readonly method: Method;
  /** Parameters of the base model in billions (used when the model is not a known one). */
  readonly parametersBillions: number;
  /** The base model's name or path: a known model's real shape is used (see {@link MODEL_SHAPES}). */
  readonly baseModel?: string;
  /** Tokens per sequence. */
  readonly maxLength: number;
  /** Sequences per GPU per step. */
  readonly batchSize: number;
  readonly gradientCheckpointing: boolean;
  /** LoRA rank (ignored for full training). */
  readonly loraR: number;
  /** The LoRA target modules: `all-linear` or module names. @default 'all-linear' */
  readonly targetModules?: 'all-linear' | readonly string[];
  /** LoRA dropout: above 0, each adapted module keeps its own dropped-out input for the backward pass. @default 0.05 */
  readonly loraDropout?: number;
  /** DPO only: a LoRA adapter (true) or all weights (false). @default true */
  readonly useLora?: boolean;
  /** The optimizer (recipe `optim`, see {@link OPTIMIZER_STATE_BYTES}). @default 'adamw_torch_fused' */
  readonly optim?: string;
  /** Liger's kernels: the fused linear cross-entropy holds no full logits. @default false */
  readonly useLigerKernel?: boolean;
  readonly instanceType: string;
  readonly instanceCount: number;
  readonly distribution: Distribution;
  /** The training stack. @default TUNEYARD_TRAINER */
  readonly profile?: TrainerMemoryProfile;
  /**
   * GRPO and RLOO: new tokens per completion at most (recipe `grpoMaxCompletionLength` or `rlooMaxCompletionLength`):
   * the log-probabilities and logits of the loss cover these. @default 256
   */
  readonly maxCompletionLength?: number;
  /**
   * GRPO and RLOO: steps accumulated per optimiser update (recipe `gradientAccumulation`). TRL generates, and the reward
   * functions score, the completions of all of them at once (steps_per_generation = gradient_accumulation_steps): a
   * generation batch of batchSize x gradientAccumulation completions per GPU. @default 4 (the recipe's default)
   */
  readonly gradientAccumulation?: number;
  /**
   * GRPO and RLOO: the reward model's parameters in billions, held in the compute dtype beside the policy.
   * @default - grpo: no reward model (graders only); rloo, which always has one: the policy's size (the same tokenizer family)
   */
  readonly rewardModelParametersBillions?: number;
}

/** Per-GPU GiB, by what uses it. */
export interface MemoryBreakdown {
  /** The base model's weights (a DPO reference copy, FSDP's gathered layers and a GRPO or RLOO run's reward model included). */
  readonly weights: number;
  /** Weights that train apart from the base: the LoRA adapter (0 when all weights train: they are `weights`). */
  readonly trainable: number;
  readonly gradients: number;
  /** AdamW's two moments. */
  readonly optimizer: number;
  /** Activations kept for the backward pass, the logits of the loss (training; GRPO and RLOO: with their log-probabilities and the generation batch's KV cache or reward scoring) or the KV cache (serving). */
  readonly activations: number;
  /** CUDA context, allocator fragmentation, NCCL buffers. */
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
  /** The dtypes assumed (training estimates). */
  readonly precision?: TrainerPrecision;
  /** The model's shape as used: known, or assumed from its size. */
  readonly model?: ModelShape;
}

const ADAPTER_MODULES = ['q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj'];

/** [in features, out features] of each linear module of a layer (Phi-3's fused ones too). */
function moduleFeatures(s: ModelShape): Record<string, [number, number]> {
  const { hiddenSize: h, intermediateSize: i } = s;
  const q = s.heads * s.headDim;
  const kv = s.kvHeads * s.headDim;
  return {
    q_proj: [h, q],
    k_proj: [h, kv],
    v_proj: [h, kv],
    o_proj: [q, h],
    gate_proj: [h, i],
    up_proj: [h, i],
    down_proj: [i, h],
    qkv_proj: [h, q + 2 * kv],
    gate_up_proj: [h, 2 * i],
  };
}

function adaptedModules(targetModules: 'all-linear' | readonly string[]): readonly string[] {
  return targetModules === 'all-linear' ? ADAPTER_MODULES : targetModules;
}

/**
 * Trainable parameters of a LoRA adapter of rank r on the given modules. PEFT matches a name at the end of
 * module paths: `q_proj` adapts every layer's, `model.layers.0.self_attn.q_proj` only layer 0's. A name
 * Tuneyard does not know counts as the average linear module.
 */
export function loraParameters(s: ModelShape, r: number, targetModules: 'all-linear' | readonly string[] = 'all-linear'): number {
  const features = moduleFeatures(s);
  const average = ADAPTER_MODULES.reduce((sum, m) => sum + features[m][0] + features[m][1], 0) / ADAPTER_MODULES.length;
  return adaptedModules(targetModules).reduce((sum, name) => {
    const f = features[moduleName(name)];
    const layers = /(^|\.)\d+\./.test(name) ? 1 : s.layers;
    return sum + layers * r * (f ? f[0] + f[1] : average);
  }, 0);
}

/** The module type a target name ends with: `model.layers.0.self_attn.q_proj` → `q_proj`. */
function moduleName(target: string): string {
  return target.slice(target.lastIndexOf('.') + 1);
}

/**
 * Bytes of activations one decoder layer keeps per token for its backward pass (transformers' Llama-style
 * layer, `a` bytes per activation): each RMSNorm's fp32 copy of its input and its output; q, k, v and the
 * output that sdpa/flash attention save (no sequence-squared term); the o_proj input; SwiGLU's gate,
 * SiLU(gate), up and their product; and with LoRA dropout each adapted module's dropped-out input and mask.
 */
export function layerActivationBytes(s: ModelShape, a: number, dropoutModules: readonly string[] = [], liger = false): number {
  const h = s.hiddenSize;
  const q = s.heads * s.headDim;
  const kv = s.kvHeads * s.headDim;
  const features = moduleFeatures(s);
  const dropout = dropoutModules.reduce((sum, m) => sum + (features[moduleName(m)]?.[0] ?? h) / (/(^|\.)\d+\./.test(m) ? s.layers : 1), 0) * (a + 1);
  const norms = liger ? 2 * a * h : 2 * (4 * h + a * h);
  const mlp = (liger ? 3 : 4) * a * s.intermediateSize; // Liger: gate, up and their product; SiLU recomputed
  return norms + a * (q + 2 * kv) + 2 * a * q + mlp + dropout;
}

/** Estimates the GPU memory of a fine-tuning job, per GPU, and whether it fits the instance. */
export function estimateTrainingMemory(input: TrainingMemoryInput): MemoryEstimate {
  const instance = gpuInstance(input.instanceType);
  const { breakdown, requiredGiB, shards, precision, model } = trainingMemory(input, instance);
  const fits = requiredGiB <= instance.gpuMemoryGiB;
  return {
    requiredGiB,
    availableGiB: instance.gpuMemoryGiB,
    fits,
    breakdown,
    shardedOver: shards,
    advice: trainingAdvice(input, instance, model, requiredGiB, fits),
    precision,
    model,
  };
}

function inputModel(input: TrainingMemoryInput): { shape: ModelShape; params: number } {
  const known = input.baseModel === undefined ? undefined : knownModel(input.baseModel);
  if (known) return { shape: known, params: shapeParameters(known) };
  return { shape: modelShape(input.parametersBillions), params: input.parametersBillions * 1e9 };
}

function trainingMemory(input: TrainingMemoryInput, instance: GpuInstance) {
  const profile = input.profile ?? TUNEYARD_TRAINER;
  const { shape, params } = inputModel(input);
  const precision = trainerPrecision(input.method, instance, input.distribution, input.useLora ?? true);
  const a = BYTES[precision.compute];
  const pairs = input.method === 'dpo' || input.method === 'reward';
  const full = input.method === 'sft' || (pairs && input.useLora === false);
  const sharded = input.distribution === 'fsdp' || input.distribution === 'deepspeed';
  const distributed = input.distribution !== 'none' && instance.gpus * input.instanceCount > 1;
  const shards = sharded ? instance.gpus * input.instanceCount : 1;
  const linear = Math.min(params, shape.layers * layerLinearParameters(shape));
  const optim = input.optim ?? 'adamw_torch_fused';
  const optimizerState = OPTIMIZER_STATE_BYTES[optim];
  if (optimizerState === undefined) throw new Error(`optim "${optim}" is not one the trainer offers; use one of ${Object.keys(OPTIMIZER_STATE_BYTES).join(', ')}`);

  // The base weights, as the trainer holds them. QLoRA under FSDP skips prepare_model_for_kbit_training: what it does
  // not quantize stays in the compute dtype, and FSDP shards it with the 4-bit weights (stored in the compute dtype).
  const unquantizedBytes = sharded ? a : profile.qloraUnquantizedBytes;
  let weightBytes: number;
  if (precision.weights === 'nf4') weightBytes = (linear * NF4_BYTES + (params - linear) * unquantizedBytes) / shards;
  else if (full && sharded) weightBytes = (params * 4) / shards + 2 * (layerLinearParameters(shape) * a); // fp32 shards + two gathered layers
  else weightBytes = (params * (precision.weights === 'fp32' ? 4 : a)) / shards;
  // Without gradient checkpointing, autocast keeps a 16-bit copy of fp32 weights through the backward pass.
  if (full && !sharded && precision.weights === 'fp32' && !input.gradientCheckpointing) weightBytes += params * a;
  // DPO on all weights keeps a frozen reference copy; with LoRA the reference is the base with the adapter disabled.
  const referenceBytes = input.method === 'dpo' && full ? (params * (sharded ? a : 4)) / shards : 0;

  const modules = adaptedModules(input.targetModules ?? 'all-linear');
  const adapterParams = full ? 0 : loraParameters(shape, input.loraR, modules) / shards;
  const trainableBytes = adapterParams * profile.adapterBytes;
  const gradientBytes = full ? (params * 4) / shards : adapterParams * profile.adapterGradientBytes;
  // DDP copies the gradients into its all-reduce buckets.
  const bucketBytes = input.distribution === 'ddp' && distributed ? (full ? params * 4 : adapterParams * profile.adapterGradientBytes) : 0;
  const optimizerBytes = full
    ? (params * optimizerState) / shards
    : adapterParams * (optimizerState === OPTIMIZER_STATE_BYTES.adamw_torch ? profile.adapterOptimizerBytes : optimizerState);

  // DPO and reward models run the chosen and the rejected sequence of each pair (a reward model is the base with a
  // scalar score head: one model, no reference; its weights are counted as the base's, output head included).
  const preference = pairs;
  const sequences = input.batchSize * (preference ? 2 : 1);
  const tokens = sequences * input.maxLength;
  const liger = input.useLigerKernel ?? false;
  const dropout = !full && (input.loraDropout ?? 0.05) > 0 ? modules : [];
  const perLayer = layerActivationBytes(shape, a, dropout, liger) * tokens;
  const h = shape.hiddenSize;
  // The embedding output and the final norm, kept either way.
  const outside = tokens * (a * h + 4 * h + a * h);
  // The loss over the logits; QLoRA's output projection kept in fp32 is cast to 16 bits for its matmul.
  // A reward model's head scores every position with one fp32 value: no vocabulary-wide logits.
  // GRPO and RLOO (TRL's GRPOTrainer and RLOOTrainer, the same batching): the loss reads the logits of the completion
  // tokens only, and keeps three fp32 log-probabilities per completion token (the policy's, the sampling policy's and
  // the reference's, the base with the adapter disabled).
  const online = isOnlineRl(input.method);
  const completionTokens = input.batchSize * Math.min(input.maxCompletionLength ?? 256, input.maxLength);
  const lossBytes =
    input.method === 'reward' ? tokens * 4 : online ? lossMemory(profile, shape, completionTokens, a, { liger, full, preference }) + completionTokens * 3 * 4 : lossMemory(profile, shape, tokens, a, { liger, full, preference });
  // They generate the completions of every accumulated step at once (TRL's generation batch: batchSize x
  // gradientAccumulation completions, whole groups of grpoNumGenerations or rlooNumGenerations): the KV cache of
  // that many prompt + completion sequences (at most maxLength tokens each), keys and values of every layer in the
  // compute dtype.
  const generatedTokens = online ? input.batchSize * (input.gradientAccumulation ?? RECIPE_FIELDS.gradientAccumulation.default) * input.maxLength : 0;
  const kvCacheBytes = generatedTokens * 2 * shape.layers * shape.kvHeads * shape.headDim * a;
  // and the reward model (a registered reward run's merged model) beside the policy, in the compute dtype
  const rewardModelBillions = input.rewardModelParametersBillions ?? (input.method === 'rloo' ? input.parametersBillions : 0);
  const rewardModelBytes = online ? rewardModelBillions * 1e9 * a : 0;
  // It scores the generation batch in one forward pass (grpo.py ModelReward): one layer at a time holds the hidden
  // states (residual and normed) and SwiGLU's gate, up and product for every token. Generation's cache is freed by then:
  // the larger of the two is counted, beside the training activations, which the caching allocator does not give back
  // in between.
  const rewardShape = rewardModelBillions === input.parametersBillions ? shape : modelShape(rewardModelBillions);
  const rewardScoringBytes = rewardModelBytes > 0 ? generatedTokens * a * (3 * rewardShape.intermediateSize + 2 * rewardShape.hiddenSize) : 0;
  const generationBytes = Math.max(kvCacheBytes, rewardScoringBytes);
  const logits = lossBytes + (precision.weights === 'nf4' && unquantizedBytes > a ? shape.vocabSize * h * a : 0);
  // With gradient checkpointing each layer keeps only its input; the backward pass recomputes one layer
  // at a time and holds its activations and their gradients (about two MLP-wide and two hidden-wide tensors).
  const layerBackward = perLayer + tokens * a * (2 * shape.intermediateSize + 2 * h);
  const activationBytes = (input.gradientCheckpointing
    ? shape.layers * tokens * a * h + outside + Math.max(logits, layerBackward)
    : shape.layers * perLayer + outside + logits) + generationBytes;

  const allocated = weightBytes + referenceBytes + rewardModelBytes + trainableBytes + gradientBytes + bucketBytes + optimizerBytes + activationBytes;
  const overheadGiB = CUDA_CONTEXT_GIB + (ALLOCATOR_FRAGMENTATION * allocated) / GIB + (distributed ? NCCL_BUFFERS_GIB : 0);
  const breakdown: MemoryBreakdown = {
    weights: round((weightBytes + referenceBytes + rewardModelBytes) / GIB),
    trainable: round(trainableBytes / GIB),
    gradients: round((gradientBytes + bucketBytes) / GIB),
    optimizer: round(optimizerBytes / GIB),
    activations: round(activationBytes / GIB),
    overhead: round(overheadGiB),
  };
  const requiredGiB = round(allocated / GIB + overheadGiB);
  return { breakdown, requiredGiB, shards, precision, model: shape };
}

/**
 * Peak bytes of the loss over `tokens` tokens: a fused head's tile, its fp32 per-token statistics and the hidden
 * states' fp32 gradient (plus the output projection's fp32 gradient when all weights train); else Liger's chunks;
 * else the whole logits at the profile's bytes per logit.
 */
function lossMemory(
  profile: TrainerMemoryProfile,
  shape: ModelShape,
  tokens: number,
  a: number,
  run: { readonly liger: boolean; readonly full: boolean; readonly preference: boolean },
): number {
  const h = shape.hiddenSize;
  const fused = profile.fusedLmHead;
  if (fused) {
    const tile = Math.min(tokens, fused.tokenTile) * Math.min(shape.vocabSize, fused.vocabTile) * a;
    return tile + tokens * (4 * h + FUSED_HEAD_BYTES_PER_TOKEN) + (run.full ? shape.vocabSize * h * 4 : 0);
  }
  if (run.liger) return tokens * h * LIGER_LOSS_BYTES_PER_HIDDEN;
  return tokens * shape.vocabSize * (run.preference ? profile.preferenceLossBytesPerLogit : profile.lossBytesPerLogit);
}

function trainingAdvice(input: TrainingMemoryInput, instance: GpuInstance, model: ModelShape, required: number, fits: boolean): string {
  const what = `${METHOD_NAMES[input.method]} of ${modelLabel(input, model)} at maxLength ${input.maxLength}, batchSize ${input.batchSize}`;
  const has = `${instance.instanceType} has ${instance.gpuMemoryGiB} GiB per GPU`;
  if (fits) return `${what} needs ~${required} GiB per GPU; ${has}.`;
  const fixes: string[] = [];
  const sharded = input.distribution === 'fsdp' || input.distribution === 'deepspeed';
  if (input.method === 'sft' || (input.method === 'dpo' && input.useLora === false)) fixes.push('use qlora (or lora)');
  if (input.method === 'reward' && input.useLora === false) fixes.push('set useLora true (a LoRA adapter and the score head)');
  if (input.method === 'lora') fixes.push('use qlora');
  if (isOnlineRl(input.method) && (input.maxCompletionLength ?? 256) > 64) fixes.push(`lower ${COMPLETION_FIELDS[input.method].maxCompletionLength} (the KV cache and the loss grow with it)`);
  if (input.batchSize > 1) fixes.push('lower batchSize (raise gradientAccumulation to keep the effective batch)');
  if (!input.useLigerKernel && !(input.profile ?? TUNEYARD_TRAINER).fusedLmHead && model.vocabSize * input.batchSize * input.maxLength * 4 > 2 * GIB) {
    fixes.push('set useLigerKernel (its fused cross-entropy never holds the whole logits)');
  }
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

const METHOD_NAMES: Record<Method, string> = { sft: 'full SFT', lora: 'LoRA', qlora: 'QLoRA', dpo: 'DPO', reward: 'reward model', grpo: 'GRPO', rloo: 'RLOO (RLHF)' };

/** What decides the GPU memory of a vLLM endpoint. */
export interface InferenceMemoryInput {
  /** Parameters of the served model in billions. */
  readonly parametersBillions: number;
  /** The served model's name: a known model's real shape sizes the KV cache (see {@link MODEL_SHAPES}). */
  readonly baseModel?: string;
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

/** vLLM's reserve for CUDA graphs, the sampler and its own context, per GPU. */
const SERVING_OVERHEAD_GIB = 2;

/** Estimates the GPU memory a vLLM endpoint needs: weights plus KV cache headroom, per GPU. */
export function estimateInferenceMemory(input: InferenceMemoryInput): MemoryEstimate {
  const instance = gpuInstance(input.instanceType);
  const tp = input.tensorParallel ?? instance.gpus;
  if (!Number.isInteger(tp) || tp < 1 || tp > instance.gpus) {
    throw new Error(`tensorParallel must be a whole number from 1 to ${instance.gpus} on ${instance.instanceType}, got ${tp}`);
  }
  const known = input.baseModel === undefined ? undefined : knownModel(input.baseModel);
  const shape = known ?? modelShape(input.parametersBillions);
  const params = known ? shapeParameters(known) : input.parametersBillions * 1e9;
  const bytesPerParam = { bf16: 2, fp8: 1, 'awq-int4': 0.55 }[input.quantization ?? 'bf16'];
  const weights = (params * bytesPerParam) / tp;
  // K and V, per layer, per token, bf16.
  const kvPerToken = 2 * shape.layers * shape.kvHeads * shape.headDim * 2;
  const kv = (kvPerToken * input.maxModelLength * (input.concurrentSequences ?? 1)) / tp;
  const utilization = input.gpuMemoryUtilization ?? 0.9;
  const breakdown: MemoryBreakdown = {
    weights: round(weights / GIB),
    trainable: 0,
    gradients: 0,
    optimizer: 0,
    activations: round(kv / GIB),
    overhead: SERVING_OVERHEAD_GIB,
  };
  const requiredGiB = round(breakdown.weights + breakdown.activations + breakdown.overhead);
  const availableGiB = round(instance.gpuMemoryGiB * utilization);
  const fits = requiredGiB <= availableGiB;
  const what = `serving ${known ? known.name : aModel(input.parametersBillions)} (${input.quantization ?? 'bf16'}) at ${input.maxModelLength} tokens over ${tp} GPU(s)`;
  return {
    requiredGiB,
    availableGiB,
    fits,
    breakdown,
    shardedOver: tp,
    model: shape,
    advice: fits
      ? `${what} needs ~${requiredGiB} GiB per GPU; ${instance.instanceType} gives vLLM ${availableGiB} GiB per GPU.`
      : `${what} needs ~${requiredGiB} GiB per GPU; ${instance.instanceType} gives vLLM ${availableGiB} GiB per GPU: ` +
        'use an instance with more or larger GPUs, a shorter maxModelLength, or a quantized model.',
  };
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

/** `8B`, `500M`. */
function sizeLabel(billions: number): string {
  return billions < 1 ? `${Math.round(billions * 1000)}M` : `${billions}B`;
}

/** "an 8B model", "a 70B model", "a 500M model". */
function aModel(billions: number): string {
  const size = sizeLabel(billions);
  return `${/^(8|11|18|80)/.test(size) ? 'an' : 'a'} ${size} model`;
}

/** A known model's name, else "a 70B model". */
function modelLabel(input: TrainingMemoryInput, model: ModelShape): string {
  return input.baseModel !== undefined && knownModel(input.baseModel) ? model.name : aModel(input.parametersBillions);
}
