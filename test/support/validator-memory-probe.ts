// Run in its own process (`node --expose-gc -r tsx/cjs`) by lib/datasets/validator-memory.test.ts, so
// the heap figures hold only this validator's objects, not what other test files left in a jest worker.
import { DatasetValidator } from '../../lib/datasets';
import { liveHeap, repeatedChatRow } from './live-heap';

// a ~1 KB chat row repeated, cut into chunks that do not align with lines
const { row, block } = repeatedChatRow([
  { role: 'system', content: 'You answer briefly. '.repeat(10) },
  { role: 'user', content: 'Explain the halting problem with an example, please. '.repeat(6) },
  { role: 'assistant', content: 'No program decides for every program and input whether it halts. '.repeat(6) },
]);
const validator = new DatasetValidator({ method: 'sft', maxLength: 512 });
const pushMiB = (mib: number) => {
  for (let i = 0; i < mib; i++) {
    for (let at = 0; at < block.length; at += 65_521) validator.push(block.subarray(at, at + 65_521));
  }
};

pushMiB(8); // warm up (JIT, first allocations)
const before = liveHeap();
pushMiB(32);
const afterN = liveHeap();
pushMiB(40);
const after2N = liveHeap();
const report = validator.end();
process.stdout.write(
  JSON.stringify({
    before,
    afterN,
    after2N,
    linesPerBlock: block.length / (row.length + 1),
    rows: report.rows,
    duplicates: report.duplicates.count,
    firstDuplicate: report.duplicates.examples[0],
    errors: report.errors,
  }),
);
