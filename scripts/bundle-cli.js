#!/usr/bin/env node
// Runs after the compile (npm run build): bundles the CLI with the AWS SDK and commander over
// dist/bin/tuneyard.js, what bin/tuneyard.js runs from the package. They are devDependencies:
// jsii allows no dependency that is neither a jsii module nor bundled into the package, and
// bundling them as node_modules would put ~50 MB into the npm tarball and the Python wheel.
const path = require('node:path');
const esbuild = require('esbuild');

const root = path.join(__dirname, '..');
esbuild.buildSync({
  entryPoints: [path.join(root, 'bin', 'tuneyard.ts')],
  outfile: path.join(root, 'dist', 'bin', 'tuneyard.js'),
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  minify: true,
  keepNames: true,
  legalComments: 'none',
  logLevel: 'warning',
});
