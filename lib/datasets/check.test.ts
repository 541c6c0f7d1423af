import { Readable } from 'node:stream';
import { checkDatasetFiles, CheckDatasetOptions, datasetVerdict, DatasetValidator, validateDatasetFiles } from '.';

const jsonl = (...rows: unknown[]) => Buffer.from(rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
const source = (bytes: Buffer, chunk = 5) => ({
  open: () => Readable.from(Array.from({ length: Math.ceil(bytes.length / chunk) }, (_, i) => bytes.subarray(i * chunk, i * chunk + chunk))),
});
const check = (train: Buffer, evalFile?: Buffer, options: CheckDatasetOptions = {}) =>
  checkDatasetFiles({ train: source(train), ...(evalFile ? { eval: source(evalFile) } : {}) }, options);
const chat = (user: string, assistant: string) => ({ messages: [{ role: 'user', content: user }, { role: 'assistant', content: assistant }] });

describe('train/eval overlap', () => {
  test('finds copies that differ only in case, white space and Unicode compatibility forms', async () => {
    // GIVEN eval rows that are training rows with a trailing space, capitals, doubled spaces, a full-width letter,
    // a no-break space and a ligature, and one row that is really new
    const train = jsonl(chat('What is the capital of France?', 'Paris.'), chat('Define efficiency', 'Doing more with less.'), chat('2+2?', '4'));
    const evalFile = jsonl(
      chat('What is the capital of France? ', 'Paris.'),
      chat('WHAT  is the capital of ＦRANCE?', 'paris.'),
      chat('Define\u00a0eﬃciency', 'Doing more\twith less.'),
      chat('3+3?', '6'),
    );
    // WHEN checked with the default policy
    const result = await check(train, evalFile);
    // THEN the three copies are overlap, with their training lines, and refused
    expect(result.overlap).toEqual({
      count: 3,
      examples: [
        { line: 1, trainLine: 1 },
        { line: 2, trainLine: 1 },
        { line: 3, trainLine: 2 },
      ],
      policy: 'error',
    });
    expect(result.ok).toBe(false);
    expect(result.issues).toEqual([
      expect.objectContaining({ file: 'eval', line: 1, code: 'overlap', severity: 'error', message: expect.stringMatching(/^3 eval rows are also in the training file .*--allow-overlap/) }),
    ]);
  });

  test('text that differs inside words, or in which field it sits, is not overlap', async () => {
    const train = jsonl({ prompt: 'ab', completion: 'c' }, { prompt: 'hello world', completion: 'x' });
    const evalFile = jsonl({ prompt: 'a', completion: 'bc' }, { prompt: 'helloworld', completion: 'x' }, { prompt: 'hello world', completion: 'y' });
    expect((await check(train, evalFile)).overlap?.count).toBe(0);
  });

  test('message key order and ids do not hide a copy; tool calls and roles count as content', async () => {
    const train = jsonl({ id: 'a', messages: [{ role: 'user', content: 'hi' }, { role: 'assistant', content: 'hello' }] });
    const evalFile = jsonl(
      { id: 'b', messages: [{ content: 'hi', role: 'user' }, { content: 'Hello', role: 'assistant' }] },
      { messages: [{ role: 'system', content: 'hi' }, { role: 'user', content: 'x' }, { role: 'assistant', content: 'hello' }] },
    );
    expect((await check(train, evalFile)).overlap?.examples).toEqual([{ line: 1, trainLine: 1 }]);
  });

  test('is a warning with policy warning and nothing with policy allowed; the count is kept either way', async () => {
    const train = jsonl({ text: 'same row' });
    const evalFile = jsonl({ text: 'Same row ' });
    const warned = await check(train, evalFile, { overlap: 'warning' });
    expect(warned).toMatchObject({ ok: true, errorCount: 0, overlap: { count: 1, policy: 'warning' } });
    expect(warned.issues.map((i) => [i.code, i.severity])).toEqual([['overlap', 'warning']]);
    const allowed = await check(train, evalFile, { overlap: 'allowed' });
    expect(allowed).toMatchObject({ ok: true, issues: [], overlap: { count: 1, policy: 'allowed' } });
  });
});

describe('rules across the files', () => {
  test('fails when the eval file has another format than the training file (what the pipeline refused after upload)', async () => {
    // GIVEN chat training data and Alpaca eval data, each valid on its own
    const result = await check(jsonl(chat('q', 'a')), jsonl({ instruction: 'q', input: '', output: 'a' }));
    // THEN each file is fine, the pair is not
    expect(result.train.errorCount + (result.eval?.errorCount ?? 0)).toBe(0);
    expect(result.ok).toBe(false);
    expect(result.issues).toEqual([
      expect.objectContaining({ file: 'eval', line: 1, code: 'mixed-format', severity: 'error', message: expect.stringMatching(/eval file is alpaca but the training file is chat/) }),
    ]);
  });

  test('applies the method to both files', async () => {
    const result = await check(jsonl(chat('q', 'a')), jsonl(chat('r', 'b')), { method: 'dpo' });
    expect(result.errorCount).toBe(2);
    expect(result.train.errors.map((e) => e.code)).toEqual(['not-preference']);
    expect(result.eval?.errors.map((e) => e.code)).toEqual(['not-preference']);
  });

  test('the verdict of stored, method-independent reports equals checking the files for the method', async () => {
    const train = jsonl(chat('q', 'a'), { text: 'mixed' });
    const evalFile = jsonl(chat('q', 'a'));
    const reports = await validateDatasetFiles({ train: source(train), eval: source(evalFile) }, { maxLength: 4 });
    const stored = JSON.parse(JSON.stringify(reports));
    expect(datasetVerdict(stored, { method: 'sft', maxLength: 4 })).toEqual(await check(train, evalFile, { method: 'sft', maxLength: 4 }));
  });
});

describe('files that are not JSON Lines', () => {
  test('a Parquet file is one error naming the format and how to convert it, whatever the chunking', async () => {
    // GIVEN a file that starts with Parquet's magic bytes
    const parquet = Buffer.concat([Buffer.from('PAR1'), Buffer.from([0x15, 0x04, 0x15, 0x80, 0xff, 0x00, 0xc3]), Buffer.alloc(500, 0x9c), Buffer.from('PAR1')]);
    for (const chunk of [1, 7, 1000]) {
      const result = await checkDatasetFiles({ train: source(parquet, chunk) });
      // THEN one binary-file error, not hundreds of invalid-utf8 ones
      expect(result.train.errors).toEqual([{ line: 1, code: 'binary-file', message: expect.stringMatching(/^this is a Parquet file, not JSON Lines; convert it to JSON Lines with .*duckdb/) }]);
      expect(result.train.errorCount).toBe(1);
      expect(result.train.bytes).toBe(parquet.length);
    }
  });

  test.each([
    ['zip', Buffer.from([0x50, 0x4b, 0x03, 0x04, 0x14, 0x00]), /zip archive.*unzip/],
    ['zstd', Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x00]), /zstd-compressed.*zstd -d/],
    ['xz', Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]), /xz-compressed.*xz -dk/],
    ['bzip2', Buffer.from('BZh91AY&SY'), /bzip2-compressed.*bunzip2/],
    ['gzip (in the pipeline)', Buffer.from([0x1f, 0x8b, 0x08, 0x00]), /gzip-compressed.*upload stores the decompressed JSON Lines/],
    ['UTF-16', Buffer.from('\ufeff{"text":"a"}\n', 'utf16le'), /UTF-16.*iconv/],
  ])('%s is named with its fix', (_name, head, message) => {
    const v = new DatasetValidator();
    v.push(Buffer.concat([head, Buffer.alloc(64, 0x80)]));
    const report = v.end();
    expect(report.errors.map((e) => e.code)).toEqual(['binary-file']);
    expect(report.errors[0].message).toMatch(message);
  });

  test('a short text file (under the sniffing length) is read normally', () => {
    const v = new DatasetValidator();
    v.push(Buffer.from('{"text":"a"}'));
    expect(v.end()).toMatchObject({ validRows: 1, errorCount: 0 });
  });

  test('a JSON array given to the pipeline is one json-array error with the jq command, pretty-printed or on one line', () => {
    const rows = [{ text: 'a' }, { text: 'b' }];
    for (const text of [JSON.stringify(rows, null, 2), JSON.stringify(rows)]) {
      const v = new DatasetValidator();
      v.push(Buffer.from(text));
      const report = v.end();
      expect(report.errors).toEqual([{ line: 1, code: 'json-array', message: expect.stringContaining("jq -c '.[]' FILE > FILE.jsonl") }]);
      expect(report.errorCount).toBe(1);
    }
  });
});

test('identical errors are grouped with their count and first lines; the first errors are still listed one by one', () => {
  // GIVEN 6,000 rows with one problem and one row with another
  const v = new DatasetValidator({ maxExamples: 3 });
  v.push(Buffer.from('{"text": ""}\n'.repeat(3000) + '{"text": 1}\n' + '{"text": ""}\n'.repeat(3000)));
  const report = v.end();
  expect(report.errorCount).toBe(6001);
  expect(report.errorGroups).toEqual([
    { code: 'empty-content', message: expect.any(String), count: 6000, lines: [1, 2, 3] },
    { code: 'wrong-type', message: expect.any(String), count: 1, lines: [3001] },
  ]);
  expect(report.errors).toHaveLength(50);
});
