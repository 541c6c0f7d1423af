/**
 * CPU throughput and peak memory of dataset validation against a bare `readline` + `JSON.parse` loop
 * over the same chat JSONL file: the ratio issue 14 asks for (validation at least 0.8x the baseline's
 * throughput, at constant memory).
 *
 *   npx tsx benchmarks/validate-throughput.ts [--size MB] [--runs N] [--file PATH]
 *
 * --size: the synthetic file's size (default 200 MB, about a minute here; the issue's figure is --size 1000);
 * --runs: measurements per reader (default 3, the median is reported); --file: an existing JSONL file instead.
 *
 * Each measurement runs in a process of its own (so its peak RSS is its own) and reports its CPU time
 * (user + system), wall time and peak RSS. The readers, alternating within each run:
 * - baseline: `readline` over `fs.createReadStream` + `JSON.parse` of each non-blank line;
 * - validator: lib/datasets' `validateStream` (UTF-8, JSON, format rules, duplicates, token estimates) for sft;
 * - tuneyard validate: the CLI's path (`checkDataset`: input sniffing, the shared rules; `upload` and
 *   `validate --json` also hash the file with sha256, about 0.55 CPU-s a GB more here).
 *
 * The synthetic file: seeded, chat rows of ~1.2 KB (system, user, assistant), some non-ASCII text, 5% duplicates.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';

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

const READERS = {
  async baseline(file: string): Promise<number> {
    const lines = readline.createInterface({ input: fs.createReadStream(file), crlfDelay: Infinity });
    let rows = 0;
    for await (const line of lines) {
      if (line.trim() === '') continue;
      JSON.parse(line);
      rows++;
    }
    return rows;
  },
  async validator(file: string): Promise<number> {
    const { validateStream } = await import('../lib/datasets');
    const report = await validateStream(fs.createReadStream(file), { method: 'sft', maxLength: 2048 });
    if (report.errorCount !== 0) throw new Error(`unexpected errors: ${JSON.stringify(report.errors.slice(0, 3))}`);
    return report.rows;
  },
  async cli(file: string): Promise<number> {
    const { checkDataset } = await import('../lib/cli/dataset-files');
    const checked = await checkDataset({ out: () => undefined, err: () => undefined, errIsTTY: false }, file, undefined, {
      method: 'sft',
      maxLength: 2048,
      overlap: 'warning',
    });
    if (!checked.check.ok) throw new Error(`unexpected errors: ${JSON.stringify(checked.check.train.errors.slice(0, 3))}`);
    return checked.train.report.rows;
  },
};
type Reader = keyof typeof READERS;
const LABELS: Record<Reader, string> = {
  baseline: 'readline + JSON.parse (baseline)',
  validator: 'DatasetValidator (`validateStream`: UTF-8, JSON, format rules, duplicates, token estimates)',
  cli: '`tuneyard validate` path (`checkDataset`: + input sniffing, the shared rules across files)',
};

interface Measurement {
  readonly rows: number;
  readonly cpuSeconds: number;
  readonly wallSeconds: number;
  readonly peakRssMiB: number;
}

/** Runs in the child: one reader over the file, after loading the code (not timed). */
async function measure(reader: Reader, file: string): Promise<Measurement> {
  if (reader !== 'baseline') await import(reader === 'cli' ? '../lib/cli/dataset-files' : '../lib/datasets');
  const cpu = process.cpuUsage();
  const start = process.hrtime.bigint();
  const rows = await READERS[reader](file);
  const used = process.cpuUsage(cpu);
  return {
    rows,
    cpuSeconds: (used.user + used.system) / 1e6,
    wallSeconds: Number(process.hrtime.bigint() - start) / 1e9,
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
  };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i === -1 ? undefined : process.argv[i + 1];
}

async function main(): Promise<void> {
  const child = arg('--measure') as Reader | undefined;
  if (child) {
    process.stdout.write(JSON.stringify(await measure(child, arg('--file')!)));
    return;
  }
  const megabytes = Number(arg('--size') ?? 200);
  const runs = Number(arg('--runs') ?? 3);
  const given = arg('--file');
  const dir = given ? undefined : fs.mkdtempSync(path.join(os.tmpdir(), 'tuneyard-bench-'));
  const file = given ?? path.join(dir!, 'chat.jsonl');
  try {
    const generated = given ? undefined : generate(file, megabytes);
    const size = fs.statSync(file).size / 1e6;
    const results: Record<Reader, Measurement[]> = { baseline: [], validator: [], cli: [] };
    for (let run = 0; run < runs; run++) {
      for (const reader of Object.keys(READERS) as Reader[]) {
        const out = execFileSync(process.execPath, ['--import', 'tsx', __filename, '--measure', reader, '--file', file], { encoding: 'utf8', maxBuffer: 1 << 20 });
        results[reader].push(JSON.parse(out));
      }
    }
    const rows = results.baseline[0].rows;
    for (const reader of Object.keys(results) as Reader[]) {
      if (results[reader].some((m) => m.rows !== rows) || (generated !== undefined && rows !== generated)) throw new Error(`row counts differ: ${reader}`);
    }
    const cpus = os.cpus();
    console.log(`Dataset validation throughput: ${size.toFixed(0)} MB chat JSONL, ${rows} rows (~${Math.round((size * 1e6) / rows)} B/row), medians of ${runs} runs, each in a process of its own`);
    console.log(`Machine: ${cpus[0]?.model ?? 'unknown CPU'}, ${cpus.length} cores, Node ${process.version}, ${os.platform()} ${os.arch()}, load average ${os.loadavg()[0].toFixed(1)}\n`);
    console.log('| reader | CPU s (runs) | MB per CPU-s | x baseline throughput | wall s | peak RSS MiB |');
    console.log('|---|---:|---:|---:|---:|---:|');
    const base = median(results.baseline.map((m) => m.cpuSeconds));
    for (const reader of Object.keys(results) as Reader[]) {
      const ms = results[reader];
      const cpu = median(ms.map((m) => m.cpuSeconds));
      console.log(
        `| ${LABELS[reader]} | ${cpu.toFixed(2)} (${ms.map((m) => m.cpuSeconds.toFixed(2)).join(', ')}) | ${(size / cpu).toFixed(0)} | ${(base / cpu).toFixed(2)} | ` +
          `${median(ms.map((m) => m.wallSeconds)).toFixed(2)} | ${median(ms.map((m) => m.peakRssMiB)).toFixed(0)} |`,
      );
    }
  } finally {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
