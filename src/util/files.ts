// Writing files so that an interrupted write never leaves a half-written file in
// place, creating output folders safely, and locking an output folder.
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { removeOnInterrupt } from './cleanup.js';

/**
 * Writes bytes to `path` atomically (temporary file + fsync + rename). The
 * temporary file is removed if the write fails or the process is interrupted.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const unregister = removeOnInterrupt(tmp);
  try {
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  } finally {
    unregister();
  }
}

/**
 * Creates a folder and its missing parents (like `mkdir -p`), one level at a time:
 * Node's recursive mkdir spins forever on some paths (e.g. under /proc). Errors
 * name the folder that could not be made.
 */
export function ensureDir(path: string): void {
  const abs = resolve(path);
  const missing: string[] = [];
  let p = abs;
  for (;;) {
    try {
      if (!statSync(p).isDirectory()) throw new Error(`cannot create folder ${abs}: ${p} is not a folder`);
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e instanceof Error && e.message.startsWith('cannot create') ? e : new Error(`cannot create folder ${abs}: ${(e as Error).message}`);
      missing.push(p);
      const parent = dirname(p);
      if (parent === p) break;
      p = parent;
    }
  }
  for (const dir of missing.reverse()) {
    try {
      mkdirSync(dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new Error(`cannot create folder ${abs}: ${(e as Error).message}`);
    }
  }
}

/** Whether a process with this id is alive (on this machine); a zombie (killed, not yet reaped) is not. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    // /proc/<pid>/stat: "pid (comm) S ...": the state after the command's closing parenthesis.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}

/** A held lock on an output folder; `release()` frees it. */
export interface OutputLock {
  readonly file: string;
  release(): void;
}

/**
 * Takes the lock of an output folder (creating the folder): `.fastvision.lock`,
 * created exclusively, holding this process's id. A second run into the same
 * folder is refused while the first is alive; a lock left by a dead process is
 * taken over. This also proves the folder writable before any work starts.
 */
export function lockOutput(dir: string, what = 'fastvision'): OutputLock {
  ensureDir(dir);
  const file = join(resolve(dir), '.fastvision.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    let fd: number;
    try {
      fd = openSync(file, 'wx');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST') throw new Error(`cannot write to ${resolve(dir)}: ${(e as Error).message}`);
      let pid = NaN;
      try {
        pid = Number.parseInt(readFileSync(file, 'utf8'), 10);
      } catch {
        // unreadable: treat as stale
      }
      if (Number.isInteger(pid) && pid !== process.pid && alive(pid)) {
        throw new Error(`${resolve(dir)} is in use by another ${what} run (pid ${pid}); wait for it to finish or choose another --out (or delete ${file} if no such run is going on)`);
      }
      try {
        unlinkSync(file);
      } catch {
        // someone else took it over first; the next attempt tells
      }
      continue;
    }
    writeSync(fd, `${process.pid}\n`);
    closeSync(fd);
    const unregister = removeOnInterrupt(file);
    return {
      file,
      release: () => {
        unregister();
        try {
          if (Number.parseInt(readFileSync(file, 'utf8'), 10) === process.pid) unlinkSync(file);
        } catch {
          // already gone
        }
      },
    };
  }
  throw new Error(`cannot lock ${resolve(dir)}: another run keeps taking it`);
}

/**
 * Checks, before any work, that a file can be written where `path` says: its
 * folder exists (or can be made) and takes a new file. Errors name the path.
 */
export function checkWritable(path: string, option: string): void {
  const abs = resolve(path);
  try {
    if (statSync(abs).isDirectory()) throw new Error('it is a folder');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`${option} ${path}: cannot be written (${(e as Error).message})`);
  }
  const probe = join(dirname(abs), `.${basename(abs)}.${randomBytes(4).toString('hex')}.probe`);
  try {
    ensureDir(dirname(abs));
    closeSync(openSync(probe, 'wx'));
    unlinkSync(probe);
  } catch (e) {
    throw new Error(`${option} ${path}: cannot be written (${(e as Error).message.replace(/^cannot create folder \S+: /, '')})`);
  }
}
