// What to undo when the process is interrupted: temporary files of writes in
// flight, output locks. The CLI installs the handlers (SIGINT, SIGTERM), so that
// Ctrl-C leaves neither a `.tmp` file nor a stale lock behind; library users who
// install their own handlers can call `runCleanups()` from them.
import { rmSync } from 'node:fs';

const paths = new Set<string>();
let exiting = false;

/** Registers a file (or a folder being built) to delete if the process is interrupted; returns a function that unregisters it. */
export function removeOnInterrupt(path: string): () => void {
  // Once the process is on its way out, no new temporary file may start.
  if (exiting) throw new Error('interrupted: not starting a new write');
  paths.add(path);
  return () => void paths.delete(path);
}

/** Whether an interrupt is ending the process (errors from writes it cut short are expected then). */
export function isExiting(): boolean {
  return exiting;
}

/** Deletes every registered file now (synchronously: it runs from signal handlers). */
export function runCleanups(): void {
  for (const p of paths) {
    try {
      rmSync(p, { recursive: true, force: true });
    } catch {
      // already gone, or not ours to remove
    }
  }
}

/**
 * Cleans up and exits: registered files are removed, then removed again a moment
 * later — a write already handed to the file system's threads (an open that
 * creates its file) can land after the first pass.
 */
function cleanUpAndExit(code: number): void {
  exiting = true;
  runCleanups();
  setTimeout(() => {
    runCleanups();
    process.exit(code);
  }, 150);
}

let installed = false;
const drains: (() => void)[] = [];

/**
 * Claims SIGINT and SIGTERM for a graceful stop (a server draining its requests):
 * the first signal calls `drain` instead of exiting — it must exit by itself — and
 * a second one exits at once. Returns a function that gives the signals back.
 */
export function drainOnSignals(drain: () => void): () => void {
  drains.push(drain);
  return () => {
    const i = drains.indexOf(drain);
    if (i >= 0) drains.splice(i, 1);
  };
}

/**
 * On SIGINT or SIGTERM: delete the registered files, say so on stderr, and exit
 * with 128 + the signal's number, as a shell expects. Installed once.
 */
export function cleanUpOnSignals(say: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): void {
  if (installed) return;
  installed = true;
  let signalled = false;
  for (const [sig, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    process.on(sig, () => {
      const drain = drains[drains.length - 1];
      if (drain !== undefined && !signalled) {
        signalled = true;
        say(`fastvision: ${sig}: finishing the requests in flight (again to stop at once)`);
        drain();
        return;
      }
      if (exiting) process.exit(code);
      say(`fastvision: interrupted (${sig}); files written so far are complete, nothing half-written was left`);
      cleanUpAndExit(code);
    });
  }
}
