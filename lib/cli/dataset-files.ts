import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import { DatasetReport, DatasetValidator } from '../datasets';
import { CliError } from './errors';
import { CliIo, progressBar } from './io';
import type { Method } from '../methods';

/** One local file, validated and hashed in a single streaming read. */
export interface CheckedFile {
  readonly path: string;
  readonly bytes: number;
  /** sha256 of the file's bytes, lower-case hex. */
  readonly sha256: string;
  readonly report: DatasetReport;
}

export interface CheckedDataset {
  readonly train: CheckedFile;
  readonly eval?: CheckedFile;
}

export interface CheckOptions {
  readonly method?: Method;
  readonly maxLength?: number;
}

/**
 * Validates (with the shared streaming validator) and hashes the train file and, when given, the
 * eval file; the eval file is also checked for rows that are in the train file (contamination).
 */
export async function checkDataset(io: CliIo, trainPath: string, evalPath: string | undefined, options: CheckOptions): Promise<CheckedDataset> {
  const train = await checkFile(io, trainPath, new DatasetValidator({ method: options.method, maxLength: options.maxLength }));
  if (!evalPath) return { train: train.file };
  const evalFile = await checkFile(
    io,
    evalPath,
    new DatasetValidator({ method: options.method, maxLength: options.maxLength, train: train.validator.hashes }),
  );
  return { train: train.file, eval: evalFile.file };
}

async function checkFile(io: CliIo, path: string, validator: DatasetValidator): Promise<{ file: CheckedFile; validator: DatasetValidator }> {
  let stat: fs.Stats;
  try {
    stat = await fs.promises.stat(path);
  } catch (e) {
    throw new CliError(`${path}: cannot read the file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  if (!stat.isFile()) throw new CliError(`${path}: not a file`);
  const hash = createHash('sha256');
  const progress = progressBar(io, `checking ${path}`, stat.size);
  let done = 0;
  for await (const chunk of fs.createReadStream(path, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    validator.push(chunk);
    done += chunk.length;
    progress.update(done);
  }
  progress.finish();
  const report = validator.end();
  return { file: { path, bytes: done, sha256: hash.digest('hex'), report }, validator };
}
