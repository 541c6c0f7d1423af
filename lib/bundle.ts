import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { TuneyardValidationError } from './errors';

/** The Node.js runtime of Tuneyard's Lambda functions (their bundles target it). */
export const LAMBDA_RUNTIME = lambda.Runtime.NODEJS_24_X;

/**
 * The code of a Lambda function written in TypeScript, bundled by esbuild in this process at
 * synth (no Docker, ~100 ms), into a directory named by the bundle's hash, so the asset hash only
 * changes when the code does.
 *
 * The AWS SDK v3 (`@aws-sdk/*`) is left out of the bundle: the Lambda runtime provides it.
 * `entry` is the handler's path without extension: its `.ts` source in the repository, or the
 * compiled `.js` beside it in the published package. It exports `handler`.
 */
export function bundledCode(entry: string): lambda.Code {
  let esbuild: typeof import('esbuild');
  try {
    // Required lazily: esbuild is needed at synth only, never by code that just imports the library.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    esbuild = require('esbuild');
  } catch {
    throw new TuneyardValidationError(`bundling the Lambda handler ${entry} needs esbuild; install it with \`npm install esbuild\`.`);
  }
  const source = ['.ts', '.js'].map((ext) => entry + ext).find((file) => fs.existsSync(file));
  if (!source) throw new TuneyardValidationError(`the Lambda handler ${entry}.ts (or .js) does not exist.`);
  const result = esbuild.buildSync({
    entryPoints: [source],
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
  });
  const code = result.outputFiles[0].contents;
  const digest = crypto.createHash('sha256').update(code).digest('hex').slice(0, 16);
  const outDir = path.join(os.tmpdir(), 'tuneyard-assets', `${path.basename(entry, '.ts')}-${digest}`);
  const outFile = path.join(outDir, 'index.js');
  if (!fs.existsSync(outFile)) {
    fs.mkdirSync(outDir, { recursive: true });
    const tmp = `${outFile}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, code);
    fs.renameSync(tmp, outFile); // atomic: parallel synths never see half a file
  }
  return lambda.Code.fromAsset(outDir);
}
