#!/usr/bin/env node
// Times `cdk synth` of the full plane (cdk.json's app) against two floors, one empty stack each
// (benchmarks/empty-app.ts, same CLI and App options), one process per synth, alternating runs:
//  - the floor: the empty app run as TypeScript apps usually are, through a TypeScript runner
//    (`npx tsx`): what the smallest CDK app costs; the target (plane at most 1.5x) is against it;
//  - the same-runner floor: the empty app through the plane's own runner (bin/app.js: a cached
//    esbuild bundle with a V8 code cache), which shows what the plane itself adds.
// Reports medians and both ratios and rewrites the measured block of the "Synth time" section of
// benchmarks/RESULTS.md. Usage: node benchmarks/synth-time.js [runs=5]
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.join(__dirname, '..');
const runs = Number(process.argv[2] ?? 5);
const cdk = path.join(root, 'node_modules', '.bin', 'cdk');
const app = JSON.parse(fs.readFileSync(path.join(root, 'cdk.json'), 'utf8')).app;
const floorApp = 'npx tsx benchmarks/empty-app.ts';
const sameRunnerFloorApp = 'node bin/app.js benchmarks/empty-app.ts';

function synthSeconds(appCommand) {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'tuneyard-synth-'));
  const start = process.hrtime.bigint();
  execFileSync(cdk, ['synth', '--quiet', '--app', appCommand, '-o', out], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  fs.rmSync(out, { recursive: true, force: true });
  return seconds;
}

const loadBefore = os.loadavg()[0];
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
// Warm the file cache, tsx's cache and bin/app.js's bundles and code caches once; not counted.
for (const command of [floorApp, sameRunnerFloorApp, app]) synthSeconds(command);
const plane = [];
const floor = [];
const sameRunnerFloor = [];
for (let i = 0; i < runs; i++) {
  floor.push(synthSeconds(floorApp));
  sameRunnerFloor.push(synthSeconds(sameRunnerFloorApp));
  plane.push(synthSeconds(app));
}
const ratio = median(plane) / median(floor);
const sameRunnerRatio = median(plane) / median(sameRunnerFloor);
let commit = 'unknown';
try {
  commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
  if (execFileSync('git', ['status', '--porcelain', '--', 'bin', 'lib', 'constructs', 'cdk.json'], { cwd: root, encoding: 'utf8' }).trim()) commit += ' with uncommitted changes';
} catch {
  // not a git checkout
}
const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
const section = [
  '## Synth time (`node benchmarks/synth-time.js`)',
  '',
  `Measured ${new Date().toISOString().slice(0, 10)} on ${os.cpus().length} x ${cpu}, Node ${process.version}, commit \`${commit}\`, ${runs} alternating runs each, median; 1-minute load average ${loadBefore.toFixed(1)} before and ${os.loadavg()[0].toFixed(1)} after (other work on the machine slows every row).`,
  '',
  '| app | median s | runs (s) |',
  '| --- | ---: | --- |',
  `| floor: one empty stack (\`${floorApp}\`) | ${median(floor).toFixed(2)} | ${floor.map((s) => s.toFixed(2)).join(', ')} |`,
  `| same-runner floor: one empty stack (\`${sameRunnerFloorApp}\`) | ${median(sameRunnerFloor).toFixed(2)} | ${sameRunnerFloor.map((s) => s.toFixed(2)).join(', ')} |`,
  `| full plane (\`${app}\`, with the four cdk-nag packs) | ${median(plane).toFixed(2)} | ${plane.map((s) => s.toFixed(2)).join(', ')} |`,
  '',
  `Ratio plane / floor: **${ratio.toFixed(2)}x** (target: at most 1.5x); plane / same-runner floor: ${sameRunnerRatio.toFixed(2)}x.`,
  '',
].join('\n');

const results = path.join(__dirname, 'RESULTS.md');
let text = fs.existsSync(results) ? fs.readFileSync(results, 'utf8') : '# Benchmark results\n\n';
// Only the measured block is rewritten; the notes after the ratio line stay.
const pattern = /## Synth time[\s\S]*?Ratio plane \/ floor:[^\n]*\n/;
text = pattern.test(text) ? text.replace(pattern, section.trimEnd() + '\n') : `${text.trimEnd()}\n\n${section}`;
fs.writeFileSync(results, text);
console.log(section);
