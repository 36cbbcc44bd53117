// Outputs are checked before any work: the output folder is created and locked
// (a second run into it is refused while the first is alive), and files named by
// options are proved writable — so a mistake is found in a second, not after an
// hour of training.
import { checkWritable, lockOutput, type OutputLock } from './files.js';
import { InputError } from './errors.js';

/** Creates and locks an output folder; a problem is an InputError naming the option. */
export function claimOutput(dir: string, option = '--out'): OutputLock {
  try {
    return lockOutput(dir);
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
