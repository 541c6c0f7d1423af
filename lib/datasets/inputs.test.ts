import { Readable } from 'node:stream';
import * as zlib from 'node:zlib';
import { checkDatasetFiles, DatasetInputError, openDatasetInput } from '.';

const chunked = (bytes: Buffer, size: number) => Readable.from(Array.from({ length: Math.ceil(bytes.length / size) }, (_, i) => bytes.subarray(i * size, i * size + size)));

async function readAll(bytes: Buffer, size = 3) {
  const input = openDatasetInput(chunked(bytes, size));
  const parts: Buffer[] = [];
  for await (const chunk of input.chunks) parts.push(chunk);
  return { text: Buffer.concat(parts).toString('utf8'), input };
}

const rows = [
  { messages: [{ role: 'user', content: 'Grüße, "quoted" [text] {braces}, a comma' }, { role: 'assistant', content: 'line\nbreak 🦙' }] },
  { prompt: 'p', completion: 'c', tags: [1, [2, 3]], meta: { a: null, b: true } },
];

describe('openDatasetInput', () => {
  test('JSON Lines pass through unchanged', async () => {
    const jsonl = Buffer.from(rows.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const { text, input } = await readAll(jsonl);
    expect(text).toBe(jsonl.toString('utf8'));
    expect([input.gzip(), input.kind(), input.lineInFile(2)]).toEqual([false, 'jsonl', 2]);
  });

  test('gzip is decompressed as it streams', async () => {
    // GIVEN a gzip-compressed JSONL file, made with zlib
    const jsonl = Buffer.from(Array.from({ length: 2000 }, (_, i) => JSON.stringify({ text: `row ${i} ${'x'.repeat(i % 50)}` })).join('\n') + '\n');
    const gz = zlib.gzipSync(jsonl);
    for (const size of [1, 1000, gz.length]) {
      // WHEN read in chunks of any size
      const { text, input } = await readAll(gz, size);
      // THEN the JSON Lines come out
      expect(text).toBe(jsonl.toString('utf8'));
      expect([input.gzip(), input.kind()]).toEqual([true, 'jsonl']);
    }
  });

  test('a pretty-printed JSON array becomes one row a line, each mapped to the line its element starts on', async () => {
    // GIVEN a pretty-printed array (with a BOM) whose strings hold brackets, commas, quotes and escaped newlines
    const file = Buffer.from('\ufeff' + JSON.stringify(rows, null, 2) + '\n');
    for (const size of [1, 5, file.length]) {
      const { text, input } = await readAll(file, size);
      // THEN each element is one compact line, equal to the element
      expect(text.split('\n').filter(Boolean).map((l) => JSON.parse(l))).toEqual(rows);
      expect(text.endsWith('\n')).toBe(true);
      expect(input.kind()).toBe('json-array');
      // AND rows map to the lines where their elements start
      const lines = file.toString('utf8').split('\n');
      expect(lines[input.lineInFile(1) - 1].trim()).toBe('{');
      expect(input.lineInFile(2)).toBe(lines.findIndex((l, i) => i > 1 && l === '  {') + 1);
    }
  });

  test('a gzip-compressed JSON array on one line, and an empty array', async () => {
    const { text, input } = await readAll(zlib.gzipSync(JSON.stringify(rows)));
    expect(text.split('\n').filter(Boolean).map((l) => JSON.parse(l))).toEqual(rows);
    expect([input.gzip(), input.kind()]).toEqual([true, 'json-array']);
    expect((await readAll(Buffer.from(' [ ] '))).text).toBe('');
  });

  test('arrays of scalars give a row per scalar (the validator then says each is not an object)', async () => {
    expect((await readAll(Buffer.from('[1, "a,b", null]'))).text).toBe('1\n"a,b"\nnull\n');
  });

  test('fails with DatasetInputError on a truncated gzip file or a malformed array, naming the line', async () => {
    const gz = zlib.gzipSync(Buffer.from('{"text":"a"}\n'.repeat(100)));
    await expect(readAll(gz.subarray(0, gz.length - 10))).rejects.toThrow(DatasetInputError);
    await expect(readAll(gz.subarray(0, gz.length - 10))).rejects.toThrow(/cannot be decompressed/);
    await expect(readAll(Buffer.from('[\n{"text":"a"}\n{"text":"b"}\n]'))).rejects.toThrow(/^line 3: the file starts with "\[" but is not one JSON array: expected "," or "\]"/);
    await expect(readAll(Buffer.from('[{"text":"a"}'))).rejects.toThrow(/ends before its closing "\]"/);
  });
});

test('validation errors in a JSON array point at the element lines of the file the user has', async () => {
  // GIVEN a pretty-printed array whose third element has an empty text
  const file = Buffer.from(JSON.stringify([{ text: 'a' }, { text: 'b' }, { text: '' }, { text: 'a' }], null, 2));
  const input = openDatasetInput(chunked(file, 7));
  // WHEN checked through the shared rules with the input's line map
  const result = await checkDatasetFiles({ train: { open: () => input.chunks, lineInFile: input.lineInFile } });
  // THEN the error and the duplicate are at the lines where those elements start (1-based: "[" is line 1)
  expect(result.train.errors.map((e) => [e.line, e.code])).toEqual([[8, 'empty-content']]);
  expect(result.train.duplicates.examples).toEqual([{ line: 11, firstLine: 2 }]);
});
