/**
 * The ValidateDataset Lambda: streams one dataset version from S3 through the validator of
 * `lib/datasets`, stores `validation-report.json` beside it (once: dataset versions are immutable)
 * and returns a summary for the state machine, or throws `DatasetInvalid`.
 *
 * Bundled by esbuild with `@aws-sdk/*` external (the Lambda runtime provides the SDK): import nothing
 * from aws-cdk-lib here.
 */
import { GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import type { DatasetCheck, DatasetFormat, DatasetReport, OverlapPolicy } from '../../../lib/datasets';
import { datasetVerdict, formatError, formatErrorGroup, validateDatasetFiles } from '../../../lib/datasets';
import { DATASET_MANIFEST, datasetVersionPrefix } from '../../../lib/layout';
import { METHODS, type Method } from '../../../lib/methods';

/** The Lambda's input (the state machine passes it from the RunRequest). */
export interface ValidateDatasetInput {
  /** The data bucket; the function's `DATA_BUCKET` environment variable when absent. */
  readonly bucket?: string;
  readonly datasetName: string;
  /** The dataset version: the sha256 of the training file, as uploaded by `tuneyard upload`. */
  readonly datasetSha256: string;
  readonly method: Method;
  /** The run's `max_length` in tokens: rows estimated longer are counted (not an error; the trainer drops or truncates them, recipe `overlongRows`). */
  readonly maxLength?: number;
}

/** The Lambda's output when the dataset is valid for the run. */
export interface ValidateDatasetOutput {
  readonly ok: true;
  /** `s3://bucket/datasets/<name>/<sha256>/validation-report.json`: the full, method-independent report. */
  readonly reportS3Uri: string;
  /** True when the report already existed (an earlier run validated this version) and was reused. */
  readonly reused: boolean;
  readonly format: DatasetFormat;
  /** Rows of train.jsonl (and of eval.jsonl when there is one). */
  readonly rows: number;
  readonly evalRows?: number;
  readonly errorCount: 0;
  /** Rows of train.jsonl that repeat an earlier one. */
  readonly duplicates: number;
  /** Rows of eval.jsonl whose normalised content is also in train.jsonl (they inflate the eval score). */
  readonly contaminated?: number;
  /**
   * The train/eval overlap and how it was judged: `allowed` when the version was uploaded with
   * `--allow-overlap` (its manifest says so), `warning` for a version whose manifest predates the rule
   * (uploads accepted overlap then); a version with overlap is refused otherwise.
   */
  readonly overlap?: { readonly count: number; readonly policy: OverlapPolicy };
  /** Estimated token lengths of train.jsonl (chars/4) and the rows over `maxLength`. */
  readonly tokens: { readonly p50: number; readonly p95: number; readonly max: number; readonly overLimit: number };
}

/** The JSON stored as `validation-report.json`: the facts about the files, for any method. */
export interface StoredValidationReport {
  readonly schemaVersion: 1;
  readonly dataset: { readonly name: string; readonly sha256: string };
  readonly createdAt: string;
  readonly train: DatasetReport;
  readonly eval?: DatasetReport;
}

/** Thrown when the dataset has errors for the run; the state machine catches it by this name. */
export class DatasetInvalid extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DatasetInvalid';
  }
}

/** Thrown when the dataset version has no train.jsonl. */
export class DatasetNotFound extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DatasetNotFound';
  }
}

/** Thrown when the input itself is malformed (a pipeline bug, not a data problem). */
export class InvalidInput extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidInput';
  }
}

/** The part of the S3 client the handler uses (tests pass an in-memory fake). */
export interface S3Sender {
  send(command: GetObjectCommand | PutObjectCommand | ListObjectsV2Command): Promise<unknown>;
}

export interface HandlerDeps {
  readonly s3: S3Sender;
  /** The default bucket. */
  readonly bucket?: string;
  /** How many errors the DatasetInvalid message lists. @default 10 */
  readonly errorsInMessage?: number;
}

const REPORT_FILE = 'validation-report.json';

let defaultClient: S3Client | undefined;

export async function handler(event: ValidateDatasetInput): Promise<ValidateDatasetOutput> {
  defaultClient ??= new S3Client({});
  return validateDatasetVersion(event, { s3: defaultClient, bucket: process.env.DATA_BUCKET });
}

/** Validates one dataset version for a run (see the module comment). */
export async function validateDatasetVersion(input: ValidateDatasetInput, deps: HandlerDeps): Promise<ValidateDatasetOutput> {
  const { bucket, prefix, method, maxLength } = parseInput(input, deps.bucket);
  const keys = await listKeys(deps.s3, bucket, prefix);
  const trainKey = `${prefix}train.jsonl`;
  const evalKey = `${prefix}eval.jsonl`;
  const reportKey = `${prefix}${REPORT_FILE}`;
  if (!keys.has(trainKey)) {
    throw new DatasetNotFound(
      `s3://${bucket}/${trainKey} does not exist: dataset ${input.datasetName} has no version ${input.datasetSha256}. ` +
        'Upload it with `tuneyard upload` and pass the version it prints.',
    );
  }

  const manifestKey = `${prefix}${DATASET_MANIFEST}`;
  const overlap = overlapPolicy(keys.has(manifestKey) ? await readJson<DatasetManifestOverlap>(deps.s3, bucket, manifestKey) : undefined);

  let stored: StoredValidationReport;
  let reused = keys.has(reportKey);
  if (reused) {
    stored = await readJson(deps.s3, bucket, reportKey);
  } else {
    const open = (key: string) => () => objectBody(deps.s3, bucket, key);
    const reports = await validateDatasetFiles(
      { train: { name: 'train.jsonl', open: open(trainKey) }, ...(keys.has(evalKey) ? { eval: { name: 'eval.jsonl', open: open(evalKey) } } : {}) },
      { maxLength },
    );
    stored = {
      schemaVersion: 1,
      dataset: { name: input.datasetName, sha256: input.datasetSha256 },
      createdAt: new Date().toISOString(),
      train: reports.train,
      ...(reports.eval ? { eval: reports.eval } : {}),
    };
    const written = await writeOnce(deps.s3, bucket, reportKey, stored);
    if (written !== 'written') {
      stored = written;
      reused = true;
    }
  }
  return summarize(stored, { bucket, prefix, reportKey, method, maxLength, overlap, reused, errorsInMessage: deps.errorsInMessage ?? 10 });
}

/** The part of manifest.json (written by `tuneyard upload`) that decides how overlap is judged. */
interface DatasetManifestOverlap {
  readonly allowOverlap?: boolean;
}

/**
 * How train/eval overlap is judged for a version: as `tuneyard upload` judged it when it wrote the
 * version, so the pipeline never refuses what upload accepted. `allowOverlap: true` (uploaded with
 * `--allow-overlap`): allowed. A manifest without the field (an upload from before the rule, which
 * accepted overlap): a warning. `allowOverlap: false`, or no manifest: an error.
 */
export function overlapPolicy(manifest: DatasetManifestOverlap | undefined): OverlapPolicy {
  if (manifest === undefined) return 'error';
  if (manifest.allowOverlap === true) return 'allowed';
  return manifest.allowOverlap === undefined ? 'warning' : 'error';
}

function parseInput(input: ValidateDatasetInput, defaultBucket?: string) {
  const bucket = input.bucket ?? defaultBucket;
  if (!bucket) throw new InvalidInput('no bucket: pass "bucket" in the input or set DATA_BUCKET on the function');
  if (!METHODS.includes(input.method)) {
    throw new InvalidInput(`method ${JSON.stringify(input.method)} is not one of ${METHODS.join(', ')}`);
  }
  if (input.maxLength !== undefined && !(Number.isInteger(input.maxLength) && input.maxLength > 0)) {
    throw new InvalidInput(`maxLength must be a positive integer number of tokens; got ${JSON.stringify(input.maxLength)}`);
  }
  let prefix: string;
  try {
    prefix = datasetVersionPrefix(input.datasetName, input.datasetSha256);
  } catch (err) {
    throw new InvalidInput((err as Error).message);
  }
  return { bucket, prefix, method: input.method, maxLength: input.maxLength };
}

function summarize(
  stored: StoredValidationReport,
  ctx: {
    bucket: string;
    prefix: string;
    reportKey: string;
    method: Method;
    maxLength?: number;
    overlap: OverlapPolicy;
    reused: boolean;
    errorsInMessage: number;
  },
): ValidateDatasetOutput {
  const check: DatasetCheck = datasetVerdict(stored, { method: ctx.method, maxLength: ctx.maxLength, overlap: ctx.overlap });
  const { train } = check;
  const evalReport: DatasetReport | undefined = check.eval;
  if (!check.ok || train.format === null) {
    const problems = [
      ...train.errorGroups.map((g) => formatErrorGroup('train.jsonl', g)),
      ...(evalReport?.errorGroups ?? []).map((g) => formatErrorGroup('eval.jsonl', g)),
      ...check.issues.filter((i) => i.severity === 'error').map((i) => formatError(`${i.file}.jsonl`, i)),
    ];
    const shown = problems.slice(0, ctx.errorsInMessage).map((p) => (p.length > 1000 ? `${p.slice(0, 997)}...` : p));
    const more = problems.length - shown.length;
    throw new DatasetInvalid(
      `s3://${ctx.bucket}/${ctx.prefix} is not a valid ${ctx.method} dataset: ${check.errorCount} error(s)` +
        `${more > 0 ? ` (first ${shown.length} kinds shown)` : ''}. Fix the file, upload it as a new version and start a new run. ` +
        `Full report: s3://${ctx.bucket}/${ctx.reportKey}\n${shown.join('\n')}`,
    );
  }
  return {
    ok: true,
    reportS3Uri: `s3://${ctx.bucket}/${ctx.reportKey}`,
    reused: ctx.reused,
    format: train.format,
    rows: train.rows,
    ...(evalReport && check.overlap
      ? { evalRows: evalReport.rows, contaminated: check.overlap.count, overlap: { count: check.overlap.count, policy: check.overlap.policy } }
      : {}),
    errorCount: 0,
    duplicates: train.duplicates.count,
    tokens: { p50: train.tokens.p50, p95: train.tokens.p95, max: train.tokens.max, overLimit: train.tokens.overLimit.count },
  };
}

async function listKeys(s3: S3Sender, bucket: string, prefix: string): Promise<Set<string>> {
  const keys = new Set<string>();
  let token: string | undefined;
  do {
    const page = (await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }))) as {
      Contents?: Array<{ Key?: string }>;
      NextContinuationToken?: string;
    };
    for (const object of page.Contents ?? []) if (object.Key) keys.add(object.Key);
    token = page.NextContinuationToken;
  } while (token);
  return keys;
}

/** The object's body as a stream of chunks: it is never held whole. */
async function objectBody(s3: S3Sender, bucket: string, key: string): Promise<AsyncIterable<Uint8Array>> {
  const object = (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))) as { Body?: AsyncIterable<Uint8Array> };
  if (!object.Body) throw new Error(`GetObject s3://${bucket}/${key} returned no body`);
  return object.Body;
}

async function readJson<T>(s3: S3Sender, bucket: string, key: string): Promise<T> {
  const object = (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))) as { Body?: AsyncIterable<Uint8Array> };
  if (!object.Body) throw new Error(`GetObject s3://${bucket}/${key} returned no body`);
  const chunks: Uint8Array[] = [];
  for await (const chunk of object.Body) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString('utf8')) as T;
}

/**
 * Writes the report only if none exists (`If-None-Match: *`, which the data bucket's policy requires
 * under `datasets/`). When another run wrote it first (412), returns that report instead; a
 * concurrent conditional write (409) is retried.
 */
async function writeOnce(s3: S3Sender, bucket: string, key: string, report: StoredValidationReport): Promise<'written' | StoredValidationReport> {
  for (let attempt = 1; ; attempt++) {
    try {
      await s3.send(
        new PutObjectCommand({ Bucket: bucket, Key: key, Body: JSON.stringify(report), ContentType: 'application/json', IfNoneMatch: '*' }),
      );
      return 'written';
    } catch (err) {
      const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      const name = (err as Error).name;
      if (status === 412 || name === 'PreconditionFailed') return readJson(s3, bucket, key);
      if ((status === 409 || name === 'ConditionalRequestConflict') && attempt < 3) {
        await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
        continue;
      }
      throw err;
    }
  }
}
