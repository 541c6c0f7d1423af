import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import type { BuildOptions } from 'esbuild';
import { TuneyardValidationError } from './errors';

/** The Node.js runtime of Tuneyard's Lambda functions (their bundles target it). */
export const LAMBDA_RUNTIME = lambda.Runtime.NODEJS_24_X;

/** How every handler is bundled (part of the cache key). */
const BUILD_OPTIONS: BuildOptions = {
  bundle: true,
  platform: 'node',
  target: 'node22',
  format: 'cjs',
  minify: true,
  // Error classes keep their names: Step Functions matches errors by name (e.g. RunRequestInvalid).
  keepNames: true,
  legalComments: 'none',
  external: ['@aws-sdk/*'],
  write: false,
  outfile: 'index.js',
  logLevel: 'silent',
  metafile: true,
};

/**
 * The code of a Lambda function written in TypeScript, bundled by esbuild in this process at
 * synth (no Docker, ~100 ms), into a directory named by the bundle's hash, so the asset hash only
 * changes when the code does. A synth whose handler inputs (every bundled file, the esbuild version
 * and options) are unchanged since the last build reuses that bundle without starting esbuild.
 *
 * The AWS SDK v3 (`@aws-sdk/*`) is left out of the bundle: the Lambda runtime provides it.
 * `entry` is the handler's path without extension: its `.ts` source in the repository, or the
 * compiled `.js` beside it in the published package. It exports `handler`.
 */
export function bundledCode(entry: string): lambda.Code {
  const source = ['.ts', '.js'].map((ext) => entry + ext).find((file) => fs.existsSync(file));
  if (!source) throw new TuneyardValidationError(`the Lambda handler ${entry}.ts (or .js) does not exist.`);
  const cacheDir = path.join(os.tmpdir(), 'tuneyard-assets');
  // The last build of this entry: its output and the hash of every input file. When no input changed,
  // synth reuses the bundle without starting esbuild (~0.3 s saved per synth).
  const record = path.join(cacheDir, `${crypto.createHash('sha256').update(source).digest('hex').slice(0, 16)}.json`);
  const previous = readRecord(record);
  if (previous && fs.existsSync(path.join(previous.outDir, 'index.js')) && inputsDigest(Object.keys(previous.inputs)) === previous.digest) {
    return lambda.Code.fromAsset(previous.outDir);
  }
  const esbuild = loadEsbuild(entry);
  const result = esbuild.buildSync({ ...BUILD_OPTIONS, entryPoints: [source], absWorkingDir: path.dirname(source) });
  const code = result.outputFiles![0].contents;
  const digest = crypto.createHash('sha256').update(code).digest('hex').slice(0, 16);
  const outDir = path.join(cacheDir, `${path.basename(entry)}-${digest}`);
  writeAtomically(path.join(outDir, 'index.js'), code);
  const inputs = Object.keys(result.metafile!.inputs).map((input) => path.resolve(path.dirname(source), input));
  writeAtomically(record, JSON.stringify({ outDir, inputs: Object.fromEntries(inputs.map((i) => [i, true])), digest: inputsDigest(inputs) }));
  return lambda.Code.fromAsset(outDir);
}

interface BuildRecord {
  readonly outDir: string;
  readonly inputs: Record<string, true>;
  readonly digest: string;
}

function readRecord(file: string): BuildRecord | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as BuildRecord;
  } catch {
    return undefined;
  }
}

/** One hash over the paths and contents of the files (a missing file changes it too). */
function inputsDigest(files: string[]): string {
  const hash = crypto.createHash('sha256').update(JSON.stringify(BUILD_OPTIONS)).update(esbuildVersion());
  for (const file of [...files].sort()) {
    hash.update(file).update('\0');
    try {
      hash.update(fs.readFileSync(file));
    } catch {
      hash.update('missing');
    }
    hash.update('\0');
  }
  return hash.digest('hex');
}

function esbuildVersion(): string {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require('esbuild/package.json') as { version: string }).version;
  } catch {
    return 'none';
  }
}

function loadEsbuild(entry: string): typeof import('esbuild') {
  try {
    // Required lazily: esbuild is needed at synth only, never by code that just imports the library.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('esbuild');
  } catch {
    throw new TuneyardValidationError(`bundling the Lambda handler ${entry} needs esbuild; install it with \`npm install esbuild\`.`);
  }
}

/** Writes through a temporary file and a rename: parallel synths never see half a file. */
function writeAtomically(file: string, contents: string | Uint8Array): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, contents);
  fs.renameSync(tmp, file);
}
