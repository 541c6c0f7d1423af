import { z } from 'zod';
import { closest } from './config';
import { isOnlineRl, METHODS, Method, ONLINE_RL_METHODS, OnlineRlMethod } from './methods';
import { pythonRegexProblem } from './python-regex';

export { METHODS, ONLINE_RL_METHODS, isOnlineRl };
export type { Method };

/**
 * A training recipe: how to fine-tune (method and hyperparameters), in camelCase TypeScript.
 *
 * It is one side of the cross-language contract with the trainer's pydantic config
 * (`training-images/trainer/config.schema.json`): {@link renderHyperParameters} turns a recipe
 * into the SageMaker HyperParameters (snake_case keys, every value a string) that the trainer
 * parses. `lib/recipe.contract.test.ts` fails when the two drift (a key, an enum value or a
 * default differs), over the committed fixture `test/fixtures/contracts/hyperparameters.json`.
 */

export const LR_SCHEDULERS = ['linear', 'cosine', 'cosine_with_restarts', 'polynomial', 'constant', 'constant_with_warmup'] as const;
export const DISTRIBUTIONS = ['none', 'ddp', 'fsdp', 'deepspeed'] as const;
export const ATTN_IMPLEMENTATIONS = ['auto', 'flash_attention_2', 'sdpa', 'eager'] as const;
/**
 * What the trainer does with rows longer than `maxLength` tokens (it counts them either way). `drop`, the default:
 * every row trained on ends with its end-of-turn token, which the model must learn to stop on, and a preference pair
 * is compared on whole responses; a cut row teaches a response that never ends (and can leave a pair's two responses
 * alike). `truncate` keeps their first `maxLength` tokens: more data, for sets whose long rows matter more than
 * their endings (long documents). `tuneyard validate --method` and ValidateDataset report how many rows are
 * estimated over `maxLength`, so the rows a run drops are known before it starts.
 */
export const OVERLONG_ROWS = ['drop', 'truncate'] as const;
/**
 * Optimisers (transformers' OptimizerNames). The 8-bit and paged ones are bitsandbytes optimisers, which need an
 * NVIDIA GPU (every training instance type has one): adamw8bit keeps AdamW's two moments in 8 bits (a quarter of the
 * optimiser memory), the paged ones move that state to host memory when GPU memory runs short.
 */
export const OPTIMIZERS = ['adamw_torch_fused', 'adamw_torch', 'adamw_8bit', 'paged_adamw_8bit', 'paged_adamw_32bit', 'adafactor'] as const;
/** DPO losses: TRL 1.16's DPOConfig.loss_type values but "sft" (which {@link Recipe.rpoAlpha} adds to one of these). */
export const DPO_LOSS_TYPES = [
  'sigmoid', 'hinge', 'ipo', 'exo_pair', 'nca_pair', 'robust', 'bco_pair', 'sppo_hard', 'aot', 'aot_unpaired', 'apo_zero', 'apo_down', 'discopop', 'sigmoid_norm',
] as const;
/** The DPO losses TRL reads label smoothing in; the others ignore it, so `dpoLabelSmoothing` is refused with them. */
export const LABEL_SMOOTHING_LOSS_TYPES: readonly (typeof DPO_LOSS_TYPES)[number][] = ['robust', 'exo_pair', 'aot', 'aot_unpaired'];
/** Named chat templates for base models whose tokenizer has none. */
export const CHAT_TEMPLATES = ['chatml'] as const;
/**
 * GRPO's guard against reward hacking by length (completions that reach grpoMaxCompletionLength without ending are
 * clipped): penalty subtracts grpoLengthPenalty from their reward, mask leaves them out of the loss (DAPO), none
 * neither. Clipped completions are counted either way (metric clipped_ratio).
 */
export const GRPO_LENGTH_GUARDS = ['penalty', 'mask', 'none'] as const;


const LORA_METHODS: readonly Method[] = ['lora', 'qlora', 'dpo', 'reward', ...ONLINE_RL_METHODS];
/** The methods trained on preference pairs that choose between an adapter and all weights (`useLora`). */
export const PREFERENCE_METHODS: readonly Method[] = ['dpo', 'reward'];
const SFT_METHODS: readonly Method[] = ['sft', 'lora', 'qlora'];

/**
 * Every recipe field: its trainer key, its default (the trainer's), and the methods it applies
 * to (a field set for another method is an error on both sides). `learningRate` has no default
 * here: unset, it is not rendered and the trainer takes its default for what is trained (one
 * table, `DEFAULT_LEARNING_RATES` in the trainer's config.py, published in config.schema.json as
 * `x-tuneyard-default-by-method`).
 */
export const RECIPE_FIELDS = {
  method: { key: 'method', default: 'lora', methods: undefined },
  useLora: { key: 'use_lora', default: true, methods: PREFERENCE_METHODS },
  loraR: { key: 'lora_r', default: 16, methods: LORA_METHODS },
  loraAlpha: { key: 'lora_alpha', default: 32, methods: LORA_METHODS },
  loraDropout: { key: 'lora_dropout', default: 0.05, methods: LORA_METHODS },
  targetModules: { key: 'lora_target_modules', default: 'all-linear', methods: LORA_METHODS },
  learningRate: { key: 'learning_rate', default: undefined, methods: undefined },
  lrScheduler: { key: 'lr_scheduler_type', default: 'cosine', methods: undefined },
  warmupRatio: { key: 'warmup_ratio', default: 0.03, methods: undefined },
  epochs: { key: 'num_train_epochs', default: 1, methods: undefined },
  batchSize: { key: 'per_device_train_batch_size', default: 4, methods: undefined },
  gradientAccumulation: { key: 'gradient_accumulation_steps', default: 4, methods: undefined },
  maxLength: { key: 'max_length', default: 2048, methods: undefined },
  overlongRows: { key: 'overlong_rows', default: 'drop', methods: undefined },
  packing: { key: 'packing', default: false, methods: SFT_METHODS },
  completionOnlyLoss: { key: 'completion_only_loss', default: true, methods: SFT_METHODS },
  seed: { key: 'seed', default: 42, methods: undefined },
  evalFraction: { key: 'eval_fraction', default: 0.05, methods: undefined },
  evalSteps: { key: 'eval_steps', default: 100, methods: undefined },
  saveSteps: { key: 'save_steps', default: 100, methods: undefined },
  loggingSteps: { key: 'logging_steps', default: 10, methods: undefined },
  earlyStoppingPatience: { key: 'early_stopping_patience', default: 0, methods: undefined },
  merge: { key: 'merge', default: false, methods: ['lora', 'qlora', 'dpo'] },
  gradientCheckpointing: { key: 'gradient_checkpointing', default: true, methods: undefined },
  attnImplementation: { key: 'attn_implementation', default: 'auto', methods: undefined },
  dpoBeta: { key: 'dpo_beta', default: 0.1, methods: ['dpo'] },
  maxSteps: { key: 'max_steps', default: undefined, methods: undefined },
  weightDecay: { key: 'weight_decay', default: 0, methods: undefined },
  maxGradNorm: { key: 'max_grad_norm', default: 1, methods: undefined },
  optim: { key: 'optim', default: 'adamw_torch_fused', methods: undefined },
  neftuneNoiseAlpha: { key: 'neftune_noise_alpha', default: undefined, methods: SFT_METHODS },
  useDora: { key: 'use_dora', default: false, methods: LORA_METHODS },
  useRslora: { key: 'use_rslora', default: false, methods: LORA_METHODS },
  loraModulesToSave: { key: 'lora_modules_to_save', default: undefined, methods: LORA_METHODS },
  chatTemplate: { key: 'chat_template', default: undefined, methods: undefined },
  dpoLossType: { key: 'dpo_loss_type', default: 'sigmoid', methods: ['dpo'] },
  dpoLabelSmoothing: { key: 'dpo_label_smoothing', default: 0, methods: ['dpo'] },
  rpoAlpha: { key: 'rpo_alpha', default: undefined, methods: ['dpo'] },
  precomputeRefLogProbs: { key: 'precompute_ref_log_probs', default: false, methods: ['dpo'] },
  torchCompile: { key: 'torch_compile', default: false, methods: undefined },
  useLigerKernel: { key: 'use_liger_kernel', default: false, methods: undefined },
  distribution: { key: 'distribution', default: 'none', methods: undefined },
  rewardWeights: { key: 'reward_weights', default: undefined, methods: ['grpo'] },
  grpoNumGenerations: { key: 'grpo_num_generations', default: 8, methods: ['grpo'] },
  grpoMaxCompletionLength: { key: 'grpo_max_completion_length', default: 256, methods: ['grpo'] },
  grpoTemperature: { key: 'grpo_temperature', default: 1, methods: ['grpo'] },
  grpoBeta: { key: 'grpo_beta', default: 0.04, methods: ['grpo'] },
  grpoLengthGuard: { key: 'grpo_length_guard', default: 'penalty', methods: ['grpo'] },
  grpoLengthPenalty: { key: 'grpo_length_penalty', default: 1, methods: ['grpo'] },
  grpoFormatRegex: { key: 'grpo_format_regex', default: undefined, methods: ['grpo'] },
  rlooNumGenerations: { key: 'rloo_num_generations', default: 4, methods: ['rloo'] },
  rlooMaxCompletionLength: { key: 'rloo_max_completion_length', default: 256, methods: ['rloo'] },
  rlooTemperature: { key: 'rloo_temperature', default: 1, methods: ['rloo'] },
  rlooBeta: { key: 'rloo_beta', default: 0.05, methods: ['rloo'] },
  rlooEpsilon: { key: 'rloo_epsilon', default: 0.2, methods: ['rloo'] },
} as const satisfies Record<string, { key: string; default: unknown; methods: readonly Method[] | undefined }>;

/** The hyperparameter key of the base model (not a recipe field: it comes from the run). */
export const BASE_MODEL_KEY = 'base_model';

/** The hyperparameter of a GRPO or RLOO run's registered reward model (from the RunRequest's `rewardModel`, not the recipe; its files travel as the `reward_model` channel). */
export const REWARD_MODEL_KEY = 'reward_model';
/**
 * The trainer's `graders` hyperparameter, which the plane never renders: PlanRun writes the run's graders to
 * eval-reports/<run>/graders.json and both the training job (method grpo) and the evaluation job read it as their
 * `graders` channel (the trainer refuses both at once).
 */
export const GRADERS_KEY = 'graders';

/** Fields of the adapter: no effect (refused) with method dpo or reward and useLora false. */
const ADAPTER_FIELDS: readonly string[] = ['loraR', 'loraAlpha', 'loraDropout', 'targetModules', 'merge', 'useDora', 'useRslora', 'loraModulesToSave'];

/** "unknown field X": the field it most likely meant (a trainer key in snake_case, or a near spelling). */
function unknownFieldMessage(keys: readonly string[]): string {
  const fields = Object.keys(RECIPE_FIELDS);
  const listed = 20; // a request with thousands of keys still gets a short message
  let unmatched = false;
  const each = keys.slice(0, listed).map((raw) => {
    const key = raw.length <= 60 ? raw : `${raw.slice(0, 60)}... (${raw.length} characters)`;
    const near = Object.entries(RECIPE_FIELDS).find(([, spec]) => spec.key === raw)?.[0] ?? closest(raw, fields);
    unmatched ||= near === undefined;
    return `unknown field "${key}"${near ? `; did you mean "${near}"?` : ''}`;
  });
  const more = keys.length > listed ? ` and ${keys.length - listed} more unknown fields` : '';
  return each.join('; ') + more + (unmatched ? `; the fields are ${fields.join(', ')}` : '');
}

const positiveInt = (what: string) => z.number().int(`must be a whole number (${what})`).min(1, `must be at least 1 (${what})`);

/** The recipe as JSON (a RunRequest's `recipe`): strict, every field but `method` optional. */
export const RecipeSchema = z
  .strictObject(
    {
    method: z.enum(METHODS).describe('sft: all weights; lora: adapter on a bf16 base; qlora: adapter on a 4-bit NF4 base; dpo: preference pairs; reward: a reward model (scalar score head) trained on preference pairs; grpo: online RL with an adapter on prompt-only rows, rewarded by the run\'s graders and/or rewardModel; rloo: RLHF, online RL with an adapter on prompt-only rows against the run\'s rewardModel (RLOO, which stands in for PPO).'),
    useLora: z.boolean().optional().describe('DPO and reward only: train a LoRA adapter (true) or all weights (false). Default: true.'),
    loraR: positiveInt('LoRA rank, e.g. 16').optional().describe('LoRA rank. Default: 16.'),
    loraAlpha: positiveInt('LoRA alpha, e.g. 32').optional().describe('LoRA scaling numerator. Default: 32.'),
    loraDropout: z.number().min(0, 'must be from 0 to below 1').lt(1, 'must be from 0 to below 1').optional().describe('Dropout on the LoRA input. Default: 0.05.'),
    targetModules: z
      .union([z.literal('all-linear'), z.array(z.string().regex(/^[A-Za-z0-9_.]+$/, 'must be a module name such as "q_proj"')).min(1, 'must name at least one module')])
      .optional()
      .describe('"all-linear" or module names such as ["q_proj","v_proj"]. Default: "all-linear".'),
    learningRate: z
      .number()
      .gt(0, 'must be above 0 (e.g. 2e-4 for LoRA, 1e-5 for full SFT)')
      .optional()
      .describe('Peak learning rate. Default: the trainer\'s for the method: lora and qlora 2e-4, sft 1e-5, dpo 5e-6 with useLora true, 5e-7 with useLora false; reward 1e-4 with useLora true, 1e-5 with useLora false; grpo and rloo 1e-5.'),
    lrScheduler: z.enum(LR_SCHEDULERS).optional().describe('Learning-rate schedule after warmup. Default: cosine.'),
    warmupRatio: z.number().min(0, 'must be from 0 to below 1').lt(1, 'must be from 0 to below 1').optional().describe('Share of the steps spent warming up. Default: 0.03.'),
    epochs: z.number().gt(0, 'must be above 0').optional().describe('Passes over the training set (fractions allowed). Default: 1.'),
    batchSize: positiveInt('sequences per GPU per step').optional().describe('Sequences per GPU per step. Default: 4.'),
    gradientAccumulation: positiveInt('steps per optimiser update').optional().describe('Steps accumulated per optimiser update. Default: 4.'),
    maxLength: z.number().int('must be a whole number of tokens').min(16, 'must be at least 16 tokens').max(131072, 'must be at most 131072 tokens').optional().describe('Tokens per sequence. Default: 2048.'),
    overlongRows: z
      .enum(OVERLONG_ROWS)
      .optional()
      .describe('Rows longer than maxLength tokens: drop (every row trained on keeps its end of turn) or truncate (cut to maxLength). Counted either way. Default: drop.'),
    packing: z.boolean().optional().describe('SFT/LoRA/QLoRA: pack sequences into maxLength blocks. Default: false.'),
    completionOnlyLoss: z.boolean().optional().describe('SFT/LoRA/QLoRA: train on the responses only (every assistant message but those with weight 0); false trains on every token. Default: true.'),
    seed: z.number().int('must be a whole number').optional().describe('Seed for initialisation, data order and the split. Default: 42.'),
    evalFraction: z.number().gt(0, 'must be between 0 and 1').lt(1, 'must be between 0 and 1').optional().describe('Share held out when the dataset has no eval split. Default: 0.05.'),
    evalSteps: positiveInt('optimiser steps').optional().describe('Optimiser steps between evaluations. Default: 100.'),
    saveSteps: positiveInt('optimiser steps').optional().describe('Optimiser steps between checkpoints. Default: 100.'),
    loggingSteps: positiveInt('optimiser steps').optional().describe('Optimiser steps between metric lines. Default: 10.'),
    earlyStoppingPatience: z.number().int('must be a whole number').min(0, 'must be 0 (off) or more').optional().describe('Evaluations without improvement before stopping; 0 is off. Default: 0.'),
    merge: z.boolean().optional().describe('lora, qlora and dpo: also write the merged bf16 model (reward always writes its model merged). Default: false.'),
    gradientCheckpointing: z.boolean().optional().describe('Recompute activations to save GPU memory. Default: true.'),
    attnImplementation: z.enum(ATTN_IMPLEMENTATIONS).optional().describe('Attention kernel. Default: auto.'),
    dpoBeta: z.number().gt(0, 'must be above 0 (e.g. 0.1)').optional().describe('DPO temperature. Default: 0.1.'),
    maxSteps: positiveInt('optimiser steps').optional().describe('Optimiser steps to train for; overrides epochs. Default: unset (epochs decide).'),
    weightDecay: z.number().min(0, 'must be 0 (off) or more, e.g. 0.01').optional().describe('Decoupled AdamW weight decay. Default: 0.'),
    maxGradNorm: z.number().min(0, 'must be 0 (no clipping) or more, e.g. 1').optional().describe('Clip gradients to this global L2 norm; 0 turns clipping off. Default: 1.'),
    optim: z.enum(OPTIMIZERS).optional().describe('Optimiser; the 8-bit and paged ones (bitsandbytes) need an NVIDIA GPU. Default: adamw_torch_fused.'),
    neftuneNoiseAlpha: z.number().gt(0, 'must be above 0 (the NEFTune paper uses 5)').optional().describe('SFT/LoRA/QLoRA: NEFTune noise on the input embeddings in training. Default: unset (off).'),
    useDora: z.boolean().optional().describe('LoRA methods: DoRA (a trained magnitude per output row beside the LoRA direction). Default: false.'),
    useRslora: z.boolean().optional().describe('LoRA methods: rsLoRA scaling loraAlpha/sqrt(loraR) instead of loraAlpha/loraR. Default: false.'),
    loraModulesToSave: z
      .array(z.string().regex(/^[A-Za-z0-9_.]+$/, 'must be a module name such as "lm_head"'))
      .min(1, 'must name at least one module')
      .optional()
      .describe('LoRA methods: modules trained whole and saved with the adapter, e.g. ["lm_head"]. Default: none.'),
    chatTemplate: z.enum(CHAT_TEMPLATES).optional().describe('A chat template for a base model whose tokenizer has none (its special tokens added and trained). Default: unset (the tokenizer must ship one for chat rows).'),
    dpoLossType: z.enum(DPO_LOSS_TYPES).optional().describe('DPO only: the preference loss (TRL loss_type). Default: sigmoid.'),
    dpoLabelSmoothing: z
      .number()
      .min(0, 'must be from 0 to below 0.5')
      .lt(0.5, 'must be from 0 to below 0.5 (the probability a preference label is flipped)')
      .optional()
      .describe('DPO only: label noise for dpoLossType robust, exo_pair, aot or aot_unpaired. Default: 0.'),
    rpoAlpha: z.number().gt(0, 'must be above 0 (the RPO paper uses 1)').optional().describe('DPO only: RPO, the chosen responses\' NLL added with this weight. Default: unset (off).'),
    precomputeRefLogProbs: z.boolean().optional().describe('DPO only: compute the reference log-probabilities once before training. Default: false.'),
    torchCompile: z.boolean().optional().describe('Compile the model with torch.compile. Default: false.'),
    useLigerKernel: z.boolean().optional().describe('Liger Triton kernels (RMSNorm, RoPE, SwiGLU); needs an NVIDIA GPU. Default: false.'),
    distribution: z.enum(DISTRIBUTIONS).optional().describe('none, ddp, fsdp (full sharding) or deepspeed (ZeRO-3). Default: none.'),
    rewardWeights: z
      .record(z.string().min(1, 'must be a grader name or "reward_model"'), z.number().refine(Number.isFinite, 'must be a finite number'))
      .refine((weights) => Object.keys(weights).length > 0, 'must name at least one reward source')
      .optional()
      .describe('GRPO only: reward source -> weight, a source being a grader\'s name or "reward_model", e.g. {"exact": 1, "reward_model": 0.5}; the reward is the weighted sum. Default: 1 for each source.'),
    grpoNumGenerations: z.number().int('must be a whole number (completions per prompt)').min(2, 'must be at least 2 (advantages are relative to the group)').optional().describe('GRPO only: completions sampled per prompt (the group); batchSize x gradientAccumulation must be a multiple of it. Default: 8.'),
    grpoMaxCompletionLength: positiveInt('new tokens per completion').optional().describe('GRPO only: new tokens per completion at most. Default: 256.'),
    grpoTemperature: z.number().gt(0, 'must be above 0 (e.g. 1)').optional().describe('GRPO only: sampling temperature of the completions. Default: 1.'),
    grpoBeta: z.number().min(0, 'must be 0 (no KL penalty) or more, e.g. 0.04').optional().describe('GRPO only: weight of the KL penalty to the base (the adapter disabled, no second copy); 0 turns it off. Default: 0.04.'),
    grpoLengthGuard: z.enum(GRPO_LENGTH_GUARDS).optional().describe('GRPO only: clipped completions (no end within grpoMaxCompletionLength) get grpoLengthPenalty subtracted (penalty), are left out of the loss (mask) or neither (none). Default: penalty.'),
    grpoLengthPenalty: z.number().gt(0, 'must be above 0 (e.g. 1)').optional().describe('GRPO only, with grpoLengthGuard penalty: subtracted from a clipped completion\'s reward. Default: 1.'),
    grpoFormatRegex: z.string().min(1, 'must be a Python regular expression').optional().describe('GRPO only: a Python regular expression the whole completion must match (re.fullmatch, dot matching newlines); one that does not gets 0 from every reward source. Default: unset (off).'),
    rlooNumGenerations: z
      .number()
      .int('must be a whole number (completions per prompt)')
      .min(2, 'must be at least 2 (each completion\'s baseline is the mean reward of the others)')
      .optional()
      .describe('RLOO only: completions sampled per prompt; each one\'s baseline is the mean reward of the others (leave-one-out); batchSize x gradientAccumulation must be a multiple of it. Default: 4.'),
    rlooMaxCompletionLength: positiveInt('new tokens per completion').optional().describe('RLOO only: new tokens per completion at most. Default: 256.'),
    rlooTemperature: z.number().gt(0, 'must be above 0 (e.g. 1)').optional().describe('RLOO only: sampling temperature of the completions. Default: 1.'),
    rlooBeta: z.number().min(0, 'must be 0 (no KL penalty) or more, e.g. 0.05').optional().describe('RLOO only: weight of the KL penalty to the base (the adapter disabled, no second copy); 0 turns it off. Default: 0.05.'),
    rlooEpsilon: z.number().gt(0, 'must be above 0 (PPO\'s clip range, e.g. 0.2)').optional().describe('RLOO only: clip range of the policy ratio (PPO\'s epsilon). Default: 0.2.'),
    },
    { error: (issue) => (issue.code === 'unrecognized_keys' ? unknownFieldMessage(issue.keys) : undefined) },
  )
  .superRefine((recipe, ctx) => {
    for (const problem of recipeProblems(recipe)) ctx.addIssue({ code: 'custom', message: problem.message, path: problem.path });
  });

/**
 * A training recipe (method and hyperparameters). Unset fields take the trainer's defaults, listed in {@link RECIPE_FIELDS}.
 *
 * Written out (not `z.infer<typeof RecipeSchema>`) because it is part of the constructs' jsii API
 * (`DefaultRecipe.recipe`), which needs a named interface; a type check below fails the build when
 * it and the schema drift.
 */
export interface Recipe {
  /** sft: all weights; lora: adapter on a bf16 base; qlora: adapter on a 4-bit NF4 base; dpo: preference pairs; reward: a reward model (scalar score head) trained on preference pairs; grpo: online RL with an adapter on prompt-only rows, rewarded by the run's graders and/or rewardModel; rloo: RLHF, online RL with an adapter on prompt-only rows against the run's rewardModel (RLOO, which stands in for PPO). */
  readonly method: Method;
  /** DPO and reward only: train a LoRA adapter (true) or all weights (false). @default true */
  readonly useLora?: boolean;
  /** LoRA rank. @default 16 */
  readonly loraR?: number;
  /** LoRA scaling numerator. @default 32 */
  readonly loraAlpha?: number;
  /** Dropout on the LoRA input. @default 0.05 */
  readonly loraDropout?: number;
  /** "all-linear" or module names such as ["q_proj","v_proj"]. @default "all-linear" */
  readonly targetModules?: 'all-linear' | string[];
  /** Peak learning rate. @default 2e-4 */
  readonly learningRate?: number;
  /** Learning-rate schedule after warmup. @default "cosine" */
  readonly lrScheduler?: (typeof LR_SCHEDULERS)[number];
  /** Share of the steps spent warming up. @default 0.03 */
  readonly warmupRatio?: number;
  /** Passes over the training set (fractions allowed). @default 1 */
  readonly epochs?: number;
  /** Sequences per GPU per step. @default 4 */
  readonly batchSize?: number;
  /** Steps accumulated per optimiser update. @default 4 */
  readonly gradientAccumulation?: number;
  /** Tokens per sequence. @default 2048 */
  readonly maxLength?: number;
  /** Rows longer than maxLength tokens: drop (every row trained on keeps its end of turn) or truncate (cut to maxLength); see {@link OVERLONG_ROWS}. @default "drop" */
  readonly overlongRows?: (typeof OVERLONG_ROWS)[number];
  /** SFT/LoRA/QLoRA: pack sequences into maxLength blocks. @default false */
  readonly packing?: boolean;
  /** SFT/LoRA/QLoRA: train on the response only. @default true */
  readonly completionOnlyLoss?: boolean;
  /** Seed for initialisation, data order and the split. @default 42 */
  readonly seed?: number;
  /** Share held out when the dataset has no eval split. @default 0.05 */
  readonly evalFraction?: number;
  /** Optimiser steps between evaluations. @default 100 */
  readonly evalSteps?: number;
  /** Optimiser steps between checkpoints. @default 100 */
  readonly saveSteps?: number;
  /** Optimiser steps between metric lines. @default 10 */
  readonly loggingSteps?: number;
  /** Evaluations without improvement before stopping; 0 is off. @default 0 */
  readonly earlyStoppingPatience?: number;
  /** lora, qlora and dpo: also write the merged bf16 model (reward always writes its model merged). @default false */
  readonly merge?: boolean;
  /** Recompute activations to save GPU memory. @default true */
  readonly gradientCheckpointing?: boolean;
  /** Attention kernel. @default "auto" */
  readonly attnImplementation?: (typeof ATTN_IMPLEMENTATIONS)[number];
  /** DPO temperature. @default 0.1 */
  readonly dpoBeta?: number;
  /** Optimiser steps to train for; set, it overrides `epochs`. @default - unset: `epochs` decide */
  readonly maxSteps?: number;
  /** Decoupled AdamW weight decay (not on biases and norms). @default 0 */
  readonly weightDecay?: number;
  /** Gradients clipped to this global L2 norm before each update; 0 turns clipping off. @default 1 */
  readonly maxGradNorm?: number;
  /** Optimiser; see {@link OPTIMIZERS} (the 8-bit and paged ones need an NVIDIA GPU). @default "adamw_torch_fused" */
  readonly optim?: (typeof OPTIMIZERS)[number];
  /** SFT/LoRA/QLoRA: NEFTune, noise of this alpha added to the input embeddings in training (the paper uses 5). @default - unset: off */
  readonly neftuneNoiseAlpha?: number;
  /** LoRA methods: DoRA, a trained magnitude vector per output row beside the LoRA direction. @default false */
  readonly useDora?: boolean;
  /** LoRA methods: rsLoRA, the adapter scaled by loraAlpha/sqrt(loraR) instead of loraAlpha/loraR. @default false */
  readonly useRslora?: boolean;
  /** LoRA methods: modules trained whole and saved with the adapter, e.g. ["lm_head"]. @default - none */
  readonly loraModulesToSave?: string[];
  /** A named chat template applied when the base model's tokenizer has none (its special tokens added, their embedding rows trained). @default - unset: chat rows need a tokenizer that ships a template */
  readonly chatTemplate?: (typeof CHAT_TEMPLATES)[number];
  /** DPO only: the preference loss; see {@link DPO_LOSS_TYPES}. @default "sigmoid" */
  readonly dpoLossType?: (typeof DPO_LOSS_TYPES)[number];
  /** DPO only: probability a preference label is flipped, for dpoLossType robust, exo_pair, aot, aot_unpaired. @default 0 */
  readonly dpoLabelSmoothing?: number;
  /** DPO only: RPO, the NLL of the chosen responses added to the preference loss with this weight. @default - unset: off */
  readonly rpoAlpha?: number;
  /** DPO only: the reference model's log-probabilities computed once before training. @default false */
  readonly precomputeRefLogProbs?: boolean;
  /** Compile the model with torch.compile. @default false */
  readonly torchCompile?: boolean;
  /** Liger's Triton kernels patched into the model (needs an NVIDIA GPU). @default false */
  readonly useLigerKernel?: boolean;
  /** none, ddp, fsdp (full sharding) or deepspeed (ZeRO-3). @default "none" */
  readonly distribution?: (typeof DISTRIBUTIONS)[number];
  /** GRPO only: reward source -> weight, a source being a grader's name or "reward_model"; the reward is the weighted sum. @default - 1 for each source */
  readonly rewardWeights?: Record<string, number>;
  /** GRPO only: completions sampled per prompt (the group); batchSize x gradientAccumulation must be a multiple of it. @default 8 */
  readonly grpoNumGenerations?: number;
  /** GRPO only: new tokens per completion at most. @default 256 */
  readonly grpoMaxCompletionLength?: number;
  /** GRPO only: sampling temperature of the completions. @default 1 */
  readonly grpoTemperature?: number;
  /** GRPO only: weight of the KL penalty to the base (the adapter disabled); 0 turns it off. @default 0.04 */
  readonly grpoBeta?: number;
  /** GRPO only: what happens to clipped completions; see {@link GRPO_LENGTH_GUARDS}. @default "penalty" */
  readonly grpoLengthGuard?: (typeof GRPO_LENGTH_GUARDS)[number];
  /** GRPO only, with grpoLengthGuard penalty: subtracted from a clipped completion's reward. @default 1 */
  readonly grpoLengthPenalty?: number;
  /** GRPO only: a Python regular expression the whole completion must match (re.fullmatch); one that does not gets 0 from every reward source. @default - unset: off */
  readonly grpoFormatRegex?: string;
  /** RLOO only: completions sampled per prompt; each one's baseline is the mean reward of the others (leave-one-out); batchSize x gradientAccumulation must be a multiple of it. @default 4 */
  readonly rlooNumGenerations?: number;
  /** RLOO only: new tokens per completion at most. @default 256 */
  readonly rlooMaxCompletionLength?: number;
  /** RLOO only: sampling temperature of the completions. @default 1 */
  readonly rlooTemperature?: number;
  /** RLOO only: weight of the KL penalty to the base (the adapter disabled); 0 turns it off. @default 0.05 */
  readonly rlooBeta?: number;
  /** RLOO only: clip range of the policy ratio (PPO's epsilon). @default 0.2 */
  readonly rlooEpsilon?: number;
}

// Compiles only while Recipe and the schema's output are the same type (readonly aside).
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const recipeMatchesSchema: Same<{ -readonly [K in keyof Recipe]: Recipe[K] }, z.infer<typeof RecipeSchema>> = true;
void recipeMatchesSchema;

/** Fields without a default value: unset, they are not rendered (the trainer's default is "off" or depends on the method). */
type UnsetByDefault = 'learningRate' | 'maxSteps' | 'neftuneNoiseAlpha' | 'loraModulesToSave' | 'chatTemplate' | 'rpoAlpha' | 'rewardWeights' | 'grpoFormatRegex';

/** A recipe with every field resolved to a value, but those without a default (`learningRate`: the trainer's default for the method; `maxSteps`, `neftuneNoiseAlpha`, `loraModulesToSave`, `chatTemplate`, `rpoAlpha`: off). */
export type ResolvedRecipe = Required<Omit<Recipe, UnsetByDefault>> & Pick<Recipe, UnsetByDefault>;

type Field = keyof typeof RECIPE_FIELDS;

/** The recipe with the trainer's defaults filled in (fields that do not apply to the method are still filled; the renderer drops them; an unset `learningRate` stays unset). */
export function resolveRecipe(recipe: Recipe): ResolvedRecipe {
  const out: Record<string, unknown> = {};
  for (const [field, spec] of Object.entries(RECIPE_FIELDS)) out[field] = recipe[field as Field] ?? spec.default;
  return out as ResolvedRecipe;
}

/** Whether a field has any effect with the recipe's method. */
export function fieldApplies(field: Field, recipe: Pick<Recipe, 'method' | 'useLora'>): boolean {
  const methods = RECIPE_FIELDS[field].methods as readonly Method[] | undefined;
  if (methods && !methods.includes(recipe.method)) return false;
  return !(ADAPTER_FIELDS.includes(field) && PREFERENCE_METHODS.includes(recipe.method) && recipe.useLora === false);
}

/** Why a recipe cannot run (the same combination rules as the trainer's config), as path + message. */
export function recipeProblems(recipe: Recipe): Array<{ path: string[]; message: string }> {
  const problems: Array<{ path: string[]; message: string }> = [];
  for (const field of Object.keys(RECIPE_FIELDS) as Field[]) {
    if (recipe[field] === undefined || fieldApplies(field, recipe)) continue;
    const methods = RECIPE_FIELDS[field].methods as readonly Method[] | undefined;
    const why = methods && !methods.includes(recipe.method) ? `applies to method ${methods.join(' or ')} only` : `needs an adapter, but method ${recipe.method} with useLora false trains all weights`;
    problems.push({ path: [field], message: `${field} ${why} and has no effect with method "${recipe.method}"; remove it` });
  }
  const distribution = recipe.distribution ?? RECIPE_FIELDS.distribution.default;
  if (recipe.method === 'qlora' && distribution === 'deepspeed') {
    problems.push({
      path: ['distribution'],
      message: 'method "qlora" with distribution "deepspeed" is not supported; use distribution "fsdp" (the 4-bit weights sharded), "ddp" (one 4-bit model per GPU) or method "lora"',
    });
  }
  const lossType = recipe.dpoLossType ?? RECIPE_FIELDS.dpoLossType.default;
  if (recipe.method === 'dpo' && recipe.dpoLabelSmoothing && !LABEL_SMOOTHING_LOSS_TYPES.includes(lossType)) {
    problems.push({
      path: ['dpoLabelSmoothing'],
      message: `dpoLabelSmoothing has no effect with dpoLossType "${lossType}" (TRL reads it in ${LABEL_SMOOTHING_LOSS_TYPES.join(', ')} only); set dpoLossType "robust" for noisy preference labels, or remove it`,
    });
  }
  if (recipe.method === 'dpo' && lossType === 'exo_pair' && !recipe.dpoLabelSmoothing) {
    problems.push({ path: ['dpoLabelSmoothing'], message: 'dpoLossType "exo_pair" needs dpoLabelSmoothing above 0 (its epsilon; the EXO paper uses 1e-3)' });
  }
  const patience = recipe.earlyStoppingPatience ?? RECIPE_FIELDS.earlyStoppingPatience.default;
  const saveSteps = recipe.saveSteps ?? RECIPE_FIELDS.saveSteps.default;
  const evalSteps = recipe.evalSteps ?? RECIPE_FIELDS.evalSteps.default;
  if (patience > 0 && saveSteps % evalSteps !== 0) {
    problems.push({
      path: ['saveSteps'],
      message: `early stopping keeps the best checkpoint, so saveSteps (${saveSteps}) must be a multiple of evalSteps (${evalSteps})`,
    });
  }
  if (recipe.method === 'grpo') {
    const guard = recipe.grpoLengthGuard ?? RECIPE_FIELDS.grpoLengthGuard.default;
    if (recipe.grpoLengthPenalty !== undefined && guard !== 'penalty') {
      problems.push({ path: ['grpoLengthPenalty'], message: `grpoLengthPenalty has no effect with grpoLengthGuard "${guard}"; remove it, or set grpoLengthGuard "penalty"` });
    }
    // the training job compiles it before any weights load; refused here, a typo costs no job start
    const regexProblem = recipe.grpoFormatRegex === undefined ? undefined : pythonRegexProblem(recipe.grpoFormatRegex);
    if (regexProblem) {
      problems.push({
        path: ['grpoFormatRegex'],
        message: `grpoFormatRegex is not a Python regular expression (${regexProblem}); fix the pattern (the training job compiles it with re.DOTALL and applies re.fullmatch)`,
      });
    }
  }
  if (isOnlineRl(recipe.method)) problems.push(...onlineRlProblems(recipe, recipe.method));
  return problems;
}

/** The recipe fields of each online RL method's completions: how many per prompt, how long at most. */
export const COMPLETION_FIELDS = {
  grpo: { generations: 'grpoNumGenerations', maxCompletionLength: 'grpoMaxCompletionLength' },
  rloo: { generations: 'rlooNumGenerations', maxCompletionLength: 'rlooMaxCompletionLength' },
} as const satisfies Record<OnlineRlMethod, { generations: Field; maxCompletionLength: Field }>;

/** How many completions an online RL run samples per prompt and how long each may be, the recipe's or the defaults. */
export function completionsOf(recipe: Recipe & { method: OnlineRlMethod }): { generations: number; maxCompletionLength: number } {
  const fields = COMPLETION_FIELDS[recipe.method];
  return {
    generations: recipe[fields.generations] ?? RECIPE_FIELDS[fields.generations].default,
    maxCompletionLength: recipe[fields.maxCompletionLength] ?? RECIPE_FIELDS[fields.maxCompletionLength].default,
  };
}

/**
 * The trainer's rules for the online RL methods (config.py `_grpo_problems`, `_rloo_problems`); the reward sources are
 * the run's, checked by planRun.
 */
function onlineRlProblems(recipe: Recipe, method: OnlineRlMethod): Array<{ path: string[]; message: string }> {
  const problems: Array<{ path: string[]; message: string }> = [];
  const fields = COMPLETION_FIELDS[method];
  const { generations, maxCompletionLength } = completionsOf({ ...recipe, method });
  const batch = (recipe.batchSize ?? RECIPE_FIELDS.batchSize.default) * (recipe.gradientAccumulation ?? RECIPE_FIELDS.gradientAccumulation.default);
  if (batch % generations !== 0) {
    problems.push({
      path: [fields.generations],
      message: `batchSize x gradientAccumulation (${batch}) must be a multiple of ${fields.generations} (${generations}): each batch holds whole groups of completions; change batchSize, gradientAccumulation or ${fields.generations}`,
    });
  }
  if (recipe.earlyStoppingPatience) problems.push({ path: ['earlyStoppingPatience'], message: `earlyStoppingPatience needs eval_loss, which method "${method}" does not compute; remove it` });
  const distribution = recipe.distribution ?? RECIPE_FIELDS.distribution.default;
  if (distribution === 'fsdp' || distribution === 'deepspeed') {
    problems.push({ path: ['distribution'], message: `method "${method}" runs with distribution "none" or "ddp" (got "${distribution}")` });
  }
  if (recipe.overlongRows === 'truncate') {
    problems.push({ path: ['overlongRows'], message: `method "${method}" drops prompts with no room for a completion within maxLength (a cut prompt loses its question); remove overlongRows "truncate"` });
  }
  const maxLength = recipe.maxLength ?? RECIPE_FIELDS.maxLength.default;
  if (maxCompletionLength >= maxLength) {
    problems.push({
      path: [fields.maxCompletionLength],
      message: `${fields.maxCompletionLength} (${maxCompletionLength}) leaves no room for a prompt within maxLength (${maxLength}); lower it or raise maxLength`,
    });
  }
  return problems;
}

/** Validates a recipe object; errors name the field, the value and the fix. */
export function parseRecipe(raw: unknown): Recipe {
  const result = RecipeSchema.safeParse(raw);
  if (result.success) return result.data;
  throw new Error(`invalid recipe:\n${result.error.issues.map((i) => `  - recipe.${i.path.join('.') || '(top level)'}: ${i.message}`).join('\n')}`);
}

/** What the run adds to the recipe's hyperparameters. */
export interface HyperParameterExtras {
  /** The base model: an `s3://` folder (loaded from the `model` channel) or a Hugging Face Hub id. */
  readonly baseModel: string;
  /** Methods grpo and rloo: the registered reward model (a model package ARN or an s3:// model-data folder), rendered as `reward_model`; its files are the `reward_model` channel. */
  readonly rewardModel?: string;
}

/**
 * The SageMaker HyperParameters of a training job: the resolved recipe under the trainer's
 * snake_case keys, every value a string, fields that do not apply to the method left out
 * (the trainer rejects them), and no `learning_rate` when the recipe sets none (the trainer
 * takes its default for the method).
 */
export function renderHyperParameters(recipe: Recipe, extras: HyperParameterExtras): Record<string, string> {
  const resolved = resolveRecipe(recipe);
  const out: Record<string, string> = { [BASE_MODEL_KEY]: extras.baseModel };
  for (const field of Object.keys(RECIPE_FIELDS) as Field[]) {
    const value = resolved[field];
    if (value === undefined || !fieldApplies(field, resolved)) continue;
    if (field === 'grpoLengthPenalty' && resolved.grpoLengthGuard !== 'penalty') continue; // read with the penalty guard only (the trainer refuses it otherwise)
    out[RECIPE_FIELDS[field].key] = renderValue(value);
  }
  if (extras.rewardModel !== undefined) {
    if (!isOnlineRl(recipe.method)) throw new Error(`a reward model rewards methods ${ONLINE_RL_METHODS.join(' and ')} only (got method "${recipe.method}"); remove rewardModel`);
    out[REWARD_MODEL_KEY] = extras.rewardModel;
  }
  return out;
}

function renderValue(value: unknown): string {
  if (Array.isArray(value)) return value.join(',');
  if (typeof value === 'object' && value !== null) return JSON.stringify(value); // rewardWeights: the trainer's JSON object
  if (typeof value === 'string' && (LINE_TERMINATOR.test(value) || /^".*"$/s.test(value))) return jsonQuoted(value);
  return String(value);
}

/** What a HyperParameters value cannot hold: its pattern is Java's `.*`, whose `.` matches no line terminator. */
const LINE_TERMINATOR = /[\n\r\u0085\u2028\u2029]/u;

/**
 * A string (grpoFormatRegex, free text) as a JSON string literal, its line terminators escaped: the trainer JSON-decodes
 * a value in double quotes (config.py `_unquote`), so it reads back the string as written, where a line break would be
 * refused by CreateTrainingJob and a string that is itself in double quotes (`"[A-D]"`) would lose them.
 */
function jsonQuoted(value: string): string {
  return JSON.stringify(value).replace(/[\u0085\u2028\u2029]/gu, (c) => `\\u${c.codePointAt(0)!.toString(16).padStart(4, '0')}`);
}
