/** Text formatting shared by the commands. */

/** Columns padded to their widest cell; the last column is not padded. */
export function table(header: string[], rows: string[][]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : (cell ?? '').padEnd(widths[i]))).join('  ').trimEnd()).join('\n') + '\n';
}

/** `1h 02m`, `4m 05s`, `12s`. */
export function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  const h = Math.floor(m / 60);
  return `${h}h ${String(m % 60).padStart(2, '0')}m`;
}

/** ISO time to the second, UTC: `2026-11-03T14:05:09Z`. */
export function time(date: Date | undefined): string {
  return date ? date.toISOString().replace(/\.\d{3}Z$/, 'Z') : '-';
}

/** A number with thousands separators: `1,234,567`. */
export function count(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** Dollars: `$12.34`; a cost above zero that rounds to nothing is `<$0.01`, not `$0.00`. */
export function usd(n: number | undefined): string {
  if (n === undefined) return 'n/a';
  return n > 0 && n < 0.005 ? '<$0.01' : `$${n.toFixed(2)}`;
}

/** A metric value with 4 significant digits. */
export function metric(n: number | undefined): string {
  return n === undefined ? '-' : Number(n.toPrecision(4)).toString();
}

/** JSON for `--json`: dates as ISO strings, 2-space indented, newline-terminated. */
export function json(value: unknown): string {
  return JSON.stringify(value, null, 2) + '\n';
}
