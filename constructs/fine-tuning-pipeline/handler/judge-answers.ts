/**
 * JudgeAnswers: the LLM judge of a run, an Amazon Bedrock model called from the pipeline (the evaluation job is
 * network isolated, so the judge runs after it). It reads the evaluation job's generations.jsonl and, for the first
 * `maxItems` rows:
 *
 * - pairwise: asks the judge which answer is better, the base model's or the tuned model's, in both orders (A = base,
 *   B = tuned, then A = tuned, B = base) to cancel position bias. An item is a win when both orders prefer the tuned
 *   answer, a loss when both prefer the base answer, and a tie otherwise (the orders disagree, or either says tie);
 * - pointwise: runs each of the run's score_model / label_model graders on the base and on the tuned answer.
 *
 * The judge must answer with the JSON verdict its prompt asks for, and nothing else: any other answer is an error row
 * (counted, stored with the raw text), never a tie or a score. Every judgement is stored with its reasoning, the order
 * and the raw verdict in `judgements.jsonl`; `judge.json` sums them up. winRate = wins / (wins + losses + ties), the
 * items with an error left out.
 *
 * One invocation judges items until its time runs low, writes them as a part, and returns the cursor of the next
 * item; the state machine invokes it again from there, so a run judges up to the hard cap of items without a Lambda
 * timeout past 15 minutes. The invocation that reaches the end joins the parts, writes the summary and puts the judge's
 * section into the evaluation's report.html (judge-report.ts).
 */
import { BedrockRuntimeClient, ConverseCommand, type ConverseCommandInput, type Message, type SystemContentBlock } from '@aws-sdk/client-bedrock-runtime';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type { GraderMessage, LabelModelGrader, ScoreModelGrader } from '../../../lib/graders';
import type { JudgePlan } from '../../../lib/judge';
import { type JudgeSummary, renderJudgeSection, withJudgeSection } from './judge-report';

export type { JudgePlan };

/** Where the loop stands: the next item and the parts written so far (their first items). */
export interface JudgeProgress {
  readonly cursor: number;
  readonly parts: readonly number[];
  /** Whether every item has been judged; then `result` is set. */
  readonly done: boolean;
  readonly result?: JudgeResult;
}

/** The input of the JudgeAnswers state. */
export interface JudgeAnswersEvent {
  readonly judge: JudgePlan;
  readonly progress: JudgeProgress;
}

/** What the gate reads at `$.judge`. winRate = wins / (wins + losses + ties): items with an error are left out. */
export interface JudgeResult {
  /** The S3 URI of judge.json (judgements.jsonl beside it). */
  readonly reportUri: string;
  /** Items judged pairwise without an error (wins + ties + losses). */
  readonly items: number;
  readonly wins: number;
  readonly ties: number;
  readonly losses: number;
  readonly winRate: number;
}

/** A verdict of the judge, as the prompt asks for it. */
type Verdict = { reasoning: string; winner: 'A' | 'B' | 'tie' } | { reasoning: string; score: number } | { reasoning: string; label: string };

/** One line of judgements.jsonl. */
export interface Judgement {
  readonly index: number;
  readonly kind: 'pairwise' | 'pointwise';
  /** pairwise: `base-tuned` (A is the base answer) or `tuned-base`; pointwise: the answer graded. */
  readonly order?: 'base-tuned' | 'tuned-base';
  readonly side?: 'base' | 'tuned';
  readonly grader?: string;
  /** The judge's text as it answered. */
  readonly raw: string | null;
  readonly reasoning: string | null;
  /** pairwise: which answer the judge preferred (`base`, `tuned`, `tie`); pointwise: the score or label. */
  readonly verdict: string | number | null;
  /** Why the judgement could not be used (the verdict is then null). */
  readonly error: string | null;
  readonly inputTokens?: number;
  readonly outputTokens?: number;
}

/** The judge is misconfigured or its input is missing: the run fails with this cause. Not retried. */
export class JudgeFailed extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'JudgeFailed';
  }
}

export type Sender = { send(command: any): Promise<any> };

/** How the handler is run: its clients, the time left, how many items are judged at once. */
export interface JudgeRuntime {
  readonly s3: Sender;
  readonly bedrock: Sender;
  /** Milliseconds left to this invocation. */
  readonly remainingMs: () => number;
  /** No new item starts with less time left than this (one item's calls and the part's upload must fit). */
  readonly reserveMs?: number;
  /** Items judged at once. */
  readonly concurrency?: number;
}

/** Items judged at once by default: a few Converse calls in flight per invocation (the SDK's adaptive retry paces throttling). */
export const JUDGE_CONCURRENCY = 4;
/** The time kept back by default when deciding to start one more item. */
export const JUDGE_RESERVE_MS = 3 * 60 * 1000;
/** The most tokens a verdict may take. */
export const JUDGE_MAX_TOKENS = 1024;

const PAIRWISE_SYSTEM =
  'You are an impartial judge comparing two answers, A and B, to the same conversation. Judge which answer better ' +
  'serves the user: correctness, helpfulness, following the instructions and the expected format. Ignore the order ' +
  'and the length of the answers. Reply with one JSON object and nothing else: ' +
  '{"reasoning": "<a few sentences>", "winner": "A" | "B" | "tie"}';

/** The pairwise prompt of one order. */
export function pairwiseRequest(modelId: string, row: GenerationRow, first: string, second: string, rubric: string | undefined): ConverseCommandInput {
  const text = [
    `Conversation:\n${JSON.stringify(row.prompt, null, 1)}`,
    ...(row.reference ? [`Reference answer (written by a person):\n${row.reference}`] : []),
    ...(rubric ? [`Rubric:\n${rubric}`] : []),
    `Answer A:\n${first}`,
    `Answer B:\n${second}`,
    'Which answer is better? Reply with the JSON object only.',
  ].join('\n\n');
  return converse(modelId, [{ text: PAIRWISE_SYSTEM }], [{ role: 'user', content: [{ text }] }]);
}

/**
 * The pointwise prompt of a score_model or label_model grader on one answer: its messages, templates rendered
 * (`sample.output_text` is the answer, `item` the generations row: prompt, reference, tools, index), system and
 * developer messages as the system prompt, and the JSON verdict asked for last. The grader's own `model` and
 * `sampling_params` are not used: the run's judge model judges, at temperature 0.
 */
export function pointwiseRequest(modelId: string, grader: ScoreModelGrader | LabelModelGrader, row: GenerationRow, answer: string): ConverseCommandInput {
  const system: SystemContentBlock[] = [];
  const messages: Message[] = [];
  for (const message of grader.input as readonly GraderMessage[]) {
    const text = renderTemplate(message.content, answer, row);
    if (message.role === 'system' || message.role === 'developer') {
      system.push({ text });
      continue;
    }
    const last = messages[messages.length - 1];
    // Converse takes alternating turns: consecutive messages of one role become one turn.
    if (last && last.role === message.role) last.content!.push({ text });
    else messages.push({ role: message.role, content: [{ text }] });
  }
  const ask =
    grader.type === 'score_model'
      ? `Reply with one JSON object and nothing else: {"reasoning": "<a few sentences>", "score": <a number from ${(grader.range ?? [0, 1])[0]} to ${(grader.range ?? [0, 1])[1]}>}`
      : `Reply with one JSON object and nothing else: {"reasoning": "<a few sentences>", "label": <one of ${grader.labels.map((l) => JSON.stringify(l)).join(', ')}>}`;
  system.push({ text: ask });
  if (messages.length === 0 || messages[0].role !== 'user') messages.unshift({ role: 'user', content: [{ text: 'Grade the answer.' }] });
  return converse(modelId, system, messages);
}

function converse(modelId: string, system: SystemContentBlock[], messages: Message[]): ConverseCommandInput {
  return { modelId, system, messages, inferenceConfig: { maxTokens: JUDGE_MAX_TOKENS, temperature: 0 } };
}

/** A row of generations.jsonl (tuneyard_trainer/generate.py). */
export interface GenerationRow {
  readonly index: number;
  readonly prompt: unknown;
  readonly reference: string;
  readonly base: string;
  readonly tuned: string;
  readonly tools?: unknown;
}

const TAG = /\{\{(.*?)\}\}/gs;
const REFERENCE = /^(sample|item)((?:\.[A-Za-z0-9_-]+|\[\d+\])+)$/;

/** A grader template rendered as graders.py renders it: strings as they are, other values as JSON. */
export function renderTemplate(template: string, answer: string, row: GenerationRow): string {
  return template.replace(TAG, (whole, inner: string) => {
    const match = REFERENCE.exec(inner.trim());
    if (!match) throw new TemplateError(`${whole} is not a template the judge knows`);
    const steps = [...match[2].matchAll(/\.([A-Za-z0-9_-]+)|\[(\d+)\]/g)].map((s) => (s[2] !== undefined ? Number(s[2]) : s[1]));
    let current: unknown;
    if (match[1] === 'sample') {
      const field = steps.shift();
      if (field === 'output_text' && steps.length === 0) return answer;
      if (field !== 'output_json') throw new TemplateError(`${whole}: the sample has output_text and output_json only`);
      try {
        current = JSON.parse(answer);
      } catch (e) {
        throw new TemplateError(`${whole}: the answer is not JSON (${(e as Error).message})`);
      }
    } else current = row;
    for (const step of steps) {
      if (current === null || typeof current !== 'object' || !(step in (current as object))) {
        throw new TemplateError(`${whole}: the ${match[1] === 'item' ? 'item (the generations row: index, prompt, reference, tools)' : 'answer'} has no ${step} there`);
      }
      current = (current as Record<string | number, unknown>)[step];
    }
    return typeof current === 'string' ? current : JSON.stringify(current);
  });
}

class TemplateError extends Error {}

/**
 * The verdict in the judge's text: exactly one JSON object (surrounding white space allowed) with a string
 * `reasoning` and the field the prompt asked for; anything else is a problem, returned as a string.
 */
export function parseVerdict(raw: string, expect: { winner: true } | { range: readonly [number, number] } | { labels: readonly string[] }): Verdict | string {
  let value: unknown;
  try {
    value = JSON.parse(raw.trim());
  } catch (e) {
    return `the answer is not one JSON object (${(e as Error).message})`;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return 'the answer is JSON but not an object';
  const v = value as Record<string, unknown>;
  if (typeof v.reasoning !== 'string') return 'the verdict has no "reasoning" string';
  if ('winner' in expect) {
    if (v.winner !== 'A' && v.winner !== 'B' && v.winner !== 'tie') return `"winner" must be "A", "B" or "tie" (got ${JSON.stringify(v.winner)})`;
    return { reasoning: v.reasoning, winner: v.winner };
  }
  if ('range' in expect) {
    const [low, high] = expect.range;
    if (typeof v.score !== 'number' || !Number.isFinite(v.score) || v.score < low || v.score > high) return `"score" must be a number from ${low} to ${high} (got ${JSON.stringify(v.score)})`;
    return { reasoning: v.reasoning, score: v.score };
  }
  if (typeof v.label !== 'string' || !expect.labels.includes(v.label)) return `"label" must be one of ${expect.labels.join(', ')} (got ${JSON.stringify(v.label)})`;
  return { reasoning: v.reasoning, label: v.label };
}

/** The pairwise outcome of one item from its two orders: win and loss only when both orders agree. */
export function combineOrders(first: Judgement, second: Judgement): 'win' | 'tie' | 'loss' | 'error' {
  if (first.error !== null || second.error !== null) return 'error';
  if (first.verdict === 'tuned' && second.verdict === 'tuned') return 'win';
  if (first.verdict === 'base' && second.verdict === 'base') return 'loss';
  return 'tie';
}

async function ask(bedrock: Sender, input: ConverseCommandInput): Promise<{ raw: string | null; inputTokens?: number; outputTokens?: number; problem?: string }> {
  const response = await bedrock.send(new ConverseCommand(input));
  const blocks = response?.output?.message?.content ?? [];
  const texts = blocks.filter((b: { text?: string }) => typeof b.text === 'string').map((b: { text: string }) => b.text);
  const usage = { inputTokens: response?.usage?.inputTokens, outputTokens: response?.usage?.outputTokens };
  if (texts.length === 0) return { raw: null, ...usage, problem: `the judge answered no text (stopReason ${response?.stopReason})` };
  const raw = texts.join('');
  if (response?.stopReason === 'max_tokens') return { raw, ...usage, problem: `the verdict was cut at ${JUDGE_MAX_TOKENS} tokens (stopReason max_tokens)` };
  return { raw, ...usage };
}

async function judgeItem(plan: JudgePlan, row: GenerationRow, bedrock: Sender): Promise<Judgement[]> {
  const out: Judgement[] = [];
  if (plan.pairwise) {
    for (const order of ['base-tuned', 'tuned-base'] as const) {
      const [first, second] = order === 'base-tuned' ? [row.base, row.tuned] : [row.tuned, row.base];
      const answer = await ask(bedrock, pairwiseRequest(plan.modelId, row, first, second, plan.rubric));
      const verdict = answer.problem ?? parseVerdict(answer.raw!, { winner: true });
      const common = { index: row.index, kind: 'pairwise' as const, order, raw: answer.raw, inputTokens: answer.inputTokens, outputTokens: answer.outputTokens };
      if (typeof verdict === 'string') out.push({ ...common, reasoning: null, verdict: null, error: verdict });
      else {
        const winner = (verdict as { winner: 'A' | 'B' | 'tie' }).winner;
        const preferred = winner === 'tie' ? 'tie' : (winner === 'A') === (order === 'base-tuned') ? 'base' : 'tuned';
        out.push({ ...common, reasoning: verdict.reasoning, verdict: preferred, error: null });
      }
    }
  }
  for (const grader of plan.graders) {
    for (const side of ['base', 'tuned'] as const) {
      const common = { index: row.index, kind: 'pointwise' as const, side, grader: grader.name };
      let input: ConverseCommandInput;
      try {
        input = pointwiseRequest(plan.modelId, grader, row, row[side]);
      } catch (e) {
        if (!(e instanceof TemplateError)) throw e;
        out.push({ ...common, raw: null, reasoning: null, verdict: null, error: e.message });
        continue;
      }
      const answer = await ask(bedrock, input);
      const expect = grader.type === 'score_model' ? { range: grader.range ?? ([0, 1] as const) } : { labels: grader.labels };
      const verdict = answer.problem ?? parseVerdict(answer.raw!, expect);
      const usage = { inputTokens: answer.inputTokens, outputTokens: answer.outputTokens };
      if (typeof verdict === 'string') out.push({ ...common, raw: answer.raw, reasoning: null, verdict: null, error: verdict, ...usage });
      else out.push({ ...common, raw: answer.raw, reasoning: verdict.reasoning, verdict: 'score' in verdict ? verdict.score : (verdict as { label: string }).label, error: null, ...usage });
    }
  }
  return out;
}

/** The summary of every judgement (judge.json). */
export function summarize(plan: JudgePlan, judgements: readonly Judgement[], reportUri: string) {
  const byIndex = new Map<number, Judgement[]>();
  for (const j of judgements) if (j.kind === 'pairwise') byIndex.set(j.index, [...(byIndex.get(j.index) ?? []), j]);
  const counts = { wins: 0, ties: 0, losses: 0, errors: 0 };
  for (const pair of byIndex.values()) {
    const outcome = pair.length === 2 ? combineOrders(pair[0], pair[1]) : 'error';
    if (outcome === 'win') counts.wins++;
    else if (outcome === 'tie') counts.ties++;
    else if (outcome === 'loss') counts.losses++;
    else counts.errors++;
  }
  const judged = counts.wins + counts.ties + counts.losses;
  const pointwise: Record<string, Record<string, { mean: number | null; passed: number | null; graded: number; error_count: number }>> = {};
  for (const grader of plan.graders) {
    pointwise[grader.name] = {};
    for (const side of ['base', 'tuned'] as const) {
      const rows = judgements.filter((j) => j.kind === 'pointwise' && j.grader === grader.name && j.side === side);
      const good = rows.filter((j) => j.error === null);
      const passes = good.map((j) =>
        grader.type === 'score_model'
          ? grader.pass_threshold === undefined
            ? undefined
            : (j.verdict as number) >= grader.pass_threshold
          : grader.passing_labels.includes(j.verdict as string),
      );
      const scores = grader.type === 'score_model' ? good.map((j) => j.verdict as number) : passes.map((p) => (p ? 1 : 0));
      pointwise[grader.name][side] = {
        mean: scores.length ? scores.reduce((a, b) => a + b, 0) / scores.length : null,
        passed: good.length && passes.every((p) => p !== undefined) ? passes.filter(Boolean).length / good.length : null,
        graded: good.length,
        error_count: rows.length - good.length,
      };
    }
  }
  const tokens = judgements.reduce((t, j) => ({ input: t.input + (j.inputTokens ?? 0), output: t.output + (j.outputTokens ?? 0) }), { input: 0, output: 0 });
  return {
    schema_version: 1,
    modelId: plan.modelId,
    rule: 'each item judged in both orders (A = base, B = tuned; then A = tuned, B = base): a win when both prefer the tuned answer, a loss when both prefer the base answer, a tie otherwise; winRate = wins / (wins + losses + ties), items with an error left out',
    pairwise: plan.pairwise ? { items: judged, ...counts, winRate: judged ? counts.wins / judged : 0 } : null,
    pointwise,
    judgements: judgements.length,
    errors: judgements.filter((j) => j.error !== null).length,
    tokens,
    reportUri,
  };
}

/** One invocation: judges items from the cursor while time allows, and at the end writes judgements.jsonl and judge.json. */
export async function judgeAnswers(event: JudgeAnswersEvent, runtime: JudgeRuntime): Promise<JudgeProgress> {
  const plan = event.judge;
  const progress = event.progress ?? { cursor: 0, parts: [], done: false };
  const rows = await readGenerations(runtime.s3, plan);
  const total = Math.min(rows.length, plan.maxItems);
  const reserve = runtime.reserveMs ?? JUDGE_RESERVE_MS;
  const concurrency = runtime.concurrency ?? JUDGE_CONCURRENCY;
  const start = progress.cursor;
  let next = start;
  const results: Judgement[][] = [];
  const worker = async () => {
    while (next < total && runtime.remainingMs() > reserve) {
      const at = next++;
      results[at - start] = await judgeItem(plan, rows[at], runtime.bedrock);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  if (next === start && start < total) {
    throw new JudgeFailed(`JudgeAnswers had less than ${Math.round(reserve / 1000)} s left and judged nothing: raise the function's timeout or lower the reserve.`);
  }
  const parts = [...progress.parts];
  if (next > start) {
    await put(runtime.s3, plan.output.bucket, partKey(plan, start), results.flat().map((j) => JSON.stringify(j) + '\n').join(''), 'application/jsonl');
    parts.push(start);
  }
  if (next < total) return { cursor: next, parts, done: false };

  const all: Judgement[] = [];
  for (const part of parts) {
    const text = (await getText(runtime.s3, plan.output.bucket, partKey(plan, part))) ?? '';
    for (const line of text.split('\n')) if (line.trim()) all.push(JSON.parse(line));
  }
  const reportUri = `s3://${plan.output.bucket}/${plan.output.prefix}judge.json`;
  const summary = summarize(plan, all, reportUri);
  await put(runtime.s3, plan.output.bucket, `${plan.output.prefix}judgements.jsonl`, all.map((j) => JSON.stringify(j) + '\n').join(''), 'application/jsonl');
  await put(runtime.s3, plan.output.bucket, `${plan.output.prefix}judge.json`, JSON.stringify(summary, null, 2) + '\n', 'application/json');
  await rewriteReport(runtime.s3, plan, summary, all);
  if (plan.pairwise && summary.pairwise!.items === 0 && total > 0) {
    throw new JudgeFailed(`the judge ${plan.modelId} gave no usable pairwise verdict on ${total} items (${summary.errors} errors): see ${plan.output.prefix}judgements.jsonl for its raw answers.`);
  }
  const pair = summary.pairwise ?? { items: 0, wins: 0, ties: 0, losses: 0, winRate: 0 };
  return {
    cursor: next,
    parts,
    done: true,
    result: { reportUri, items: pair.items, wins: pair.wins, ties: pair.ties, losses: pair.losses, winRate: pair.winRate },
  };
}

/**
 * Puts the judge's section into the evaluation's report.html (beside generations.jsonl) between the markers the eval
 * job wrote (see judge-report.ts). A report that is missing or has no markers (an older trainer) is left as it is.
 */
async function rewriteReport(s3: Sender, plan: JudgePlan, summary: JudgeSummary, judgements: readonly Judgement[]): Promise<void> {
  const key = reportKey(plan);
  const page = await getText(s3, plan.generations.bucket, key);
  if (page === undefined) return void console.warn(`s3://${plan.generations.bucket}/${key} does not exist: no report.html to add the judge to`);
  const rewritten = withJudgeSection(page, renderJudgeSection(summary, judgements));
  if ('problem' in rewritten) return void console.warn(`s3://${plan.generations.bucket}/${key}: ${rewritten.problem}; left as it is`);
  await put(s3, plan.generations.bucket, key, rewritten.page, 'text/html; charset=utf-8');
}

/** The evaluation's report.html: beside its generations.jsonl. */
export function reportKey(plan: JudgePlan): string {
  return plan.generations.key.replace(/[^/]*$/, 'report.html');
}

function partKey(plan: JudgePlan, start: number): string {
  return `${plan.output.prefix}parts/${String(start).padStart(6, '0')}.jsonl`;
}

async function readGenerations(s3: Sender, plan: JudgePlan): Promise<GenerationRow[]> {
  const text = await getText(s3, plan.generations.bucket, plan.generations.key);
  if (text === undefined) {
    throw new JudgeFailed(
      `s3://${plan.generations.bucket}/${plan.generations.key} does not exist: the evaluation job wrote no generations (evaluation.maxGenerations 0?). Let the evaluation generate answers, or remove judge from the request.`,
    );
  }
  return text
    .split('\n')
    .filter((line) => line.trim())
    .map((line, i) => {
      let row: GenerationRow;
      try {
        row = JSON.parse(line);
      } catch (e) {
        throw new JudgeFailed(`${plan.generations.key} line ${i + 1} is not JSON (${(e as Error).message}).`);
      }
      for (const key of ['base', 'tuned', 'reference'] as const) {
        if (typeof row[key] !== 'string') throw new JudgeFailed(`${plan.generations.key} line ${i + 1} has no "${key}" string: it was not written by this trainer's generate.py.`);
      }
      return row;
    });
}

async function getText(s3: Sender, bucket: string, key: string): Promise<string | undefined> {
  try {
    const response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return await response.Body.transformToString('utf-8');
  } catch (e) {
    if ((e as Error).name === 'NoSuchKey') return undefined;
    throw e;
  }
}

async function put(s3: Sender, bucket: string, key: string, body: string, contentType: string): Promise<void> {
  await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body, ContentType: contentType }));
}

let clients: { s3: S3Client; bedrock: BedrockRuntimeClient } | undefined;

/** The Lambda entry point. Throttling is retried by the SDK (adaptive mode: client-side rate limiting and backoff). */
export async function handler(event: JudgeAnswersEvent, context: { getRemainingTimeInMillis(): number }): Promise<JudgeProgress> {
  clients ??= {
    s3: new S3Client({}),
    bedrock: new BedrockRuntimeClient({ retryMode: 'adaptive', maxAttempts: 8, requestHandler: { requestTimeout: 120_000 } }),
  };
  return judgeAnswers(event, { ...clients, remainingMs: () => context.getRemainingTimeInMillis() });
}
