import { createHash } from 'node:crypto';
import { z } from 'zod';
import {
  CHANNEL_NAME,
  CUSTOMER_METADATA,
  CUSTOMER_METADATA_KEY,
  CUSTOMER_METADATA_VALUE,
  HYPER_PARAMETER_KEY,
  HYPER_PARAMETER_VALUE,
  HYPER_PARAMETERS,
  INPUT_DATA_CONFIG,
  KMS_KEY_ID,
  S3_MODEL_URI,
  S3_URI,
  StringLimit,
  stringLimitProblem,
  TRAINING_JOB_NAME,
} from './api-limits';
import { compactGraders, cosineGraders, graderProblems, parseGraders, type GraderConfig } from './graders';
import { judgeCost, JudgePlan, judgeGraders, judgeProblem, JudgeRequestSchema } from './judge';
import { closest } from './config';
import { gpuInstance } from './instances';
import { DATA_PREFIXES, DATASET_NAME_PATTERN, datasetVersionPrefix } from './layout';
import { estimateTrainingMemory, MemoryBreakdown, resolveParameters } from './preflight';
import { completionsOf, isOnlineRl, ONLINE_RL_METHODS, Recipe, RECIPE_FIELDS, RecipeSchema, renderHyperParameters, resolveRecipe } from './recipe';

/**
 * The run contract: a RunRequest is what `tuneyard train` builds and the state machine's
 * execution input; {@link planRun} turns it into the run-dependent fragments of the
 * CreateTrainingJob requests (PascalCase, exactly as the API wants them) that the pipeline's
 * Train and Evaluate states read from `$.plan`.
 */

const DatasetRefSchema = z.strictObject({
  name: z.string().regex(DATASET_NAME_PATTERN, 'must be 1-63 lower-case letters, digits, ".", "_" or "-", starting with a letter or digit (e.g. "support-chats")'),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be the 64 lower-case hex characters that `tuneyard upload` printed'),
});

/** The hyperparameter of a GRPO run's reward weights (recipe.rewardWeights), which the evaluation job's reward reads too. */
const REWARD_WEIGHTS_KEY = RECIPE_FIELDS.rewardWeights.key;

const ENDPOINT_NAME = /^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$/;

/** Benchmark datasets a run may name: the evaluation job's channels are at most 20 (model, adapter, eval, probe, graders, embedding_model, reward_model and these). */
export const MAX_BENCHMARK_DATASETS = 8;

/**
 * The most bytes of a run's graders (compact JSON). They reach the evaluation job as a file, graders.json (a
 * hyperparameter value holds 2,500 characters, less than one long python grader), but they also travel in the request:
 * the execution's input and every state's data are at most 256 KiB in Step Functions, and the model graders appear twice
 * there (`$.request.graders` and `$.plan.judge.graders`). 64 KiB leaves the rest of the run room. evaluate.py checks the
 * same bound (GRADERS_FILE_MAX_BYTES).
 */
export const GRADERS_FILE_MAX_BYTES = 64 * 1024;

/** The run's graders as the evaluation job reads them (graders.json): compact JSON; undefined when the run has none. */
export function gradersFileBody(request: Pick<RunRequest, 'graders'>): string | undefined {
  return request.graders === undefined ? undefined : compactGraders(parseGraders(request.graders, 'graders'));
}

/** What the evaluation job generates and scores when the request does not say (the trainer's defaults, evaluate.py). */
export const DEFAULT_EVALUATION = { maxGenerations: 200, maxNewTokens: 256, maxBenchmarkItems: 1000 } as const;

/** The longest run a request may ask for: 10 days (spot waits up to twice the runtime, within SageMaker's 28 days). */
export const MAX_RUNTIME_HOURS = 240;

/**
 * The gate's defaults. Preference accuracy 0.5: a DPO model must rank at least as many held-out pairs right as wrong.
 * A run that learnt nothing scores 0 (its rewards are all 0 and a tie is a miss), one trained on swapped
 * chosen/rejected columns scores well below 0.5; what accuracy a good run reaches depends on the data (set it higher
 * once a run on your data shows it).
 */
export const DEFAULT_THRESHOLDS = { maxEvalLossRatio: 1.0, maxForgettingIncrease: 0.1, minPreferenceAccuracy: 0.5, minRewardGain: 0 } as const;

/** A run's gate thresholds, as the request writes them (see {@link DEFAULT_THRESHOLDS} for what is unset). */
const ThresholdsSchema = z
  .strictObject({
    maxEvalLossRatio: z
      .number()
      .gt(0, 'must be above 0 (1.0: the tuned model must not be worse than the base)')
      .optional()
      .describe(
        `Tuned/base loss on the eval set at most this. Default: ${DEFAULT_THRESHOLDS.maxEvalLossRatio} for sft, lora and qlora; not checked for dpo, grpo and rloo unless set (there it is the loss of the chosen or reference responses, which DPO and online RL do not minimise).`,
      ),
    maxForgettingIncrease: z.number().min(0, 'must be 0 or more').default(DEFAULT_THRESHOLDS.maxForgettingIncrease).describe(`Probe loss increase at most this (runs with a probeDataset). Default: ${DEFAULT_THRESHOLDS.maxForgettingIncrease}.`),
    minPreferenceAccuracy: z
      .number()
      .min(0, 'must be from 0 to 1')
      .max(1, 'must be from 0 to 1')
      .optional()
      .describe(
        `dpo and reward only: the share of held-out preference pairs whose chosen response the tuned model rewards above the rejected one (dpo: DPO's implicit reward against the base model; reward: the reward model's score) at least this. Default: ${DEFAULT_THRESHOLDS.minPreferenceAccuracy} (no worse than chance; a tie counts as a miss).`,
      ),
    minRewardGain: z
      .number()
      .optional()
      .describe(
        `grpo and rloo only: the tuned model's mean reward on the eval prompts minus the base model's at least this, the reward being the run's own (its graders and/or reward model, weighted by recipe.rewardWeights, the format guard applied as in training; no length penalty: the answers are capped by evaluation.maxNewTokens). Default: ${DEFAULT_THRESHOLDS.minRewardGain} (the tuned model must not score below the base on the reward it was trained for).`,
      ),
    minGraderMean: z
      .record(z.string().min(1, 'must be the name of one of the run\'s graders'), z.number())
      .optional()
      .describe(
        "The tuned model's mean score of each named grader (one of the run's graders, by its name) at least this: {\"exact\": 0.8}. A row the grader could not grade counts as 0; a grader that graded no row fails the gate. Default: none.",
      ),
    minJudgeWinRate: z
      .number()
      .min(0, 'must be from 0 to 1')
      .max(1, 'must be from 0 to 1')
      .optional()
      .describe("Runs with a judge: the LLM judge's win rate of the tuned model over the base, wins / (wins + ties + losses), at least this. Default: none."),
    maxBenchmarkDrop: z
      .number()
      .min(0, 'must be from 0 to 1 (a fraction: 0.02 is 2 accuracy points)')
      .max(1, 'must be from 0 to 1 (a fraction: 0.02 is 2 accuracy points)')
      .optional()
      .describe(
        'Runs with benchmarkDatasets: base accuracy minus tuned accuracy of every benchmark at most this, as a fraction (0.02: 2 accuracy points lost; the guides call more than 2-3 points a warning). Default: none.',
      ),
  });

/**
 * The thresholds of a method, defaults applied: the eval loss ratio gates sft, lora and qlora; the preference accuracy
 * gates dpo and reward (a reward model's pairwise accuracy: the share of held-out pairs it scores chosen above rejected);
 * the reward gain gates grpo and rloo (what they optimise: the run's reward of the tuned answers against the base's).
 */
function methodThresholds(method: Recipe['method'], thresholds: z.output<typeof ThresholdsSchema>): z.output<typeof ThresholdsSchema> {
  if (method === 'dpo' || method === 'reward') return { ...thresholds, minPreferenceAccuracy: thresholds.minPreferenceAccuracy ?? DEFAULT_THRESHOLDS.minPreferenceAccuracy };
  // online RL maximises the reward of sampled answers, not the likelihood of the eval set's reference answers: the loss
  // ratio is checked only when the request sets it
  if (isOnlineRl(method)) return { ...thresholds, minRewardGain: thresholds.minRewardGain ?? DEFAULT_THRESHOLDS.minRewardGain };
  return { ...thresholds, maxEvalLossRatio: thresholds.maxEvalLossRatio ?? DEFAULT_THRESHOLDS.maxEvalLossRatio };
}

/** A registered model package version: arn:aws:sagemaker:<region>:<account>:model-package/<group>/<version>. */
export const MODEL_PACKAGE_ARN = /^arn:aws[a-z-]*:sagemaker:[a-z0-9-]+:\d{12}:model-package\/[A-Za-z0-9](-*[A-Za-z0-9]){0,62}\/\d+$/;

/** The name of a GRPO run's reward model among its reward sources (recipe.rewardWeights), as the trainer names it (an RLOO run's only source). */
export const REWARD_MODEL_SOURCE = 'reward_model';

export const RunRequestSchema = z.strictObject({
  dataset: DatasetRefSchema.describe('The dataset version: datasets/<name>/<sha256>/{train.jsonl,eval.jsonl}.'),
  probeDataset: DatasetRefSchema.optional().describe(
    'A general-capability dataset version whose train.jsonl measures forgetting (base vs tuned loss). Default: none (forgettingIncrease is null).',
  ),
  benchmarkDatasets: z
    .array(DatasetRefSchema)
    .max(MAX_BENCHMARK_DATASETS, `must list at most ${MAX_BENCHMARK_DATASETS} benchmarks (each is an input channel of the evaluation job)`)
    .refine((refs) => new Set(refs.map((r) => r.name)).size === refs.length, { message: 'must name each benchmark dataset once (the evaluation reports each by its name)' })
    .optional()
    .describe(
      'Multiple-choice benchmark dataset versions (train.jsonl: {"question" or "context", "choices", "answer"} per line) that the evaluation scores base and tuned by log-likelihood, as lm-evaluation-harness does; eval.json reports each accuracy and its drop, by the dataset name. Default: none.',
    ),
  evaluation: z
    .strictObject({
      maxGenerations: z.number().int('must be a whole number').min(0, 'must be 0 or more').max(10000, 'must be at most 10000').optional().describe(`Eval prompts each model answers (the first ones of eval.jsonl); 0: none. Default: ${DEFAULT_EVALUATION.maxGenerations}.`),
      maxNewTokens: z.number().int('must be a whole number').min(1, 'must be at least 1').max(32768, 'must be at most 32768').optional().describe(`Tokens an answer may have at most. Default: ${DEFAULT_EVALUATION.maxNewTokens}.`),
      maxBenchmarkItems: z.number().int('must be a whole number').min(1, 'must be at least 1').optional().describe(`Items scored of each benchmark (its first ones). Default: ${DEFAULT_EVALUATION.maxBenchmarkItems}.`),
    })
    .optional()
    .describe('How much the evaluation job generates and scores (its cost). Default: the defaults of each field.'),
  baseModel: z
    .string()
    .min(1, 'must name the base model')
    .refine((v) => v.startsWith('s3://') || /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/.test(v), {
      message: 'must be an s3:// folder of a staged Hugging Face model (s3://<bucket>/base-models/<name>/) or a Hub id such as "meta-llama/Llama-3.1-8B-Instruct"',
    })
    .describe('An S3 folder of a staged Hugging Face model under base-models/, or a Hub id (only when the plane allows Hub models).'),
  recipe: RecipeSchema.describe('Method and hyperparameters.'),
  instanceType: z.string().default('ml.g5.2xlarge').describe('SageMaker GPU instance type. Default: ml.g5.2xlarge.'),
  instanceCount: z.number().int('must be a whole number').min(1, 'must be at least 1').max(16, 'must be at most 16').default(1).describe('Instances. Default: 1.'),
  spot: z.boolean().default(true).describe('Managed spot training with checkpoints. Default: true.'),
  maxRuntimeHours: z
    .number()
    // SageMaker counts whole seconds: a limit under a minute rounds to nothing useful
    .min(1 / 60, 'must be at least 1/60 hour (one minute)')
    .max(MAX_RUNTIME_HOURS, `must be at most ${MAX_RUNTIME_HOURS} hours`)
    .default(24)
    .describe('Training time limit in hours. Default: 24.'),
  thresholds: ThresholdsSchema
    .default({ maxForgettingIncrease: DEFAULT_THRESHOLDS.maxForgettingIncrease })
    .describe(
      'The gate. sft, lora, qlora: tuned/base eval loss at most maxEvalLossRatio; dpo and reward: preference accuracy at least minPreferenceAccuracy; grpo and rloo: the gain of the run\'s reward, tuned minus base, at least minRewardGain; all: probe loss increase at most maxForgettingIncrease, and, when set, graders\' means (minGraderMean), the judge\'s win rate (minJudgeWinRate) and each benchmark\'s accuracy drop (maxBenchmarkDrop). A threshold whose figure the evaluation did not write fails the gate.',
    ),
  autoApprove: z.boolean().default(false).describe('Register the model as Approved (true) or PendingManualApproval. Default: false.'),
  deploy: z
    .strictObject({
      endpointName: z.string().regex(ENDPOINT_NAME, 'must be a SageMaker endpoint name (letters, digits, hyphens; up to 63)'),
      adapterName: z
        .string()
        .regex(ENDPOINT_NAME, 'must be letters, digits and hyphens, up to 63')
        .optional()
        .describe('The adapter component to create or update; required by endpoints that serve adapters as inference components.'),
    })
    .nullable()
    .default(null)
    .describe('Deploy the approved model to this endpoint (as adapterName on an adapter endpoint). Default: null (no deployment).'),
  runName: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$/, 'must be 1-64 letters, digits, spaces, ".", "_" or "-"').optional().describe('A label for people.'),
  baseModelParameters: z.number().gt(0, 'must be a positive number of billions (e.g. 8)').optional().describe('Parameters of the base model in billions, when its name does not tell.'),
  graders: z
    .unknown()
    .optional()
    .describe(
      "Graders that score the models' answers to the eval rows: OpenAI grader JSON (string_check, text_similarity, score_model, label_model, python, multi) or Tuneyard's json_schema, regex, label_check (graders.schema.json). Default: none.",
    ),
  judge: JudgeRequestSchema.optional(),
  rewardModel: z
    .string()
    .refine((v) => v.startsWith('s3://') || MODEL_PACKAGE_ARN.test(v), {
      message:
        'must be a registered reward model: its model package version ARN (arn:aws:sagemaker:<region>:<account>:model-package/<group>/<version>, `tuneyard models`) or the s3:// model data folder of a method "reward" run (s3://<bucket>/artifacts/<run>/<job>/output/model/)',
    })
    .optional()
    .describe(
      'recipe.method "grpo" and "rloo" only (required by rloo): the registered reward model that rewards each completion (a method "reward" run\'s model; lineage kind=reward): its model package version ARN or its s3:// model data folder under artifacts/. The training job reads it as its reward_model channel; its tokenizer must be the base model\'s; the registered model\'s lineage records it (rewardModel). Default: none (grpo: the graders reward).',
    ),
  embeddingModel: z
    .string()
    .refine((v) => v.startsWith('s3://'), { message: 'must be the s3:// folder of a Hugging Face encoder model staged under base-models/ (s3://<bucket>/base-models/<name>/)' })
    .optional()
    .describe(
      "The encoder that cosine graders embed answers with: an S3 folder of a staged Hugging Face model under base-models/, the evaluation job's embedding_model channel (and a grpo run's training job's, whose cosine graders reward it). Required by cosine graders. Default: none.",
    ),
})
  .superRefine((request, ctx) => {
    if (request.graders !== undefined) {
      // lib/graders.ts names each problem's path and fix (and echoes the value itself)
      const problems = graderProblems(request.graders);
      for (const problem of problems) ctx.addIssue({ code: 'custom', path: ['graders', ...problem.at], message: problem.message, params: { echoed: true } });
      if (problems.length === 0) embeddingModelProblems(request, cosineGraders(request.graders as GraderConfig[]), ctx);
    } else if (request.embeddingModel !== undefined) embeddingModelProblems(request, [], ctx);
    if (isOnlineRl(request.recipe.method) && request.evaluation?.maxGenerations === 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['evaluation', 'maxGenerations'],
        message: `is 0, but the gate of a ${request.recipe.method} run scores the answers to the eval prompts with the run's reward (thresholds.minRewardGain); set it above 0, or leave it out (default ${DEFAULT_EVALUATION.maxGenerations})`,
      });
    }
    if (!isOnlineRl(request.recipe.method) && request.thresholds.minRewardGain !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['thresholds', 'minRewardGain'],
        message: `applies to recipe.method ${ONLINE_RL_METHODS.map((m) => `"${m}"`).join(' or ')} only (a ${request.recipe.method} run is trained on no reward that the evaluation could score); remove it${request.recipe.method === 'dpo' || request.recipe.method === 'reward' ? ', or use minPreferenceAccuracy' : ', or use maxEvalLossRatio'}`,
      });
    }
    if (request.recipe.method !== 'dpo' && request.recipe.method !== 'reward' && request.thresholds.minPreferenceAccuracy !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['thresholds', 'minPreferenceAccuracy'],
        message: `applies to recipe.method "dpo" or "reward" only (the evaluation of a ${request.recipe.method} run has no preference pairs); remove it, or use maxEvalLossRatio`,
      });
    }
    if (request.recipe.method === 'reward') rewardProblems(request, ctx);
    if (request.recipe.method === 'grpo') grpoRequestProblems(request, ctx);
    else if (request.recipe.method === 'rloo') {
      if (request.rewardModel === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['rewardModel'],
          message:
            'missing; recipe.method "rloo" (RLHF) optimises the model against a registered reward model, its only reward: train one with a method "reward" run on preference pairs, ' +
            'then set rewardModel to its model package (`tuneyard models`; tuneyard train --reward-model VERSION) or its s3:// model data folder. To reward with graders instead, use recipe.method "grpo"',
        });
      }
    } else if (request.rewardModel !== undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['rewardModel'],
        message: `a reward model rewards recipe.method ${ONLINE_RL_METHODS.map((m) => `"${m}"`).join(' or ')} only (got "${request.recipe.method}"); remove rewardModel, or set recipe.method "rloo" (RLHF against it) or "grpo"`,
      });
    }
    thresholdProblems(request, ctx);
    if (request.deploy?.adapterName !== undefined && request.recipe.useDora) {
      ctx.addIssue({
        code: 'custom',
        path: ['recipe', 'useDora'],
        message:
          'vLLM cannot serve a DoRA adapter (it does not load lora_magnitude_vector), and deploy.adapterName deploys the adapter; remove useDora, or set recipe.merge true and deploy the merged model to a single-model endpoint (no adapterName)',
      });
    }
  })
  // The gate of the run's method (the thresholds it sets are the ones checked): what the request is parsed to, so the
  // run id and the rejection notice name the gate the run is judged by.
  .overwrite((request) => ({ ...request, thresholds: methodThresholds(request.recipe.method, request.thresholds) }));



/**
 * A gate threshold on a figure the run does not measure can only fail: refused when the request is read, with the fix.
 * minGraderMean names graders of the run (did-you-mean), minJudgeWinRate needs a judge, maxBenchmarkDrop benchmarks.
 */
/**
 * A reward model scores text and generates none: what measures or serves a generating model (a forgetting probe,
 * graders, a judge, benchmarks, a deployment, a threshold on their figures) is refused for a reward run.
 */
function rewardProblems(request: { probeDataset?: unknown; graders?: unknown; judge?: unknown; benchmarkDatasets?: unknown[]; deploy?: unknown }, ctx: z.RefinementCtx): void {
  const generating: Array<[string, boolean]> = [
    ['probeDataset', request.probeDataset !== undefined && request.probeDataset !== null],
    ['graders', request.graders !== undefined && request.graders !== null],
    ['judge', request.judge !== undefined && request.judge !== null],
    ['benchmarkDatasets', (request.benchmarkDatasets?.length ?? 0) > 0],
    ['deploy', request.deploy !== undefined && request.deploy !== null],
  ];
  for (const [field, set] of generating) {
    if (!set) continue;
    ctx.addIssue({
      code: 'custom',
      path: [field],
      message: `recipe.method "reward" trains a reward model, which scores text and generates none, so ${field} has nothing to measure or serve; remove it (the gate of a reward run is its held-out pairwise accuracy, thresholds.minPreferenceAccuracy)`,
    });
  }
}

/**
 * A GRPO run's reward sources: its graders (the same graders.json the evaluation reads) and/or its rewardModel; at
 * least one, no LLM judge among the graders (score_model and label_model do not run in the training job), and
 * recipe.rewardWeights naming only those sources. The recipe holds the batch rule (a multiple of grpoNumGenerations).
 */
function grpoRequestProblems(request: { graders?: unknown; rewardModel?: string; recipe: Recipe }, ctx: z.RefinementCtx): void {
  if (request.graders === undefined && request.rewardModel === undefined) {
    ctx.addIssue({
      code: 'custom',
      path: ['graders'],
      message:
        'recipe.method "grpo" needs a reward source: graders (the same grader definitions the evaluation scores with: what gates the model trains it), rewardModel (a registered reward model, a method "reward" run\'s), or both',
    });
    return;
  }
  // invalid graders are reported on their own
  const graders = request.graders === undefined ? [] : graderProblems(request.graders).length ? null : parseGraders(request.graders, 'graders');
  if (graders === null) return;
  const judges = judgeGraders(graders);
  if (judges.length > 0) {
    ctx.addIssue({
      code: 'custom',
      path: ['graders'],
      message:
        `grader "${judges[0].name}" is an LLM judge (${judges[0].type}), which cannot reward a grpo run: the training job reads the run's graders and runs no judge model. ` +
        'Remove the score_model and label_model graders (the run\'s judge can still compare base and tuned answers), or reward with a registered reward model (rewardModel)',
    });
  }
  const sources = [...graders.map((g) => g.name), ...(request.rewardModel !== undefined ? [REWARD_MODEL_SOURCE] : [])];
  for (const name of Object.keys(request.recipe.rewardWeights ?? {})) {
    if (sources.includes(name)) continue;
    const near = closest(name, sources);
    ctx.addIssue({
      code: 'custom',
      path: ['recipe', 'rewardWeights', name],
      message:
        name === REWARD_MODEL_SOURCE
          ? 'weighs the reward model, but the run names no rewardModel; set rewardModel, or remove the weight'
          : `names "${name}", which is not a reward source of this run (its sources: ${sources.join(', ')}: the graders' names, and reward_model with a rewardModel)${near ? `; did you mean "${near}"?` : ''}`,
    });
  }
}

/** Cosine graders need the run's embeddingModel (the evaluation job's embedding_model channel); nothing else reads it. */
function embeddingModelProblems(request: { embeddingModel?: string }, cosine: Array<{ path: string; name: string }>, ctx: z.RefinementCtx): void {
  if (cosine.length > 0 && request.embeddingModel === undefined) {
    ctx.addIssue({
      code: 'custom',
      path: ['embeddingModel'],
      message:
        `missing; graders${cosine[0].path} ("${cosine[0].name}") uses the cosine metric, which embeds answers with an encoder model the evaluation job reads from its embedding_model channel: ` +
        'set embeddingModel to the s3:// folder of a Hugging Face encoder staged under base-models/ (as a base model is), or use another evaluation_metric',
    });
  }
  if (cosine.length === 0 && request.embeddingModel !== undefined) {
    ctx.addIssue({ code: 'custom', path: ['embeddingModel'], message: 'is read by cosine graders only, and the run has none; remove it, or add a text_similarity grader with evaluation_metric "cosine"' });
  }
}

function thresholdProblems(request: { thresholds: z.output<typeof ThresholdsSchema>; graders?: unknown; benchmarkDatasets?: unknown[]; judge?: unknown }, ctx: z.RefinementCtx): void {
  const { minGraderMean, minJudgeWinRate, maxBenchmarkDrop } = request.thresholds;
  if (minGraderMean !== undefined) {
    const graders = request.graders === undefined ? undefined : graderProblems(request.graders).length ? null : parseGraders(request.graders, 'graders');
    const names = (graders ?? []).map((g) => g.name);
    for (const name of Object.keys(minGraderMean)) {
      // invalid graders are reported on their own: no second message about their names
      if (graders === null || names.includes(name)) continue;
      const near = closest(name, names);
      ctx.addIssue({
        code: 'custom',
        path: ['thresholds', 'minGraderMean', name],
        message:
          graders === undefined
            ? `names grader "${name}", but the run defines no graders; add it to graders, or remove the threshold`
            : `names grader "${name}", which the run does not define (its graders: ${names.join(', ')})${near ? `; did you mean "${near}"?` : ''}`,
      });
    }
  }
  if (minJudgeWinRate !== undefined && (request.judge === undefined || request.judge === null)) {
    ctx.addIssue({ code: 'custom', path: ['thresholds', 'minJudgeWinRate'], message: 'needs a judge, and the run configures none; add judge, or remove the threshold' });
  }
  if (maxBenchmarkDrop !== undefined && !request.benchmarkDatasets?.length) {
    ctx.addIssue({
      code: 'custom',
      path: ['thresholds', 'maxBenchmarkDrop'],
      message: 'needs benchmarks, and the run names no benchmarkDatasets; add the multiple-choice datasets staged with `tuneyard stage-benchmark`, or remove the threshold',
    });
  }
}

/** The request as the caller writes it (optional fields may be left out). */
export type RunRequestInput = z.input<typeof RunRequestSchema>;
/** The request with every default applied. */
export type RunRequest = z.output<typeof RunRequestSchema>;

/** Thrown when a RunRequest is invalid or cannot run; the message names each field and the fix. */
export class RunRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RunRequestError';
  }
}

/** The most characters of a request value that an error message repeats. */
export const ECHO_MAX_LENGTH = 120;
/** The most problems, and unknown fields, that an error message lists. */
const LISTED_MAX = 20;

/**
 * A request value for an error message: its JSON, clipped to {@link ECHO_MAX_LENGTH} characters
 * with its length (`"aaaa..." (204800 characters)`), so that a message stays small whatever was sent.
 */
export function echoValue(value: unknown): string {
  if (typeof value === 'string') {
    return value.length <= ECHO_MAX_LENGTH ? JSON.stringify(value) : `${JSON.stringify(`${value.slice(0, ECHO_MAX_LENGTH)}...`)} (${value.length} characters)`;
  }
  const json = JSON.stringify(value) ?? String(value);
  return json.length <= ECHO_MAX_LENGTH ? json : `${json.slice(0, ECHO_MAX_LENGTH)}... (${json.length} characters of JSON)`;
}

/** Validates a RunRequest and applies the defaults; errors name the path, the value (clipped) and the fix. */
export function parseRunRequest(raw: unknown): RunRequest {
  const result = RunRequestSchema.safeParse(raw);
  if (result.success) return result.data;
  const issues = result.error.issues;
  const lines = issues.slice(0, LISTED_MAX).map((issue) => {
    const where = issue.path.map((k) => clipText(String(k))).join('.') || '(top level)';
    if (issue.code === 'unrecognized_keys') {
      if (where === 'recipe') return `recipe: ${issue.message}`; // the recipe names the field meant (did you mean)
      const keys = issue.keys.slice(0, LISTED_MAX).map(clipText).join(', ') + (issue.keys.length > LISTED_MAX ? ` and ${issue.keys.length - LISTED_MAX} more` : '');
      return `${where === '(top level)' ? '' : `${where}.`}${keys}: unknown field; remove it`;
    }
    if (issue.code === 'custom' && issue.params?.echoed) return `${where}: ${issue.message}`;
    const value = valueAt(raw, issue.path);
    return `${where}: ${issue.message}${value === undefined ? '' : ` (got ${echoValue(value)})`}`;
  });
  if (issues.length > LISTED_MAX) lines.push(`... and ${issues.length - LISTED_MAX} more problems`);
  throw new RunRequestError(`invalid RunRequest:\n${lines.map((l) => `  - ${l}`).join('\n')}`);
}

function clipText(text: string): string {
  return text.length <= ECHO_MAX_LENGTH ? text : `${text.slice(0, ECHO_MAX_LENGTH)}... (${text.length} characters)`;
}

function valueAt(raw: unknown, at: PropertyKey[]): unknown {
  return at.reduce<unknown>((v, k) => (v && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[k] : undefined), raw);
}

/** The longest run id (it also names the Step Functions execution and, with a prefix, the training jobs). */
export const RUN_ID_MAX_LENGTH = 48;

/**
 * The deterministic id of a run: `<dataset name>-<method>-<12 hex>`, the hex being the start of
 * the sha256 of the request's canonical JSON (keys sorted, defaults applied). It is the Step
 * Functions execution name, so starting the same request twice starts one run.
 */
export function runIdFor(request: RunRequest): string {
  const hash = createHash('sha256').update(canonicalJson(request)).digest('hex').slice(0, 12);
  const suffix = `-${request.recipe.method}-${hash}`;
  const name = request.dataset.name
    .replace(/[^a-z0-9-]/g, '-')
    .slice(0, RUN_ID_MAX_LENGTH - suffix.length)
    .replace(/-+$/, '');
  return `${name}${suffix}`;
}

/** JSON with object keys sorted at every level: the same request always gives the same text. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** What the plane tells the planner (the PlanRun Lambda's environment). */
export interface PlanSettings {
  /** The data bucket. */
  readonly bucketName: string;
  /** KMS key for the training volume (used only on instance types without local NVMe storage). */
  readonly volumeKmsKeyArn: string;
  /** KMS key for the job outputs in S3. */
  readonly outputKmsKeyArn: string;
  /** Whether a Hub id may be the base model (the job then runs without network isolation). */
  readonly allowHubModels: boolean;
  /**
   * Prefix of the training job names (the state machine may only touch jobs with it).
   * @default 'tuneyard-'
   */
  readonly jobNamePrefix?: string;
  /**
   * The lowest GPU compute capability the training image's CUDA build runs on (the bundled
   * trainer: 7.5); a run on an older GPU is refused before any job starts.
   * @default - not checked (an image of the user's own)
   */
  readonly minComputeCapability?: number;
  /**
   * The Bedrock model ids a run's judge may name (the JudgeAnswers role may invoke those only); empty: a request
   * with a judge is refused. The pipeline's PlanRun always passes its list.
   * @default - not checked (the CLI's preflight, which does not know the plane's list)
   */
  readonly judgeModelIds?: readonly string[];
}

/** The default prefix of training job names. */
export const DEFAULT_JOB_NAME_PREFIX = 'tuneyard-';
/** SageMaker job names are at most 63 characters: prefix + run id (48) + "-train" (6). */
export const MAX_JOB_NAME_PREFIX_LENGTH = 63 - RUN_ID_MAX_LENGTH - '-train'.length;

/** Whether `prefix` can start every job name: 1-{@link MAX_JOB_NAME_PREFIX_LENGTH} lower-case letters, digits or hyphens, not starting with a hyphen. */
export function isJobNamePrefix(prefix: string): boolean {
  return prefix.length <= MAX_JOB_NAME_PREFIX_LENGTH && /^[a-z0-9][a-z0-9-]*$/.test(prefix);
}

/** The names of a run's training and evaluation jobs (the state machine may only touch jobs with the prefix). */
export function jobNamesFor(runId: string, prefix: string = DEFAULT_JOB_NAME_PREFIX): { training: string; evaluation: string } {
  return { training: `${prefix}${runId}-train`, evaluation: `${prefix}${runId}-eval` };
}

/**
 * How long a deployment is awaited, by the pipeline's Deploy stage and by `tuneyard deploy --wait`:
 * a status poll every 30 seconds, 180 times (90 minutes). The deployment itself goes on after
 * that, and rolls back on its alarms.
 */
export const DEPLOY_WAIT = { pollSeconds: 30, maxPolls: 180 } as const;

/** The error of the Fail state that ends a run the quality gate rejected (`tuneyard watch` exits 2 on it). */
export const GATE_REJECTED_ERROR = 'Tuneyard.GateRejected';

/** The local path of spot checkpoints inside the container (the trainer resumes from it). */
export const CHECKPOINT_LOCAL_PATH = '/opt/ml/checkpoints';

export interface S3Channel {
  ChannelName: string;
  DataSource: { S3DataSource: { S3DataType: 'S3Prefix'; S3Uri: string; S3DataDistributionType: 'FullyReplicated' } };
  ContentType?: string;
  InputMode?: 'File';
}

export interface RunPlan {
  readonly runId: string;
  readonly trainingJobName: string;
  readonly evaluationJobName: string;
  readonly hyperParameters: Record<string, string>;
  readonly evaluationHyperParameters: Record<string, string>;
  readonly inputDataConfig: S3Channel[];
  readonly evaluationInputDataConfig: S3Channel[];
  readonly outputDataConfig: { S3OutputPath: string; KmsKeyId: string; CompressionType: 'NONE' };
  readonly evaluationOutputDataConfig: { S3OutputPath: string; KmsKeyId: string; CompressionType: 'NONE' };
  readonly resourceConfig: { InstanceType: string; InstanceCount: number; VolumeSizeInGB: number; VolumeKmsKeyId?: string };
  readonly evaluationResourceConfig: { InstanceType: string; InstanceCount: number; VolumeSizeInGB: number; VolumeKmsKeyId?: string };
  readonly stoppingCondition: { MaxRuntimeInSeconds: number; MaxWaitTimeInSeconds?: number };
  readonly evaluationStoppingCondition: { MaxRuntimeInSeconds: number };
  readonly enableManagedSpotTraining: boolean;
  readonly checkpointConfig: { S3Uri: string; LocalPath: string };
  /** Whether the jobs may run with network isolation (false only for a Hub base model). */
  readonly enableNetworkIsolation: boolean;
  /** Where the training job writes (`artifacts/<runId>/`). */
  readonly outputS3Uri: string;
  /** The trained model folder (uncompressed output): `artifacts/<runId>/<training job>/output/model/`. */
  readonly modelArtifactS3Uri: string;
  /** Where the evaluation job writes (`eval-reports/<runId>/`). */
  readonly evalReportS3Uri: string;
  /** The eval report object: `eval-reports/<runId>/<evaluation job>/output/model/eval.json`. */
  readonly evalReport: { readonly bucket: string; readonly key: string; readonly s3Uri: string };
  readonly datasetS3Uri: string;
  readonly thresholds: RunRequest['thresholds'];
  /** Whether the evaluation measures forgetting on a probe dataset: the gate then fails closed without the figure. */
  readonly forgettingProbe: boolean;
  /** The benchmarks the evaluation scores (benchmarkDatasets' names): the gate fails closed on one missing from eval.json. */
  readonly benchmarks: string[];
  readonly autoApprove: boolean;
  /** The registry's ModelApprovalStatus: `Approved` when the request auto-approves, else `PendingManualApproval`. */
  readonly modelApprovalStatus: 'Approved' | 'PendingManualApproval';
  readonly deploy: RunRequest['deploy'];
  /** The LLM judge that JudgeAnswers runs after the evaluation; null when the run has none. */
  readonly judge: JudgePlan | null;
  /**
   * Where PlanRun writes the run's graders (`eval-reports/<runId>/graders.json`, {@link gradersFileBody}), the
   * evaluation job's `graders` channel; null when the run has none.
   */
  readonly gradersFile: { readonly bucket: string; readonly key: string; readonly s3Uri: string } | null;
  /**
   * Lineage for the model registry's CustomerMetadataProperties: every key and value within the
   * API's limits ({@link CUSTOMER_METADATA_VALUE}: at most 256 of letters, digits, spaces and
   * `_ . : / = + - @`). The recipe is written as {@link lineageRecipe} does, not as JSON.
   */
  readonly lineage: Record<string, string>;
  readonly preflight: { readonly requiredGiB: number; readonly availableGiB: number; readonly fits: boolean; readonly breakdown: MemoryBreakdown; readonly advice: string };
}

/**
 * Plans a run: validates it against the plane (base model location, instance type, memory) and
 * renders the CreateTrainingJob fragments of the training and the evaluation job.
 * Throws a {@link RunRequestError} naming the fix when the run cannot work.
 */
/**
 * What the model registry says about a run's registered reward model (a model package ARN), read by PlanRun
 * (DescribeModelPackage) before it plans: where its model data is and what it is.
 */
export interface RegisteredRewardModel {
  /** The model package's model data (ModelDataSource S3Uri): the reward run's output/model/ folder. */
  readonly modelDataS3Uri: string;
  /** Its lineage `kind` (CustomerMetadataProperties): `reward` for a method "reward" run's model. */
  readonly kind?: string;
  /** Its lineage `baseModel`, for messages and the memory estimate of a known model. */
  readonly baseModel?: string;
}

/**
 * A DescribeModelPackage answer as planRun reads it (its model data, lineage kind and base model); undefined when it
 * has no model data. One mapping for PlanRun and the CLI's preflight.
 */
export function registeredRewardModel(described: {
  readonly InferenceSpecification?: { readonly Containers?: ReadonlyArray<{ readonly ModelDataUrl?: string; readonly ModelDataSource?: { readonly S3DataSource?: { readonly S3Uri?: string } } }> };
  readonly CustomerMetadataProperties?: Record<string, string>;
}): RegisteredRewardModel | undefined {
  const container = described.InferenceSpecification?.Containers?.[0];
  const modelData = container?.ModelDataSource?.S3DataSource?.S3Uri ?? container?.ModelDataUrl;
  if (!modelData) return undefined;
  const metadata = described.CustomerMetadataProperties ?? {};
  return { modelDataS3Uri: modelData, ...(metadata.kind ? { kind: metadata.kind } : {}), ...(metadata.baseModel ? { baseModel: metadata.baseModel } : {}) };
}

/** What PlanRun read before planning (the registry); a plan made without it (the CLI's preflight) cannot resolve a model package ARN. */
export interface PlanLookups {
  /** The model package that `request.rewardModel` names, when it names one. */
  readonly rewardModel?: RegisteredRewardModel;
}

export function planRun(request: RunRequest, settings: PlanSettings, lookups: PlanLookups = {}): RunPlan {
  const prefix = settings.jobNamePrefix ?? DEFAULT_JOB_NAME_PREFIX;
  if (!isJobNamePrefix(prefix)) {
    throw new RunRequestError(`jobNamePrefix "${prefix}" must be 1-${MAX_JOB_NAME_PREFIX_LENGTH} lower-case letters, digits or hyphens (job names are at most 63 characters)`);
  }
  const runId = runIdFor(request);
  const bucket = `s3://${settings.bucketName}/`;
  const hub = !request.baseModel.startsWith('s3://');
  if (hub && !settings.allowHubModels) {
    throw new RunRequestError(
      `baseModel: ${echoValue(request.baseModel)} is a Hugging Face Hub id, but training jobs run with network isolation and cannot download it. ` +
        `Stage the model folder under ${bucket}${DATA_PREFIXES.baseModels}<name>/ and pass that s3:// URI, or deploy the plane with training.allowHubModels true.`,
    );
  }
  const baseModelUri = hub ? undefined : request.baseModel.endsWith('/') ? request.baseModel : `${request.baseModel}/`;
  if (baseModelUri && !baseModelUri.startsWith(`${bucket}${DATA_PREFIXES.baseModels}`)) {
    throw new RunRequestError(
      `baseModel: ${echoValue(request.baseModel)} is outside the plane's base-models/ prefix; the training role may only read ${bucket}${DATA_PREFIXES.baseModels}. ` +
        'Copy the model folder there and pass its s3:// URI.',
    );
  }
  // The base model is lineage of the registered model: refuse now what CreateModelPackage would refuse after the GPU hours.
  const baseModelProblem = stringLimitProblem(CUSTOMER_METADATA_VALUE, request.baseModel, REGISTRY_METADATA);
  if (baseModelProblem) throw new RunRequestError(baseModelError(request.baseModel, baseModelProblem));
  let instance;
  try {
    instance = gpuInstance(request.instanceType);
  } catch (e) {
    throw new RunRequestError(`instanceType: ${clipEchoes((e as Error).message, request.instanceType)}`);
  }
  if (settings.minComputeCapability !== undefined && instance.computeCapability < settings.minComputeCapability) {
    throw new RunRequestError(
      `instanceType: ${request.instanceType} has ${instance.gpuModel} GPUs (compute capability ${instance.computeCapability.toFixed(1)}), which the training image's CUDA build cannot run ` +
        `(it needs ${settings.minComputeCapability.toFixed(1)} or later; every job would fail with "no kernel image is available"). ` +
        'Use a newer GPU (ml.g5, ml.g6, ml.g6e, ml.p4d, ml.p5), or a training image built for this GPU (training.imageUri).',
    );
  }

  let parametersBillions: number;
  try {
    parametersBillions = resolveParameters(request.baseModel, request.baseModelParameters);
  } catch (e) {
    throw new RunRequestError(clipEchoes((e as Error).message, request.baseModel));
  }
  const recipe = resolveRecipe(request.recipe);
  if (recipe.distribution === 'none' && request.instanceCount > 1) {
    throw new RunRequestError(
      `instanceCount is ${request.instanceCount} but recipe.distribution is "none" (one process): set distribution to "ddp" or "fsdp", or instanceCount to 1.`,
    );
  }
  const rewardModel = rewardModelPlan(request, lookups, bucket);
  const estimate = estimateTrainingMemory({
    method: recipe.method,
    maxCompletionLength: isOnlineRl(recipe.method) ? completionsOf({ ...request.recipe, method: recipe.method }).maxCompletionLength : undefined,
    // a reward model of the same tokenizer family: its base model's size when the registry says it, else the policy's
    rewardModelParametersBillions: rewardModel ? rewardModelParameters(rewardModel.baseModel, parametersBillions) : undefined,
    parametersBillions,
    baseModel: request.baseModel,
    loraDropout: recipe.loraDropout,
    optim: recipe.optim,
    useLigerKernel: recipe.useLigerKernel,
    maxLength: recipe.maxLength,
    batchSize: recipe.batchSize,
    gradientAccumulation: recipe.gradientAccumulation,
    gradientCheckpointing: recipe.gradientCheckpointing,
    loraR: recipe.loraR,
    targetModules: recipe.targetModules,
    useLora: recipe.useLora,
    instanceType: request.instanceType,
    instanceCount: request.instanceCount,
    distribution: recipe.distribution,
  });
  if (!estimate.fits) throw new RunRequestError(`the run does not fit in GPU memory: ${estimate.advice}`);

  const datasetS3Uri = `${bucket}${datasetVersionPrefix(request.dataset.name, request.dataset.sha256)}`;
  const channel = (name: string, uri: string, contentType?: string): S3Channel => ({
    ChannelName: name,
    DataSource: { S3DataSource: { S3DataType: 'S3Prefix', S3Uri: uri, S3DataDistributionType: 'FullyReplicated' } },
    ...(contentType ? { ContentType: contentType } : {}),
    InputMode: 'File',
  });
  const modelChannel = baseModelUri ? [channel('model', baseModelUri)] : [];
  const probe = request.probeDataset
    ? [channel('probe', `${bucket}${datasetVersionPrefix(request.probeDataset.name, request.probeDataset.sha256)}train.jsonl`, 'application/jsonlines')]
    : [];
  const evalChannel = channel('eval', `${datasetS3Uri}eval.jsonl`, 'application/jsonlines');
  // evaluate.py reads each benchmark-<name> channel's one file as the benchmark <name>
  const embeddingModelUri = request.embeddingModel === undefined ? undefined : request.embeddingModel.endsWith('/') ? request.embeddingModel : `${request.embeddingModel}/`;
  if (embeddingModelUri && !embeddingModelUri.startsWith(`${bucket}${DATA_PREFIXES.baseModels}`)) {
    throw new RunRequestError(
      `embeddingModel: ${echoValue(request.embeddingModel!)} is outside the plane's base-models/ prefix; the evaluation job may only read ${bucket}${DATA_PREFIXES.baseModels}. ` +
        'Copy the encoder model folder there and pass its s3:// URI.',
    );
  }
  // graders.py reads a cosine grader's encoder from the embedding_model channel (embedding_folder)
  const embeddingChannel = embeddingModelUri ? [channel('embedding_model', embeddingModelUri)] : [];
  const benchmarkChannels = (request.benchmarkDatasets ?? []).map((b) =>
    channel(`benchmark-${b.name}`, `${bucket}${datasetVersionPrefix(b.name, b.sha256)}train.jsonl`, 'application/jsonlines'),
  );
  const evaluationSettings = {
    ...(request.evaluation?.maxGenerations !== undefined ? { max_generations: String(request.evaluation.maxGenerations) } : {}),
    ...(request.evaluation?.maxNewTokens !== undefined ? { max_new_tokens: String(request.evaluation.maxNewTokens) } : {}),
    ...(request.evaluation?.maxBenchmarkItems !== undefined ? { max_benchmark_items: String(request.evaluation.maxBenchmarkItems) } : {}),
  };

  const { training: trainingJobName, evaluation: evaluationJobName } = jobNamesFor(runId, prefix);
  const outputS3Uri = `${bucket}${DATA_PREFIXES.artifacts}${runId}/`;
  const modelArtifactS3Uri = `${outputS3Uri}${trainingJobName}/output/model/`;
  const evalReportS3Uri = `${bucket}${DATA_PREFIXES.evalReports}${runId}/`;
  const evalReportKey = `${DATA_PREFIXES.evalReports}${runId}/${evaluationJobName}/output/model/eval.json`;

  const volumeKms = instance.localNvme ? {} : { VolumeKmsKeyId: settings.volumeKmsKeyArn };
  const volumeSize = volumeSizeGiB(parametersBillions, recipe.method === 'sft' || ((recipe.method === 'dpo' || recipe.method === 'reward') && !recipe.useLora));
  // On instances with local NVMe, SageMaker trains on the instance store and refuses (ValidationException)
  // a VolumeSizeInGB above its size: refuse the run here, before any job starts.
  if (instance.localStorageGB !== undefined && volumeSize > instance.localStorageGB) {
    throw new RunRequestError(
      `instanceType: the run needs ~${volumeSize} GB of disk (base weights, checkpoints and outputs of a ${parametersBillions}B model), ` +
        `but ${request.instanceType} trains on its local NVMe storage of ${instance.localStorageGB} GB and SageMaker refuses a larger VolumeSizeInGB. ` +
        'Use a larger size of the instance family (more local storage) or a smaller model.',
    );
  }
  const runtime = Math.round(request.maxRuntimeHours * 3600);
  const hyperParameters = renderHyperParameters(request.recipe, { baseModel: request.baseModel, rewardModel: request.rewardModel });
  // The evaluation job reads the graders from its `graders` channel: graders.json, which PlanRun writes.
  const graders = gradersFileBody(request);
  if (graders !== undefined && Buffer.byteLength(graders, 'utf8') > GRADERS_FILE_MAX_BYTES) {
    throw new RunRequestError(
      `graders: ${Buffer.byteLength(graders, 'utf8')} bytes of JSON, over the ${GRADERS_FILE_MAX_BYTES} a run's graders may take (they travel in the pipeline's state, at most 256 KiB). ` +
        'Use fewer or shorter graders (python sources and judge prompts count in full).',
    );
  }
  const gradersKey = `${DATA_PREFIXES.evalReports}${runId}/graders.json`;
  const gradersFile = graders === undefined ? null : { bucket: settings.bucketName, key: gradersKey, s3Uri: `${bucket}${gradersKey}` };

  const judge = request.judge === undefined ? null : planJudge(request, settings, graders === undefined ? [] : judgeGraders(parseGraders(request.graders, 'graders')), evalReportKey);

  const plan: RunPlan = {
    runId,
    trainingJobName,
    evaluationJobName,
    hyperParameters,
    // `evaluate` reads the method and loss masking from the training output (base_model and method are informative)
    // and the graders, when the run names any, from its `graders` channel. grpo and rloo: it scores the base and tuned
    // answers with the run's reward (eval.json `reward`, the gate's minRewardGain), so it gets what the training job's
    // reward reads: the graders, the reward_model channel and reward_weights.
    evaluationHyperParameters: {
      base_model: request.baseModel,
      method: recipe.method,
      ...(isOnlineRl(recipe.method) && hyperParameters[REWARD_WEIGHTS_KEY] !== undefined ? { [REWARD_WEIGHTS_KEY]: hyperParameters[REWARD_WEIGHTS_KEY] } : {}),
      ...evaluationSettings,
    },
    inputDataConfig: [
      channel('train', `${datasetS3Uri}train.jsonl`, 'application/jsonlines'),
      evalChannel,
      ...modelChannel,
      // grpo: its rewards, the graders.json the evaluation job reads too (rloo's graders only evaluate), and the encoder
      // its cosine graders embed with (graders.py embedding_folder: without it every cosine reward is a grade error);
      // grpo and rloo: the registered reward model's files
      ...(recipe.method === 'grpo' && gradersFile ? [channel('graders', gradersFile.s3Uri, 'application/json'), ...embeddingChannel] : []),
      ...(rewardModel ? [channel('reward_model', rewardModel.s3Uri)] : []),
    ],
    evaluationInputDataConfig: [
      ...modelChannel,
      channel('adapter', modelArtifactS3Uri),
      evalChannel,
      ...probe,
      ...benchmarkChannels,
      ...(gradersFile ? [channel('graders', gradersFile.s3Uri, 'application/json')] : []),
      ...embeddingChannel,
      // grpo and rloo: the reward model that rewarded the training job scores the base and tuned answers
      ...(rewardModel ? [channel('reward_model', rewardModel.s3Uri)] : []),
    ],
    outputDataConfig: { S3OutputPath: outputS3Uri, KmsKeyId: settings.outputKmsKeyArn, CompressionType: 'NONE' },
    evaluationOutputDataConfig: { S3OutputPath: evalReportS3Uri, KmsKeyId: settings.outputKmsKeyArn, CompressionType: 'NONE' },
    resourceConfig: { InstanceType: request.instanceType, InstanceCount: request.instanceCount, VolumeSizeInGB: volumeSize, ...volumeKms },
    evaluationResourceConfig: { InstanceType: request.instanceType, InstanceCount: 1, VolumeSizeInGB: volumeSize, ...volumeKms },
    stoppingCondition: request.spot ? { MaxRuntimeInSeconds: runtime, MaxWaitTimeInSeconds: 2 * runtime } : { MaxRuntimeInSeconds: runtime },
    evaluationStoppingCondition: { MaxRuntimeInSeconds: runtime },
    enableManagedSpotTraining: request.spot,
    checkpointConfig: { S3Uri: `${bucket}${DATA_PREFIXES.checkpoints}${runId}/`, LocalPath: CHECKPOINT_LOCAL_PATH },
    enableNetworkIsolation: !hub,
    outputS3Uri,
    modelArtifactS3Uri,
    evalReportS3Uri,
    evalReport: { bucket: settings.bucketName, key: evalReportKey, s3Uri: `${bucket}${evalReportKey}` },
    datasetS3Uri,
    thresholds: request.thresholds,
    forgettingProbe: request.probeDataset !== undefined,
    benchmarks: (request.benchmarkDatasets ?? []).map((b) => b.name),
    autoApprove: request.autoApprove,
    modelApprovalStatus: request.autoApprove ? 'Approved' : 'PendingManualApproval',
    deploy: request.deploy,
    judge,
    gradersFile,
    lineage: {
      runId,
      baseModel: request.baseModel,
      datasetName: request.dataset.name,
      datasetSha256: request.dataset.sha256,
      method: recipe.method,
      // what the registered model is: a reward model (RL runs name it as their reward) or a model that generates
      kind: recipe.method === 'reward' ? 'reward' : 'generative',
      recipe: lineageRecipe(request.recipe),
      // what an RL run was rewarded by: the model package ARN or s3:// folder the request named; 'none' otherwise (the
      // Register state maps every key, and a JSONPath to a missing one would fail the execution)
      rewardModel: request.rewardModel ?? NO_REWARD_MODEL,
      trainingJobName,
      ...(request.runName ? { runName: request.runName } : {}),
    },
    preflight: {
      requiredGiB: estimate.requiredGiB,
      availableGiB: estimate.availableGiB,
      fits: estimate.fits,
      breakdown: estimate.breakdown,
      advice: estimate.advice,
    },
  };
  const problems = apiLimitProblems(plan);
  if (problems.length) throw new RunRequestError(problems.join('\n'));
  return plan;
}

/** The lineage `rewardModel` of a run that no reward model rewarded. */
export const NO_REWARD_MODEL = 'none';

/**
 * The reward_model channel of a grpo or rloo run: an s3:// model data folder under artifacts/ as given, or the model data of
 * the model package PlanRun read, which must be registered as a reward model (lineage kind=reward).
 */
function rewardModelPlan(request: RunRequest, lookups: PlanLookups, bucket: string): { s3Uri: string; baseModel?: string } | undefined {
  const named = request.rewardModel;
  if (named === undefined) return undefined;
  let uri: string;
  let baseModel: string | undefined;
  if (named.startsWith('s3://')) uri = named;
  else {
    const registered = lookups.rewardModel;
    if (registered === undefined) {
      throw new RunRequestError(
        `rewardModel: ${echoValue(named)} is a model package, whose model data and kind the registry holds, and this plan was made without reading it. ` +
          "Start the run (the pipeline's PlanRun reads the registry), or pass the reward run's s3:// model data folder (s3://<bucket>/artifacts/<run>/<job>/output/model/).",
      );
    }
    if (registered.kind !== 'reward') {
      throw new RunRequestError(
        `rewardModel: ${echoValue(named)} is registered as ${registered.kind === undefined ? 'a model without a lineage kind' : `kind=${registered.kind}`}, not as a reward model (kind=reward); ` +
          (request.recipe.method === 'rloo'
            ? 'an rloo run is optimised against a method "reward" run\'s model: name its model package (`tuneyard models`), or train one with a method "reward" run.'
            : 'a grpo run is rewarded by a method "reward" run\'s model: name its model package (`tuneyard models`), or remove rewardModel and reward with graders.'),
      );
    }
    uri = registered.modelDataS3Uri;
    baseModel = registered.baseModel;
  }
  const folder = uri.endsWith('/') ? uri : `${uri}/`;
  if (!folder.startsWith(`${bucket}${DATA_PREFIXES.artifacts}`)) {
    throw new RunRequestError(
      `rewardModel: ${echoValue(named)}${folder !== `${named}/` && folder !== named ? ` (model data ${echoValue(folder)})` : ''} is outside the plane's artifacts/ prefix, where reward runs write their models; the training role may only read ${bucket}${DATA_PREFIXES.artifacts} there. ` +
        'Name a reward model this plane trained (a method "reward" run), or copy its model folder under artifacts/.',
    );
  }
  return { s3Uri: folder, ...(baseModel !== undefined ? { baseModel } : {}) };
}

/** The reward model's parameters in billions: its registered base model's when known, else the policy's (the same tokenizer family). */
function rewardModelParameters(baseModel: string | undefined, policyBillions: number): number {
  if (baseModel === undefined) return policyBillions;
  try {
    return resolveParameters(baseModel, undefined);
  } catch {
    return policyBillions;
  }
}

/** The judge's plan: refused (with the fix) when the plane does not allow its model or it would have nothing to judge. */
function planJudge(request: RunRequest, settings: PlanSettings, graders: JudgePlan['graders'], evalReportKey: string): JudgePlan {
  const judge = request.judge!;
  const maxGenerations = request.evaluation?.maxGenerations ?? DEFAULT_EVALUATION.maxGenerations;
  const problem = judgeProblem(judge, settings.judgeModelIds, maxGenerations, graders.length);
  if (problem) throw new RunRequestError(problem);
  const maxItems = Math.min(judge.maxItems, maxGenerations);
  const runPrefix = evalReportKey.slice(0, evalReportKey.indexOf('/', DATA_PREFIXES.evalReports.length) + 1);
  return {
    modelId: judge.modelId,
    maxItems,
    ...(judge.rubric !== undefined ? { rubric: judge.rubric } : {}),
    pairwise: judge.pairwise,
    graders,
    generations: { bucket: settings.bucketName, key: evalReportKey.replace(/eval\.json$/, 'generations.jsonl') },
    output: { bucket: settings.bucketName, prefix: `${runPrefix}judge/` },
    maxCalls: maxItems * ((judge.pairwise ? 2 : 0) + 2 * graders.length),
    cost: judgeCost(judge.modelId, maxItems, judge.pairwise, graders.length, request.evaluation?.maxNewTokens ?? DEFAULT_EVALUATION.maxNewTokens),
  };
}

/** Room for the base weights, checkpoints (with optimizer state when all weights train) and the outputs. */
function volumeSizeGiB(parametersBillions: number, fullWeights: boolean): number {
  const weightsGiB = parametersBillions * 2;
  return Math.min(16384, Math.ceil(50 + weightsGiB * (fullWeights ? 10 : 3)));
}

/**
 * The recipe as a lineage value: the fields the request set, sorted, as `name=value` separated by
 * spaces, list items joined with `+` (`learningRate=0.0001 loraR=8 method=qlora targetModules=q_proj+v_proj`),
 * cut to 256 characters with a trailing `...`. JSON cannot be one: CustomerMetadataProperties values
 * take no braces, quotes, commas or brackets. Every character of a recipe value is one the pattern
 * allows (numbers, booleans, enum values, module names of `[A-Za-z0-9_.]`).
 */
export function lineageRecipe(recipe: Recipe): string {
  const text = Object.entries(recipe)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${k}=${lineageValue(k, v)}`)
    .join(' ');
  const max = CUSTOMER_METADATA_VALUE.max;
  return text.length <= max ? text : `${text.slice(0, max - 3)}...`;
}

/**
 * A recipe value in the lineage: lists joined with `+`; grpo's rewardWeights as `source:weight` joined with `+`
 * (characters the registry refuses in a grader's name as `-`); its grpoFormatRegex, free text, as the first 12 hex
 * digits of its SHA-256 (the run's recipe has it whole).
 */
function lineageValue(field: string, value: unknown): string {
  if (Array.isArray(value)) return value.join('+');
  if (field === 'grpoFormatRegex') return `sha256-${createHash('sha256').update(String(value)).digest('hex').slice(0, 12)}`;
  if (typeof value === 'object' && value !== null) {
    return Object.entries(value)
      .map(([k, w]) => `${k.replace(/[^\p{L}\p{N}_.=@-]+/gu, '-')}:${String(w)}`)
      .join('+');
  }
  return String(value);
}

/** Where the lineage goes, for messages. */
const REGISTRY_METADATA = 'CreateModelPackage.CustomerMetadataProperties (the registered model\'s lineage)';

function baseModelError(baseModel: string, problem: string): string {
  const s3 = /^(s3:\/\/[^/]+\/)(.*)$/s.exec(baseModel);
  const renamed = s3
    ? s3[1] + s3[2].split('/').map((part) => part.replace(/[^\p{L}\p{N}_.:=+@-]+/gu, '-').replace(/-{2,}/g, '-').replace(/^-|-$/g, '')).join('/')
    : undefined;
  const fix =
    renamed && renamed !== baseModel && !stringLimitProblem(CUSTOMER_METADATA_VALUE, renamed, REGISTRY_METADATA)
      ? `Rename the folder (${s3![1]}...) to letters, digits and _ . : = + @ - only, e.g. ${echoValue(renamed)}, and pass that URI.`
      : `Stage the model under a folder name of at most ${CUSTOMER_METADATA_VALUE.max} characters in all (s3://<bucket>/base-models/<name>/) and pass that URI.`;
  return `baseModel: ${echoValue(baseModel)} ${problem}; SageMaker would refuse to register the model after training and evaluation. ${fix}`;
}

/** Which request field a hyperparameter comes from, for messages. */
function fieldOfHyperParameter(key: string): string {
  if (key === 'base_model') return 'baseModel';
  if (key === 'reward_model') return 'rewardModel';
  const field = Object.entries(RECIPE_FIELDS).find(([, spec]) => spec.key === key)?.[0];
  return field ? `recipe.${field}` : `hyperparameter ${key}`;
}

/**
 * What SageMaker's API would refuse in the requests the plan makes: the training and evaluation
 * CreateTrainingJob and the registry's CreateModelPackage (limits in lib/api-limits.ts). Each
 * problem names the request field it comes from, the value (clipped) and the fix.
 */
function apiLimitProblems(plan: RunPlan): string[] {
  const problems: string[] = [];
  const check = (limit: StringLimit, value: string, member: string, field: string, fix: string) => {
    const problem = stringLimitProblem(limit, value, member);
    if (problem) problems.push(`${field}: ${echoValue(value)} ${problem}. ${fix}`);
  };
  for (const [job, hyperParameters] of [
    [plan.trainingJobName, plan.hyperParameters],
    [plan.evaluationJobName, plan.evaluationHyperParameters],
  ] as const) {
    const entries = Object.entries(hyperParameters);
    if (entries.length > HYPER_PARAMETERS.max!) {
      problems.push(`recipe: job ${job} would have ${entries.length} hyperparameters, over the ${HYPER_PARAMETERS.max} that CreateTrainingJob takes.`);
    }
    for (const [key, value] of entries) {
      const field = fieldOfHyperParameter(key);
      const member = `CreateTrainingJob.HyperParameters["${key}"]`;
      check(HYPER_PARAMETER_KEY, key, member, field, 'Shorten the name.');
      const fix =
        key === RECIPE_FIELDS.targetModules.key
          ? 'Name fewer modules: PEFT matches a name at the end of every module path ("q_proj" is the q_proj of every layer), or use "all-linear".'
          : `Shorten ${field}.`;
      check(HYPER_PARAMETER_VALUE, value, member, field, fix);
    }
  }
  for (const [name, member] of [
    [plan.trainingJobName, 'CreateTrainingJob.TrainingJobName'],
    [plan.evaluationJobName, 'CreateTrainingJob.TrainingJobName'],
  ]) {
    check(TRAINING_JOB_NAME, name, member, 'dataset.name', 'Use a shorter dataset name or job name prefix.');
  }
  for (const [channels, job] of [
    [plan.inputDataConfig, plan.trainingJobName],
    [plan.evaluationInputDataConfig, plan.evaluationJobName],
  ] as const) {
    if (channels.length > INPUT_DATA_CONFIG.max!) problems.push(`job ${job} would have ${channels.length} input channels, over the ${INPUT_DATA_CONFIG.max} that CreateTrainingJob takes.`);
    for (const c of channels) {
      check(CHANNEL_NAME, c.ChannelName, 'CreateTrainingJob.InputDataConfig[].ChannelName', `channel ${c.ChannelName}`, 'Rename the channel.');
      const field =
        c.ChannelName === 'model'
          ? 'baseModel'
          : c.ChannelName === 'probe'
            ? 'probeDataset'
            : c.ChannelName.startsWith('benchmark-')
              ? 'benchmarkDatasets'
              : c.ChannelName === 'embedding_model'
                ? 'embeddingModel'
                : c.ChannelName === 'reward_model'
                  ? 'rewardModel'
                  : c.ChannelName === 'graders'
                    ? 'graders'
                    : 'dataset';
      check(S3_URI, c.DataSource.S3DataSource.S3Uri, `CreateTrainingJob.InputDataConfig["${c.ChannelName}"].S3Uri`, field, 'Use a shorter S3 location.');
    }
  }
  const planned: Array<[StringLimit, string, string]> = [
    [S3_URI, plan.outputDataConfig.S3OutputPath, 'CreateTrainingJob.OutputDataConfig.S3OutputPath'],
    [S3_URI, plan.evaluationOutputDataConfig.S3OutputPath, 'CreateTrainingJob.OutputDataConfig.S3OutputPath'],
    [S3_URI, plan.checkpointConfig.S3Uri, 'CreateTrainingJob.CheckpointConfig.S3Uri'],
    [S3_URI, plan.evalReport.s3Uri, 'CreateModelPackage.ModelMetrics.ModelQuality.Statistics.S3Uri'],
    [S3_MODEL_URI, plan.modelArtifactS3Uri, 'CreateModelPackage.InferenceSpecification.Containers[].ModelDataSource.S3DataSource.S3Uri'],
    [KMS_KEY_ID, plan.outputDataConfig.KmsKeyId, 'CreateTrainingJob.OutputDataConfig.KmsKeyId'],
    ...(plan.resourceConfig.VolumeKmsKeyId ? [[KMS_KEY_ID, plan.resourceConfig.VolumeKmsKeyId, 'CreateTrainingJob.ResourceConfig.VolumeKmsKeyId'] as [StringLimit, string, string]] : []),
  ];
  for (const [limit, value, member] of planned) check(limit, value, member, 'the plane settings', 'Check the plane\'s bucket name and keys.');
  // The lineage, and the eval report's URI the registry adds to it.
  const lineage: Record<string, string> = { ...plan.lineage, evalReport: plan.evalReport.s3Uri };
  const lineageFields: Record<string, string> = { baseModel: 'baseModel', datasetName: 'dataset.name', datasetSha256: 'dataset.sha256', runName: 'runName', recipe: 'recipe', rewardModel: 'rewardModel' };
  if (Object.keys(lineage).length > CUSTOMER_METADATA.max!) problems.push(`the lineage has ${Object.keys(lineage).length} entries, over the ${CUSTOMER_METADATA.max} that CreateModelPackage takes.`);
  for (const [key, value] of Object.entries(lineage)) {
    const field = lineageFields[key] ?? `lineage ${key}`;
    check(CUSTOMER_METADATA_KEY, key, REGISTRY_METADATA, field, 'Rename the lineage key.');
    check(CUSTOMER_METADATA_VALUE, value, REGISTRY_METADATA, field, `Use only ${CUSTOMER_METADATA_VALUE.allowed}, at most ${CUSTOMER_METADATA_VALUE.max} characters.`);
  }
  return problems;
}

/** `message` with every long `value` in it clipped (messages of other modules echo request values whole). */
function clipEchoes(message: string, value: string): string {
  return value.length <= ECHO_MAX_LENGTH ? message : message.split(value).join(clipText(value));
}
