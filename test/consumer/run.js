#!/usr/bin/env node
// The package as users get it. Packs the library (`npm pack`, which builds it), checks what the
// tarball holds, installs it into a throwaway CDK app in a temporary folder (its own package.json,
// the lowest aws-cdk-lib, constructs and cdk-nag that tuneyard's peer ranges allow, so not the
// library's dev pins), and there:
//   - checks that aws-cdk-lib, constructs and cdk-nag are installed once each (peers, not nested
//     copies) and that esbuild is not installed (the handlers come bundled);
//   - type-checks the TypeScript app (test/consumer/ts-app, compiler options of `cdk init`), synthesizes it, runs
//     the four cdk-nag packs over it and cfn-lint over its template; the same for the README's usage example
//     (type-check, synth with the packs);
//   - synthesizes the plain JavaScript app (test/consumer/js-app: require('tuneyard'));
//   - runs the installed `tuneyard` CLI;
//   - checks that the packaged handler bundles are byte for byte what the repository bundles from
//     the TypeScript source (so asset hashes are the same in the package and the repository).
// npm installs with --prefer-offline: a warm npm cache makes the whole step take well under 2 minutes.
// Usage: node test/consumer/run.js   (TUNEYARD_CONSUMER_KEEP=1 keeps the temporary folder)
'use strict';
const { execFileSync, spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const repo = path.resolve(__dirname, '..', '..');
const manifest = JSON.parse(fs.readFileSync(path.join(repo, 'package.json'), 'utf8'));
const started = Date.now();
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tuneyard-consumer-'));
const app = path.join(work, 'app');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

/** Runs a command; on failure prints what it wrote and stops the harness with `why`. */
function run(file, args, options, why) {
  try {
    return execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * 1024 * 1024, ...options });
  } catch (e) {
    fail(`${why}\n$ ${[file, ...args].join(' ')} (in ${options.cwd ?? process.cwd()})\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}

function fail(message) {
  // Minified library code in a stack trace can be one line of 100 kB: clip each line.
  const clipped = message.split('\n').map((line) => (line.length > 400 ? `${line.slice(0, 400)} [...]` : line));
  console.error(`consumer: FAILED: ${clipped.join('\n')}`);
  console.error(`consumer: the app is kept in ${app}`);
  process.exit(1);
}

let stepStart = Date.now();
function step(name) {
  const now = Date.now();
  console.log(`consumer: ${name} (${((now - stepStart) / 1000).toFixed(1)} s)`);
  stepStart = now;
}

/** The lowest version a caret range allows (`^2.270.0` -> `2.270.0`). */
function lowest(name) {
  const range = manifest.peerDependencies?.[name];
  const match = /^\^(\d+\.\d+\.\d+)$/.exec(range ?? '');
  if (!match) fail(`package.json peerDependencies["${name}"] is ${JSON.stringify(range)}; give a caret range such as "^2.270.0" (the consumer installs its lowest version)`);
  return match[1];
}

// 1. Pack. `npm pack` runs `prepack` (npm run build: jsii, then the handler and CLI bundles).
// The build's own output (jsii's warnings hold brackets too) comes first: npm's JSON starts at a line "[".
const packOutput = run(npm, ['pack', '--json', '--pack-destination', work], { cwd: repo }, 'npm pack failed');
const packed = JSON.parse(packOutput.slice(packOutput.search(/^\[$/m)))[0];
const tarball = path.join(work, packed.filename);
const files = packed.files.map((f) => f.path);
const problems = [];
const need = (file, why) => files.includes(file) || problems.push(`missing ${file} (${why})`);
need('dist/lib/index.js', 'main');
need('dist/lib/index.d.ts', 'types');
need('dist/bin/tuneyard.js', 'the CLI');
need('training-images/trainer/Dockerfile', "the trainer image's build context");
const handlerSources = fs
  .readdirSync(path.join(repo, 'constructs'))
  .flatMap((c) => (fs.existsSync(path.join(repo, 'constructs', c, 'handler')) ? fs.readdirSync(path.join(repo, 'constructs', c, 'handler')).map((f) => `constructs/${c}/handler/${f}`) : []))
  .filter((f) => /\.ts$/.test(f) && !/\.test\.ts$/.test(f) && /^export (const|async function|function) handler\b/m.test(fs.readFileSync(path.join(repo, f), 'utf8')));
for (const source of handlerSources) need(`dist/${source.replace(/handler\/([^/]+)\.ts$/, 'handler/bundled/$1/index.js')}`, `the bundled Lambda handler of ${source}`);
// Bundled dependencies (zod: package.json "bundleDependencies", which jsii needs) ship as published.
for (const file of files.filter((f) => !f.startsWith('node_modules/'))) {
  if (/\.test\.|(^|\/)tests?\//.test(file)) problems.push(`${file} is a test; the package carries no tests (package.json "files")`);
  if (/\.ts$/.test(file) && !/\.d\.ts$/.test(file)) problems.push(`${file} is TypeScript source; the package carries compiled JavaScript and declarations`);
  if (/__pycache__|\.pyc$|pytest\.ini$|requirements-test\.txt$/.test(file)) problems.push(`${file} is a test or build leftover`);
}
if (problems.length > 0) fail(`the tarball ${packed.filename} is wrong:\n  ${problems.join('\n  ')}`);
step(`packed ${packed.filename}: ${files.length} files, ${(packed.size / 1024).toFixed(0)} kB`);

// 2. A throwaway app on the lowest versions the peer ranges allow.
const versions = { 'aws-cdk-lib': lowest('aws-cdk-lib'), constructs: lowest('constructs'), 'cdk-nag': lowest('cdk-nag') };
if (versions['aws-cdk-lib'] === manifest.devDependencies['aws-cdk-lib']) {
  fail(`the consumer would install aws-cdk-lib ${versions['aws-cdk-lib']}, the library's own dev pin: lower the peer range's minimum so the test proves another version works`);
}
fs.mkdirSync(app);
for (const dir of ['ts-app', 'js-app']) fs.cpSync(path.join(__dirname, dir), app, { recursive: true });
// The README's usage example, as a user copies it into a file of their app.
const README_SECTION = '## Use it in your own CDK app';
const readme = fs.readFileSync(path.join(repo, 'README.md'), 'utf8');
const usage = readme.slice(readme.indexOf(`\n${README_SECTION}\n`)).split(/\n## /)[1] ?? '';
const readmeExample = /^```ts\n([\s\S]*?)^```$/m.exec(usage)?.[1];
if (!readmeExample) fail(`README.md has no \`\`\`ts example under "${README_SECTION}"`);
fs.writeFileSync(path.join(app, 'readme-example.cts'), readmeExample);
const tsconfig = JSON.parse(fs.readFileSync(path.join(app, 'tsconfig.json'), 'utf8'));
fs.writeFileSync(path.join(app, 'tsconfig.json'), JSON.stringify({ ...tsconfig, files: [...tsconfig.files, 'readme-example.cts'] }, null, 2));
fs.writeFileSync(
  path.join(app, 'package.json'),
  JSON.stringify(
    {
      name: 'tuneyard-consumer',
      private: true,
      dependencies: { ...versions, tuneyard: `file:${tarball}` },
      devDependencies: { '@types/node': manifest.devDependencies['@types/node'], typescript: manifest.devDependencies.typescript },
    },
    null,
    2,
  ),
);
run(npm, ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: app }, 'npm install of the consumer app failed');
step(`installed tuneyard with aws-cdk-lib ${versions['aws-cdk-lib']}, constructs ${versions.constructs}, cdk-nag ${versions['cdk-nag']}`);

// 3. One copy of each peer, and no esbuild.
const found = {};
(function walk(nodeModules) {
  if (!fs.existsSync(nodeModules)) return;
  for (const entry of fs.readdirSync(nodeModules)) {
    const names = entry.startsWith('@') ? fs.readdirSync(path.join(nodeModules, entry)).map((n) => `${entry}/${n}`) : [entry];
    for (const name of names) {
      const dir = path.join(nodeModules, name);
      if (!fs.existsSync(path.join(dir, 'package.json'))) continue;
      (found[name] ??= []).push(path.relative(app, dir));
      walk(path.join(dir, 'node_modules'));
    }
  }
})(path.join(app, 'node_modules'));
for (const [name, version] of Object.entries(versions)) {
  const copies = found[name] ?? [];
  if (copies.length !== 1) fail(`${name} is installed ${copies.length} times (${copies.join(', ')}); it must be a peer dependency of tuneyard, not a dependency`);
  const installed = JSON.parse(fs.readFileSync(path.join(app, copies[0], 'package.json'), 'utf8')).version;
  if (installed !== version) fail(`${name} ${installed} is installed, the app asked for ${version}`);
}
if (found.esbuild) fail(`esbuild is installed (${found.esbuild.join(', ')}); tuneyard must not need it at runtime (its handlers come bundled)`);
step('one aws-cdk-lib, constructs and cdk-nag each; no esbuild');

// 4. The TypeScript app: type-check and compile, synthesize with the four cdk-nag packs, cfn-lint.
run(path.join(app, 'node_modules', '.bin', 'tsc'), ['-p', '.'], { cwd: app }, 'the consumer app does not type-check against the installed package');
step('tsc: the TypeScript app type-checks (NodeNext resolution, strict, as `cdk init` sets it)');
const tsOut = path.join(app, 'cdk.out');
console.log(run(process.execPath, ['build/check.cjs', tsOut], { cwd: app }, 'the consumer app does not synthesize or fails the compliance packs').trim());
step('synthesized the TypeScript app; cdk-nag AwsSolutions, HIPAA, NIST 800-53 R5, PCI DSS: no findings');
const templates = fs.readdirSync(tsOut).filter((f) => f.endsWith('.template.json')).map((f) => path.join(tsOut, f));
if (templates.length === 0) fail(`no template in ${tsOut}`);
run(cfnLint(), ['--config-file', path.join(repo, '.cfnlintrc.yaml'), '--', ...templates], { cwd: app }, 'cfn-lint found problems in the consumer app template');
step(`cfn-lint: ${templates.length} template(s) clean`);

// The README's example synthesizes (CDK_OUTDIR set: the App synthesizes when the program ends, as under
// `cdk synth`) and passes the compliance packs it registers. CDK_VALIDATION=false here and for the
// JavaScript app: aws-cdk-lib 2.270 validates every template with a WebAssembly build of CloudFormation's
// rules on each synth unless told not to (~4-15 s here); the TypeScript app above ran it.
run(process.execPath, ['build/readme-example.cjs'], { cwd: app, env: { ...process.env, CDK_VALIDATION: 'false', CDK_OUTDIR: path.join(app, 'readme.out') } }, "the README's usage example does not synthesize");
if (!fs.readdirSync(path.join(app, 'readme.out')).some((f) => f.endsWith('.template.json'))) fail("the README's usage example wrote no template");
step("the README's usage example synthesizes with the compliance packs");

// 5. The JavaScript app.
console.log(run(process.execPath, ['app.js', path.join(app, 'js.out')], { cwd: app, env: { ...process.env, CDK_VALIDATION: 'false' } }, "the plain JavaScript app cannot use require('tuneyard')").trim());
step('synthesized the JavaScript app');

// 6. The installed CLI.
const cli = path.join(app, 'node_modules', '.bin', 'tuneyard');
if (!/validate/.test(run(cli, ['--help'], { cwd: app }, 'the installed tuneyard CLI does not start'))) fail('tuneyard --help does not list the validate command');
run(cli, ['validate', path.join(repo, 'test', 'fixtures', 'datasets', 'chat.jsonl'), '--method', 'lora'], { cwd: app }, 'the installed CLI fails to validate a valid dataset');
step('the installed tuneyard CLI validates a dataset');

// 7. Packaged handler bundles = the repository's bundles of the same source (same asset hashes).
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { bundledCode, prebuiltBundleDir } = require(path.join(repo, 'dist', 'lib', 'bundle.js'));
const sha = (file) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
for (const source of handlerSources) {
  const entry = source.replace(/\.ts$/, '');
  const packagedFile = path.join(prebuiltBundleDir(path.join(app, 'node_modules', 'tuneyard', 'dist', entry)), 'index.js');
  const repoFile = path.join(bundledCode(path.join(repo, entry)).path, 'index.js');
  if (sha(packagedFile) !== sha(repoFile)) fail(`the packaged bundle of ${source} differs from the repository's bundle of it: rebuild (npm run build) with the same esbuild`);
}
step(`${handlerSources.length} packaged handler bundles equal the repository's`);

const lines = (file) => fs.readFileSync(path.join(__dirname, file), 'utf8').trimEnd().split('\n').length;
console.log(
  `consumer: passed in ${((Date.now() - started) / 1000).toFixed(0)} s. App sizes: ts-app/app.cts ${lines('ts-app/app.cts')} lines ` +
    `(check.cts ${lines('ts-app/check.cts')}), js-app/app.js ${lines('js-app/app.js')} lines`,
);
// The app's ~19,000 installed files take a while to delete: a detached rm does it while the tests go on.
if (!process.env.TUNEYARD_CONSUMER_KEEP) spawn('rm', ['-rf', work], { detached: true, stdio: 'ignore' }).unref();

/** cfn-lint from PATH (scripts/test-all.sh puts the test venv there), else from that venv. */
function cfnLint() {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && fs.existsSync(path.join(dir, 'cfn-lint'))) return path.join(dir, 'cfn-lint');
  }
  const venv = run('bash', [path.join(repo, 'scripts', 'python-env.sh')], { cwd: repo }, 'cannot create the test virtualenv (scripts/python-env.sh)').trim();
  return path.join(venv, 'bin', 'cfn-lint');
}
