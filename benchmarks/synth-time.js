#!/usr/bin/env node
// Times `cdk synth` of the full plane (cdk.json's app) against the floor (benchmarks/empty-app.ts),
// same CLI, same runner and App options, one process each, alternating runs; reports medians and
// the ratio and rewrites the measured block of the "Synth time" section of benchmarks/RESULTS.md.
// Usage: node benchmarks/synth-time.js [runs=5]
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.join(__dirname, '..');
const runs = Number(process.argv[2] ?? 5);
const cdk = path.join(root, 'node_modules', '.bin', 'cdk');
const app = JSON.parse(fs.readFileSync(path.join(root, 'cdk.json'), 'utf8')).app;
const floorApp = 'npx tsx benchmarks/empty-app.ts';

function synthSeconds(appCommand) {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'tuneyard-synth-'));
  const start = process.hrtime.bigint();
  execFileSync(cdk, ['synth', '--quiet', '--app', appCommand, '-o', out], { cwd: root, stdio: ['ignore', 'ignore', 'pipe'] });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  fs.rmSync(out, { recursive: true, force: true });
  return seconds;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
synthSeconds(floorApp); // warm the file cache once; not counted
const plane = [];
const floor = [];
for (let i = 0; i < runs; i++) {
  floor.push(synthSeconds(floorApp));
  plane.push(synthSeconds(app));
}
const ratio = median(plane) / median(floor);
const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
const section = [
  '## Synth time (`node benchmarks/synth-time.js`)',
  '',
  `Measured ${new Date().toISOString().slice(0, 10)} on ${os.cpus().length} x ${cpu}, Node ${process.version}, ${runs} alternating runs each, median.`,
  '',
  '| app | median s | runs (s) |',
  '| --- | ---: | --- |',
  `| floor: one empty stack (\`${floorApp}\`) | ${median(floor).toFixed(2)} | ${floor.map((s) => s.toFixed(2)).join(', ')} |`,
  `| full plane (\`${app}\`, with the four cdk-nag packs) | ${median(plane).toFixed(2)} | ${plane.map((s) => s.toFixed(2)).join(', ')} |`,
  '',
  `Ratio plane / floor: **${ratio.toFixed(2)}x** (target: at most 1.5x).`,
  '',
].join('\n');

const results = path.join(__dirname, 'RESULTS.md');
let text = fs.existsSync(results) ? fs.readFileSync(results, 'utf8') : '# Benchmark results\n\n';
// Only the measured block is rewritten; the notes after the ratio line stay.
const pattern = /## Synth time[\s\S]*?Ratio plane \/ floor:[^\n]*\n/;
text = pattern.test(text) ? text.replace(pattern, section.trimEnd() + '\n') : `${text.trimEnd()}\n\n${section}`;
fs.writeFileSync(results, text);
console.log(section);
