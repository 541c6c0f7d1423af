/**
 * The LLM judge of a run (RunRequest `judge`): an Amazon Bedrock model that the pipeline's JudgeAnswers state calls
 * after the evaluation job (which is network isolated), on the answers in generations.jsonl. Pairwise base-vs-tuned
 * preference in both orders, and the run's score_model / label_model graders pointwise. See
 * constructs/fine-tuning-pipeline/handler/judge-answers.ts.
 */
import { z } from 'zod';
import type { GraderConfig, LabelModelGrader, ScoreModelGrader } from './graders';
import { bedrockPricePer1kTokens, JUDGE_PRICES_AS_OF, PRICE_REGION } from './pricing';

/** Items a run's judge judges when the request does not say. */
export const DEFAULT_JUDGE_MAX_ITEMS = 100;
/** The most items a run's judge may judge (its cost bound). */
export const JUDGE_MAX_ITEMS_CAP = 1000;

/**
 * A Bedrock model id the judge may name: a foundation model (`anthropic.claude-3-5-sonnet-20240620-v1:0`,
 * `amazon.nova-pro-v1:0`) or a cross-region inference profile (`us.anthropic.claude-3-5-haiku-20241022-v1:0`).
 */
export const JUDGE_MODEL_ID = /^(?:(us|eu|apac|us-gov|ca|jp|au|global)\.)?[a-z0-9-]+\.[a-z0-9][a-z0-9.:-]{0,100}$/;

/** The inference-profile prefix of a judge model id (`us.`), or undefined for a foundation model id. */
export function inferenceProfileGeography(modelId: string): string | undefined {
  return JUDGE_MODEL_ID.exec(modelId)?.[1];
}

export const JudgeRequestSchema = z
  .strictObject({
    modelId: z
      .string()
      .regex(JUDGE_MODEL_ID, 'must be a Bedrock model id ("amazon.nova-pro-v1:0") or inference profile id ("us.anthropic.claude-3-5-haiku-20241022-v1:0"), not an ARN')
      .describe("The Bedrock model that judges: one of the pipeline's judgeModelIds."),
    maxItems: z
      .number()
      .int('must be a whole number')
      .min(1, 'must be at least 1')
      .max(JUDGE_MAX_ITEMS_CAP, `must be at most ${JUDGE_MAX_ITEMS_CAP} (the judge's cost bound)`)
      .default(DEFAULT_JUDGE_MAX_ITEMS)
      .describe(`Rows of generations.jsonl judged (the first ones). Default: ${DEFAULT_JUDGE_MAX_ITEMS}; at most ${JUDGE_MAX_ITEMS_CAP}.`),
    rubric: z.string().min(1, 'must not be empty').max(4000, 'must be at most 4000 characters').optional().describe('What makes an answer better, added to the pairwise prompt. Default: none.'),
    pairwise: z.boolean().default(true).describe('Judge base vs tuned answers pairwise, each pair in both orders. Default: true.'),
  })
  .describe(
    "An LLM judge on Amazon Bedrock, run by the pipeline after the evaluation: pairwise base-vs-tuned preference and the run's score_model / label_model graders. Default: none.",
  );

export type JudgeRequest = z.output<typeof JudgeRequestSchema>;

/** The judge part of a run's plan: what JudgeAnswers reads at `$.plan.judge`. */
export interface JudgePlan {
  readonly modelId: string;
  /** Items judged at most: the request's maxItems, and no more than the evaluation generates. */
  readonly maxItems: number;
  readonly rubric?: string;
  readonly pairwise: boolean;
  /** The run's score_model and label_model graders (top level), run pointwise on each answer. */
  readonly graders: ReadonlyArray<ScoreModelGrader | LabelModelGrader>;
  /** The evaluation job's generations.jsonl. */
  readonly generations: { readonly bucket: string; readonly key: string };
  /** Where judgements.jsonl and judge.json go: `eval-reports/<run>/judge/`. */
  readonly output: { readonly bucket: string; readonly prefix: string };
  /** Converse calls at most: items × (2 pairwise + 2 per pointwise grader). */
  readonly maxCalls: number;
  /** The judge's cost at most, estimated (see {@link judgeCost}); "unpriced" for a model without a listed price. */
  readonly cost: JudgeCost;
}

/** An estimate of a judge's Bedrock cost, or "unpriced". */
export type JudgeCost =
  | 'unpriced'
  | { readonly usd: number; readonly inputTokens: number; readonly outputTokens: number; readonly pricesAsOf: string; readonly assumption: string };

/** What the estimate assumes a call takes besides the answers: instructions, prompt and rubric in; reasoning and verdict out. */
export const JUDGE_TOKENS_PER_CALL = { instructions: 400, output: 150 } as const;

/**
 * The judge's cost if every item and call runs: a pairwise call reads two answers and the reference, a pointwise call an
 * answer and the reference, each at most `maxNewTokens` long, plus {@link JUDGE_TOKENS_PER_CALL}; priced from
 * lib/pricing.ts. Long prompts cost more than this says.
 */
export function judgeCost(modelId: string, items: number, pairwise: boolean, pointwiseGraders: number, maxNewTokens: number): JudgeCost {
  const price = bedrockPricePer1kTokens(modelId);
  if (!price) return 'unpriced';
  const pairCalls = pairwise ? 2 * items : 0;
  const pointCalls = 2 * pointwiseGraders * items;
  const inputTokens = pairCalls * (JUDGE_TOKENS_PER_CALL.instructions + 3 * maxNewTokens) + pointCalls * (JUDGE_TOKENS_PER_CALL.instructions + 2 * maxNewTokens);
  const outputTokens = (pairCalls + pointCalls) * JUDGE_TOKENS_PER_CALL.output;
  return {
    usd: (inputTokens / 1000) * price.input + (outputTokens / 1000) * price.output,
    inputTokens,
    outputTokens,
    pricesAsOf: JUDGE_PRICES_AS_OF,
    assumption: `answers of at most ${maxNewTokens} tokens, ${JUDGE_TOKENS_PER_CALL.instructions} tokens of instructions and prompt and ${JUDGE_TOKENS_PER_CALL.output} of verdict per call; on-demand ${PRICE_REGION} prices`,
  };
}

/** Why a request's judge cannot run on this plane, or undefined. */
export function judgeProblem(judge: JudgeRequest, allowed: readonly string[] | undefined, maxGenerations: number, pointwise: number): string | undefined {
  // undefined: the plane's list is not known here (the CLI's preflight); the pipeline's PlanRun always knows it
  if (allowed && allowed.length === 0) {
    return `judge: this plane's pipeline allows no judge model, so the run could not call ${judge.modelId}. Set the FineTuningPipeline prop judgeModelIds (e.g. ["${judge.modelId}"]) to allow it, or remove judge from the request.`;
  }
  if (allowed && !allowed.includes(judge.modelId)) {
    return `judge.modelId: "${judge.modelId}" is not one of the pipeline's judgeModelIds (${allowed.join(', ')}): its role may invoke those only. Use one of them, or add it to judgeModelIds.`;
  }
  if (maxGenerations === 0) return 'judge: evaluation.maxGenerations is 0, so there are no answers to judge. Let the evaluation generate answers (maxGenerations of 1 or more), or remove judge.';
  if (!judge.pairwise && pointwise === 0) {
    return 'judge: pairwise is false and the run has no score_model or label_model grader, so the judge has nothing to judge. Set pairwise true, add such a grader, or remove judge.';
  }
  return undefined;
}

/** The judge's graders among the run's: score_model and label_model at the top level. */
export function judgeGraders(graders: readonly GraderConfig[]): Array<ScoreModelGrader | LabelModelGrader> {
  return graders.filter((g): g is ScoreModelGrader | LabelModelGrader => g.type === 'score_model' || g.type === 'label_model');
}
