import { isUtf8 } from 'node:buffer';
import {
  checkRow,
  DatasetDialect,
  DatasetErrorCode,
  DatasetFormat,
  detectDialect,
  estimateTokens,
  formatOf,
  isBlank,
  isJsonObject,
  jsonType,
  methodError,
  promptOnlyRowProblem,
  RowInvalid,
  rowHash,
} from './formats';
import { contentHash } from './content';
import { binaryFileMessage, SNIFF_BYTES } from './inputs';
import { RowHashes } from './row-hashes';
import { isOnlineRl, type Method } from '../methods';

/**
 * The codes of a report's errors: the per-row codes of the shared corpus ({@link DatasetErrorCode}) plus
 * the file-level ones the validator adds: `binary-file` (Parquet, zip, ...: named, with the command that
 * converts it) and `json-array` (a JSON array, not JSON Lines), and the cross-file `overlap` of
 * {@link checkDatasetFiles}.
 */
export type ReportErrorCode = DatasetErrorCode | 'binary-file' | 'json-array' | 'overlap';

/** One problem of a file, at a 1-based physical line number. */
export interface ReportError {
  readonly line: number;
  readonly code: ReportErrorCode;
  /** What is wrong and how to fix it. */
  readonly message: string;
}

/** Errors with the same code and message: how many, and the first lines. */
export interface ErrorGroup {
  readonly code: ReportErrorCode;
  readonly message: string;
  readonly count: number;
  /** The first lines (up to `maxExamples`). */
  readonly lines: number[];
}

/** Options of a {@link DatasetValidator}. */
export interface DatasetValidatorOptions {
  /**
   * The training method the file is checked for (`dpo` needs preference pairs, the others refuse them).
   *
   * @default - no method check: the report is a fact about the file alone, for {@link reportForMethod} to apply a method later
   */
  readonly method?: Method;
  /**
   * The run's `max_length` in tokens: rows whose estimated length exceeds it are counted in `tokens.overLimit`
   * (not errors: the trainer drops them, or truncates them with the recipe's `overlongRows: 'truncate'`, and counts
   * them itself from their real token lengths).
   *
   * @default - no limit: `tokens.overLimit` is empty
   */
  readonly maxLength?: number;
  /**
   * How many errors the report lists (`errorCount` counts them all).
   *
   * @default 50
   */
  readonly maxErrors?: number;
  /**
   * How many examples the report lists for duplicates, contamination and rows over `maxLength`.
   *
   * @default 10
   */
  readonly maxExamples?: number;
  /**
   * The content hashes of the training file's rows ({@link DatasetValidator.contentHashes} of a validator made
   * with `contentHashes: true`), when this file is its eval file: eval rows whose normalised content is in it
   * are contamination (their eval loss says nothing about generalisation).
   *
   * @default - no contamination check
   */
  readonly train?: RowHashes;
  /**
   * Keep the normalised content hash of every valid row ({@link contentHash}), for the eval file's
   * contamination check: 12 bytes a distinct row more.
   *
   * @default false
   */
  readonly contentHashes?: boolean;
  /**
   * The file's name in the commands that messages suggest (`jq -c '.[]' train.json > train.json.jsonl`).
   *
   * @default 'FILE'
   */
  readonly fileName?: string;
  /**
   * The longest line, in bytes, read into memory; longer lines are `line-too-long` errors. This bounds the
   * validator's memory when a file is not JSONL (say, one JSON array on a single line).
   *
   * @default 64 MiB
   */
  readonly maxLineBytes?: number;
}

/** Estimated token lengths of the valid rows. */
export interface TokenStats {
  /** How lengths are estimated: characters / 4, plus 4 tokens a chat message. */
  readonly estimator: 'chars/4';
  readonly p50: number;
  readonly p95: number;
  readonly max: number;
  readonly total: number;
  /** The limit `overLimit` counts against, when one was given. */
  readonly maxLength?: number;
  /**
   * Valid rows estimated longer than `maxLength` (a preference pair: its prompt with the longer response), which the
   * trainer drops or truncates (recipe `overlongRows`): their number and the first lines (examples only when counted
   * while streaming).
   */
  readonly overLimit: { readonly count: number; readonly lines: number[] };
  /** `[tokens, rows]` pairs, ascending: lets {@link reportForMethod} count rows over another limit. */
  readonly histogram: Array<[number, number]>;
}

/** What a validator found in one file. */
export interface DatasetReport {
  /** The file's format (that of its first row with a recognisable format), null when none. */
  readonly format: DatasetFormat | null;
  /** The dialect the file is written in (that of the same row: `sharegpt` for a `chat` file of ShareGPT rows, ...), null when none. */
  readonly dialect: DatasetDialect | null;
  /** The method the file was checked for, when one was given. */
  readonly method?: Method;
  /** Non-blank lines, valid or not. */
  readonly rows: number;
  /** Rows without errors: what the trainer trains on. */
  readonly validRows: number;
  readonly bytes: number;
  /** The first errors (file-level first, then by line). */
  readonly errors: ReportError[];
  readonly errorCount: number;
  /**
   * Every error grouped by code and message, in order of first appearance, with its count and first
   * lines: 6,000 rows with the same problem are one group. At most 100 groups; errors beyond them are
   * counted in `errorCount` only.
   */
  readonly errorGroups: ErrorGroup[];
  /** Valid rows equal (in the fields the trainer uses) to an earlier row. */
  readonly duplicates: { readonly count: number; readonly examples: Array<{ line: number; firstLine: number }> };
  /** Rows of this (eval) file that are also in the training file; only when `train` was given. */
  readonly contamination?: { readonly count: number; readonly examples: Array<{ line: number; trainLine: number }> };
  readonly tokens: TokenStats;
  /**
   * The rows judged as prompt-only rows (methods grpo and rloo, {@link promptOnlyRowProblem}), beside the format
   * rules: the rows that are prompt-only, and the first problems (lines that are not JSON objects are the report's own
   * errors). Absent from reports stored before method grpo.
   */
  readonly promptOnly?: { readonly validRows: number; readonly errorCount: number; readonly errors: ReportError[] };
}

const BOM = '\uFEFF';
const NEWLINE = 0x0a;
/**
 * Whole lines are decoded from UTF-8 this many bytes at a time: a string decoded from a 1 MiB buffer
 * costs ~45% more than the same bytes in 64 KiB pieces (cache misses), and S3 and file streams deliver
 * chunks of any size.
 */
const DECODE_BLOCK = 64 * 1024;
const MAX_ERROR_GROUPS = 100;
/** Throws on invalid UTF-8; keeps byte order marks (the validator decides where one may be). */
const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * A streaming JSONL dataset validator: `push()` byte chunks from any source (a file stream, an S3
 * GetObject body) in order, then `end()` for the report.
 *
 * Memory stays constant in the file size apart from one 12-byte slot per distinct valid row (for
 * duplicates) and the longest line: lines are split on `\n` bytes, so chunk boundaries may fall
 * anywhere, inside lines and inside multi-byte characters. Each line is checked as strict UTF-8.
 */
export class DatasetValidator {
  private readonly options: DatasetValidatorOptions;
  private readonly maxErrors: number;
  private readonly maxExamples: number;
  private readonly maxLineBytes: number;
  private readonly rowHashes = new RowHashes();
  private readonly content?: RowHashes;
  private readonly histogram = new Map<number, number>();
  private readonly errors: ReportError[] = [];
  private readonly errorGroups = new Map<string, { code: ReportErrorCode; message: string; count: number; lines: number[] }>();
  /** The first bytes, held until {@link SNIFF_BYTES} have come to recognise binary files. */
  private head: Buffer | undefined = Buffer.alloc(0);
  /** Set once the file is known not to be JSON Lines: the rest is counted, not read. */
  private notJsonl = false;
  private readonly duplicates: Array<{ line: number; firstLine: number }> = [];
  private readonly contamination: Array<{ line: number; trainLine: number }> = [];
  private readonly overLimit: number[] = [];
  private carry = Buffer.alloc(0);
  private carryLength = 0;
  private skippingLongLine = false;
  private line = 1;
  private format: DatasetFormat | null = null;
  private dialect: DatasetDialect | null = null;
  private rows = 0;
  private validRows = 0;
  private bytes = 0;
  private errorCount = 0;
  private duplicateCount = 0;
  private contaminationCount = 0;
  private overLimitCount = 0;
  private tokenTotal = 0;
  private tokenMax = 0;
  private readonly promptOnly = { validRows: 0, errorCount: 0, errors: [] as ReportError[] };
  private ended = false;

  constructor(options: DatasetValidatorOptions = {}) {
    this.options = options;
    this.maxErrors = options.maxErrors ?? 50;
    this.maxExamples = options.maxExamples ?? 10;
    this.maxLineBytes = options.maxLineBytes ?? 64 * 1024 * 1024;
    if (options.contentHashes) this.content = new RowHashes();
  }

  /** The exact hashes (canonical form) of the valid rows seen so far, with their first lines. */
  get hashes(): RowHashes {
    return this.rowHashes;
  }

  /** The normalised content hashes of the valid rows: pass them as `train` to the validator of the eval file. */
  get contentHashes(): RowHashes {
    if (!this.content) throw new Error('DatasetValidator: create it with contentHashes: true to read contentHashes');
    return this.content;
  }

  /** Feeds the next bytes of the file. */
  push(chunk: Uint8Array): void {
    if (this.ended) throw new Error('DatasetValidator.push() after end(): create a new validator for each file');
    let buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (this.head !== undefined) {
      // Hold the first bytes until there are enough to tell a binary file from text.
      this.head = Buffer.concat([this.head, buf]);
      if (this.head.length < SNIFF_BYTES) return;
      buf = this.head;
      this.head = undefined;
      this.sniff(buf);
    }
    this.feed(buf);
  }

  private feed(buf: Buffer): void {
    this.bytes += buf.length;
    if (this.notJsonl) return;
    let start = 0;
    let nl = buf.indexOf(NEWLINE);
    if (nl === -1) {
      this.appendCarry(buf, 0, buf.length);
      return;
    }
    // The line that started in an earlier chunk.
    if (this.carryLength > 0 || this.skippingLongLine) {
      this.appendCarry(buf, 0, nl);
      this.finishCarriedLine();
      start = nl + 1;
      nl = buf.indexOf(NEWLINE, start);
    }
    const last = buf.lastIndexOf(NEWLINE);
    while (nl !== -1 && start <= last && !this.notJsonl) {
      // Whole lines, about DECODE_BLOCK bytes of them at a time (at least one line).
      let end = last;
      if (end - start > DECODE_BLOCK) {
        end = buf.lastIndexOf(NEWLINE, start + DECODE_BLOCK);
        if (end < start) end = buf.indexOf(NEWLINE, start);
      }
      this.wholeLines(buf, start, end);
      start = end + 1;
    }
    if (!this.notJsonl) this.appendCarry(buf, start, buf.length);
  }

  /** The lines of `buf[start, end)`, which ends at a newline (not included). */
  private wholeLines(buf: Buffer, start: number, end: number): void {
    // All valid UTF-8 (the usual case): decode them in one go (one native call checks and decodes).
    let text: string | undefined;
    try {
      text = STRICT_UTF8.decode(buf.subarray(start, end));
    } catch {
      text = undefined;
    }
    if (text !== undefined) {
      let from = 0;
      for (let to = text.indexOf('\n'); ; to = text.indexOf('\n', from)) {
        const lineText = text.slice(from, to === -1 ? text.length : to);
        // A character takes at most 3 UTF-8 bytes per UTF-16 unit: count exactly only when it may matter.
        if (lineText.length * 3 > this.maxLineBytes && Buffer.byteLength(lineText) > this.maxLineBytes) this.lineTooLong();
        else this.processLine(lineText);
        this.line++;
        if (to === -1 || this.notJsonl) break;
        from = to + 1;
      }
    } else {
      for (let from = start; from <= end && !this.notJsonl; ) {
        const to = buf.indexOf(NEWLINE, from);
        if (to - from > this.maxLineBytes) this.lineTooLong();
        else this.processBytes(buf.subarray(from, to));
        this.line++;
        from = to + 1;
      }
    }
  }

  /** Recognises a binary file (Parquet, zip, gzip, UTF-16, ...) by its first bytes: one error, not one a line. */
  private sniff(head: Buffer): void {
    const message = binaryFileMessage(head, this.options.fileName);
    if (!message) return;
    this.notJsonl = true;
    this.addError('binary-file', message);
  }

  /** Ends the file and returns the report. */
  end(): DatasetReport {
    if (this.ended) throw new Error('DatasetValidator.end() called twice');
    if (this.head !== undefined) {
      const head = this.head;
      this.head = undefined;
      this.sniff(head);
      this.feed(head);
    }
    this.ended = true;
    if (!this.notJsonl) this.finishCarriedLine();
    const fileError = this.notJsonl ? undefined : methodError(this.format, this.rows);
    if (fileError) this.group(fileError.code, fileError.message, fileError.line, true);
    const report: DatasetReport = {
      format: this.format,
      dialect: this.dialect,
      rows: this.rows,
      validRows: this.validRows,
      bytes: this.bytes,
      errors: fileError ? [fileError, ...this.errors].slice(0, this.maxErrors) : this.errors,
      errorCount: this.errorCount + (fileError ? 1 : 0),
      errorGroups: [...this.errorGroups.values()],
      duplicates: { count: this.duplicateCount, examples: this.duplicates },
      ...(this.options.train ? { contamination: { count: this.contaminationCount, examples: this.contamination } } : {}),
      tokens: this.tokenStats(),
      promptOnly: this.promptOnly,
    };
    return this.options.method ? reportForMethod(report, this.options.method, this.options.maxLength, this.maxErrors) : report;
  }

  private appendCarry(buf: Buffer, from: number, to: number): void {
    if (to <= from) return;
    if (this.skippingLongLine) return;
    const needed = this.carryLength + (to - from);
    if (needed > this.maxLineBytes) {
      this.skippingLongLine = true;
      this.carry = Buffer.alloc(0);
      this.carryLength = 0;
      return;
    }
    if (needed > this.carry.length) {
      const grown = Buffer.allocUnsafe(Math.max(needed, this.carry.length * 2, 4096));
      this.carry.copy(grown, 0, 0, this.carryLength);
      this.carry = grown;
    }
    buf.copy(this.carry, this.carryLength, from, to);
    this.carryLength = needed;
  }

  /** Processes the carried (possibly empty) line and starts the next one. */
  private finishCarriedLine(): void {
    if (this.skippingLongLine) {
      this.lineTooLong();
      this.skippingLongLine = false;
    } else {
      this.processBytes(this.carry.subarray(0, this.carryLength));
    }
    this.carryLength = 0;
    if (this.carry.length > 1 << 20) this.carry = Buffer.alloc(0); // give back the memory of a long line
    this.line++;
  }

  private processBytes(bytes: Buffer): void {
    if (!isUtf8(bytes)) {
      this.rows++;
      const at = firstInvalidUtf8(bytes);
      this.addError(
        'invalid-utf8',
        `the line is not valid UTF-8 (bad byte 0x${bytes[at].toString(16).padStart(2, '0')} at byte ${at}); re-encode the file as UTF-8`,
      );
      return;
    }
    this.processLine(bytes.toString('utf8'));
  }

  private lineTooLong(): void {
    this.rows++;
    this.addError(
      'line-too-long',
      `the line is longer than ${this.maxLineBytes} bytes; JSONL needs one JSON object per line (is the file a JSON array or pretty-printed JSON?)`,
    );
  }

  private processLine(text: string): void {
    const line = this.line === 1 && text.startsWith(BOM) ? text.slice(1) : text;
    if (isBlank(line)) return;
    this.rows++;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (err) {
      if (this.rows === 1 && line.trimStart().startsWith('[')) return this.jsonArray();
      this.addError('invalid-json', `not valid JSON (${(err as Error).message}); each line must be one complete JSON object`);
      return;
    }
    if (!isJsonObject(value)) {
      if (this.rows === 1 && Array.isArray(value) && isJsonObject(value[0])) return this.jsonArray();
      this.addError('not-object', `each line must be a JSON object, got ${jsonType(value)}`);
      return;
    }
    const promptProblem = promptOnlyRowProblem(value);
    if (promptProblem === undefined) this.promptOnly.validRows++;
    else if (this.promptOnly.errorCount++ < this.maxErrors) this.promptOnly.errors.push({ line: this.line, code: 'not-prompt-only', message: `${promptProblem} (methods grpo and rloo train on prompt-only rows)` });
    const dialect = detectDialect(value);
    if (dialect === null) {
      this.addError(
        'unknown-format',
        `keys ${JSON.stringify(Object.keys(value).sort())} match no format; use messages, conversations (ShareGPT), prompt/completion, ` +
          'instruction/input/output, text, prompt/chosen/rejected or input/preferred_output/non_preferred_output',
      );
      return;
    }
    const format = formatOf(dialect);
    if (this.dialect === null) {
      this.dialect = dialect;
      this.format = format;
    } else if (dialect !== this.dialect) {
      this.addError(
        'mixed-format',
        `the row is ${dialect} (${format}) but the file is ${this.dialect} (${this.format}) from its first row; use one format per file`,
      );
      return;
    }
    let row: Record<string, unknown>;
    try {
      row = checkRow(value, dialect);
    } catch (err) {
      if (!(err instanceof RowInvalid)) throw err;
      this.addError(err.code, err.message);
      return;
    }
    this.validRow(this.line, row, format);
  }

  private validRow(line: number, row: Record<string, unknown>, format: DatasetFormat): void {
    this.validRows++;
    const tokens = estimateTokens(row, format);
    this.histogram.set(tokens, (this.histogram.get(tokens) ?? 0) + 1);
    this.tokenTotal += tokens;
    if (tokens > this.tokenMax) this.tokenMax = tokens;
    if (this.options.maxLength !== undefined && tokens > this.options.maxLength) {
      this.overLimitCount++;
      if (this.overLimit.length < this.maxExamples) this.overLimit.push(line);
    }
    const [hi, lo] = rowHash(row, format);
    if (this.options.train || this.content) {
      const [chi, clo] = contentHash(row);
      this.content?.add(chi, clo, line);
      const trainLine = this.options.train ? this.options.train.lineOf(chi, clo) : 0;
      if (trainLine !== 0) {
        this.contaminationCount++;
        if (this.contamination.length < this.maxExamples) this.contamination.push({ line, trainLine });
      }
    }
    const firstLine = this.rowHashes.add(hi, lo, line);
    if (firstLine !== 0) {
      this.duplicateCount++;
      if (this.duplicates.length < this.maxExamples) this.duplicates.push({ line, firstLine });
    }
  }

  /** The file is a JSON array (pretty-printed, or on one line): one error, not one a line. */
  private jsonArray(): void {
    this.rows = 0;
    this.notJsonl = true;
    this.addError(
      'json-array',
      `the file is a JSON array, not JSON Lines (one JSON object per line); convert it with \`jq -c '.[]' ${this.options.fileName ?? 'FILE'} > ${this.options.fileName ?? 'FILE'}.jsonl\` ` +
        '(`tuneyard validate` and `tuneyard upload` read JSON arrays themselves and upload them as JSON Lines)',
    );
  }

  private addError(code: ReportErrorCode, message: string): void {
    this.errorCount++;
    if (this.errors.length < this.maxErrors) this.errors.push({ line: this.line, code, message });
    this.group(code, message, this.line);
  }

  private group(code: ReportErrorCode, message: string, line: number, first = false): void {
    const key = `${code}\0${message}`;
    const group = this.errorGroups.get(key);
    if (group) {
      group.count++;
      if (group.lines.length < this.maxExamples) group.lines.push(line);
    } else if (this.errorGroups.size < MAX_ERROR_GROUPS) {
      const created = { code, message, count: 1, lines: [line] };
      if (!first) {
        this.errorGroups.set(key, created);
      } else {
        const rest = [...this.errorGroups];
        this.errorGroups.clear();
        this.errorGroups.set(key, created);
        for (const [k, v] of rest) this.errorGroups.set(k, v);
      }
    }
  }

  private tokenStats(): TokenStats {
    const histogram = [...this.histogram.entries()].sort((a, b) => a[0] - b[0]);
    return {
      estimator: 'chars/4',
      p50: percentile(histogram, this.validRows, 0.5),
      p95: percentile(histogram, this.validRows, 0.95),
      max: this.tokenMax,
      total: this.tokenTotal,
      ...(this.options.maxLength !== undefined ? { maxLength: this.options.maxLength } : {}),
      overLimit: { count: this.overLimitCount, lines: this.overLimit },
      histogram,
    };
  }
}

/**
 * The report of a file for a training method and `max_length`: adds the file-level method error
 * (`not-preference`, `preference-for-sft`) and counts the rows over `maxLength`. Lets one stored,
 * method-independent report of an immutable dataset version serve every run. Methods grpo and rloo judge a training
 * file (`trainingFile`, the default) by its prompt-only rows instead; their eval file keeps the formats' rules.
 */
export function reportForMethod(report: DatasetReport, method: Method, maxLength?: number, maxErrors = 50, trainingFile = true): DatasetReport {
  // grpo and rloo train on prompt-only rows; their eval file keeps reference answers (the eval job evaluates the adapter like lora)
  if (isOnlineRl(method) && trainingFile) report = promptOnlyReport(report, maxErrors);
  const error = report.rows === 0 ? undefined : methodError(report.format, report.rows, method);
  const tokens = report.tokens;
  const sameLimit = maxLength === tokens.maxLength;
  return {
    ...report,
    method,
    errors: error ? [error, ...report.errors].slice(0, maxErrors) : report.errors,
    errorCount: report.errorCount + (error ? 1 : 0),
    errorGroups: error ? [{ code: error.code, message: error.message, count: 1, lines: [error.line] }, ...(report.errorGroups ?? [])] : report.errorGroups ?? [],
    tokens: sameLimit
      ? tokens
      : {
          ...tokens,
          maxLength,
          overLimit: {
            count: maxLength === undefined ? 0 : tokens.histogram.reduce((n, [t, rows]) => (t > maxLength ? n + rows : n), 0),
            lines: [],
          },
        },
  };
}

/** Errors of a file as a whole, or of lines that are not JSON objects: they count for every method. */
const FILE_ERRORS: readonly ReportErrorCode[] = ['invalid-utf8', 'invalid-json', 'not-object', 'line-too-long', 'binary-file', 'json-array', 'empty-file'];

/**
 * Methods grpo and rloo: the report judged on prompt-only rows (its `promptOnly`) instead of the formats' rules, which want
 * an answer in every row; the errors of the file and of lines that are not JSON objects stay.
 */
function promptOnlyReport(report: DatasetReport, maxErrors: number): DatasetReport {
  const fileGroups = (report.errorGroups ?? []).filter((g) => FILE_ERRORS.includes(g.code));
  const fileErrors = report.errors.filter((e) => FILE_ERRORS.includes(e.code));
  const fileErrorCount = fileGroups.reduce((n, g) => n + g.count, 0);
  const promptOnly = report.promptOnly ?? {
    validRows: 0,
    errorCount: 1,
    errors: [{ line: 1, code: 'not-prompt-only' as const, message: 'the stored validation report predates method grpo (it has no prompt-only check, which methods grpo and rloo need); upload the dataset again as a new version' }],
  };
  const groups = new Map<string, ErrorGroup>();
  for (const e of promptOnly.errors) {
    const key = `${e.code}\0${e.message}`;
    const group = groups.get(key);
    if (group) groups.set(key, { ...group, count: group.count + 1, lines: [...group.lines, e.line] });
    else groups.set(key, { code: e.code, message: e.message, count: 1, lines: [e.line] });
  }
  return {
    ...report,
    validRows: promptOnly.validRows,
    errors: [...fileErrors, ...promptOnly.errors].sort((a, b) => a.line - b.line).slice(0, maxErrors),
    errorCount: fileErrorCount + promptOnly.errorCount,
    errorGroups: [...fileGroups, ...groups.values()],
  };
}

/** Validates a whole stream of byte chunks (`fs.createReadStream(file)`, an S3 GetObject `Body`). */
export async function validateStream(source: AsyncIterable<Uint8Array>, options: DatasetValidatorOptions = {}): Promise<DatasetReport> {
  const validator = new DatasetValidator(options);
  for await (const chunk of source) validator.push(chunk);
  return validator.end();
}

/** One error as `FILE:LINE: message (code)`, the form editors and CI logs link to. */
export function formatError(file: string, error: ReportError): string {
  return `${file}:${error.line}: ${error.message} (${error.code})`;
}

/**
 * A group of errors as `FILE:LINE: message (code)` at its first line, then, when it holds more than one,
 * `  and N more like it: lines a, b, c, ...`.
 */
export function formatErrorGroup(file: string, group: ErrorGroup): string {
  const first = formatError(file, { line: group.lines[0] ?? 1, code: group.code, message: group.message });
  if (group.count <= 1) return first;
  const more = group.count - 1;
  const lines = group.lines.slice(1);
  return `${first}\n  and ${more.toLocaleString('en-US')} more like it: line${more === 1 ? '' : 's'} ${lines.join(', ')}${more > lines.length ? ', ...' : ''}`;
}

/** Nearest-rank percentile over a sorted `[value, count]` histogram. */
function percentile(histogram: Array<[number, number]>, n: number, p: number): number {
  if (n === 0) return 0;
  const rank = Math.ceil(p * n);
  let seen = 0;
  for (const [value, count] of histogram) {
    seen += count;
    if (seen >= rank) return value;
  }
  return histogram[histogram.length - 1][0];
}

/** The offset of the first byte that breaks UTF-8 (only called on lines known to be invalid). */
function firstInvalidUtf8(bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i];
    const length = b < 0x80 ? 1 : b >= 0xc2 && b <= 0xdf ? 2 : b >= 0xe0 && b <= 0xef ? 3 : b >= 0xf0 && b <= 0xf4 ? 4 : 0;
    if (length === 0 || i + length > bytes.length) return i;
    if (!isUtf8(bytes.subarray(i, i + length))) return i;
    i += length;
  }
  return 0;
}
