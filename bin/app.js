#!/usr/bin/env node
// The app command of cdk.json: runs bin/app.ts (or the TypeScript entry given as the first argument)
// from one CommonJS bundle that esbuild makes of it and everything it imports except aws-cdk-lib,
// constructs and esbuild (so Tuneyard's code, zod and cdk-nag load as one file instead of ~500), with
// a V8 code cache beside it. Both live in node_modules/.cache/tuneyard/. The bundle is rebuilt (~1 s)
// whenever any file it was made from, tsconfig.json, this file or the installed packages changed since
// the last build, so `cdk synth` never runs stale code and needs no `npm run build`. Like the tsx
// runner it replaces, it does not type-check: `npm test` (tsc --noEmit) does.
// Each module keeps its own __dirname and __filename (the constructs find their Lambda handlers and the
// trainer folder through them, and cdk-nag names its rules after its files).
'use strict';
const fs = require('node:fs');
const Module = require('node:module');
const path = require('node:path');
const vm = require('node:vm');

const root = path.join(__dirname, '..');
const entry = path.resolve(root, process.argv[2] ?? 'bin/app.ts');
const cacheDir = path.join(root, 'node_modules', '.cache', 'tuneyard');
const bundleFile = path.join(cacheDir, `${path.relative(root, entry).replace(/[^\w.-]+/g, '_')}.js`);
const recordFile = `${bundleFile}.inputs.json`;
const codeCacheFile = `${bundleFile}.v8cache`;
// Besides the bundled files: what changes the bundle without changing one of them.
const ALWAYS_CHECKED = [__filename, path.join(root, 'tsconfig.json'), path.join(root, 'node_modules', '.package-lock.json')];

/** Whether the bundle exists and no input changed since its build started. */
function isFresh() {
  let record;
  try {
    record = JSON.parse(fs.readFileSync(recordFile, 'utf8'));
  } catch {
    return false;
  }
  if (record.entry !== entry || !fs.existsSync(bundleFile)) return false;
  for (const file of record.inputs) {
    const mtime = fs.statSync(file, { throwIfNoEntry: false })?.mtimeMs;
    if (mtime === undefined || mtime > record.startedAt) return false; // changed, or removed: build again
  }
  return ALWAYS_CHECKED.every((file) => (fs.statSync(file, { throwIfNoEntry: false })?.mtimeMs ?? 0) <= record.startedAt);
}

async function build() {
  let esbuild;
  try {
    esbuild = require('esbuild');
  } catch {
    throw new Error('bin/app.js: the app is bundled with esbuild, which is not installed: run `npm ci` in the repository.');
  }
  const startedAt = Date.now();
  const result = await esbuild.build({
    entryPoints: [entry],
    absWorkingDir: root,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    // aws-cdk-lib and constructs stay one shared copy (their classes are compared with instanceof);
    // esbuild is a native binary that lib/bundle.ts loads only when a handler changed.
    external: ['aws-cdk-lib', 'aws-cdk-lib/*', 'constructs', 'esbuild'],
    keepNames: true,
    write: false,
    outfile: bundleFile,
    metafile: true,
    logLevel: 'silent',
    plugins: [ownModulePaths],
  });
  const inputs = Object.keys(result.metafile.inputs).map((input) => path.resolve(root, input));
  writeAtomically(bundleFile, result.outputFiles[0].contents);
  fs.rmSync(codeCacheFile, { force: true });
  writeAtomically(recordFile, JSON.stringify({ entry, startedAt, inputs }));
}

/** Gives every bundled module its own file's __dirname and __filename (esbuild would give it the bundle's). */
const ownModulePaths = {
  name: 'own-module-paths',
  setup(builder) {
    builder.onLoad({ filter: /\.(ts|js|cjs)$/ }, (args) => {
      const source = fs.readFileSync(args.path, 'utf8');
      if (!/\b__(dirname|filename)\b/.test(source)) return undefined;
      return {
        contents: source.replace(/\b__dirname\b/g, JSON.stringify(path.dirname(args.path))).replace(/\b__filename\b/g, JSON.stringify(args.path)),
        loader: args.path.endsWith('.ts') ? 'ts' : 'js',
      };
    });
  },
};

/** Runs the bundle as a CommonJS module, with the code V8 compiled in an earlier run when it has it. */
function run() {
  // The entry's #! line is kept by esbuild; inside the module wrapper it would be a syntax error.
  const source = fs.readFileSync(bundleFile, 'utf8').replace(/^#!.*/, '');
  let cachedData;
  try {
    cachedData = fs.readFileSync(codeCacheFile);
  } catch {
    // first run of this bundle
  }
  const script = new vm.Script(Module.wrap(source), { filename: bundleFile, cachedData });
  const bundleModule = { exports: {}, filename: bundleFile, id: bundleFile };
  script.runInThisContext().call(bundleModule.exports, bundleModule.exports, Module.createRequire(bundleFile), bundleModule, bundleFile, cacheDir);
  // After the run, the cache holds the functions compiled while synthesizing too.
  if (cachedData === undefined || script.cachedDataRejected) writeAtomically(codeCacheFile, script.createCachedData());
}

/** Writes through a temporary file and a rename: a synth running at the same time never reads half a file. */
function writeAtomically(file, contents) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, contents);
  fs.renameSync(tmp, file);
}

// The AWS SDK warns on Node 20 that its releases after January 2027 need Node 22, in the middle of the
// synth output; not actionable here (the CLI turns it off the same way), unless the user set it.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
if (isFresh()) {
  run();
} else {
  build().then(
    () => setImmediate(run), // outside the promise: an error in the app is reported as usual
    (e) => {
      process.stderr.write(`${e.message ?? e}\n`);
      process.exitCode = 1;
    },
  );
}
