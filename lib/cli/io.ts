/** Where the CLI writes: the process's streams, or buffers in tests. */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  /** Whether stderr is a terminal (progress bars are drawn only then). */
  readonly errIsTTY: boolean;
  /** Terminal width for progress bars. */
  readonly columns?: number;
  /** Standard input, for a file argument `-` (tests pass their own). @default - process.stdin */
  readonly stdin?: () => AsyncIterable<Uint8Array>;
}

export const processIo: CliIo = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  get errIsTTY() {
    return Boolean(process.stderr.isTTY);
  },
  get columns() {
    return process.stderr.columns;
  },
};

/** A progress bar on stderr, redrawn in place; does nothing when stderr is not a terminal. */
export interface Progress {
  update(done: number): void;
  finish(): void;
}

const NO_PROGRESS: Progress = { update: () => undefined, finish: () => undefined };

/**
 * A progress bar for `total` bytes labelled `label`, when stderr is a TTY and the work is big
 * enough to be worth one (`minTotal`, default 8 MiB). Redraws at most every 100 ms.
 */
export function progressBar(io: CliIo, label: string, total: number, minTotal = 8 * 1024 * 1024): Progress {
  if (!io.errIsTTY || total < minTotal) return NO_PROGRESS;
  const started = Date.now();
  let last = 0;
  let drawn = false;
  let width0 = 0;
  const draw = (done: number) => {
    const fraction = total > 0 ? Math.min(done / total, 1) : 1;
    const width = Math.max(10, Math.min(40, (io.columns ?? 80) - label.length - 40));
    const filled = Math.round(fraction * width);
    const seconds = (Date.now() - started) / 1000;
    const rate = seconds > 0 ? done / seconds : 0;
    const eta = rate > 0 && fraction < 1 ? ` eta ${Math.ceil((total - done) / rate)}s` : '';
    const line = `${label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ${mib(done)}/${mib(total)} MiB${eta}`;
    // padded to the longest line drawn, so a shorter one (the last, without its eta) leaves no debris
    io.err(`\r${line.padEnd(width0)}`);
    width0 = Math.max(width0, line.length);
    drawn = true;
  };
  return {
    update(done) {
      const now = Date.now();
      if (now - last < 100 && done < total) return;
      last = now;
      draw(done);
    },
    finish() {
      if (drawn) {
        draw(total);
        io.err('\n');
      }
    },
  };
}

function mib(bytes: number): string {
  return (bytes / 1024 / 1024).toFixed(1);
}
