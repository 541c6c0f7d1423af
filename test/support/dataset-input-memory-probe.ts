// Run in its own process (`node --expose-gc -r tsx/cjs`) by lib/datasets/validator-memory.test.ts: the whole
// path of `tuneyard validate FILE.jsonl.gz --eval EVAL` (gunzip, the shared rules with content hashes for
// the overlap check) over a long stream of repeated rows, with the live heap read as the stream goes.
import * as zlib from 'node:zlib';
import { checkDatasetFiles, openDatasetInput } from '../../lib/datasets';
import { liveHeap, repeatedChatRow } from './live-heap';

const { row, block } = repeatedChatRow([
  { role: 'user', content: 'Explain the halting problem with an example, please. '.repeat(6) },
  { role: 'assistant', content: 'No program decides for every program and input whether it halts. '.repeat(6) },
]);
const member = zlib.gzipSync(block); // concatenated gzip members are one gzip stream
const heap: Record<string, number> = {};

async function* train(mib: number): AsyncGenerator<Buffer> {
  for (let i = 1; i <= mib; i++) {
    for (let at = 0; at < member.length; at += 16_381) yield member.subarray(at, at + 16_381);
    if (i === 8 || i === 40 || i === 80) heap[`after${i}`] = liveHeap();
  }
}

(async () => {
  const input = openDatasetInput(train(80));
  const result = await checkDatasetFiles(
    { train: { open: () => input.chunks }, eval: { open: async function* () { yield Buffer.from(`${row}\n`); } } },
    { method: 'sft', overlap: 'warning' },
  );
  process.stdout.write(
    JSON.stringify({ heap, linesPerBlock: block.length / (row.length + 1), rows: result.train.rows, duplicates: result.train.duplicates.count, overlap: result.overlap?.count, errors: result.train.errors }),
  );
})();
