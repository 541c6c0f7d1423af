import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { DatasetValidator } from '.';

// jest workers run without --expose-gc; this turns it on for this worker so heap figures are live objects only.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function liveHeap(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

test('memory stays constant over a long stream of duplicate rows (only distinct rows may grow it)', () => {
  // GIVEN a ~1 KB chat row repeated, cut into 64 KiB chunks that do not align with lines
  const row = JSON.stringify({
    messages: [
      { role: 'system', content: 'You answer briefly. '.repeat(10) },
      { role: 'user', content: 'Explain the halting problem with an example, please. '.repeat(6) },
      { role: 'assistant', content: 'No program decides for every program and input whether it halts. '.repeat(6) },
    ],
  });
  const block = Buffer.from(`${row}\n`.repeat(Math.ceil((1 << 20) / (row.length + 1)))); // ~1 MiB of whole lines
  const validator = new DatasetValidator({ method: 'sft', maxLength: 512 });
  const pushMiB = (mib: number) => {
    for (let i = 0; i < mib; i++) {
      for (let at = 0; at < block.length; at += 65_521) validator.push(block.subarray(at, at + 65_521));
    }
  };

  // WHEN 40 MiB, then 40 MiB more, are pushed
  pushMiB(8); // warm up (JIT, first allocations)
  const before = liveHeap();
  pushMiB(32);
  const afterN = liveHeap();
  pushMiB(40);
  const after2N = liveHeap();
  const report = validator.end();

  // THEN the second 40 MiB left the live heap where the first did (within 4 MiB of noise)
  expect(Math.abs(after2N - afterN)).toBeLessThan(4 * 1024 * 1024);
  expect(Math.abs(afterN - before)).toBeLessThan(4 * 1024 * 1024);
  // AND every row was read and found a duplicate of line 1
  const linesPerBlock = block.length / (row.length + 1);
  expect(report.rows).toBe(80 * linesPerBlock);
  expect(report.duplicates.count).toBe(report.rows - 1);
  expect(report.duplicates.examples[0]).toEqual({ line: 2, firstLine: 1 });
  expect(report.errors).toEqual([]);
});
