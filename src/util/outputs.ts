// Outputs are checked before any work: the output folder is created and locked
// (a second run into it is refused while the first is alive), and files named by
// options are proved writable — so a mistake is found in a second, not after an
// hour of training.
import { checkWritable, lockOutput, type OutputLock } from './files.js';
import { InputError } from './errors.js';

/**
 * Creates and locks an output folder; a problem is an InputError naming the option.
 * `lock` picks another of the folder's locks than a run's (the studio's: what it holds and
 * what its runs hold are different, so that one studio runs one run at a time).
 */
export function claimOutput(dir: string, option = '--out', lock?: { what: string; name: string }): OutputLock {
  try {
    return lock ? lockOutput(dir, lock.what, lock.name) : lockOutput(dir);
  } catch (e) {
    throw new InputError(`${option} ${dir}: ${(e as Error).message.replace(/^cannot (create folder|write to) \S+: /, '')}`);
  }
}

/** Checks that the file an option names can be written; a problem is an InputError naming it. */
export function claimFile(path: string, option: string): void {
  try {
    checkWritable(path, option);
  } catch (e) {
    throw new InputError((e as Error).message);
  }
}

/** Runs `fn` with `dir` locked as an output folder, releasing it after. */
export async function withOutput<T>(dir: string, fn: () => Promise<T>, option = '--out'): Promise<T> {
  const lock = claimOutput(dir, option);
  try {
    return await fn();
  } finally {
    lock.release();
  }
}
