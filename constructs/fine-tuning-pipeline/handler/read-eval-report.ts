import { gunzipSync } from 'node:zlib';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { findInTar } from './tar';
import type { JudgeResult } from './judge-answers';

/** The input of the ReadEvalReport step. */
export interface ReadEvalReportEvent {
  /**
   * Where the evaluation job left eval.json: the job's `ModelArtifacts.S3ModelArtifacts`
   * (`.../model.tar.gz`, or the uncompressed `.../model/` prefix), or the S3 URI of eval.json itself.
   */
  readonly reportUri: string;
  /** The run's thresholds (the plan's, every default applied). */
  readonly thresholds?: GateThresholds;
  /**
   * Whether the run planned a forgetting probe (`plan.forgettingProbe`): a report without its figure
   * then fails the gate (closed), instead of passing for want of a measurement.
   */
  readonly forgettingProbe?: boolean;
  /**
   * The benchmarks the run planned (`plan.benchmarks`): one missing from the report fails a maxBenchmarkDrop
   * threshold (closed).
   */
  readonly benchmarks?: string[];
  /** The LLM judge's result (the JudgeAnswers state's `$.judge`), `null` when the run has no judge. */
  readonly judge?: JudgeResult | null;
}

/** The LLM judge's pairwise verdicts of the tuned model's answers against the base model's: JudgeAnswers' result. */
export type { JudgeResult } from './judge-answers';

/**
 * The gate's thresholds: a missing or null threshold is not checked. The plan sets those of the run's method
 * (`RunRequestSchema`): the eval loss ratio for SFT, LoRA and QLoRA, the preference accuracy for DPO and reward models,
 * the reward gain for GRPO and RLOO.
 */
export interface GateThresholds {
  readonly maxEvalLossRatio?: number | null;
  readonly maxForgettingIncrease?: number | null;
  /** The least share of held-out preference pairs the tuned model must rank right (DPO, reward); a report without the figure fails. */
  readonly minPreferenceAccuracy?: number | null;
  /** The least mean score of the tuned model's answers per grader, by the grader's name; a grader that graded no row fails. */
  readonly minGraderMean?: Record<string, number> | null;
  /**
   * The least gain of the run's reward on the eval prompts, tuned mean minus base mean (GRPO, RLOO: eval.json `reward`);
   * a report without the figure, or with a reward that is not a finite number, fails.
   */
  readonly minRewardGain?: number | null;
  /** The least win rate of the tuned model over the base by the LLM judge; no judge result fails. */
  readonly minJudgeWinRate?: number | null;
  /** The most accuracy (a fraction: 0.02 is 2 points) any benchmark may lose, base minus tuned; a planned benchmark missing from the report fails. */
  readonly maxBenchmarkDrop?: number | null;
}

/** One grader's figures for one model (eval.json `graders.base|tuned.<name>`). */
export interface GraderFigures {
  /** Mean score over the graded answers, a row that could not be graded counting 0; `null` when the grader did not run. */
  readonly mean: number | null;
  /** Rows graded (not errored). */
  readonly graded: number;
  readonly error_count: number;
  /** The first errors: {row, error}. */
  readonly errors: { row: number; error: string }[];
  /** Why the grader did not run (a type the job cannot run yet), when it did not. */
  readonly unavailable?: string;
}

/** One benchmark's accuracies (eval.json `benchmarks[]`); drop = base - tuned. */
export interface BenchmarkFigures {
  readonly name: string;
  readonly items: number;
  readonly base_accuracy: number;
  readonly tuned_accuracy: number;
  readonly drop: number;
}

/** One model's figures in the report. */
export interface EvalFigures {
  readonly eval_loss: number;
  readonly eval_perplexity: number;
  readonly probe_loss: number | null;
}

/**
 * How the tuned model ranks held-out preference pairs (eval.json `preference`, DPO and reward runs): for DPO by its
 * implicit reward, beta * (log p_tuned - log p_base) of a response; for a reward model (method reward) by its score.
 */
export interface PreferenceFigures {
  readonly pairs: number;
  /** Pairs whose chosen response has the higher reward (a tie is no win). */
  readonly preferred: number;
  /** preferred / pairs. */
  readonly accuracy: number;
  readonly chosen_reward: number;
  readonly rejected_reward: number;
  /** Mean of chosen minus rejected reward. */
  readonly reward_margin: number;
  /** DPO's temperature; null for a reward model, whose reward is its score. */
  readonly beta: number | null;
}

/** One model's reward on the eval prompts (eval.json `reward.base|tuned`). */
export interface RewardSide {
  /** Mean over the answers of the weighted sum of the sources' rewards; `null` when it is not a finite number. */
  readonly mean: number | null;
  /** Each source's mean reward, before weighting (a row a grader could not grade left out); `null` when none was scored. */
  readonly by_source: Record<string, number | null>;
  /** Answers that missed the run's format pattern (every source scored them 0); 0 without a pattern. */
  readonly format_misses: number;
}

/**
 * The run's reward of the base and the tuned answers to the eval prompts (eval.json `reward`, GRPO and RLOO runs): each
 * source (a grader by its name, `reward_model`) weighted as in training (`sources`: source -> weight), the format guard
 * applied, no length penalty (the answers are capped by the evaluation's max_new_tokens).
 */
export interface RewardFigures {
  /** The reward sources and their weights (recipe.rewardWeights; 1 each by default). */
  readonly sources: Record<string, number>;
  /** The format guard (recipe.grpoFormatRegex), `null` without one. */
  readonly format_regex: string | null;
  /** Answers scored, of each model. */
  readonly rows: number;
  readonly base: RewardSide;
  readonly tuned: RewardSide;
  /** tuned.mean - base.mean; `null` when either is. */
  readonly gain: number | null;
}

/** What the Gate state compares, plus the report itself for the registry and the notification. */
export interface EvalReportResult {
  readonly reportUri: string;
  /** tuned / base eval loss, computed here from the losses (the report's own ratio must agree). */
  readonly evalLossRatio: number;
  /** `null` when the run had no general-capability probe: the forgetting check then passes. */
  readonly forgettingIncrease: number | null;
  readonly examples: number;
  readonly base: EvalFigures;
  readonly tuned: EvalFigures;
  /** preferred / pairs of the report's preference figures; `null` when it has none (every method but DPO and reward). */
  readonly preferenceAccuracy: number | null;
  /** The report's preference figures (DPO, reward), `null` without. */
  readonly preference: PreferenceFigures | null;
  /** The run's reward of the base and tuned answers (GRPO, RLOO), `null` when the report has none. */
  readonly reward: RewardFigures | null;
  /** The graders' figures of each model, `null` when the run had no graders. */
  readonly graders: { readonly base: Record<string, GraderFigures>; readonly tuned: Record<string, GraderFigures> } | null;
  /** The benchmarks' accuracies, `null` when the run had none. */
  readonly benchmarks: BenchmarkFigures[] | null;
  /** The judge's result the gate read, `null` without a judge. */
  readonly judge: JudgeResult | null;
  /** The gate's decision: every threshold the run asked for was measured and met. */
  readonly passed: boolean;
  /** Each threshold that was not met or not measured, one line each (empty when passed). */
  readonly failures: string[];
  /** One line for people: the decision and the figures against the thresholds (the Rejected state's cause). */
  readonly summary: string;
}

/** The report could not be used: missing, not JSON, not schema version 1, or inconsistent. Not retried. */
export class EvalReportInvalid extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EvalReportInvalid';
  }
}

/** The S3 client the handler needs (so tests can pass a fake). */
export type S3Reader = Pick<S3Client, 'send'>;

const MAX_OBJECT_BYTES = 64 * 1024 * 1024;
const REPORT_NAME = 'eval.json';

/** Reads eval.json from the evaluation job's output and returns the numbers the Gate compares. */
export async function readEvalReport(event: ReadEvalReportEvent, s3: S3Reader): Promise<EvalReportResult> {
  const { bucket, key } = parseS3Uri(event.reportUri);
  let reportKey: string;
  let text: string;
  if (key.endsWith('.tar.gz') || key.endsWith('.tgz')) {
    reportKey = key;
    const archive = gunzipSync(await getObject(s3, bucket, key));
    const file = findInTar(archive, (name) => name === REPORT_NAME);
    if (!file) throw new EvalReportInvalid(`s3://${bucket}/${key} holds no ${REPORT_NAME}: the evaluation job did not write its report.`);
    text = file.toString('utf8');
  } else {
    reportKey = key === '' || key.endsWith('/') ? `${key}${REPORT_NAME}` : key;
    text = (await getObject(s3, bucket, reportKey)).toString('utf8');
  }
  const reportUri = `s3://${bucket}/${reportKey}`;
  return { reportUri, ...parseReport(text, reportUri, event.thresholds, event.forgettingProbe ?? false, { benchmarks: event.benchmarks ?? [], judge: event.judge ?? null }) };
}

/** How far a ratio or difference written in the report may be from the one computed from its losses (float rounding). */
const CONSISTENCY_TOLERANCE = 1e-6;
/** The same for the reward margin, relative to the rewards: TRL averages them in float32, batch by batch. */
const REWARD_TOLERANCE = 1e-5;

/**
 * Validates eval.json (schema version 1; `preference` is optional), recomputes the gate's figures from the
 * losses and the pair counts, and decides the gate: every threshold measured and met, or the run is rejected.
 */
export function parseReport(
  text: string,
  where: string,
  thresholds: GateThresholds = {},
  forgettingProbe = false,
  planned: { readonly benchmarks: readonly string[]; readonly judge: JudgeResult | null } = { benchmarks: [], judge: null },
): Omit<EvalReportResult, 'reportUri'> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new EvalReportInvalid(`${where} is not JSON (${(e as Error).message}).`);
  }
  const report = raw as Record<string, unknown>;
  if (!report || typeof report !== 'object' || report.schema_version !== 1) {
    throw new EvalReportInvalid(`${where}: schema_version must be 1, got ${JSON.stringify(report?.schema_version)}.`);
  }
  const examples = report.examples;
  if (typeof examples !== 'number' || !Number.isInteger(examples) || examples < 1) {
    throw new EvalReportInvalid(`${where}: examples must be a positive integer, got ${JSON.stringify(examples)}.`);
  }
  const base = figures(report.base, 'base', where);
  const tuned = figures(report.tuned, 'tuned', where);
  if (!(base.eval_loss > 0)) throw new EvalReportInvalid(`${where}: base.eval_loss must be above 0 to compare with, got ${base.eval_loss}.`);

  // The figures the gate compares are computed from the losses; a report whose own ratio or difference
  // disagrees was not written by the trainer's rules (a custom image, a bug): it is refused, not trusted.
  const evalLossRatio = tuned.eval_loss / base.eval_loss;
  const writtenRatio = finite(report.eval_loss_ratio, 'eval_loss_ratio', where);
  if (!agrees(writtenRatio, evalLossRatio)) {
    throw new EvalReportInvalid(
      `${where}: eval_loss_ratio ${writtenRatio} disagrees with the losses it summarises (tuned ${tuned.eval_loss} / base ${base.eval_loss} = ${round(evalLossRatio)}). ` +
        'The report is inconsistent: fix the evaluation that wrote it (eval_loss_ratio = tuned.eval_loss / base.eval_loss).',
    );
  }
  const measured = base.probe_loss !== null && tuned.probe_loss !== null;
  const forgettingIncrease = measured ? tuned.probe_loss! - base.probe_loss! : null;
  const writtenIncrease = report.forgetting_increase === null || report.forgetting_increase === undefined ? null : finite(report.forgetting_increase, 'forgetting_increase', where);
  if ((writtenIncrease === null) !== (forgettingIncrease === null) || (writtenIncrease !== null && !agrees(writtenIncrease, forgettingIncrease!))) {
    throw new EvalReportInvalid(
      `${where}: forgetting_increase ${JSON.stringify(writtenIncrease)} disagrees with the probe losses (tuned ${tuned.probe_loss} - base ${base.probe_loss}). ` +
        'The report is inconsistent: fix the evaluation that wrote it (forgetting_increase = tuned.probe_loss - base.probe_loss, null only without a probe).',
    );
  }

  const preference = report.preference === null || report.preference === undefined ? null : preferenceFigures(report.preference, where);
  const preferenceAccuracy = preference === null ? null : preference.preferred / preference.pairs;

  const reward = report.reward === null || report.reward === undefined ? null : rewardReport(report.reward, where);
  const graders = report.graders === null || report.graders === undefined ? null : graderReport(report.graders, where);
  const benchmarks = report.benchmarks === null || report.benchmarks === undefined ? null : benchmarkReport(report.benchmarks, where);
  const judge = planned.judge === null ? null : judgeResult(planned.judge);

  const failures = gateFailures({ evalLossRatio, forgettingIncrease, preferenceAccuracy, reward, graders, benchmarks, judge }, thresholds, forgettingProbe, planned.benchmarks);
  const passed = failures.length === 0;
  const parts: string[] = [];
  const minAccuracy = thresholds.minPreferenceAccuracy ?? null;
  if (preference !== null) {
    parts.push(
      `preference_accuracy=${round(preferenceAccuracy!)} (${preference.preferred}/${preference.pairs} pairs; min ${minAccuracy ?? 'none'})`,
      `reward_margin=${round(preference.reward_margin)}`,
    );
  } else if (minAccuracy !== null) {
    parts.push(`preference_accuracy=missing (min ${minAccuracy})`);
  }
  const minGain = thresholds.minRewardGain ?? null;
  if (reward !== null && reward.gain !== null) {
    parts.push(`reward_gain=${round(reward.gain)} (mean reward ${round(reward.base.mean!)} -> ${round(reward.tuned.mean!)} on ${reward.rows} answers; min ${minGain ?? 'none'})`);
  } else if (reward !== null || minGain !== null) {
    parts.push(`reward_gain=missing (min ${minGain ?? 'none'})`);
  }
  parts.push(`eval_loss_ratio=${round(evalLossRatio)} (max ${thresholds.maxEvalLossRatio ?? 'none'})`);
  parts.push(
    forgettingIncrease === null
      ? forgettingProbe
        ? 'forgetting_increase=missing (a probe was planned)'
        : 'forgetting_increase=none (no probe)'
      : `forgetting_increase=${round(forgettingIncrease)} (max ${thresholds.maxForgettingIncrease ?? 'none'})`,
  );
  parts.push(...measureParts({ graders, benchmarks, judge }, thresholds, planned.benchmarks));
  parts.push(`eval_loss ${round(base.eval_loss)} -> ${round(tuned.eval_loss)} on ${examples} examples`);
  const summary = `${passed ? 'passed' : `rejected: ${failures.join('; ')}`} | ${parts.join('; ')}`;
  return { evalLossRatio, forgettingIncrease, examples, base, tuned, preferenceAccuracy, preference, reward, graders, benchmarks, judge, passed, failures, summary };
}

/**
 * The gate: every threshold the run asked for, measured and met. A threshold whose figure was planned
 * but is missing fails (closed). NaN never passes: the comparisons are written so that it fails them.
 */
export function gateFailures(
  figures: {
    readonly evalLossRatio: number;
    readonly forgettingIncrease: number | null;
    readonly preferenceAccuracy?: number | null;
    readonly reward?: RewardFigures | null;
    readonly graders?: EvalReportResult['graders'];
    readonly benchmarks?: BenchmarkFigures[] | null;
    readonly judge?: JudgeResult | null;
  },
  thresholds: GateThresholds,
  forgettingProbe: boolean,
  plannedBenchmarks: readonly string[] = [],
): string[] {
  const failures: string[] = [];
  const minGain = thresholds.minRewardGain;
  if (minGain !== undefined && minGain !== null) {
    const reward = figures.reward ?? null;
    if (reward === null) {
      failures.push(`reward gain was not measured (minimum ${minGain}): the report has no reward figures, which the evaluation writes for grpo and rloo runs`);
    } else if (reward.gain === null || reward.base.mean === null || reward.tuned.mean === null) {
      failures.push(`reward gain was not measured (minimum ${minGain}): the mean reward is not a finite number (base ${reward.base.mean ?? 'missing'}, tuned ${reward.tuned.mean ?? 'missing'})`);
    } else if (!(reward.gain >= minGain)) {
      failures.push(`reward gain ${round(reward.gain)} is below the minimum ${minGain} (mean reward base ${round(reward.base.mean)}, tuned ${round(reward.tuned.mean)})`);
    }
  }
  for (const [name, min] of Object.entries(thresholds.minGraderMean ?? {})) {
    const grader = figures.graders?.tuned[name];
    const missing = graderMissing(grader, figures.graders ?? null);
    if (missing !== null) failures.push(`grader ${name} was not measured (minimum ${min}): ${missing}`);
    else if (!(grader!.mean! >= min)) failures.push(`grader ${name} mean ${round(grader!.mean!)} is below the minimum ${min}`);
  }
  const minWinRate = thresholds.minJudgeWinRate;
  if (minWinRate !== undefined && minWinRate !== null) {
    const judge = figures.judge ?? null;
    if (judge === null) failures.push(`judge_win_rate was not measured (minimum ${minWinRate}): the pipeline passed no judge result`);
    else if (judge.wins + judge.ties + judge.losses === 0) failures.push(`judge_win_rate was not measured (minimum ${minWinRate}): the judge gave no verdict (0 wins, ties or losses of ${judge.items} items)`);
    else if (!(judge.winRate >= minWinRate)) failures.push(`judge_win_rate ${round(judge.winRate)} is below the minimum ${minWinRate}`);
  }
  const maxDrop = thresholds.maxBenchmarkDrop;
  if (maxDrop !== undefined && maxDrop !== null) {
    const reported = figures.benchmarks ?? [];
    const names = [...new Set([...plannedBenchmarks, ...reported.map((b) => b.name)])];
    if (names.length === 0) failures.push(`benchmark drop was not measured (maximum ${maxDrop}): the report has no benchmarks and the run planned none`);
    for (const name of names) {
      const entry = reported.find((b) => b.name === name);
      if (!entry) failures.push(`benchmark ${name} was not measured (maximum drop ${maxDrop}): eval.json has no result for it`);
      else if (!(entry.drop <= maxDrop)) failures.push(`benchmark ${name} drop ${round(entry.drop)} is above the maximum ${maxDrop} (accuracy ${round(entry.base_accuracy)} -> ${round(entry.tuned_accuracy)})`);
    }
  }
  const minAccuracy = thresholds.minPreferenceAccuracy;
  if (minAccuracy !== undefined && minAccuracy !== null) {
    const accuracy = figures.preferenceAccuracy ?? null;
    if (accuracy === null) {
      failures.push(`preference_accuracy was not measured (minimum ${minAccuracy}): the report has no preference figures, which the evaluation writes for DPO and reward runs`);
    } else if (!(accuracy >= minAccuracy)) {
      failures.push(`preference_accuracy ${round(accuracy)} is below the minimum ${minAccuracy}`);
    }
  }
  const maxRatio = thresholds.maxEvalLossRatio;
  if (maxRatio !== undefined && maxRatio !== null && !(figures.evalLossRatio <= maxRatio)) {
    failures.push(`eval_loss_ratio ${round(figures.evalLossRatio)} is above the maximum ${maxRatio}`);
  }
  const maxIncrease = thresholds.maxForgettingIncrease;
  if (maxIncrease !== undefined && maxIncrease !== null) {
    if (figures.forgettingIncrease === null) {
      if (forgettingProbe) failures.push(`forgetting_increase was not measured although the run planned a probe (maximum ${maxIncrease})`);
    } else if (!(figures.forgettingIncrease <= maxIncrease)) {
      failures.push(`forgetting_increase ${round(figures.forgettingIncrease)} is above the maximum ${maxIncrease}`);
    }
  }
  return failures;
}

/** Why a grader's tuned figure cannot be gated on, or `null` when it can. */
function graderMissing(grader: GraderFigures | undefined, graders: EvalReportResult['graders']): string | null {
  if (graders === null) return 'the report has no grader results';
  if (grader === undefined) return `the report has no result for it (graders reported: ${Object.keys(graders.tuned).join(', ') || 'none'})`;
  if (grader.unavailable !== undefined || grader.mean === null) return `the evaluation could not run it (${grader.unavailable ?? 'no mean'})`;
  if (grader.graded === 0) {
    const first = grader.errors[0];
    return `it errored on every row (${grader.error_count} of them${first ? `; row ${first.row}: ${first.error}` : ''})`;
  }
  return null;
}

/** The summary's parts for the graders, the judge and the benchmarks: each figure the gate read, beside its threshold. */
function measureParts(
  figures: { readonly graders: EvalReportResult['graders']; readonly benchmarks: BenchmarkFigures[] | null; readonly judge: JudgeResult | null },
  thresholds: GateThresholds,
  plannedBenchmarks: readonly string[],
): string[] {
  const parts: string[] = [];
  const minMean = thresholds.minGraderMean ?? {};
  const graderNames = [...new Set([...Object.keys(figures.graders?.tuned ?? {}), ...Object.keys(minMean)])];
  for (const name of graderNames) {
    const grader = figures.graders?.tuned[name];
    const limit = `min ${minMean[name] ?? 'none'}`;
    if (graderMissing(grader, figures.graders) !== null) {
      parts.push(`grader ${name}=missing (${limit})`);
    } else {
      const base = figures.graders!.base[name]?.mean;
      const errors = grader!.error_count ? `, ${grader!.error_count} errors` : '';
      parts.push(`grader ${name}=${round(grader!.mean!)} (base ${base === null || base === undefined ? 'missing' : round(base)}${errors}; ${limit})`);
    }
  }
  const minWinRate = thresholds.minJudgeWinRate ?? null;
  if (figures.judge !== null) {
    const j = figures.judge;
    parts.push(`judge_win_rate=${round(j.winRate)} (${j.wins} wins, ${j.ties} ties, ${j.losses} losses of ${j.items} items; min ${minWinRate ?? 'none'})`);
  } else if (minWinRate !== null) {
    parts.push(`judge_win_rate=missing (min ${minWinRate})`);
  }
  const maxDrop = thresholds.maxBenchmarkDrop ?? null;
  const reported = figures.benchmarks ?? [];
  for (const name of [...new Set([...plannedBenchmarks, ...reported.map((b) => b.name)])]) {
    const entry = reported.find((b) => b.name === name);
    parts.push(
      entry
        ? `benchmark ${name} drop=${round(entry.drop)} (accuracy ${round(entry.base_accuracy)} -> ${round(entry.tuned_accuracy)} on ${entry.items} items; max ${maxDrop ?? 'none'})`
        : `benchmark ${name} drop=missing (max ${maxDrop ?? 'none'})`,
    );
  }
  return parts;
}

function graderReport(value: unknown, where: string): NonNullable<EvalReportResult['graders']> {
  const v = value as Record<string, unknown> | null;
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new EvalReportInvalid(`${where}: graders must be an object {base, tuned} or null.`);
  const side = (name: 'base' | 'tuned'): Record<string, GraderFigures> => {
    const results = v[name] as Record<string, unknown> | null;
    if (!results || typeof results !== 'object' || Array.isArray(results)) throw new EvalReportInvalid(`${where}: graders.${name} must be an object of grader results by name.`);
    const out: Record<string, GraderFigures> = {};
    for (const [grader, raw] of Object.entries(results)) {
      const r = raw as Record<string, unknown> | null;
      const field = `graders.${name}.${grader}`;
      if (!r || typeof r !== 'object' || Array.isArray(r)) throw new EvalReportInvalid(`${where}: ${field} must be an object of figures.`);
      const graded = r.graded;
      const errorCount = r.error_count;
      if (typeof graded !== 'number' || !Number.isInteger(graded) || graded < 0) throw new EvalReportInvalid(`${where}: ${field}.graded must be a whole number, got ${JSON.stringify(graded)}.`);
      if (typeof errorCount !== 'number' || !Number.isInteger(errorCount) || errorCount < 0) throw new EvalReportInvalid(`${where}: ${field}.error_count must be a whole number, got ${JSON.stringify(errorCount)}.`);
      const errors = Array.isArray(r.errors) ? (r.errors as { row: number; error: string }[]) : [];
      out[grader] = {
        mean: r.mean === null || r.mean === undefined ? null : finite(r.mean, `${field}.mean`, where),
        graded,
        error_count: errorCount,
        errors,
        ...(typeof r.unavailable === 'string' ? { unavailable: r.unavailable } : {}),
      };
    }
    return out;
  };
  return { base: side('base'), tuned: side('tuned') };
}

/** eval.json `reward`: its sources' weights, each side's mean (null: not finite) and a gain that agrees with them. */
function rewardReport(value: unknown, where: string): RewardFigures {
  const v = value as Record<string, unknown> | null;
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new EvalReportInvalid(`${where}: reward must be an object {sources, rows, base, tuned, gain} or null.`);
  const rows = v.rows;
  if (typeof rows !== 'number' || !Number.isInteger(rows) || rows < 1) throw new EvalReportInvalid(`${where}: reward.rows must be a positive integer, got ${JSON.stringify(rows)}.`);
  const record = <T>(raw: unknown, field: string, each: (x: unknown, at: string) => T): Record<string, T> => {
    if (!raw || typeof raw !== 'object' || Array.isArray(raw)) throw new EvalReportInvalid(`${where}: ${field} must be an object by source name.`);
    return Object.fromEntries(Object.entries(raw).map(([name, x]) => [name, each(x, `${field}.${name}`)]));
  };
  const orNull = (x: unknown, at: string): number | null => (x === null ? null : finite(x, at, where));
  const sources = record(v.sources, 'reward.sources', (x, at) => finite(x, at, where));
  const side = (name: 'base' | 'tuned'): RewardSide => {
    const s = v[name] as Record<string, unknown> | null;
    if (!s || typeof s !== 'object' || Array.isArray(s)) throw new EvalReportInvalid(`${where}: reward.${name} must be an object {mean, by_source}.`);
    const misses = s.format_misses;
    if (typeof misses !== 'number' || !Number.isInteger(misses) || misses < 0 || misses > rows) {
      throw new EvalReportInvalid(`${where}: reward.${name}.format_misses must be a whole number from 0 to rows (${rows}), got ${JSON.stringify(misses)}.`);
    }
    return { mean: orNull(s.mean, `reward.${name}.mean`), by_source: record(s.by_source, `reward.${name}.by_source`, orNull), format_misses: misses };
  };
  const base = side('base');
  const tuned = side('tuned');
  const gain = v.gain === null || v.gain === undefined ? null : finite(v.gain, 'reward.gain', where);
  const computed = base.mean === null || tuned.mean === null ? null : tuned.mean - base.mean;
  if ((gain === null) !== (computed === null) || (gain !== null && !agrees(gain, computed!))) {
    throw new EvalReportInvalid(
      `${where}: reward.gain ${JSON.stringify(gain)} disagrees with the means it summarises (tuned ${tuned.mean} - base ${base.mean}). ` +
        'The report is inconsistent: fix the evaluation that wrote it (gain = tuned.mean - base.mean, null only when a mean is).',
    );
  }
  if (v.format_regex !== null && typeof v.format_regex !== 'string') throw new EvalReportInvalid(`${where}: reward.format_regex must be a string or null, got ${JSON.stringify(v.format_regex)}.`);
  return { sources, format_regex: v.format_regex, rows, base, tuned, gain };
}

function benchmarkReport(value: unknown, where: string): BenchmarkFigures[] {
  if (!Array.isArray(value)) throw new EvalReportInvalid(`${where}: benchmarks must be a list or null.`);
  return value.map((raw, i) => {
    const r = raw as Record<string, unknown> | null;
    const field = `benchmarks[${i}]`;
    if (!r || typeof r !== 'object' || typeof r.name !== 'string') throw new EvalReportInvalid(`${where}: ${field} must be an object with a name.`);
    const items = r.items;
    if (typeof items !== 'number' || !Number.isInteger(items) || items < 1) throw new EvalReportInvalid(`${where}: ${field}.items must be a positive integer, got ${JSON.stringify(items)}.`);
    const entry: BenchmarkFigures = {
      name: r.name,
      items,
      base_accuracy: finite(r.base_accuracy, `${field}.base_accuracy`, where),
      tuned_accuracy: finite(r.tuned_accuracy, `${field}.tuned_accuracy`, where),
      drop: finite(r.drop, `${field}.drop`, where),
    };
    // the drop the gate compares is computed from the accuracies, as the loss ratio is from the losses
    if (!agrees(entry.drop, entry.base_accuracy - entry.tuned_accuracy)) {
      throw new EvalReportInvalid(
        `${where}: ${field}.drop ${entry.drop} disagrees with the accuracies it summarises (base ${entry.base_accuracy} - tuned ${entry.tuned_accuracy}). ` +
          'The report is inconsistent: fix the evaluation that wrote it (drop = base_accuracy - tuned_accuracy).',
      );
    }
    return entry;
  });
}

/** The judge's result as the JudgeAnswers state wrote it: counts that add up and a win rate that agrees with them. */
function judgeResult(value: JudgeResult): JudgeResult {
  const v = value as unknown as Record<string, unknown>;
  const where = 'the judge result ($.judge)';
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new EvalReportInvalid(`${where} must be an object {reportUri, items, wins, ties, losses, winRate} or null, got ${JSON.stringify(value)}.`);
  for (const field of ['items', 'wins', 'ties', 'losses'] as const) {
    const n = v[field];
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 0) throw new EvalReportInvalid(`${where}: ${field} must be a whole number, got ${JSON.stringify(n)}.`);
  }
  const judged = value.wins + value.ties + value.losses;
  // no verdict: no rate to check (the gate reports the judge as not measured)
  const winRate = judged === 0 && typeof v.winRate !== 'number' ? 0 : finite(v.winRate, 'winRate', where);
  if (judged > 0 && !agrees(winRate, value.wins / judged)) {
    throw new EvalReportInvalid(`${where}: winRate ${winRate} disagrees with the verdicts (${value.wins} wins of ${judged} = ${round(value.wins / judged)}); fix the judge step (winRate = wins / (wins + ties + losses)).`);
  }
  return { reportUri: String(v.reportUri), items: value.items, wins: value.wins, ties: value.ties, losses: value.losses, winRate };
}

function agrees(written: number, computed: number): boolean {
  return Math.abs(written - computed) <= CONSISTENCY_TOLERANCE * Math.max(1, Math.abs(computed));
}

function figures(value: unknown, field: string, where: string): EvalFigures {
  const v = value as Record<string, unknown> | null;
  if (!v || typeof v !== 'object') throw new EvalReportInvalid(`${where}: ${field} must be an object of figures.`);
  return {
    eval_loss: finite(v.eval_loss, `${field}.eval_loss`, where),
    eval_perplexity: finite(v.eval_perplexity, `${field}.eval_perplexity`, where),
    probe_loss: v.probe_loss === null || v.probe_loss === undefined ? null : finite(v.probe_loss, `${field}.probe_loss`, where),
  };
}

function preferenceFigures(value: unknown, where: string): PreferenceFigures {
  const v = value as Record<string, unknown> | null;
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new EvalReportInvalid(`${where}: preference must be an object of figures or null.`);
  const pairs = v.pairs;
  if (typeof pairs !== 'number' || !Number.isInteger(pairs) || pairs < 1) {
    throw new EvalReportInvalid(`${where}: preference.pairs must be a positive integer, got ${JSON.stringify(pairs)}.`);
  }
  const preferred = v.preferred;
  if (typeof preferred !== 'number' || !Number.isInteger(preferred) || preferred < 0 || preferred > pairs) {
    throw new EvalReportInvalid(`${where}: preference.preferred must be a whole number from 0 to pairs (${pairs}), got ${JSON.stringify(preferred)}.`);
  }
  const figures: PreferenceFigures = {
    pairs,
    preferred,
    accuracy: finite(v.accuracy, 'preference.accuracy', where),
    chosen_reward: finite(v.chosen_reward, 'preference.chosen_reward', where),
    rejected_reward: finite(v.rejected_reward, 'preference.rejected_reward', where),
    reward_margin: finite(v.reward_margin, 'preference.reward_margin', where),
    beta: v.beta === null ? null : finite(v.beta, 'preference.beta', where),
  };
  if (!agrees(figures.accuracy, preferred / pairs)) {
    throw new EvalReportInvalid(
      `${where}: preference.accuracy ${figures.accuracy} disagrees with the pairs it summarises (${preferred} preferred of ${pairs} = ${round(preferred / pairs)}). ` +
        'The report is inconsistent: fix the evaluation that wrote it (accuracy = preferred / pairs).',
    );
  }
  const margin = figures.chosen_reward - figures.rejected_reward;
  const scale = Math.max(1, Math.abs(figures.chosen_reward), Math.abs(figures.rejected_reward));
  if (!(Math.abs(figures.reward_margin - margin) <= REWARD_TOLERANCE * scale)) {
    throw new EvalReportInvalid(
      `${where}: preference.reward_margin ${figures.reward_margin} disagrees with the rewards it summarises (chosen ${figures.chosen_reward} - rejected ${figures.rejected_reward} = ${round(margin)}). ` +
        'The report is inconsistent: fix the evaluation that wrote it (reward_margin = chosen_reward - rejected_reward).',
    );
  }
  return figures;
}

function finite(value: unknown, field: string, where: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new EvalReportInvalid(`${where}: ${field} must be a finite number, got ${JSON.stringify(value)}.`);
  }
  return value;
}

function round(n: number): string {
  return Number(n.toPrecision(4)).toString();
}

function parseS3Uri(uri: string): { bucket: string; key: string } {
  const match = /^s3:\/\/([^/]+)\/?(.*)$/.exec(uri ?? '');
  if (!match) throw new EvalReportInvalid(`reportUri must be an s3:// URI, got ${JSON.stringify(uri)}.`);
  return { bucket: match[1], key: match[2] };
}

async function getObject(s3: S3Reader, bucket: string, key: string): Promise<Buffer> {
  let response;
  try {
    response = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  } catch (e) {
    const name = (e as Error).name;
    if (name === 'NoSuchKey' || name === 'NotFound') {
      throw new EvalReportInvalid(`s3://${bucket}/${key} does not exist: the evaluation job did not write its report.`);
    }
    throw e;
  }
  if ((response.ContentLength ?? 0) > MAX_OBJECT_BYTES) {
    throw new EvalReportInvalid(`s3://${bucket}/${key} is ${response.ContentLength} bytes; an evaluation output over ${MAX_OBJECT_BYTES} bytes is not a report.`);
  }
  const bytes = await response.Body?.transformToByteArray();
  if (!bytes) throw new EvalReportInvalid(`s3://${bucket}/${key} is empty.`);
  return Buffer.from(bytes);
}

let client: S3Client | undefined;

/** The Lambda entry point. */
export async function handler(event: ReadEvalReportEvent): Promise<EvalReportResult> {
  client ??= new S3Client({});
  return readEvalReport(event, client);
}
