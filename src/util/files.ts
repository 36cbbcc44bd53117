// Writing files so that an interrupted write never leaves a half-written file in
// place, creating output folders safely, and locking an output folder.
import { randomBytes } from 'node:crypto';
import { accessSync, closeSync, constants, lstatSync, mkdirSync, openSync, readFileSync, readlinkSync, realpathSync, statSync, unlinkSync, writeSync, type Stats } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { removeOnInterrupt } from './cleanup.js';
import { InputError } from './errors.js';

/**
 * Where a write to a path really goes, and how:
 * - `atomic`: a regular file or a new path (symbolic links followed to their final
 *   target, so the link stays and its target is written), replaced by rename;
 * - `direct`: a character device or a FIFO (`/dev/null`, a pipe, `/dev/stdout`), or a file
 *   reached through /proc's or /dev's descriptor links, opened and written in place: a
 *   rename would replace the device node or the link for everyone;
 * - `stdout`: `-`.
 */
export type WriteTarget = { kind: 'atomic'; path: string } | { kind: 'direct'; path: string } | { kind: 'stdout' };

/** Thrown when a path cannot be an output (a folder, a block device, a socket, a link loop); names the path. */
export class OutputPathError extends InputError {}

const MAX_LINKS = 40;

function describe(st: Stats): string | null {
  if (st.isDirectory()) return 'it is a folder';
  if (st.isBlockDevice()) return 'it is a block device (a disk); fastvision never writes over one';
  if (st.isSocket()) return 'it is a socket';
  return null;
}

/** Resolves where a write to `path` goes (see WriteTarget); refuses what must not be written. */
export function writeTargetOf(path: string): WriteTarget {
  if (path === '-') return { kind: 'stdout' };
  const abs = resolve(path);
  const refuse = (why: string): never => {
    throw new OutputPathError(`cannot write ${path}: ${why}`);
  };
  let st: Stats | null = null;
  try {
    st = statSync(abs);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') refuse('its symbolic links loop');
    if (code !== 'ENOENT') refuse((e as Error).message);
  }
  if (st) {
    const bad = describe(st);
    if (bad) refuse(bad);
    if (st.isCharacterDevice() || st.isFIFO()) return { kind: 'direct', path: abs };
    if (!st.isFile()) refuse('it is not a regular file, a device or a pipe');
    // /dev/stdout, /dev/fd/N and /proc/<pid>/fd/N lead to a file the shell opened: write into it.
    if (/^\/(proc|dev)\//.test(abs) && lstatSync(abs).isSymbolicLink()) return { kind: 'direct', path: abs };
    return { kind: 'atomic', path: realpathSync(abs) };
  }
  // A new path, perhaps through a dangling link: the file is created where the links end.
  let p = abs;
  for (let hops = 0; hops < MAX_LINKS; hops++) {
    let l: Stats;
    try {
      l = lstatSync(p);
    } catch {
      return { kind: 'atomic', path: p };
    }
    if (!l.isSymbolicLink()) return { kind: 'atomic', path: p };
    p = resolve(dirname(p), readlinkSync(p));
  }
  return refuse('its symbolic links loop');
}

/**
 * Writes bytes to `path`: atomically (temporary file + fsync + rename) over a regular
 * file or a new path, following symbolic links to their target; directly into a
 * character device or a FIFO; to standard output for `-`. Folders, block devices and
 * sockets are refused with an OutputPathError. The temporary file is removed if the
 * write fails or the process is interrupted.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const target = writeTargetOf(path);
  if (target.kind === 'stdout') {
    await new Promise<void>((res, rej) => process.stdout.write(data, (e) => (e ? rej(e) : res())));
    return;
  }
  if (target.kind === 'direct') {
    const fh = await open(target.path, 'w');
    try {
      await fh.writeFile(data);
    } finally {
      await fh.close();
    }
    return;
  }
  const dest = target.path;
  const tmp = join(dirname(dest), `.${basename(dest)}.${randomBytes(6).toString('hex')}.tmp`);
  const unregister = removeOnInterrupt(tmp);
  try {
    const fh = await open(tmp, 'w');
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, dest);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  } finally {
    unregister();
  }
}

/**
 * Moves a finished temporary file into place at `dest` by rename, under the same rules as
 * writeFileAtomic: a link is followed to its target, and a destination that is not a
 * regular file or a new path (a device, a FIFO, a folder) is refused, the temporary file
 * removed. For caches and downloads, whose files are made elsewhere first.
 */
export async function renameIntoPlace(tmp: string, dest: string): Promise<void> {
  let target: WriteTarget;
  try {
    target = writeTargetOf(dest);
    if (target.kind !== 'atomic') throw new OutputPathError(`cannot write ${dest}: it is not a regular file`);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await rename(tmp, target.path);
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
 * `name` gives another lock of the same folder (the studio's, which its runs do not share).
 */
export function lockOutput(dir: string, what = 'fastvision run', name = '.fastvision.lock'): OutputLock {
  ensureDir(dir);
  const file = join(resolve(dir), name);
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
        throw new Error(`${resolve(dir)} is in use by another ${what} (pid ${pid}); wait for it to finish or choose another --out (or delete ${file} if no such process is running)`);
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
 * Checks, before any work, that a file can be written where `path` says: a device or
 * pipe that takes writes, or a folder that exists (or can be made) and takes a new
 * file. Folders, block devices and sockets are refused. Errors name the option and path.
 */
export function checkWritable(path: string, option: string): void {
  let target: WriteTarget;
  try {
    target = writeTargetOf(path);
  } catch (e) {
    throw new Error(`${option} ${path}: cannot be written (${(e as Error).message.replace(/^cannot write .*?: /, '')})`);
  }
  if (target.kind === 'stdout') return;
  if (target.kind === 'direct') {
    try {
      accessSync(target.path, constants.W_OK);
    } catch (e) {
      throw new Error(`${option} ${path}: cannot be written (${(e as Error).message})`);
    }
    return;
  }
  const abs = target.path;
  const probe = join(dirname(abs), `.${basename(abs)}.${randomBytes(4).toString('hex')}.probe`);
  try {
    ensureDir(dirname(abs));
    closeSync(openSync(probe, 'wx'));
    unlinkSync(probe);
  } catch (e) {
    throw new Error(`${option} ${path}: cannot be written (${(e as Error).message.replace(/^cannot create folder \S+: /, '')})`);
  }
}
