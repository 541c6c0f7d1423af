/**
 * The dataset rules across a version's files, in one place for `tuneyard validate`, `tuneyard upload`
 * and the pipeline's ValidateDataset Lambda: each file's own rules (the validator), the method's, and the
 * rules between the training and eval files (one format, no overlap unless allowed).
 */
import type { Method } from '../methods';
import { DatasetReport, DatasetValidator, ErrorGroup, reportForMethod, ReportErrorCode } from './validator';

/**
 * What train/eval overlap (eval rows whose normalised content is in the training file) is:
 * - `error`: the dataset is refused (`tuneyard upload`; the pipeline for versions uploaded without `--allow-overlap`);
 * - `warning`: reported; `tuneyard validate` fails on it only with `--strict`;
 * - `allowed`: recorded, not a problem (`upload --allow-overlap`, and the pipeline for versions uploaded so).
 */
export type OverlapPolicy = 'error' | 'warning' | 'allowed';

/** One file of a dataset version, opened when its turn comes (the eval file after the training file). */
export interface DatasetFileSource {
  /** The file's name in the commands messages suggest. @default 'FILE' */
  readonly name?: string;
  /** Its bytes, JSON Lines: a file stream, an S3 GetObject body, decompressed input ({@link openDatasetInput}). */
  open(): AsyncIterable<Uint8Array> | Promise<AsyncIterable<Uint8Array>>;
  /**
   * The line of the file the user has where row-line `line` of the JSON Lines starts, once read (for a
   * JSON array converted by {@link openDatasetInput}): the reports' lines are mapped through it.
   *
   * @default - the identity
   */
  readonly lineInFile?: (line: number) => number;
}

export interface CheckDatasetOptions {
  /** The training method the files are checked for. @default - none: only the files' own rules */
  readonly method?: Method;
  /** The run's max_length in tokens (rows over it are counted, not errors). @default - no limit */
  readonly maxLength?: number;
  /** What train/eval overlap is. @default 'error' */
  readonly overlap?: OverlapPolicy;
  /** Errors listed per file (all are counted). @default 50 */
  readonly maxErrors?: number;
}

/** A finding about the files together, or about one file in the light of the other. */
export interface DatasetIssue {
  readonly file: 'train' | 'eval';
  readonly line: number;
  readonly code: ReportErrorCode;
  readonly message: string;
  readonly severity: 'error' | 'warning';
}

/** The verdict on a dataset version: every rule, for the CLI and the pipeline alike. */
export interface DatasetCheck {
  /** No errors (warnings allowed). */
  readonly ok: boolean;
  /** Errors in all: both files' and the cross-file ones. */
  readonly errorCount: number;
  /** The training file's report, for the method when one was given. */
  readonly train: DatasetReport;
  readonly eval?: DatasetReport;
  /** Cross-file findings (errors and warnings), after the files' own errors. */
  readonly issues: DatasetIssue[];
  /**
   * Eval rows whose normalised content (NFKC, lower-cased, white space collapsed) is in the training file,
   * with the policy they were judged by; only with an eval file.
   */
  readonly overlap?: { readonly count: number; readonly examples: Array<{ line: number; trainLine: number }>; readonly policy: OverlapPolicy };
}

/**
 * Validates a dataset version's files, training file first (its rows' content hashes are what the eval
 * file is checked against), and judges them with {@link datasetVerdict}. The reports are
 * method-independent (the same a pipeline stores once per version) until the verdict applies the method.
 */
export async function checkDatasetFiles(
  files: { readonly train: DatasetFileSource; readonly eval?: DatasetFileSource },
  options: CheckDatasetOptions = {},
): Promise<DatasetCheck> {
  const reports = await validateDatasetFiles(files, options);
  return datasetVerdict(reports, options);
}

/** The method-independent reports of a version's files (see {@link checkDatasetFiles}). */
export async function validateDatasetFiles(
  files: { readonly train: DatasetFileSource; readonly eval?: DatasetFileSource },
  options: Pick<CheckDatasetOptions, 'maxLength' | 'maxErrors'> = {},
): Promise<{ train: DatasetReport; eval?: DatasetReport }> {
  const common = { maxLength: options.maxLength, maxErrors: options.maxErrors };
  const train = new DatasetValidator({ ...common, contentHashes: files.eval !== undefined, fileName: files.train.name });
  for await (const chunk of await files.train.open()) train.push(chunk);
  const trainLine = files.train.lineInFile ?? identity;
  const trainReport = mapLines(train.end(), trainLine, trainLine);
  if (!files.eval) return { train: trainReport };
  const evalValidator = new DatasetValidator({ ...common, train: train.contentHashes, fileName: files.eval.name });
  for await (const chunk of await files.eval.open()) evalValidator.push(chunk);
  return { train: trainReport, eval: mapLines(evalValidator.end(), files.eval.lineInFile ?? identity, trainLine) };
}

const identity = (line: number) => line;

/** The report with its lines mapped to the file's own (contamination's `trainLine` through the training file's map). */
function mapLines(report: DatasetReport, line: (n: number) => number, trainLine: (n: number) => number): DatasetReport {
  if (line === identity && trainLine === identity) return report;
  return {
    ...report,
    errors: report.errors.map((e) => ({ ...e, line: line(e.line) })),
    errorGroups: report.errorGroups.map((g) => ({ ...g, lines: g.lines.map(line) })),
    duplicates: { ...report.duplicates, examples: report.duplicates.examples.map((d) => ({ line: line(d.line), firstLine: line(d.firstLine) })) },
    ...(report.contamination
      ? { contamination: { ...report.contamination, examples: report.contamination.examples.map((c) => ({ line: line(c.line), trainLine: trainLine(c.trainLine) })) } }
      : {}),
    tokens: { ...report.tokens, overLimit: { ...report.tokens.overLimit, lines: report.tokens.overLimit.lines.map(line) } },
  };
}

/**
 * The verdict on a version's reports for a run: the method's rules on each file ({@link reportForMethod}),
 * then the cross-file rules: the eval file has the training file's format (and dialect), and its overlap
 * with the training file is judged by `options.overlap`.
 */
export function datasetVerdict(reports: { readonly train: DatasetReport; readonly eval?: DatasetReport }, options: CheckDatasetOptions = {}): DatasetCheck {
  const policy = options.overlap ?? 'error';
  const forRun = (report: DatasetReport, trainingFile: boolean) =>
    options.method ? reportForMethod(withGroups(report), options.method, options.maxLength, options.maxErrors, trainingFile) : withGroups(report);
  const train = forRun(reports.train, true);
  const evalReport = reports.eval && forRun(reports.eval, false);
  const issues: DatasetIssue[] = [];
  let overlap: DatasetCheck['overlap'];
  if (evalReport) {
    if (evalReport.format !== null && train.format !== null && evalReport.format !== train.format) {
      issues.push({
        file: 'eval',
        line: 1,
        code: 'mixed-format',
        message: `the eval file is ${evalReport.format} but the training file is ${train.format}; use one format for both files (the pipeline refuses a version whose files differ)`,
        severity: 'error',
      });
    }
    const contamination = evalReport.contamination ?? { count: 0, examples: [] };
    overlap = { count: contamination.count, examples: contamination.examples, policy };
    if (contamination.count > 0 && policy !== 'allowed') {
      const first = contamination.examples[0];
      issues.push({
        file: 'eval',
        line: first?.line ?? 1,
        code: 'overlap',
        message:
          `${contamination.count} eval row${contamination.count === 1 ? ' is' : 's are'} also in the training file ` +
          `(same text after Unicode NFKC, lower-casing and white-space collapsing${first ? `; e.g. eval line ${first.line} is train line ${first.trainLine}` : ''}), ` +
          'so the eval loss and scores overstate how the model generalises; remove them from one file, or keep them with `tuneyard upload --allow-overlap`',
        severity: policy === 'error' ? 'error' : 'warning',
      });
    }
  }
  const crossErrors = issues.filter((i) => i.severity === 'error').length;
  const errorCount = train.errorCount + (evalReport?.errorCount ?? 0) + crossErrors;
  return {
    ok: errorCount === 0 && train.format !== null,
    errorCount,
    train,
    ...(evalReport ? { eval: evalReport } : {}),
    issues,
    ...(overlap ? { overlap } : {}),
  };
}

/** A report stored before error groups existed gets them from its listed errors. */
function withGroups(report: DatasetReport): DatasetReport {
  if (report.errorGroups) return report;
  const groups = new Map<string, ErrorGroup & { lines: number[]; count: number }>();
  for (const e of report.errors) {
    const key = `${e.code}\0${e.message}`;
    const group = groups.get(key);
    if (group) {
      group.count++;
      group.lines.push(e.line);
    } else {
      groups.set(key, { code: e.code, message: e.message, count: 1, lines: [e.line] });
    }
  }
  return { ...report, errorGroups: [...groups.values()] };
}
