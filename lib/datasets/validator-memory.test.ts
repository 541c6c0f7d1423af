import { execFileSync } from 'node:child_process';
import * as path from 'node:path';

/** Runs a memory probe (test/support/) in a process of its own with --expose-gc and returns what it printed. */
function probe(script: string) {
  const root = path.join(__dirname, '..', '..');
  return JSON.parse(execFileSync(process.execPath, ['--expose-gc', '-r', 'tsx/cjs', path.join(root, 'test/support', script)], { cwd: root, encoding: 'utf8' }));
}

test('memory stays constant over a long stream of duplicate rows (only distinct rows may grow it)', () => {
  // GIVEN a validator fed 8 MiB to warm up, then 32 MiB, then 40 MiB more of one repeated ~1 KB row,
  // measured in a process of its own with --expose-gc (a jest worker's heap holds other suites' objects)
  const result = probe('validator-memory-probe.ts');

  // THEN the second 40 MiB left the live heap where the first did (within 4 MiB of noise)
  expect(Math.abs(result.after2N - result.afterN)).toBeLessThan(4 * 1024 * 1024);
  expect(Math.abs(result.afterN - result.before)).toBeLessThan(4 * 1024 * 1024);
  // AND every row was read and found a duplicate of line 1
  expect(result.rows).toBe(80 * result.linesPerBlock);
  expect(result.duplicates).toBe(result.rows - 1);
  expect(result.firstDuplicate).toEqual({ line: 2, firstLine: 1 });
  expect(result.errors).toEqual([]);
});

test('memory stays constant on the CLI\'s whole path: a gzip stream through the shared rules with the overlap check', () => {
  // GIVEN 80 MiB of one repeated chat row, gzip-compressed, checked with an eval file (so content hashes are kept),
  // in a process of its own with --expose-gc
  const result = probe('dataset-input-memory-probe.ts');

  // THEN the live heap after 80 MiB is where it was after 40 MiB and 8 MiB (within 4 MiB of noise)
  expect(Math.abs(result.heap.after80 - result.heap.after40)).toBeLessThan(4 * 1024 * 1024);
  expect(Math.abs(result.heap.after40 - result.heap.after8)).toBeLessThan(4 * 1024 * 1024);
  // AND every row was decompressed and read, found a duplicate, and the eval row found in the training file
  expect(result.rows).toBe(80 * result.linesPerBlock);
  expect(result.duplicates).toBe(result.rows - 1);
  expect(result.overlap).toBe(1);
  expect(result.errors).toEqual([]);
});
