// Progress reporting for long steps: a live bar on a terminal, a few plain lines
// otherwise (logs and CI stay readable).
import cliProgress from 'cli-progress';

/** A running progress report. */
export interface Progress {
  /** Advances by `n` units. */
  tick(n?: number): void;
  /** Sets the number of units done (and optionally the total). */
  update(done: number, total?: number): void;
  /** Ends the report (on a terminal, leaves the finished bar). */
  stop(): void;
}

/** Options of `progress`. */
export interface ProgressOptions {
  /** Where to write (default stderr). */
  stream?: NodeJS.WriteStream;
  /** Formats units for display, e.g. bytes as MB. */
  format?: (n: number) => string;
  /** No output at all (also when FASTVISION_QUIET=1). */
  quiet?: boolean;
}

const SILENT: Progress = { tick() {}, update() {}, stop() {} };

/** Starts a progress report for `total` units of work labelled `label`. */
export function progress(label: string, total: number, { stream = process.stderr, format = String, quiet = false }: ProgressOptions = {}): Progress {
  if (quiet || process.env.FASTVISION_QUIET === '1') return SILENT;
  let done = 0;
  let tot = total;
  if (stream.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        stream,
        format: `${label} [{bar}] {percentage}% | {shown}/{shownTotal} | {duration_formatted} elapsed, {eta_formatted} left`,
        hideCursor: true,
        clearOnComplete: false,
        etaBuffer: 20,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(tot, 0, { shown: format(0), shownTotal: format(tot) });
    return {
      tick(n = 1) {
        done += n;
        bar.update(done, { shown: format(done), shownTotal: format(tot) });
      },
      update(d, t) {
        done = d;
        if (t !== undefined && t !== tot) {
          tot = t;
          bar.setTotal(t);
        }
        bar.update(done, { shown: format(done), shownTotal: format(tot) });
      },
      stop() {
        bar.stop();
      },
    };
  }
  // Not a terminal: a line at the start, at each quarter, and at the end.
  const started = Date.now();
  let lastQuarter = -1;
  const report = (): void => {
    const q = tot > 0 ? Math.floor((4 * done) / tot) : 4;
    if (q === lastQuarter) return;
    lastQuarter = q;
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    stream.write(`${label}: ${format(done)}/${format(tot)} (${tot > 0 ? Math.round((100 * done) / tot) : 100}%, ${secs} s)\n`);
  };
  report();
  return {
    tick(n = 1) {
      done += n;
      report();
    },
    update(d, t) {
      done = d;
      if (t !== undefined) tot = t;
      report();
    },
    stop() {},
  };
}

/** Formats a byte count as MB with one decimal. */
export function megabytes(n: number): string {
  return `${(n / 2 ** 20).toFixed(1)} MB`;
}
