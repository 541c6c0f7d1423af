import { z } from 'zod';
import { METHODS, Method } from './methods';

export { METHODS };
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


const LORA_METHODS: readonly Method[] = ['lora', 'qlora', 'dpo'];
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
  useLora: { key: 'use_lora', default: true, methods: ['dpo'] },
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
  merge: { key: 'merge', default: false, methods: LORA_METHODS },
  gradientCheckpointing: { key: 'gradient_checkpointing', default: true, methods: undefined },
  attnImplementation: { key: 'attn_implementation', default: 'auto', methods: undefined },
  dpoBeta: { key: 'dpo_beta', default: 0.1, methods: ['dpo'] },
  distribution: { key: 'distribution', default: 'none', methods: undefined },
} as const satisfies Record<string, { key: string; default: unknown; methods: readonly Method[] | undefined }>;

/** The hyperparameter key of the base model (not a recipe field: it comes from the run). */
export const BASE_MODEL_KEY = 'base_model';

const positiveInt = (what: string) => z.number().int(`must be a whole number (${what})`).min(1, `must be at least 1 (${what})`);

/** The recipe as JSON (a RunRequest's `recipe`): strict, every field but `method` optional. */
export const RecipeSchema = z
  .strictObject({
    method: z.enum(METHODS).describe('sft: all weights; lora: adapter on a bf16 base; qlora: adapter on a 4-bit NF4 base; dpo: preference pairs.'),
    useLora: z.boolean().optional().describe('DPO only: train a LoRA adapter (true) or all weights (false). Default: true.'),
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
      .describe('Peak learning rate. Default: the trainer\'s for the method: lora and qlora 2e-4, sft 1e-5, dpo 5e-6 with useLora true, 5e-7 with useLora false.'),
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
    merge: z.boolean().optional().describe('LoRA methods: also write the merged bf16 model. Default: false.'),
    gradientCheckpointing: z.boolean().optional().describe('Recompute activations to save GPU memory. Default: true.'),
    attnImplementation: z.enum(ATTN_IMPLEMENTATIONS).optional().describe('Attention kernel. Default: auto.'),
    dpoBeta: z.number().gt(0, 'must be above 0 (e.g. 0.1)').optional().describe('DPO temperature. Default: 0.1.'),
    distribution: z.enum(DISTRIBUTIONS).optional().describe('none, ddp, fsdp (full sharding) or deepspeed (ZeRO-3). Default: none.'),
  })
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
  /** sft: all weights; lora: adapter on a bf16 base; qlora: adapter on a 4-bit NF4 base; dpo: preference pairs. */
  readonly method: Method;
  /** DPO only: train a LoRA adapter (true) or all weights (false). @default true */
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
  /** LoRA methods: also write the merged bf16 model. @default false */
  readonly merge?: boolean;
  /** Recompute activations to save GPU memory. @default true */
  readonly gradientCheckpointing?: boolean;
  /** Attention kernel. @default "auto" */
  readonly attnImplementation?: (typeof ATTN_IMPLEMENTATIONS)[number];
  /** DPO temperature. @default 0.1 */
  readonly dpoBeta?: number;
  /** none, ddp, fsdp (full sharding) or deepspeed (ZeRO-3). @default "none" */
  readonly distribution?: (typeof DISTRIBUTIONS)[number];
}

// Compiles only while Recipe and the schema's output are the same type (readonly aside).
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const recipeMatchesSchema: Same<{ -readonly [K in keyof Recipe]: Recipe[K] }, z.infer<typeof RecipeSchema>> = true;
void recipeMatchesSchema;

/** A recipe with every field resolved to a value, but `learningRate` (unset: the trainer's default for the method). */
export type ResolvedRecipe = Required<Omit<Recipe, 'learningRate'>> & Pick<Recipe, 'learningRate'>;

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
  const loraField = field === 'loraR' || field === 'loraAlpha' || field === 'loraDropout' || field === 'targetModules' || field === 'merge';
  return !(loraField && recipe.method === 'dpo' && recipe.useLora === false);
}

/** Why a recipe cannot run (the same combination rules as the trainer's config), as path + message. */
export function recipeProblems(recipe: Recipe): Array<{ path: string[]; message: string }> {
  const problems: Array<{ path: string[]; message: string }> = [];
  for (const field of Object.keys(RECIPE_FIELDS) as Field[]) {
    if (recipe[field] === undefined || fieldApplies(field, recipe)) continue;
    const methods = RECIPE_FIELDS[field].methods as readonly Method[] | undefined;
    const why = methods && !methods.includes(recipe.method) ? `applies to method ${methods.join(' or ')} only` : 'needs an adapter, but method dpo with useLora false trains all weights';
    problems.push({ path: [field], message: `${field} ${why} and has no effect with method "${recipe.method}"; remove it` });
  }
  const distribution = recipe.distribution ?? RECIPE_FIELDS.distribution.default;
  if (recipe.method === 'qlora' && (distribution === 'fsdp' || distribution === 'deepspeed')) {
    problems.push({
      path: ['distribution'],
      message: `method "qlora" with distribution "${distribution}" is not supported; use distribution "ddp" (one 4-bit model per GPU) or method "lora"`,
    });
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
    out[RECIPE_FIELDS[field].key] = renderValue(value);
  }
  return out;
}

function renderValue(value: unknown): string {
  if (Array.isArray(value)) return value.join(',');
  return String(value);
}
