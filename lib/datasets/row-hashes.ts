const EMPTY = 0;
// Looked up once: a `Math.imul` property read per character is 50x slower under jest's global proxies.
const imul = Math.imul;
const MAX_LOAD = 0.75;
const NON_ASCII = /[^\x00-\x7f]/;
/** White space other than single plain spaces (`\\s` is JavaScript's white space, as `trim()` knows it). */
const IRREGULAR_SPACE = /\s\s|[^\S ]/;
const SPACE_RUNS = /\s+/g;

/**
 * The rows seen so far, as 64-bit hashes ({@link RowHasher}) of their canonical form with the line of each row's first
 * occurrence: 12 bytes a slot in typed arrays (about 16 bytes a distinct row at the average load),
 * so 10 million distinct rows take about 160 MB instead of gigabytes of JS strings.
 *
 * With 64-bit hashes, the chance that two different rows are taken for duplicates is about
 * n² / 2^65: 3 in a million for 10 million rows.
 */
export class RowHashes {
  private hi: Uint32Array;
  private lo: Uint32Array;
  private lines: Uint32Array;
  private count = 0;

  constructor(initialCapacity = 1 << 12) {
    let capacity = 16;
    while (capacity < initialCapacity) capacity <<= 1;
    this.hi = new Uint32Array(capacity);
    this.lo = new Uint32Array(capacity);
    this.lines = new Uint32Array(capacity);
  }

  /** The number of distinct rows stored. */
  get size(): number {
    return this.count;
  }

  /** The line where this hash was first seen, or 0 when it was not. */
  lineOf(hi: number, lo: number): number {
    const mask = this.hi.length - 1;
    for (let i = (lo ^ hi) & mask; ; i = (i + 1) & mask) {
      if (this.hi[i] === EMPTY && this.lo[i] === EMPTY) return 0;
      if (this.hi[i] === hi && this.lo[i] === lo) return this.lines[i];
    }
  }

  /** Adds the hash with its line; returns the line of its first occurrence when it was already there, else 0. */
  add(hi: number, lo: number, line: number): number {
    if ((this.count + 1) / this.hi.length > MAX_LOAD) this.grow();
    const mask = this.hi.length - 1;
    for (let i = (lo ^ hi) & mask; ; i = (i + 1) & mask) {
      if (this.hi[i] === EMPTY && this.lo[i] === EMPTY) {
        this.hi[i] = hi;
        this.lo[i] = lo;
        this.lines[i] = line;
        this.count++;
        return 0;
      }
      if (this.hi[i] === hi && this.lo[i] === lo) return this.lines[i];
    }
  }

  private grow(): void {
    const { hi, lo, lines } = this;
    const capacity = hi.length * 2;
    this.hi = new Uint32Array(capacity);
    this.lo = new Uint32Array(capacity);
    this.lines = new Uint32Array(capacity);
    this.count = 0;
    for (let i = 0; i < hi.length; i++) {
      if (hi[i] !== EMPTY || lo[i] !== EMPTY) this.add(hi[i], lo[i], lines[i]);
    }
  }
}

/**
 * Long strings are copied as UTF-16LE into this buffer and hashed from 32-bit words: a typed-array
 * load is cheaper than two `charCodeAt` calls. A scratch area, reused by every {@link RowHasher} (one
 * thread, no re-entrancy); strings longer than it use `charCodeAt`, with the same result.
 */
const SCRATCH_CHARS = 1 << 18;
const SCRATCH = Buffer.allocUnsafeSlow(SCRATCH_CHARS * 2);
const SCRATCH_WORDS = new Uint32Array(SCRATCH.buffer, SCRATCH.byteOffset, SCRATCH_CHARS / 2);
/** The word view reads UTF-16LE as `c[2k] | c[2k+1] << 16` only on little-endian machines (x64, arm64). */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
const MIN_SCRATCH_CHARS = 48;

/**
 * A 64-bit non-cryptographic hash fed string by string, computed in JS over UTF-16 code units two at a
 * time (one 32-bit word): several times faster than serialising a row and hashing it with node:crypto.
 * Even words feed two 32-bit multiply-xor lanes, odd words two more (independent chains run in
 * parallel), folded into the running 64-bit state after each string, with the final avalanche of
 * cyrb53. Rows that differ only in even (or only in odd) words still differ in 64 bits of state. Each
 * string is prefixed with its length, so field boundaries are unambiguous. Good for counting
 * duplicates; not for adversarial input.
 */
export class RowHasher {
  private h1 = 0xdeadbeef;
  private h2 = 0x41c6ce57;

  /** Feeds one string. */
  add(value: string): this {
    const n = value.length;
    let a = imul(this.h1 ^ n, 2654435761);
    let b = imul(this.h2 ^ n, 1597334677);
    let c = 0x7a3b9c11;
    let d = 0x2c1f6e5d;
    const words = n >>> 1;
    let k = 0;
    if (LITTLE_ENDIAN && n >= MIN_SCRATCH_CHARS && n <= SCRATCH_CHARS) {
      SCRATCH.write(value, 0, 'utf16le');
      for (; k + 1 < words; k += 2) {
        const w = SCRATCH_WORDS[k];
        const x = SCRATCH_WORDS[k + 1];
        a = imul(a ^ w, 2654435761);
        b = imul(b ^ w, 1597334677);
        c = imul(c ^ x, 2246822507);
        d = imul(d ^ x, 3266489909);
      }
    } else {
      for (; k + 1 < words; k += 2) {
        const i = k << 1;
        const w = value.charCodeAt(i) | (value.charCodeAt(i + 1) << 16);
        const x = value.charCodeAt(i + 2) | (value.charCodeAt(i + 3) << 16);
        a = imul(a ^ w, 2654435761);
        b = imul(b ^ w, 1597334677);
        c = imul(c ^ x, 2246822507);
        d = imul(d ^ x, 3266489909);
      }
    }
    if (k < words) {
      // the last whole word, an even one
      const w = value.charCodeAt(k << 1) | (value.charCodeAt((k << 1) + 1) << 16);
      a = imul(a ^ w, 2654435761);
      b = imul(b ^ w, 1597334677);
    }
    if (n & 1) {
      // an odd last unit: a word of its own (below 0x10000, so never equal to a pair)
      const w = value.charCodeAt(n - 1);
      a = imul(a ^ w, 2654435761);
      b = imul(b ^ w, 1597334677);
    }
    // fold the odd-word lanes in through invertible maps (xorshift, odd multiplier)
    this.h1 = a ^ imul(c ^ (c >>> 15), 0x85ebca6b);
    this.h2 = b ^ imul(d ^ (d >>> 15), 0xc2b2ae35);
    return this;
  }

  /**
   * Feeds the normalised text of one string: Unicode NFKC, lower-cased (Unicode's full lower-casing, which
   * stands in for case folding: they differ on a few characters such as "ß"/"SS"), every run of white space
   * one space, trimmed. Two strings that differ only in case, spacing or compatibility characters
   * (full-width letters, ligatures, no-break spaces) feed the same units. NFKC runs only on strings with
   * non-ASCII characters; it and lower-casing are most of the cost of the overlap check.
   */
  addNormalized(value: string): this {
    // native passes (each returns its input when there is nothing to change), then the word hash of add()
    let text = NON_ASCII.test(value) ? value.normalize('NFKC').toLowerCase() : value.toLowerCase();
    if (IRREGULAR_SPACE.test(text)) text = text.replace(SPACE_RUNS, ' ');
    return this.add(text.trim());
  }

  /** The hash as two 32-bit halves, never both 0 (which marks an empty slot of {@link RowHashes}). */
  digest(): [number, number] {
    let h1 = this.h1;
    let h2 = this.h2;
    h1 = imul(h1 ^ (h1 >>> 16), 2246822507);
    h1 ^= imul(h2 ^ (h2 >>> 13), 3266489909);
    h2 = imul(h2 ^ (h2 >>> 16), 2246822507);
    h2 ^= imul(h1 ^ (h1 >>> 13), 3266489909);
    const hi = h2 >>> 0;
    const lo = h1 >>> 0;
    return hi === EMPTY && lo === EMPTY ? [0, 1] : [hi, lo];
  }
}
