/**
 * The files users have, turned into the JSON Lines the pipeline and the trainer read: gzip is
 * decompressed as it streams, a JSON array file is read element by element as rows, and other binary
 * files (Parquet, zip, zstd, ...) are recognised by their magic bytes and named, with the command that
 * converts them, instead of failing line by line as invalid UTF-8.
 */
import { Readable } from 'node:stream';
import * as zlib from 'node:zlib';

/** What a file turned out to be. */
export type DatasetInputKind = 'jsonl' | 'json-array';

/** A binary file format, recognised by its first bytes. */
interface BinaryFormat {
  readonly name: string;
  readonly matches: (head: Uint8Array) => boolean;
  /** How to turn it into JSON Lines. */
  readonly fix: string;
}

const bytesAt = (head: Uint8Array, offset: number, ...expected: number[]) => expected.every((b, i) => head[offset + i] === b);
const asciiAt = (head: Uint8Array, offset: number, text: string) => bytesAt(head, offset, ...Buffer.from(text, 'latin1'));

/** The bytes {@link binaryFormat} needs to see (a tar header's magic is at byte 257). */
export const SNIFF_BYTES = 262;

const BINARY_FORMATS: readonly BinaryFormat[] = [
  {
    name: 'a gzip-compressed file',
    matches: (h) => bytesAt(h, 0, 0x1f, 0x8b),
    fix: '`tuneyard validate` and `tuneyard upload` read .gz files themselves (upload stores the decompressed JSON Lines); elsewhere: `gunzip -k FILE`',
  },
  {
    name: 'a Parquet file',
    matches: (h) => asciiAt(h, 0, 'PAR1'),
    fix: 'convert it to JSON Lines with `duckdb -c "COPY (FROM \'FILE\') TO \'FILE.jsonl\' (FORMAT json)"` or pandas: `pd.read_parquet(\'FILE\').to_json(\'FILE.jsonl\', orient=\'records\', lines=True, force_ascii=False)`',
  },
  {
    name: 'an Arrow/Feather file',
    matches: (h) => asciiAt(h, 0, 'ARROW1'),
    fix: 'convert it to JSON Lines with pandas: `pd.read_feather(\'FILE\').to_json(\'FILE.jsonl\', orient=\'records\', lines=True, force_ascii=False)`',
  },
  {
    name: 'a zip archive (or an Excel/Word file)',
    matches: (h) => bytesAt(h, 0, 0x50, 0x4b, 0x03, 0x04) || bytesAt(h, 0, 0x50, 0x4b, 0x05, 0x06),
    fix: 'unzip it (`unzip FILE`) and pass the .jsonl inside',
  },
  { name: 'a zstd-compressed file', matches: (h) => bytesAt(h, 0, 0x28, 0xb5, 0x2f, 0xfd), fix: 'decompress it: `zstd -d FILE -o FILE.jsonl`' },
  { name: 'a bzip2-compressed file', matches: (h) => asciiAt(h, 0, 'BZh') && h[3] >= 0x31 && h[3] <= 0x39, fix: 'decompress it: `bunzip2 -k FILE`' },
  { name: 'an xz-compressed file', matches: (h) => bytesAt(h, 0, 0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00), fix: 'decompress it: `xz -dk FILE`' },
  { name: 'a 7-Zip archive', matches: (h) => bytesAt(h, 0, 0x37, 0x7a, 0xbc, 0xaf, 0x27, 0x1c), fix: 'extract it: `7z x FILE` and pass the .jsonl inside' },
  { name: 'a tar archive', matches: (h) => asciiAt(h, 257, 'ustar'), fix: 'extract it: `tar -xf FILE` and pass the .jsonl inside' },
  { name: 'an Avro file', matches: (h) => bytesAt(h, 0, 0x4f, 0x62, 0x6a, 0x01), fix: 'convert it to JSON Lines: `avro-tools tojson FILE > FILE.jsonl`' },
  { name: 'an SQLite database', matches: (h) => asciiAt(h, 0, 'SQLite format 3\0'), fix: 'export the rows as JSON Lines, e.g. `sqlite3 -json FILE "SELECT ..." | jq -c \'.[]\' > FILE.jsonl`' },
  { name: 'an HDF5 file', matches: (h) => bytesAt(h, 0, 0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a), fix: 'export the rows as JSON Lines (e.g. with pandas `to_json(orient=\'records\', lines=True)`)' },
  { name: 'a NumPy array file', matches: (h) => bytesAt(h, 0, 0x93) && asciiAt(h, 1, 'NUMPY'), fix: 'export the rows as JSON Lines' },
  { name: 'a PDF document', matches: (h) => asciiAt(h, 0, '%PDF-'), fix: 'extract the text and write one JSON object per line' },
  {
    name: 'a UTF-16 text file',
    matches: (h) => bytesAt(h, 0, 0xff, 0xfe) || bytesAt(h, 0, 0xfe, 0xff),
    fix: 're-encode it as UTF-8: `iconv -f UTF-16 -t UTF-8 FILE > FILE.jsonl`',
  },
];

/** The binary format the file's first bytes (up to {@link SNIFF_BYTES}) belong to, or undefined for text. */
export function binaryFormat(head: Uint8Array): { name: string; fix: string } | undefined {
  const found = BINARY_FORMATS.find((f) => f.matches(head));
  return found && { name: found.name, fix: found.fix };
}

/** The one-line message for a binary file: what it is and how to convert it. */
export function binaryFileMessage(head: Uint8Array, file = 'FILE'): string | undefined {
  const format = binaryFormat(head);
  if (!format) return undefined;
  return `this is ${format.name}, not JSON Lines; ${format.fix.replace(/FILE/g, file)}`;
}

/** A file whose structure cannot be read as rows (a broken gzip stream, a malformed JSON array). */
export class DatasetInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DatasetInputError';
  }
}

/** A file opened as JSON Lines. */
export interface DatasetInput {
  /** The JSON Lines bytes: the file's own, decompressed, or one row a line from a JSON array. */
  readonly chunks: AsyncIterable<Buffer>;
  /** Whether the file was gzip-compressed (decided on its first bytes; known once `chunks` was read from). */
  readonly gzip: () => boolean;
  /** What the (decompressed) file was: known once `chunks` was read from. */
  readonly kind: () => DatasetInputKind;
  /**
   * The file's line where row `line` of the JSON Lines starts: the identity for JSON Lines, the line of
   * the array element for a JSON array (so errors point into the file the user has).
   */
  readonly lineInFile: (line: number) => number;
}

/**
 * Opens a file's bytes as JSON Lines (see the module comment). Streams: memory stays constant in the
 * file size (a JSON array file adds 4 bytes a row for the line map). Binary files other than gzip pass
 * through unchanged; the validator names them ({@link binaryFormat}).
 */
export function openDatasetInput(source: AsyncIterable<Uint8Array>): DatasetInput {
  let gzip = false;
  let kind: DatasetInputKind = 'jsonl';
  let lineMap: LineMap | undefined;
  async function* chunks(): AsyncGenerator<Buffer> {
    const { head, rest } = await peek(source, SNIFF_BYTES);
    let bytes: AsyncIterable<Buffer> = prepend(head, rest);
    if (bytesAt(head, 0, 0x1f, 0x8b)) {
      gzip = true;
      bytes = gunzip(bytes);
    }
    const text = await peekText(bytes);
    if (text.firstChar === 0x5b /* [ */) {
      kind = 'json-array';
      lineMap = new LineMap();
      yield* jsonArrayRows(text.bytes, lineMap);
    } else {
      yield* text.bytes;
    }
  }
  return {
    chunks: chunks(),
    gzip: () => gzip,
    kind: () => kind,
    lineInFile: (line) => (lineMap ? lineMap.get(line) : line),
  };
}

/** Reads at least `n` bytes (fewer at the end of the file) and returns them with the rest of the stream. */
async function peek(source: AsyncIterable<Uint8Array>, n: number): Promise<{ head: Buffer; rest: AsyncIterator<Uint8Array> }> {
  const iterator = source[Symbol.asyncIterator]();
  const parts: Buffer[] = [];
  let length = 0;
  while (length < n) {
    const next = await iterator.next();
    if (next.done) break;
    const chunk = toBuffer(next.value);
    parts.push(chunk);
    length += chunk.length;
  }
  return { head: Buffer.concat(parts, length), rest: iterator };
}

async function* prepend(head: Buffer, rest: AsyncIterator<Uint8Array>): AsyncGenerator<Buffer> {
  if (head.length) yield head;
  for (;;) {
    const next = await rest.next();
    if (next.done) return;
    yield toBuffer(next.value);
  }
}

function toBuffer(chunk: Uint8Array): Buffer {
  return Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

async function* gunzip(bytes: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const stream = Readable.from(bytes).pipe(zlib.createGunzip());
  try {
    for await (const chunk of stream) yield chunk as Buffer;
  } catch (err) {
    throw new DatasetInputError(`the file starts like gzip but cannot be decompressed (${(err as Error).message}); is it truncated?`);
  }
}

/** The first character that is not white space or a byte order mark, with the stream it came from. */
async function peekText(bytes: AsyncIterable<Buffer>): Promise<{ firstChar: number | undefined; bytes: AsyncIterable<Buffer> }> {
  const iterator = bytes[Symbol.asyncIterator]();
  const seen: Buffer[] = [];
  let firstChar: number | undefined;
  while (firstChar === undefined) {
    const next = await iterator.next();
    if (next.done) break;
    seen.push(next.value);
    const all = seen.length === 1 ? next.value : Buffer.concat(seen);
    let i = all[0] === 0xef && all[1] === 0xbb && all[2] === 0xbf ? 3 : 0;
    while (i < all.length && (all[i] === 0x20 || all[i] === 0x09 || all[i] === 0x0a || all[i] === 0x0d)) i++;
    if (i < all.length && !(all.length < 3 && all[0] === 0xef)) firstChar = all[i];
  }
  async function* all(): AsyncGenerator<Buffer> {
    yield* seen;
    for (;;) {
      const next = await iterator.next();
      if (next.done) return;
      yield next.value;
    }
  }
  return { firstChar, bytes: all() };
}

/** Row number → file line, 4 bytes a row. */
class LineMap {
  private lines = new Uint32Array(1024);
  private count = 0;

  push(line: number): void {
    if (this.count === this.lines.length) {
      const grown = new Uint32Array(this.lines.length * 2);
      grown.set(this.lines);
      this.lines = grown;
    }
    this.lines[this.count++] = line;
  }

  get(row: number): number {
    return row >= 1 && row <= this.count ? this.lines[row - 1] : row;
  }
}

const WS = (c: number) => c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;

/**
 * The elements of a JSON array, one a line, as JSON Lines: white space outside strings is dropped (a
 * pretty-printed element becomes one line), the elements' own text is kept (an invalid element is
 * reported by the validator at its row). Works on bytes: the structural characters are ASCII, so
 * multi-byte UTF-8 characters pass through whole.
 */
async function* jsonArrayRows(bytes: AsyncIterable<Buffer>, lineMap: LineMap): AsyncGenerator<Buffer> {
  let line = 1;
  let state: 'before' | 'element-start' | 'element' | 'after-element' | 'done' = 'before';
  let depth = 0; // nesting inside the current element
  let inString = false;
  let escaped = false;
  let first = true;
  const problem = (what: string) => new DatasetInputError(`line ${line}: the file starts with "[" but is not one JSON array: ${what}. JSON Lines needs one JSON object per line`);
  for await (const chunk of bytes) {
    const out = Buffer.allocUnsafe(chunk.length + 1);
    let n = 0;
    for (let i = first && chunk[0] === 0xef && chunk[1] === 0xbb && chunk[2] === 0xbf ? 3 : 0; i < chunk.length; i++) {
      const c = chunk[i];
      if (c === 0x0a) line++;
      if (inString) {
        out[n++] = c;
        if (escaped) escaped = false;
        else if (c === 0x5c) escaped = true;
        else if (c === 0x22) inString = false;
        continue;
      }
      if (WS(c)) continue;
      switch (state) {
        case 'before':
          if (c !== 0x5b) throw problem(`expected "[", got "${String.fromCharCode(c)}"`);
          state = 'element-start';
          continue;
        case 'done':
          throw problem(`text after the closing "]"`);
        case 'after-element':
          if (c === 0x2c) {
            state = 'element-start';
            continue;
          }
          if (c === 0x5d) {
            state = 'done';
            continue;
          }
          throw problem(`expected "," or "]" after an element, got "${String.fromCharCode(c)}"`);
        case 'element-start':
          if (c === 0x5d) {
            state = 'done'; // `[]`, or a trailing comma the validator cannot see: accepted
            continue;
          }
          lineMap.push(line);
          state = 'element';
          break;
      }
      // inside an element
      out[n++] = c;
      if (c === 0x22) inString = true;
      else if (c === 0x7b || c === 0x5b) depth++;
      else if (c === 0x7d || c === 0x5d) depth--;
      else if (c === 0x2c && depth === 0) {
        // the comma between two scalar elements
        n--;
        out[n++] = 0x0a;
        state = 'element-start';
        continue;
      }
      if (depth === 0 && (c === 0x7d || c === 0x5d)) {
        out[n++] = 0x0a;
        state = 'after-element';
      } else if (depth < 0) {
        // the array's closing bracket right after a scalar element
        out[n - 1] = 0x0a;
        depth = 0;
        state = 'done';
      }
    }
    first = false;
    if (n) yield out.subarray(0, n);
  }
  if (state !== 'done') throw problem(state === 'before' ? 'it is empty' : 'it ends before its closing "]" (is the file truncated?)');
}
