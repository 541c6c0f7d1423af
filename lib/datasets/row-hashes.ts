import { hash } from 'node:crypto';

const EMPTY = 0;
const MAX_LOAD = 0.75;

/**
 * The rows seen so far, as 64-bit hashes of their canonical form with the line of each row's first
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

  /** The hash of a canonical row, as two 32-bit halves (never both 0, which marks an empty slot). */
  static of(canonical: string): [number, number] {
    const digest = hash('sha1', canonical, 'buffer');
    const hi = digest.readUInt32LE(0);
    const lo = digest.readUInt32LE(4);
    return hi === EMPTY && lo === EMPTY ? [0, 1] : [hi, lo];
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
