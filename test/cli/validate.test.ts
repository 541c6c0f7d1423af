import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cli } from './support';

const FIXTURES = path.join(__dirname, '..', 'fixtures', 'datasets');
interface Case {
  file: string;
  method: string;
  format: string | null;
  rows: number;
  errors: Array<{ line: number; code: string }>;
}
const CASES: Case[] = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'cases.json'), 'utf8'));

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tuneyard-validate-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('tuneyard validate on the shared fixture corpus', () => {
  test.each(CASES.map((c) => [`${c.file} --method ${c.method}`, c] as const))('%s', async (_name, c) => {
    // GIVEN a fixture and its expected result
    const file = path.join(FIXTURES, c.file);

    // WHEN it is validated for the case's method
    const { code, stdout } = await cli(['validate', file, '--method', c.method]);

    // THEN every expected error is printed as FILE:LINE: message (code), identical ones grouped with their
    // other lines ("  and N more like it: lines ..."), and nothing else is
    const errorLines = stdout.split('\n').filter((l) => l.startsWith(`${file}:`) && /^.+:\d+: /.test(l));
    expect(printedErrors(stdout, file)).toEqual(c.errors.map((e) => [e.line, e.code]));
    for (const l of errorLines) expect(l).toMatch(new RegExp(`^${escape(file)}:\\d+: \\S.* \\([a-z0-9-]+\\)$`));
    // and the summary names the format and the number of examples
    expect(stdout).toContain(`  format       ${c.format ?? 'unknown'} (checked for ${c.method})`);
    expect(stdout).toMatch(new RegExp(`  examples     ${c.rows} \\(`));
    // and the exit code says whether the file is usable
    expect(code).toBe(c.errors.length === 0 ? 0 : 1);
  });

  test('--json prints the report with the same format, rows and errors', async () => {
    const c = CASES.find((x) => x.errors.length > 1)!;
    const { code, stdout } = await cli(['validate', path.join(FIXTURES, c.file), '--method', c.method, '--json']);
    const out = JSON.parse(stdout);
    expect(out.ok).toBe(false);
    expect(out.train.report.format).toBe(c.format);
    expect(out.train.report.rows).toBe(c.rows);
    expect(out.train.report.errors.map((e: { line: number; code: string }) => ({ line: e.line, code: e.code }))).toEqual(c.errors);
    expect(out.train.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(code).toBe(1);
  });
});

describe('tuneyard validate output', () => {
  test('groups identical errors: one line each, with the count and the first lines', async () => {
    // GIVEN 6,000 rows with the same problem, and 2 rows with other problems
    const file = path.join(tmp, 'many-errors.jsonl');
    const rows = Array.from({ length: 6000 }, () => '{"text": ""}');
    rows.splice(2, 0, 'not json');
    rows.push('{"text": 5}');
    fs.writeFileSync(file, rows.join('\n') + '\n');

    const { code, stdout } = await cli(['validate', file]);

    // THEN each kind of error is printed once, at its first line, in order of first appearance
    const errorLines = stdout.split('\n').filter((l) => l.startsWith(`${file}:`) && /:\d+: /.test(l));
    expect(errorLines.map((l) => /:(\d+): .*\(([a-z-]+)\)$/.exec(l)!.slice(1))).toEqual([
      ['1', 'empty-content'],
      ['3', 'invalid-json'],
      ['6002', 'wrong-type'],
    ]);
    // AND the repeated one says how many more there are and where the next ones are
    expect(stdout).toContain(`${file}:1: "text" is empty; give it some text or drop the row (empty-content)\n  and 5,999 more like it: lines 2, 4, 5, 6, 7, 8, 9, 10, 11, ...\n`);
    expect(stdout).toContain(`${file}: 6,002 errors`);
    expect(code).toBe(1);
  });

  test('prints at most 50 kinds of errors, then "... and N more"', async () => {
    // GIVEN 63 rows, each with a different problem (a different missing key each time)
    const file = path.join(tmp, 'distinct-errors.jsonl');
    fs.writeFileSync(file, Array.from({ length: 63 }, (_, i) => `{"text": "a", "x${i}": }`).join('\n') + '\n');

    const { code, stdout } = await cli(['validate', file]);

    const errorLines = stdout.split('\n').filter((l) => l.startsWith(`${file}:`) && /:\d+: /.test(l));
    expect(errorLines).toHaveLength(50);
    expect(errorLines[49]).toMatch(new RegExp(`^${escape(file)}:50: .*\\(invalid-json\\)$`));
    expect(stdout).toContain('... and 13 more\n');
    expect(code).toBe(1);
  });

  test('summarises a clean file: examples, estimated tokens, duplicates, format', async () => {
    const file = path.join(tmp, 'dupes.jsonl');
    const row = JSON.stringify({ prompt: 'What is 2+2?', completion: 'Four.' });
    fs.writeFileSync(file, [row, row, JSON.stringify({ prompt: 'Capital of France?', completion: 'Paris.' })].join('\n') + '\n');

    const { code, stdout, stderr } = await cli(['validate', file, '--max-length', '2']);

    expect(stdout).toContain(`${file}: ok`);
    expect(stdout).toContain('  format       prompt-completion\n');
    expect(stdout).toContain('  examples     3 (3 valid)');
    expect(stdout).toMatch(/ {2}tokens {7}~\d+ estimated \(chars\/4;/);
    expect(stdout).toContain('  duplicates   1 (e.g. line 2 repeats line 1)');
    expect(stdout).toMatch(/ {2}too long {5}3 over 2 tokens/);
    expect(stderr).toBe('');
    expect(code).toBe(0);
  });

  test('with --method, counts the rows over the recipe\'s default maxLength and says what training does with them', async () => {
    const file = path.join(tmp, 'long.jsonl');
    const chat = (answer: string) => JSON.stringify({ messages: [{ role: 'user', content: 'Summarise the report.' }, { role: 'assistant', content: answer }] });
    fs.writeFileSync(file, [chat('Short.'), chat('x'.repeat(9000)), chat('Also short.')].join('\n') + '\n');

    const { code, stdout } = await cli(['validate', file, '--method', 'sft']);

    expect(stdout).toContain('  too long     1 over 2,048 tokens (e.g. line 2): dropped in training (recipe overlongRows "drop", the default) or cut to maxLength ("truncate")\n');
    expect(code).toBe(0);
    // without --method (a fact about the file) or with another limit
    expect((await cli(['validate', file])).stdout).not.toContain('too long');
    expect((await cli(['validate', file, '--method', 'sft', '--max-length', '8192'])).stdout).toContain('  too long     0 over 8,192 tokens: dropped');
  });

  test('checks the eval file too, including rows copied from the training file', async () => {
    const train = path.join(tmp, 'train.jsonl');
    const evalFile = path.join(tmp, 'eval.jsonl');
    fs.writeFileSync(train, JSON.stringify({ text: 'alpha' }) + '\n' + JSON.stringify({ text: 'beta' }) + '\n');
    fs.writeFileSync(evalFile, JSON.stringify({ text: 'beta' }) + '\n' + '{"text": 5}\n');

    const { code, stdout } = await cli(['validate', train, '--eval', evalFile]);

    expect(stdout).toContain(`${train}: ok`);
    expect(stdout).toMatch(new RegExp(`^${escape(evalFile)}:2: .*\\(wrong-type\\)$`, 'm'));
    expect(stdout).toContain('  in train     1 (e.g. line 1 is train line 2)');
    expect(code).toBe(1);
  });

  test('--method rloo: a file of prompts passes (as for grpo) and fails for lora; a row with its answer fails for rloo at its line', async () => {
    const file = path.join(tmp, 'prompts.jsonl');
    const prompt = (text: string) => JSON.stringify({ messages: [{ role: 'user', content: text }] });
    fs.writeFileSync(file, [prompt('Write a haiku about rain.'), prompt('Explain RLHF in one sentence.')].join('\n') + '\n');
    const rloo = await cli(['validate', file, '--method', 'rloo']);
    expect(rloo.stdout).toContain(`${file}: ok`);
    expect(rloo.code).toBe(0);
    expect((await cli(['validate', file, '--method', 'lora'])).code).toBe(1);
    const answered = path.join(tmp, 'answered.jsonl');
    fs.writeFileSync(answered, [prompt('Hi'), JSON.stringify({ messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello!' }] })].join('\n') + '\n');
    const refused = await cli(['validate', answered, '--method', 'rloo']);
    expect(refused.stdout).toMatch(new RegExp(`^${escape(answered)}:2: messages must end with a user message .*\\(methods grpo and rloo train on prompt-only rows\\)`, 'm'));
    expect(refused.code).toBe(1);
  });

  test('fails when the file cannot be read', async () => {
    const { code, stderr, stdout } = await cli(['validate', path.join(tmp, 'nope.jsonl')]);
    expect(stderr).toMatch(/^error: .*nope\.jsonl: cannot read the file \(ENOENT\)\n$/);
    expect(stdout).toBe('');
    expect(code).toBe(1);
  });

  test('fails on an unknown --method, naming the choices', async () => {
    const { code, stderr } = await cli(['validate', path.join(FIXTURES, 'chat.jsonl'), '--method', 'ppo']);
    expect(stderr).toMatch(/option '--method <method>' argument 'ppo' is invalid\. Allowed choices are sft, lora, qlora, dpo/);
    expect(code).toBe(64); // a usage error (README: Exit codes)
  });

  test('draws a progress bar on a TTY only, for large files', async () => {
    // GIVEN a file over the 8 MiB threshold
    const file = path.join(tmp, 'big.jsonl');
    const row = JSON.stringify({ text: 'x'.repeat(1000) }) + '\n';
    fs.writeFileSync(file, row.repeat(Math.ceil((9 * 1024 * 1024) / row.length)));

    const tty = await cli(['validate', file], { tty: true });
    const pipe = await cli(['validate', file], { tty: false });

    expect(tty.stderr).toMatch(/checking .*big\.jsonl \[#+\] 100% 9\.0\/9\.0 MiB/);
    expect(pipe.stderr).toBe('');
    expect(tty.stdout).toBe(pipe.stdout);
  });
});

/** The [line, code] of every error printed for `file`, groups expanded, by line. */
function printedErrors(stdout: string, file: string): Array<[number, string]> {
  const out: Array<[number, string]> = [];
  let code = '';
  for (const l of stdout.split('\n')) {
    const head = l.startsWith(`${file}:`) ? /^:(\d+): .*\(([a-z0-9-]+)\)$/.exec(l.slice(file.length)) : null;
    if (head) {
      code = head[2];
      out.push([Number(head[1]), code]);
      continue;
    }
    const more = /^ {2}and [\d,]+ more like it: lines? ([\d, ]+)$/.exec(l);
    if (more) for (const n of more[1].split(', ')) out.push([Number(n), code]);
  }
  return out.sort((a, b) => a[0] - b[0]);
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
