// For the memory probes run in a process of their own (`node --expose-gc -r tsx/cjs`) by
// lib/datasets/validator-memory.test.ts.

const gc = (globalThis as { gc?: () => void }).gc;

/** The live heap in bytes after two full collections. */
export function liveHeap(): number {
  if (!gc) throw new Error('run with node --expose-gc');
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

/** One ~1 KB chat row (without its newline) and ~1 MiB of it as whole lines. */
export function repeatedChatRow(messages: ReadonlyArray<{ role: string; content: string }>): { row: string; block: Buffer } {
  const row = JSON.stringify({ messages });
  return { row, block: Buffer.from(`${row}\n`.repeat(Math.ceil((1 << 20) / (row.length + 1)))) };
}
