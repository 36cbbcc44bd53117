// Reading a file a user named, without hanging: a named pipe opened for reading
// blocks until someone writes (forever, in a thread the process cannot interrupt),
// and a device such as /dev/zero never ends. Only regular files are read; the open
// itself never blocks (O_NONBLOCK), and the check is made on the opened file.
import { closeSync, constants, fstatSync, openSync, readFileSync, type Stats } from 'node:fs';
import { open } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { InputError } from './errors.js';

/** Thrown for a path that is not a regular file (a folder, a pipe, a device, a socket); names the path. */
export class NotAFileError extends InputError {}

function kindOf(st: Stats): string {
  if (st.isDirectory()) return 'a folder';
  if (st.isFIFO()) return 'a named pipe';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

const FLAGS = constants.O_RDONLY | constants.O_NONBLOCK;

/** What a path that is not a regular file is, in words ("a named pipe"), for messages. */
export function notAFileReason(path: string, st: Stats): string {
  return `${path} is ${kindOf(st)}, not a regular file`;
}

/**
 * The bytes of a regular file; a pipe, device, socket or folder is refused at once.
 * @example
 * const bytes = await readRegularFile('photo.jpg');
 */
export async function readRegularFile(path: string): Promise<Buffer> {
  const handle = await open(path, FLAGS);
  try {
    const st = await handle.stat();
    if (!st.isFile()) throw new NotAFileError(notAFileReason(path, st));
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

/** A regular file's SHA-256 (hex), or null when it is not a readable regular file of at most `maxBytes`. */
export function fileDigest(path: string, maxBytes = 64 * 2 ** 20): string | null {
  try {
    return createHash('sha256').update(readRegularFileSync(path, maxBytes)).digest('hex');
  } catch {
    return null;
  }
}

/** The bytes of a regular file, synchronously; see readRegularFile. A file larger than `maxBytes` is refused. */
export function readRegularFileSync(path: string, maxBytes = Infinity): Buffer {
  const fd = openSync(path, FLAGS);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new NotAFileError(notAFileReason(path, st));
    if (st.size > maxBytes) throw new InputError(`${path} is ${st.size} bytes, more than the ${maxBytes} allowed`);
    return readFileSync(fd);
  } finally {
    closeSync(fd);
  }
}
