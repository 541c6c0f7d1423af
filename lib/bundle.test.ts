import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { bundledCode } from './bundle';

/** The folder the asset code points at. */
function assetPath(code: lambda.Code): string {
  expect(code).toBeInstanceOf(lambda.AssetCode);
  return (code as lambda.AssetCode).path;
}

describe('bundledCode', () => {
  // GIVEN a handler importing a helper, in a fresh folder
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tuneyard-bundle-'));
  const entry = path.join(dir, 'handler');
  fs.writeFileSync(path.join(dir, 'helper.ts'), 'export const greeting = (name: string) => `hello ${name}`;\n');
  fs.writeFileSync(`${entry}.ts`, "import { greeting } from './helper';\nexport class RunRequestInvalid extends Error {}\nexport const handler = async () => greeting('plane');\n");

  test('bundles the handler and its imports into one index.js that keeps error class names', () => {
    const out = assetPath(bundledCode(entry));
    const code = fs.readFileSync(path.join(out, 'index.js'), 'utf8');
    expect(code).toContain('hello');
    expect(code).toContain('RunRequestInvalid');
    expect(code).not.toContain('./helper');
  });

  test('reuses the bundle while no input changed, and rebuilds when an imported file changes', () => {
    const first = assetPath(bundledCode(entry));
    expect(assetPath(bundledCode(entry))).toBe(first);
    // WHEN the imported helper changes
    fs.writeFileSync(path.join(dir, 'helper.ts'), 'export const greeting = (name: string) => `bonjour ${name}`;\n');
    const second = assetPath(bundledCode(entry));
    // THEN the bundle is rebuilt into a new folder with the new code
    expect(second).not.toBe(first);
    expect(fs.readFileSync(path.join(second, 'index.js'), 'utf8')).toContain('bonjour');
  });

  test('fails when the handler does not exist, naming it', () => {
    expect(() => bundledCode(path.join(dir, 'missing'))).toThrow(/the Lambda handler .*missing\.ts \(or \.js\) does not exist/);
  });
});
