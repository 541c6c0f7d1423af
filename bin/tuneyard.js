#!/usr/bin/env node
// The `tuneyard` command. In a clone (the TypeScript source beside this file and tsx installed)
// it runs the source through tsx, so it never runs a stale build; from the published package
// (no source, no tsx) it runs the compiled CLI in dist/.
const fs = require('node:fs');
const path = require('node:path');

const source = path.join(__dirname, 'tuneyard.ts');
let tsxApi;
if (fs.existsSync(source)) {
  try {
    tsxApi = require.resolve('tsx/cjs/api');
  } catch {
    // no tsx: a clone installed without devDependencies; use the build
  }
}
if (tsxApi) {
  require(tsxApi).register();
  require(source);
} else {
  const compiled = path.join(__dirname, '..', 'dist', 'bin', 'tuneyard.js');
  if (!fs.existsSync(compiled)) {
    process.stderr.write('tuneyard: the CLI is not built: run `npm run build` (or `npm install` to run it from source)\n');
    process.exit(1);
  }
  require(compiled);
}
