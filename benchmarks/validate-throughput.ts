/**
 * Throughput of the dataset validator (lib/datasets) against a plain `readline` + `JSON.parse` loop
 * over the same file, in the same process: best of 3 runs each.
 *
 *   npx tsx benchmarks/validate-throughput.ts [size in MB, default 200]
 *
 * Generates a synthetic chat JSONL file (seeded, ~1 KB rows, some non-ASCII text, 5% duplicate rows)
 * in a temporary directory, deletes it afterwards, and prints a markdown table.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { validateStream } from '../lib/datasets';

const WORDS = (
  'the model learns from each example a response to the user question about data training loss ' +
  'gradient adapter layer token sequence batch café naïve 日本語 über straße résumé 🦙 deploy endpoint'
).split(' ');

/** A small seeded PRNG (mulberry32), so every run benchmarks the same bytes. */
function prng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function sentence(random: () => number, words: number): string {
  const out: string[] = [];
  for (let i = 0; i < words; i++) out.push(WORDS[Math.floor(random() * WORDS.length)]);
  return out.join(' ');
}

function generate(file: string, megabytes: number): number {
  const random = prng(42);
  const target = megabytes * 1e6;
  const fd = fs.openSync(file, 'w');
  let written = 0;
  let rows = 0;
  let previous = '';
  const batch: string[] = [];
  while (written < target) {
    const line =
      rows > 0 && random() < 0.05
        ? previous
        : JSON.stringify({
            messages: [
              { role: 'system', content: 'You are a helpful assistant.' },
              { role: 'user', content: `${rows}: ${sentence(random, 20 + Math.floor(random() * 40))}?` },
              { role: 'assistant', content: sentence(random, 60 + Math.floor(random() * 120)) },
            ],
          });
    previous = line;
    batch.push(line);
    written += Buffer.byteLength(line) + 1;
    rows++;
    if (batch.length === 10_000) {
      fs.writeSync(fd, batch.join('\n') + '\n');
      batch.length = 0;
    }
  }
  if (batch.length) fs.writeSync(fd, batch.join('\n') + '\n');
  fs.closeSync(fd);
  return rows;
}

async function readlineJsonParse(file: string): Promise<number> {
  const lines = readline.createInterface({ input: fs.createReadStream(file), crlfDelay: Infinity });
  let rows = 0;
  for await (const line of lines) {
    if (line.trim() === '') continue;
    JSON.parse(line);
    rows++;
  }
  return rows;
}

async function validator(file: string): Promise<number> {
  const report = await validateStream(fs.createReadStream(file), { method: 'sft', maxLength: 2048 });
  if (report.errorCount !== 0) throw new Error(`unexpected errors: ${JSON.stringify(report.errors.slice(0, 3))}`);
  return report.rows;
}

async function bestOf(runs: number, fn: () => Promise<number>): Promise<{ seconds: number; rows: number }> {
  let best = Infinity;
  let rows = 0;
  for (let i = 0; i < runs; i++) {
    const start = process.hrtime.bigint();
    rows = await fn();
    best = Math.min(best, Number(process.hrtime.bigint() - start) / 1e9);
  }
  return { seconds: best, rows };
}

async function main(): Promise<void> {
  const megabytes = Number(process.argv[2] ?? 200);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tuneyard-bench-'));
  const file = path.join(dir, 'chat.jsonl');
  try {
    const rows = generate(file, megabytes);
    const size = fs.statSync(file).size / 1e6;
    // Warm up both paths (JIT) on the same file before timing.
    await readlineJsonParse(file);
    await validator(file);
    const baseline = await bestOf(3, () => readlineJsonParse(file));
    const ours = await bestOf(3, () => validator(file));
    if (baseline.rows !== rows || ours.rows !== rows) throw new Error(`row counts differ: ${rows} generated, ${baseline.rows} / ${ours.rows} read`);
    const cpus = os.cpus();
    console.log(`Dataset validation throughput: ${size.toFixed(0)} MB synthetic chat JSONL, ${rows} rows (~${Math.round((size * 1e6) / rows)} B/row), best of 3`);
    console.log(`Machine: ${cpus[0]?.model ?? 'unknown CPU'}, ${cpus.length} cores, Node ${process.version}, ${os.platform()} ${os.arch()}\n`);
    console.log('| reader | best time (s) | MB/s | relative |');
    console.log('|---|---:|---:|---:|');
    const mbps = (s: number) => size / s;
    console.log(`| readline + JSON.parse (baseline) | ${baseline.seconds.toFixed(2)} | ${mbps(baseline.seconds).toFixed(1)} | 1.00 |`);
    console.log(
      `| DatasetValidator (UTF-8, JSON, format rules, duplicates, token estimates) | ${ours.seconds.toFixed(2)} | ${mbps(ours.seconds).toFixed(1)} | ${(
        baseline.seconds / ours.seconds
      ).toFixed(2)} |`,
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
