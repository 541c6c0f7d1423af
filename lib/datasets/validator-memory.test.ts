import { execFileSync } from 'node:child_process';
import * as path from 'node:path';

test('memory stays constant over a long stream of duplicate rows (only distinct rows may grow it)', () => {
  // GIVEN a validator fed 8 MiB to warm up, then 32 MiB, then 40 MiB more of one repeated ~1 KB row,
  // measured in a process of its own with --expose-gc (a jest worker's heap holds other suites' objects)
  const root = path.join(__dirname, '..', '..');
  const out = execFileSync(process.execPath, ['--expose-gc', '-r', 'tsx/cjs', path.join(root, 'test/support/validator-memory-probe.ts')], {
    cwd: root,
    encoding: 'utf8',
  });
  const probe = JSON.parse(out);

  // THEN the second 40 MiB left the live heap where the first did (within 4 MiB of noise)
  expect(Math.abs(probe.after2N - probe.afterN)).toBeLessThan(4 * 1024 * 1024);
  expect(Math.abs(probe.afterN - probe.before)).toBeLessThan(4 * 1024 * 1024);
  // AND every row was read and found a duplicate of line 1
  expect(probe.rows).toBe(80 * probe.linesPerBlock);
  expect(probe.duplicates).toBe(probe.rows - 1);
  expect(probe.firstDuplicate).toEqual({ line: 2, firstLine: 1 });
  expect(probe.errors).toEqual([]);
});

test('memory stays constant on the CLI\'s whole path: a gzip stream through the shared rules with the overlap check', () => {
  // GIVEN 80 MiB of one repeated chat row, gzip-compressed, checked with an eval file (so content hashes are kept),
  // in a process of its own with --expose-gc
  const root = path.join(__dirname, '..', '..');
  const out = execFileSync(process.execPath, ['--expose-gc', '-r', 'tsx/cjs', path.join(root, 'test/support/dataset-input-memory-probe.ts')], {
    cwd: root,
    encoding: 'utf8',
  });
  const probe = JSON.parse(out);

  // THEN the live heap after 80 MiB is where it was after 40 MiB and 8 MiB (within 4 MiB of noise)
  expect(Math.abs(probe.heap.after80 - probe.heap.after40)).toBeLessThan(4 * 1024 * 1024);
  expect(Math.abs(probe.heap.after40 - probe.heap.after8)).toBeLessThan(4 * 1024 * 1024);
  // AND every row was decompressed and read, found a duplicate, and the eval row found in the training file
  expect(probe.rows).toBe(80 * probe.linesPerBlock);
  expect(probe.duplicates).toBe(probe.rows - 1);
  expect(probe.overlap).toBe(1);
  expect(probe.errors).toEqual([]);
});
