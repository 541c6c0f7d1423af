import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import * as zlib from 'node:zlib';
import { runCli } from '../../lib/cli/program';
import { progressBar } from '../../lib/cli/io';
import { cli, CliResult } from './support';

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tuneyard-inputs-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const chat = (user: string, assistant: string) => ({ messages: [{ role: 'user', content: user }, { role: 'assistant', content: assistant }] });
const ROWS = [chat('What is 2+2?', '4'), chat('Capital of France?', 'Paris.'), chat('Largest planet?', 'Jupiter.')];
const jsonl = (rows: unknown[]) => rows.map((r) => JSON.stringify(r)).join('\n') + '\n';
const write = (name: string, data: string | Buffer) => {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, data);
  return file;
};

/** The CLI with `stdin` as standard input. */
async function cliWithStdin(argv: string[], stdin: Buffer): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  const code = await runCli(argv, {
    io: { out: (s) => void (stdout += s), err: (s) => void (stderr += s), errIsTTY: false, stdin: () => Readable.from([stdin.subarray(0, 10), stdin.subarray(10)]) },
  });
  return { code, stdout, stderr };
}

describe('tuneyard validate reads the inputs users have', () => {
  test('a .jsonl.gz file is decompressed as it is read, and its JSON Lines are hashed', async () => {
    // GIVEN chat rows gzip-compressed with zlib
    const text = jsonl(ROWS);
    const file = write('train.jsonl.gz', zlib.gzipSync(text));
    // WHEN validated
    const { code, stdout } = await cli(['validate', file, '--method', 'sft']);
    const json = JSON.parse((await cli(['validate', file, '--json'])).stdout);
    // THEN it is read as JSON Lines, not refused as invalid UTF-8
    expect(stdout).toContain(`${file}: ok\n  input        gzip-compressed JSON Lines, read as ${text.length} bytes of JSON Lines\n  format       chat (checked for sft)\n  examples     3 (3 valid)`);
    expect(code).toBe(0);
    // AND the hash is that of the JSON Lines (what upload stores and the version is named by)
    expect(json.train.sha256).toBe(require('node:crypto').createHash('sha256').update(text).digest('hex'));
    expect(json.train.input).toEqual({ gzip: true, kind: 'jsonl', bytes: fs.statSync(file).size });
  });

  test('a pretty-printed JSON array is read as rows; its errors point at the lines of the elements', async () => {
    // GIVEN a JSON array of 3 rows, the second with an empty answer
    const rows = [ROWS[0], chat('Capital of France?', ' '), ROWS[2]];
    const file = write('train.json', JSON.stringify(rows, null, 2));
    // WHEN validated
    const { code, stdout } = await cli(['validate', file]);
    // THEN one error, at the line where the second element starts, instead of an invalid-json error a line
    const line = JSON.stringify(rows, null, 2).split('\n').findIndex((l, i) => i > 1 && l === '  {') + 1;
    expect(stdout).toMatch(new RegExp(`^${escape(file)}:${line}: "messages\\[1\\]\\.content" is empty.*\\(empty-content\\)$`, 'm'));
    expect(stdout).toContain(`${file}: 1 error\n  input        JSON array, read as`);
    expect(stdout).toContain('  examples     3 (2 valid)');
    expect(stdout).not.toContain('invalid-json');
    expect(code).toBe(1);
  });

  test('- reads standard input', async () => {
    const { code, stdout } = await cliWithStdin(['validate', '-', '--method', 'lora'], Buffer.from(jsonl(ROWS)));
    expect(stdout).toContain('<stdin>: ok\n  input        JSON Lines from stdin');
    expect(stdout).toContain('  examples     3 (3 valid)');
    expect(code).toBe(0);
  });

  test('fails when - is given and standard input is a terminal (nothing piped in), instead of waiting', async () => {
    const descriptor = Object.getOwnPropertyDescriptor(process.stdin, 'isTTY');
    Object.defineProperty(process.stdin, 'isTTY', { value: true, configurable: true });
    try {
      const { code, stderr } = await cli(['validate', '-']);
      expect(stderr).toBe('error: - reads standard input, but it is a terminal: pipe the data in (e.g. `zcat data.jsonl.gz | tuneyard validate -`) or pass a file\n');
      expect(code).toBe(1);
    } finally {
      if (descriptor) Object.defineProperty(process.stdin, 'isTTY', descriptor);
      else delete (process.stdin as { isTTY?: boolean }).isTTY;
    }
  });

  test('fails when the train and eval files are both standard input', async () => {
    const { code, stderr } = await cliWithStdin(['validate', '-', '--eval', '-'], Buffer.from(jsonl(ROWS)));
    expect(stderr).toBe('error: the training and eval files cannot both be standard input (-): pass one of them as a file\n');
    expect(code).toBe(1);
  });

  test('a Parquet file is named, with how to convert it, instead of an encoding error', async () => {
    // GIVEN a file with Parquet's magic bytes and binary content
    const file = write('train.parquet', Buffer.concat([Buffer.from('PAR1'), Buffer.from([0x15, 0x00, 0xe8, 0x9f, 0xff]), Buffer.alloc(4096, 0xa7), Buffer.from('PAR1')]));
    const { code, stdout } = await cli(['validate', file]);
    expect(stdout.split('\n')[0]).toBe(
      `${file}:1: this is a Parquet file, not JSON Lines; convert it to JSON Lines with \`duckdb -c "COPY (FROM '${file}') TO '${file}.jsonl' (FORMAT json)"\`` +
        ` or pandas: \`pd.read_parquet('${file}').to_json('${file}.jsonl', orient='records', lines=True, force_ascii=False)\` (binary-file)`,
    );
    expect(stdout).not.toContain('invalid-utf8');
    expect(code).toBe(1);
  });

  test('a truncated .gz file fails with a message naming the file', async () => {
    const gz = zlib.gzipSync(jsonl(ROWS));
    const file = write('truncated.jsonl.gz', gz.subarray(0, gz.length - 12));
    const { code, stderr } = await cli(['validate', file]);
    expect(stderr).toMatch(new RegExp(`^error: ${escape(file)}: the file starts like gzip but cannot be decompressed \\(.*\\); is it truncated\\?\\n$`));
    expect(code).toBe(1);
  });
});

describe('tuneyard validate across the train and eval files', () => {
  test('eval rows that are training rows up to case and white space are a warning; --strict fails on it', async () => {
    // GIVEN an eval row that is a training row with a trailing space and other capitals
    const train = write('overlap-train.jsonl', jsonl(ROWS));
    const evalFile = write('overlap-eval.jsonl', jsonl([chat('capital of FRANCE? ', 'Paris.'), chat('Smallest planet?', 'Mercury.')]));
    // WHEN validated, then with --strict
    const plain = await cli(['validate', train, '--eval', evalFile]);
    const strict = await cli(['validate', train, '--eval', evalFile, '--strict']);
    // THEN the overlap is a warning line at the eval row, and counted in the summary
    expect(plain.stdout).toMatch(new RegExp(`^warning: ${escape(evalFile)}:1: 1 eval row is also in the training file .*e\\.g\\. eval line 1 is train line 2.*\\(overlap\\)$`, 'm'));
    expect(plain.stdout).toContain('  in train     1 (e.g. line 1 is train line 2) (warning; upload refuses it without --allow-overlap)');
    expect(plain.code).toBe(0);
    expect(strict.stdout).toContain('failed: 1 warning with --strict\n');
    expect(strict.code).toBe(1);
    expect(JSON.parse((await cli(['validate', train, '--eval', evalFile, '--strict', '--json'])).stdout)).toMatchObject({
      ok: false,
      errorCount: 0,
      overlap: { count: 1, policy: 'warning', examples: [{ line: 1, trainLine: 2 }] },
      issues: [{ file: 'eval', line: 1, code: 'overlap', severity: 'warning' }],
    });
  });

  test('fails when the eval file has another format than the training file, as the pipeline would', async () => {
    const train = write('fmt-train.jsonl', jsonl(ROWS));
    const evalFile = write('fmt-eval.jsonl', jsonl([{ instruction: 'Name a colour', input: '', output: 'Blue' }]));
    const { code, stdout } = await cli(['validate', train, '--eval', evalFile]);
    expect(stdout).toMatch(new RegExp(`^${escape(evalFile)}:1: the eval file is alpaca but the training file is chat; use one format for both files.*\\(mixed-format\\)$`, 'm'));
    expect(stdout).toContain(`${evalFile}: 1 error\n`);
    expect(code).toBe(1);
  });
});

test('the progress bar\'s last line is padded over the longer lines before it (no ETA debris)', () => {
  // GIVEN a bar drawn part-way (with an ETA) and then finished
  let err = '';
  const now = Date.now;
  let t = 1_000_000;
  Date.now = () => (t += 1000);
  try {
    const bar = progressBar({ out: () => undefined, err: (s) => void (err += s), errIsTTY: true, columns: 100 }, 'uploading x', 100 * 1024 * 1024);
    bar.update(10 * 1024 * 1024);
    bar.finish();
  } finally {
    Date.now = now;
  }
  // THEN every redraw is at least as long as the longest before it
  const draws = err.split('\r').filter(Boolean);
  expect(draws[0]).toMatch(/ eta \d+s$/);
  expect(draws[draws.length - 1]).toMatch(/100% 100\.0\/100\.0 MiB +\n$/);
  expect(draws[draws.length - 1].trimEnd().length).toBeLessThan(draws[0].length);
  expect(draws[draws.length - 1].length - 1).toBeGreaterThanOrEqual(draws[0].length);
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
