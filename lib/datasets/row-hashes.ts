const EMPTY = 0;
// Looked up once: a `Math.imul` property read per character is 50x slower under jest's global proxies.
const imul = Math.imul;
const MAX_LOAD = 0.75;

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
 * A 64-bit non-cryptographic hash fed string by string (two 32-bit multiply-xor lanes with the
 * final avalanche of cyrb53), computed in JS over UTF-16 code units: several times faster than
 * serialising a row and hashing it with node:crypto. Each string is prefixed with its length, so
 * field boundaries are unambiguous. Good for counting duplicates; not for adversarial input.
 */
export class RowHasher {
  private h1 = 0xdeadbeef;
  private h2 = 0x41c6ce57;

  /** Feeds one string. */
  add(value: string): this {
    let h1 = imul(this.h1 ^ value.length, 2654435761);
    let h2 = imul(this.h2 ^ value.length, 1597334677);
    for (let i = 0; i < value.length; i++) {
      const c = value.charCodeAt(i);
      h1 = imul(h1 ^ c, 2654435761);
      h2 = imul(h2 ^ c, 1597334677);
    }
    this.h1 = h1;
    this.h2 = h2;
    return this;
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
