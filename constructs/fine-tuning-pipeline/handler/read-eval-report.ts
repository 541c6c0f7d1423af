import { gunzipSync } from 'node:zlib';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { findInTar } from './tar';

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
}

/**
 * The gate's thresholds: a missing or null threshold is not checked. The plan sets those of the run's method
 * (`RunRequestSchema`): the eval loss ratio for SFT, LoRA and QLoRA, the preference accuracy for DPO.
 */
export interface GateThresholds {
  readonly maxEvalLossRatio?: number | null;
  readonly maxForgettingIncrease?: number | null;
  /** The least share of held-out preference pairs the tuned model must rank right (DPO); a report without the figure fails. */
  readonly minPreferenceAccuracy?: number | null;
}

/** One model's figures in the report. */
export interface EvalFigures {
  readonly eval_loss: number;
  readonly eval_perplexity: number;
  readonly probe_loss: number | null;
}

/**
 * How a DPO-tuned model ranks held-out preference pairs (eval.json `preference`, DPO runs only), by DPO's implicit
 * reward: beta * (log p_tuned - log p_base) of a response.
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
  readonly beta: number;
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
  /** preferred / pairs of the report's preference figures; `null` when it has none (every method but DPO). */
  readonly preferenceAccuracy: number | null;
  /** The report's preference figures (DPO), `null` without. */
  readonly preference: PreferenceFigures | null;
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
  return { reportUri, ...parseReport(text, reportUri, event.thresholds, event.forgettingProbe ?? false) };
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

  const failures = gateFailures({ evalLossRatio, forgettingIncrease, preferenceAccuracy }, thresholds, forgettingProbe);
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
  parts.push(`eval_loss_ratio=${round(evalLossRatio)} (max ${thresholds.maxEvalLossRatio ?? 'none'})`);
  parts.push(
    forgettingIncrease === null
      ? forgettingProbe
        ? 'forgetting_increase=missing (a probe was planned)'
        : 'forgetting_increase=none (no probe)'
      : `forgetting_increase=${round(forgettingIncrease)} (max ${thresholds.maxForgettingIncrease ?? 'none'})`,
  );
  parts.push(`eval_loss ${round(base.eval_loss)} -> ${round(tuned.eval_loss)} on ${examples} examples`);
  const summary = `${passed ? 'passed' : `rejected: ${failures.join('; ')}`} | ${parts.join('; ')}`;
  return { evalLossRatio, forgettingIncrease, examples, base, tuned, preferenceAccuracy, preference, passed, failures, summary };
}

/**
 * The gate: every threshold the run asked for, measured and met. A threshold whose figure was planned
 * but is missing fails (closed). NaN never passes: the comparisons are written so that it fails them.
 */
export function gateFailures(
  figures: { readonly evalLossRatio: number; readonly forgettingIncrease: number | null; readonly preferenceAccuracy?: number | null },
  thresholds: GateThresholds,
  forgettingProbe: boolean,
): string[] {
  const failures: string[] = [];
  const minAccuracy = thresholds.minPreferenceAccuracy;
  if (minAccuracy !== undefined && minAccuracy !== null) {
    const accuracy = figures.preferenceAccuracy ?? null;
    if (accuracy === null) {
      failures.push(`preference_accuracy was not measured (minimum ${minAccuracy}): the report has no preference figures, which the evaluation writes for DPO runs`);
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
    beta: finite(v.beta, 'preference.beta', where),
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
