import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkDatasetFiles, DatasetCheck, DatasetFileSource, DatasetInputError, DatasetInputKind, DatasetReport, openDatasetInput, OverlapPolicy } from '../datasets';
import { CliError } from './errors';
import { CliIo, progressBar } from './io';
import type { Method } from '../methods';

/** The file argument that reads standard input. */
export const STDIN = '-';

/** One input file, read, converted to JSON Lines where needed, validated and hashed in a single streaming pass. */
export interface CheckedFile {
  /** The path as given (`-` for standard input). */
  readonly path: string;
  /** Bytes of the JSON Lines the pipeline reads (what upload stores). */
  readonly bytes: number;
  /**
   * sha256 of those JSON Lines bytes, lower-case hex (for a plain .jsonl file: of the file itself); only
   * with the `sha256` option (it costs about a tenth of the check's CPU).
   */
  readonly sha256?: string;
  /** What the file was: gzip-compressed or not, JSON Lines or a JSON array. */
  readonly input: { readonly gzip: boolean; readonly kind: DatasetInputKind; readonly bytes: number };
  readonly report: DatasetReport;
  /**
   * The JSON Lines file to upload: the file itself when it is plain JSON Lines on disk, otherwise a
   * temporary copy written while checking (only with `spool`; removed by {@link CheckedDataset.cleanup}).
   */
  readonly uploadPath?: string;
}

export interface CheckedDataset {
  readonly train: CheckedFile;
  readonly eval?: CheckedFile;
  /** The verdict of the shared rules ({@link checkDatasetFiles}): the same the pipeline reaches. */
  readonly check: DatasetCheck;
  /** Removes the temporary JSON Lines copies. */
  cleanup(): void;
}

export interface CheckOptions {
  readonly method?: Method;
  readonly maxLength?: number;
  /** How train/eval overlap is judged (`validate`: warning; `upload`: error unless --allow-overlap). */
  readonly overlap: OverlapPolicy;
  /** Keep the JSON Lines of converted input and stdin in a temporary file, for upload. */
  readonly spool?: boolean;
  /** Hash the JSON Lines (the version hash needs it). @default false */
  readonly sha256?: boolean;
}

/** How a file argument is shown in messages. */
export function displayName(file: string): string {
  return file === STDIN ? '<stdin>' : file;
}

/**
 * Checks the train file and, when given, the eval file with the rules the pipeline applies
 * ({@link checkDatasetFiles}): each file's rows, the method, and the rules across the two files.
 * Accepts JSON Lines, gzip-compressed JSON Lines, JSON arrays (read element by element) and `-`
 * (standard input); other binary files (Parquet, zip, ...) are named with the command that converts them.
 */
export async function checkDataset(io: CliIo, trainPath: string, evalPath: string | undefined, options: CheckOptions): Promise<CheckedDataset> {
  if (trainPath === STDIN && evalPath === STDIN) throw new CliError('the training and eval files cannot both be standard input (-): pass one of them as a file');
  const tmp = options.spool ? fs.mkdtempSync(path.join(os.tmpdir(), 'tuneyard-upload-')) : undefined;
  const cleanup = () => tmp && fs.rmSync(tmp, { recursive: true, force: true });
  try {
    const hashing = options.sha256 ?? false;
    const train = await fileSource(io, trainPath, tmp && path.join(tmp, 'train.jsonl'), hashing);
    const evalFile = evalPath === undefined ? undefined : await fileSource(io, evalPath, tmp && path.join(tmp, 'eval.jsonl'), hashing);
    const check = await checkDatasetFiles(
      { train: train.source, ...(evalFile ? { eval: evalFile.source } : {}) },
      { method: options.method, maxLength: options.maxLength, overlap: options.overlap },
    );
    return {
      train: train.result(check.train),
      ...(evalFile && check.eval ? { eval: evalFile.result(check.eval) } : {}),
      check,
      cleanup,
    };
  } catch (e) {
    cleanup();
    throw e;
  }
}

/** A file (or stdin) as a {@link DatasetFileSource}: hashes, spools and draws progress as the validator reads it. */
async function fileSource(io: CliIo, file: string, spoolPath: string | undefined, hashing: boolean) {
  const name = displayName(file);
  let size = 0;
  if (file === STDIN && !io.stdin && process.stdin.isTTY) {
    throw new CliError('- reads standard input, but it is a terminal: pipe the data in (e.g. `zcat data.jsonl.gz | tuneyard validate -`) or pass a file');
  }
  if (file !== STDIN) {
    let stat: fs.Stats;
    try {
      stat = await fs.promises.stat(file);
    } catch (e) {
      throw new CliError(`${file}: cannot read the file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    if (!stat.isFile()) throw new CliError(`${file}: not a file`);
    size = stat.size;
  }
  const hash = hashing ? createHash('sha256') : undefined;
  let bytes = 0;
  let read = 0;
  let spooled: string | undefined;
  let input: ReturnType<typeof openDatasetInput> | undefined;
  const source: DatasetFileSource = {
    name,
    lineInFile: (line) => input?.lineInFile(line) ?? line,
    open: () => {
      const raw: AsyncIterable<Uint8Array> =
        file === STDIN ? (io.stdin?.() ?? process.stdin) : (fs.createReadStream(file, { highWaterMark: 256 * 1024 }) as AsyncIterable<Buffer>);
      const progress = progressBar(io, `checking ${name}`, size);
      async function* counted(): AsyncGenerator<Uint8Array> {
        for await (const chunk of raw) {
          read += chunk.length;
          progress.update(read);
          yield chunk;
        }
        progress.finish();
      }
      input = openDatasetInput(counted());
      const opened = input;
      // Upload stores JSON Lines: what was read from stdin or converted is copied while it is checked.
      const converted = () => file === STDIN || opened.gzip() || opened.kind() !== 'jsonl';
      async function* jsonl(): AsyncGenerator<Buffer> {
        let fd: number | undefined;
        try {
          for await (const chunk of opened.chunks) {
            hash?.update(chunk);
            bytes += chunk.length;
            if (spoolPath && converted()) {
              fd ??= fs.openSync(spoolPath, 'w');
              fs.writeSync(fd, chunk);
            }
            yield chunk;
          }
          if (spoolPath && converted()) fd ??= fs.openSync(spoolPath, 'w'); // an empty file
        } catch (e) {
          if (e instanceof DatasetInputError) throw new CliError(`${name}: ${e.message}`);
          throw e;
        } finally {
          if (fd !== undefined) {
            fs.closeSync(fd);
            spooled = spoolPath;
          }
        }
      }
      return jsonl();
    },
  };
  return {
    source,
    result: (report: DatasetReport): CheckedFile => ({
      path: file,
      bytes,
      ...(hash ? { sha256: hash.digest('hex') } : {}),
      input: { gzip: input?.gzip() ?? false, kind: input?.kind() ?? 'jsonl', bytes: read },
      report,
      ...(spooled ? { uploadPath: spooled } : file !== STDIN ? { uploadPath: file } : {}),
    }),
  };
}
