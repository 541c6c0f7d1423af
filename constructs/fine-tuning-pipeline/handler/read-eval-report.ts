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
  /** The run's thresholds, only to word the summary (the Gate state decides). */
  readonly thresholds?: { readonly maxEvalLossRatio?: number | null; readonly maxForgettingIncrease?: number | null };
}

/** One model's figures in the report. */
export interface EvalFigures {
  readonly eval_loss: number;
  readonly eval_perplexity: number;
  readonly probe_loss: number | null;
}

/** What the Gate state compares, plus the report itself for the registry and the notification. */
export interface EvalReportResult {
  readonly reportUri: string;
  readonly evalLossRatio: number;
  /** `null` when the run had no general-capability probe: the forgetting check then passes. */
  readonly forgettingIncrease: number | null;
  readonly examples: number;
  readonly base: EvalFigures;
  readonly tuned: EvalFigures;
  /** One line for people: the figures against the thresholds (the Rejected state's cause). */
  readonly summary: string;
}

/** The report could not be used: missing, not JSON, or not schema version 1. Not retried. */
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
  return { reportUri, ...parseReport(text, reportUri, event.thresholds) };
}

/** Validates eval.json (schema version 1) and picks the gate's numbers. */
export function parseReport(
  text: string,
  where: string,
  thresholds: ReadEvalReportEvent['thresholds'] = {},
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
  const evalLossRatio = finite(report.eval_loss_ratio, 'eval_loss_ratio', where);
  const forgettingIncrease = report.forgetting_increase === null ? null : finite(report.forgetting_increase, 'forgetting_increase', where);
  const examples = report.examples;
  if (typeof examples !== 'number' || !Number.isInteger(examples) || examples < 1) {
    throw new EvalReportInvalid(`${where}: examples must be a positive integer, got ${JSON.stringify(examples)}.`);
  }
  const base = figures(report.base, 'base', where);
  const tuned = figures(report.tuned, 'tuned', where);
  const parts = [`eval_loss_ratio=${round(evalLossRatio)} (max ${thresholds.maxEvalLossRatio ?? 'none'})`];
  parts.push(
    forgettingIncrease === null
      ? 'forgetting_increase=none (no probe)'
      : `forgetting_increase=${round(forgettingIncrease)} (max ${thresholds.maxForgettingIncrease ?? 'none'})`,
  );
  parts.push(`eval_loss ${round(base.eval_loss)} -> ${round(tuned.eval_loss)} on ${examples} examples`);
  return { evalLossRatio, forgettingIncrease, examples, base, tuned, summary: parts.join('; ') };
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
