import * as fs from 'node:fs';
import * as path from 'node:path';
import { Readable } from 'node:stream';
import { DatasetReport, DatasetValidator, DatasetValidatorOptions, formatError, reportForMethod, validateStream } from '.';
import type { Method } from '../methods';

const CORPUS = path.join(__dirname, '..', '..', 'test', 'fixtures', 'datasets');

interface Case {
  file: string;
  method: Method;
  format: string | null;
  rows: number;
  errors: Array<{ line: number; code: string }>;
}

const cases: Case[] = JSON.parse(fs.readFileSync(path.join(CORPUS, 'cases.json'), 'utf8'));

/** Runs the validator over `bytes` pushed in chunks of `size` bytes (whole when undefined). */
function validate(bytes: Uint8Array, options: DatasetValidatorOptions = {}, size?: number): DatasetReport {
  const validator = new DatasetValidator(options);
  const step = size ?? Math.max(bytes.length, 1);
  for (let i = 0; i < bytes.length; i += step) validator.push(bytes.subarray(i, i + step));
  return validator.end();
}

const utf8 = (text: string) => new Uint8Array(Buffer.from(text, 'utf8'));
const jsonl = (...rows: unknown[]) => utf8(rows.map((r) => JSON.stringify(r)).join('\n') + '\n');

describe('DatasetValidator over the shared corpus', () => {
  test('the corpus is there and lists every fixture file', () => {
    // GIVEN the corpus' files
    const files = fs.readdirSync(CORPUS).filter((f) => f.endsWith('.jsonl'));
    // THEN each is used by at least one case
    expect(new Set(cases.map((c) => c.file))).toEqual(new Set(files));
  });

  test.each(cases.map((c) => [`${c.file} for ${c.method}`, c] as const))('%s', (_name, c) => {
    // GIVEN the fixture's bytes
    const bytes = new Uint8Array(fs.readFileSync(path.join(CORPUS, c.file)));
    for (const size of [undefined, 1, 7]) {
      // WHEN validated for the case's method, whole and in 1- and 7-byte chunks
      const report = validate(bytes, { method: c.method }, size);
      // THEN format, rows, and every error (code and line, in order) match the corpus
      expect({ format: report.format, rows: report.rows, errors: report.errors.map((e) => ({ line: e.line, code: e.code })) }).toEqual({
        format: c.format,
        rows: c.rows,
        errors: c.errors,
      });
      expect(report.errorCount).toBe(c.errors.length);
      for (const e of report.errors) expect(e.message.length).toBeGreaterThan(10);
    }
  });

  test('1-byte, 7-byte and whole chunks give identical reports on every fixture', () => {
    for (const c of cases) {
      const bytes = new Uint8Array(fs.readFileSync(path.join(CORPUS, c.file)));
      const whole = validate(bytes, { method: c.method, maxLength: 8 });
      expect(validate(bytes, { method: c.method, maxLength: 8 }, 1)).toEqual(whole);
      expect(validate(bytes, { method: c.method, maxLength: 8 }, 7)).toEqual(whole);
    }
  });
});

describe('reading lines', () => {
  test('chunk boundaries inside multi-byte characters decode the same as whole lines', () => {
    // GIVEN rows of 2-, 3- and 4-byte characters
    const bytes = jsonl({ text: 'café' }, { text: '日本語のテキスト' }, { text: 'emoji 🦙🦙 and more' }, { text: 'ñ' });
    for (const size of [1, 2, 3, 5, 7, 11]) {
      // WHEN pushed in chunks that split those characters
      const report = validate(bytes, {}, size);
      // THEN no line is taken for invalid UTF-8
      expect(report.errors).toEqual([]);
      expect(report.validRows).toBe(4);
    }
  });

  test('an invalid byte is reported at its line whatever the chunking, and the other rows still count', () => {
    // GIVEN a truncated 3-byte character on line 3
    const good = Buffer.from('{"text":"ok"}\n{"text":"日本"}\n');
    const bad = Buffer.from([...Buffer.from('{"text":"x'), 0xe6, 0x97, ...Buffer.from('"}\n')]);
    const bytes = new Uint8Array(Buffer.concat([good, bad, Buffer.from('{"text":"after"}\n')]));
    for (const size of [undefined, 1, 4, 13]) {
      // WHEN validated
      const report = validate(bytes, {}, size);
      // THEN line 3 is invalid-utf8 and names the bad byte's offset
      expect(report.errors.map((e) => [e.line, e.code])).toEqual([[3, 'invalid-utf8']]);
      expect(report.errors[0].message).toMatch(/0xe6 at byte 10/);
      expect(report.rows).toBe(4);
      expect(report.validRows).toBe(3);
    }
  });

  test('CRLF line endings are read like LF', () => {
    // GIVEN the same rows with LF and CRLF endings
    const lf = jsonl({ prompt: 'a', completion: 'b' }, { prompt: 'c', completion: 'd' });
    const crlf = utf8(Buffer.from(lf).toString('utf8').replace(/\n/g, '\r\n'));
    // WHEN both are validated
    const a = validate(lf, { method: 'sft' });
    const b = validate(crlf, { method: 'sft' }, 3);
    // THEN they agree (apart from the byte count)
    expect({ ...b, bytes: 0 }).toEqual({ ...a, bytes: 0 });
    expect(b.errors).toEqual([]);
  });

  test('a byte order mark is ignored at the start of the file only', () => {
    // GIVEN a BOM on line 1 and another on line 2
    const bytes = utf8('\uFEFF{"text":"a"}\n\uFEFF{"text":"b"}\n');
    // WHEN validated in 1-byte chunks (the BOM split across pushes)
    const report = validate(bytes, {}, 1);
    // THEN line 1 is valid and line 2 is not JSON, as the corpus rules say
    expect(report.errors.map((e) => [e.line, e.code])).toEqual([[2, 'invalid-json']]);
  });

  test('a line longer than maxLineBytes is an error, read in bounded memory, whatever the chunking', () => {
    // GIVEN a 1000-byte line between two short rows
    const bytes = utf8(`{"text":"a"}\n{"text":"${'x'.repeat(1000)}"}\n{"text":"b"}`);
    for (const size of [undefined, 1, 64]) {
      // WHEN lines are limited to 100 bytes
      const report = validate(bytes, { maxLineBytes: 100 }, size);
      // THEN line 2 is line-too-long and line 3 is still read
      expect(report.errors.map((e) => [e.line, e.code])).toEqual([[2, 'line-too-long']]);
      expect(report.validRows).toBe(2);
    }
  });

  test('fails when pushing after end', () => {
    const validator = new DatasetValidator();
    validator.end();
    expect(() => validator.push(utf8('{}'))).toThrow(/after end\(\)/);
  });
});

describe('dataset-level checks', () => {
  test('exact duplicates are counted with their first lines, ignoring key order, spacing and extra keys', () => {
    // GIVEN line 3 equal to line 1 (other key order, an id) and line 4 equal to line 2 (other spacing)
    const bytes = utf8(
      [
        '{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}',
        '{"messages":[{"role":"user","content":"2+2?"},{"role":"assistant","content":"4"}]}',
        '{"id":7,"messages":[{"content":"hi","role":"user"},{"content":"hello","role":"assistant"}]}',
        '{ "messages" : [ {"role":"user","content":"2+2?"}, {"role":"assistant","content":"4"} ] }',
        '{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello!"}]}',
      ].join('\n'),
    );
    // WHEN validated
    const report = validate(bytes, { method: 'sft' });
    // THEN two duplicates, pointing at their first occurrence
    expect(report.duplicates).toEqual({
      count: 2,
      examples: [
        { line: 3, firstLine: 1 },
        { line: 4, firstLine: 2 },
      ],
    });
    expect(report.errors).toEqual([]);
  });

  test('rows that differ only in where a field ends are not duplicates', () => {
    // GIVEN rows whose concatenated fields are equal
    const bytes = jsonl(
      { prompt: 'ab', completion: 'c' },
      { prompt: 'a', completion: 'bc' },
      { prompt: 'abc', completion: 'x' },
      { prompt: 'ab', completion: 'cx' },
    );
    // WHEN validated
    // THEN none is a duplicate
    expect(validate(bytes).duplicates.count).toBe(0);
  });

  test('100,000 distinct rows give no false duplicates', () => {
    const bytes = utf8(Array.from({ length: 100_000 }, (_, i) => `{"text":"row ${i}"}`).join('\n'));
    const report = validate(bytes, {}, 65_536);
    expect(report.validRows).toBe(100_000);
    expect(report.duplicates.count).toBe(0);
  });

  test('examples are capped but the count is not', () => {
    // GIVEN 30 copies of one row
    const bytes = jsonl(...Array.from({ length: 30 }, () => ({ text: 'same' })));
    // WHEN validated with 5 examples
    const report = validate(bytes, { maxExamples: 5 });
    // THEN 29 duplicates, 5 listed
    expect(report.duplicates.count).toBe(29);
    expect(report.duplicates.examples).toHaveLength(5);
  });

  test('eval rows found in the training file are contamination', () => {
    // GIVEN a training file and an eval file sharing two rows
    const train = new DatasetValidator({ method: 'lora', contentHashes: true });
    train.push(jsonl({ prompt: 'a', completion: '1' }, { prompt: 'b', completion: '2' }, { prompt: 'c', completion: '3' }));
    train.end();
    // WHEN the eval file is checked against the training file's content hashes
    const report = validate(jsonl({ prompt: 'z', completion: '9' }, { prompt: 'c', completion: '3' }, { prompt: 'a', completion: '1' }), {
      method: 'lora',
      train: train.contentHashes,
    });
    // THEN both are reported with their training lines
    expect(report.contamination).toEqual({
      count: 2,
      examples: [
        { line: 2, trainLine: 3 },
        { line: 3, trainLine: 1 },
      ],
    });
  });

  test('no contamination field without a training file', () => {
    expect(validate(jsonl({ text: 'a' })).contamination).toBeUndefined();
  });

  test('token estimates: chars/4, percentiles, max and rows over max_length', () => {
    // GIVEN text rows of 4, 8, ..., 400 characters (1..100 tokens)
    const bytes = jsonl(...Array.from({ length: 100 }, (_, i) => ({ text: 'abcd'.repeat(i + 1) })));
    // WHEN validated with max_length 90
    const report = validate(bytes, { method: 'sft', maxLength: 90 });
    // THEN nearest-rank p50 and p95, the max, and the 10 rows over 90 tokens
    expect(report.tokens).toMatchObject({ estimator: 'chars/4', p50: 50, p95: 95, max: 100, total: 5050, maxLength: 90 });
    expect(report.tokens.overLimit.count).toBe(10);
    expect(report.tokens.overLimit.lines).toEqual([91, 92, 93, 94, 95, 96, 97, 98, 99, 100]);
  });

  test('chat rows add 4 tokens a message for the template', () => {
    const report = validate(jsonl({ messages: [{ role: 'user', content: 'abcdefgh' }, { role: 'assistant', content: 'abcd' }] }));
    expect(report.tokens.max).toBe(3 + 8);
  });

  test('errors are capped at maxErrors while errorCount counts all', () => {
    // GIVEN 120 lines of invalid JSON
    const bytes = utf8('{\n'.repeat(120));
    // WHEN validated with the default cap
    const report = validate(bytes, { method: 'sft' });
    // THEN 50 listed, 120 counted
    expect(report.errors).toHaveLength(50);
    expect(report.errorCount).toBe(120);
    expect(report.errors[49].line).toBe(50);
  });
});

describe('reportForMethod', () => {
  test('applies a method and another max_length to a method-independent report', () => {
    // GIVEN a report of a prompt-completion file made without method or limit
    const base = validate(jsonl({ prompt: 'a'.repeat(40), completion: 'b' }, { prompt: 'c', completion: 'd' }));
    expect(base.errors).toEqual([]);
    // WHEN applied for dpo with max_length 5
    const forDpo = reportForMethod(base, 'dpo', 5);
    // THEN dpo is refused at line 1 and the long row is counted (without example lines)
    expect(forDpo.errors.map((e) => [e.line, e.code])).toEqual([[1, 'not-preference']]);
    expect(forDpo.errorCount).toBe(1);
    expect(forDpo.tokens.overLimit).toEqual({ count: 1, lines: [] });
    // AND it equals validating for the method directly, apart from the example lines
    const direct = validate(jsonl({ prompt: 'a'.repeat(40), completion: 'b' }, { prompt: 'c', completion: 'd' }), { method: 'dpo', maxLength: 5 });
    expect({ ...direct, tokens: { ...direct.tokens, overLimit: { ...direct.tokens.overLimit, lines: [] } } }).toEqual(forDpo);
  });

  test('a reward model needs preference pairs, as dpo does, in every preference format', () => {
    const responses = validate(jsonl({ prompt: 'p', completion: 'c' }, { prompt: 'q', completion: 'd' }), { method: 'reward' });
    expect(responses.errors.map((e) => [e.line, e.code, e.message])).toEqual([
      [1, 'not-preference', 'method reward needs preference pairs ({"prompt","chosen","rejected"}); the file is prompt-completion. Use method sft, lora or qlora, or convert the data to pairs'],
    ]);
    const pairs = jsonl({ prompt: 'p', chosen: 'good', rejected: 'bad' }, { prompt: 'q', chosen: 'yes', rejected: 'no' });
    expect(validate(pairs, { method: 'reward' }).errors).toEqual([]);
    expect(validate(pairs, { method: 'lora' }).errors.map((e) => e.code)).toEqual(['preference-for-sft']);
    const chatPairs = jsonl(
      { prompt: [{ role: 'user', content: 'p' }], chosen: [{ role: 'assistant', content: 'good' }], rejected: [{ role: 'assistant', content: 'bad' }] },
      { prompt: [{ role: 'user', content: 'q' }], chosen: [{ role: 'assistant', content: 'yes' }], rejected: [{ role: 'assistant', content: 'no' }] },
    );
    const report = validate(chatPairs, { method: 'reward' });
    expect([report.format, report.errors]).toEqual(['preference-chat', []]);
  });

  test('does not add a method error to an empty file twice', () => {
    const report = reportForMethod(validate(new Uint8Array()), 'dpo');
    expect(report.errors.map((e) => e.code)).toEqual(['empty-file']);
  });
});

test('validateStream reads a Node stream', async () => {
  // GIVEN a file stream with small chunks
  const stream = fs.createReadStream(path.join(CORPUS, 'bad-several.jsonl'), { highWaterMark: 5 });
  // WHEN validated
  const report = await validateStream(stream, { method: 'lora' });
  // THEN the corpus' errors for this file
  expect(report.errors.map((e) => e.line)).toEqual([3, 4, 6, 7]);
  // AND an async iterable of Uint8Array works as well (the S3 Body shape)
  const fromIterable = await validateStream(Readable.from([utf8('{"text":"a"}\n{"te'), utf8('xt":"b"}')]), {});
  expect(fromIterable.validRows).toBe(2);
});

test('formatError prints FILE:LINE: message (code)', () => {
  expect(formatError('data.jsonl', { line: 12, code: 'invalid-json', message: 'not valid JSON' })).toBe('data.jsonl:12: not valid JSON (invalid-json)');
});
