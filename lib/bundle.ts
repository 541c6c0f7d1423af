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
 * The folder that `npm run build` writes a handler's bundle to: `bundled/<name>/index.js` beside the
 * handler (no dot in the folder's name: the CDK keeps a source folder's "extension" in the staged
 * asset's name).
 */
export function prebuiltBundleDir(entry: string): string {
  return path.join(path.dirname(entry), 'bundled', path.basename(entry));
}

/**
 * The code of a Lambda function written in TypeScript. `entry` is the handler's path without
 * extension; the handler exports `handler`. Where the code comes from:
 *
 * - in the repository (`<entry>.ts` exists): bundled by esbuild in this process at synth (no Docker,
 *   ~100 ms), into a directory named by the bundle's hash, so the asset hash only changes when the
 *   code does. A synth whose handler inputs (every bundled file, the esbuild version and options)
 *   are unchanged since the last build reuses that bundle without starting esbuild;
 * - in the published package: the bundle that `npm run build` made from the same source with the
 *   same options (see {@link prebuiltBundleDir} and {@link writeHandlerBundles}), used as it is, so a
 *   consumer's synth needs no esbuild and gets the same asset hash as the repository's;
 * - else (a build without bundles): the compiled `<entry>.js`, bundled at synth (needs esbuild).
 *
 * The AWS SDK v3 (`@aws-sdk/*`) is left out of the bundle: the Lambda runtime provides it.
 */
export function bundledCode(entry: string): lambda.Code {
  const typescript = `${entry}.ts`;
  if (!fs.existsSync(typescript)) {
    const prebuilt = prebuiltBundleDir(entry);
    if (fs.existsSync(path.join(prebuilt, 'index.js'))) return lambda.Code.fromAsset(prebuilt);
  }
  const source = [typescript, `${entry}.js`].find((file) => fs.existsSync(file));
  if (!source) throw new TuneyardValidationError(`the Lambda handler ${entry}.ts (or .js) does not exist.`);
  const cacheDir = path.join(os.tmpdir(), 'tuneyard-assets');
  // The last build of this entry: its output and the hash of every input file. When no input changed,
  // synth reuses the bundle without starting esbuild (~0.3 s saved per synth).
  const record = path.join(cacheDir, `${crypto.createHash('sha256').update(source).digest('hex').slice(0, 16)}.json`);
  const previous = readRecord(record);
  if (previous && fs.existsSync(path.join(previous.outDir, 'index.js')) && inputsDigest(Object.keys(previous.inputs)) === previous.digest) {
    return lambda.Code.fromAsset(previous.outDir);
  }
  const { code, inputs } = bundle(source);
  const digest = crypto.createHash('sha256').update(code).digest('hex').slice(0, 16);
  const outDir = path.join(cacheDir, `${path.basename(entry)}-${digest}`);
  writeAtomically(path.join(outDir, 'index.js'), code);
  writeAtomically(record, JSON.stringify({ outDir, inputs: Object.fromEntries(inputs.map((i) => [i, true])), digest: inputsDigest(inputs) }));
  return lambda.Code.fromAsset(outDir);
}

/**
 * Writes the bundle of every Lambda handler under `<root>/constructs` (each
 * `constructs/<construct>/handler/<name>.ts`, tests aside, that exports `handler`) to
 * `<outRoot>/constructs/<construct>/handler/bundled/<name>/index.js`, beside its compiled `.js`.
 * `npm run build` runs it after `tsc`, so the published package carries bundles made from the
 * TypeScript source, byte for byte what a synth in the repository makes. Returns the bundles written.
 */
export function writeHandlerBundles(root: string, outRoot: string): string[] {
  const constructsDir = path.resolve(root, 'constructs');
  const written: string[] = [];
  for (const construct of fs.readdirSync(constructsDir).sort()) {
    const handlerDir = path.join(constructsDir, construct, 'handler');
    if (!fs.existsSync(handlerDir)) continue;
    for (const file of fs.readdirSync(handlerDir).sort()) {
      if (!file.endsWith('.ts') || file.endsWith('.d.ts') || /\.test\.ts$/.test(file)) continue;
      const source = path.join(handlerDir, file);
      if (!/^export (const|async function|function) handler\b/m.test(fs.readFileSync(source, 'utf8'))) continue;
      const entry = path.resolve(outRoot, path.relative(path.resolve(root), source)).replace(/\.ts$/, '');
      const out = path.join(prebuiltBundleDir(entry), 'index.js');
      fs.rmSync(prebuiltBundleDir(entry), { recursive: true, force: true });
      writeAtomically(out, bundle(source).code);
      written.push(out);
    }
  }
  if (written.length === 0) throw new TuneyardValidationError(`no Lambda handler found under ${constructsDir}/*/handler/; run the build from the repository root.`);
  return written;
}

/** One handler and what it imports, as one minified CommonJS file, and the files it was made from. */
function bundle(source: string): { code: Uint8Array; inputs: string[] } {
  const esbuild = loadEsbuild(source);
  const result = esbuild.buildSync({ ...BUILD_OPTIONS, entryPoints: [source], absWorkingDir: path.dirname(source) });
  const inputs = Object.keys(result.metafile!.inputs).map((input) => path.resolve(path.dirname(source), input));
  return { code: result.outputFiles![0].contents, inputs };
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

function loadEsbuild(source: string): typeof import('esbuild') {
  try {
    // Required lazily: only a synth that bundles a handler needs esbuild (never one from the published
    // package, whose handlers come bundled).
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('esbuild');
  } catch {
    throw new TuneyardValidationError(
      `bundling the Lambda handler ${source} needs esbuild, which is not installed; install it (\`npm install --save-dev esbuild\`) or reinstall the tuneyard package, whose handlers come bundled.`,
    );
  }
}

/** Writes through a temporary file and a rename: parallel synths never see half a file. */
function writeAtomically(file: string, contents: string | Uint8Array): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, contents);
  fs.renameSync(tmp, file);
}
