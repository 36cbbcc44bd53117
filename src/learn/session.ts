// The training session that `fastvision train` and `fastvision fit` share, and that the API's
// recipe runs in: the checkpoint in the output folder and resuming from it (also across the
// ranks of a distributed run), out-of-memory errors that say where the last checkpoint is, and
// the batch-size check before a run starts.
import { existsSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { tensor } from '../torch/index.js';
import type { ProcessGroup } from '../torch/distributed.js';
import { InputError } from '../util/errors.js';
import { readRegularFile } from '../util/read-files.js';
import { disposeCheckpoint, loadCheckpoint, type Checkpoint } from './checkpoint.js';
import { BatchTooLargeError, checkBatchFits, OutOfMemoryError } from './memory.js';

/** Where `train` and `fit` keep their checkpoint in the output folder. */
export function checkpointFile(out: string): string {
  return join(resolve(out), 'checkpoint.pth');
}

/**
 * The checkpoint `--resume` continues from: the one in `out`, written by `command`
 * with the same fingerprint; anything else is an InputError saying why.
 */
export async function openCheckpoint<M extends { kind: string; fingerprint: string }>(out: string, command: 'train' | 'fit', fingerprint: string): Promise<Checkpoint<M>> {
  const file = checkpointFile(out);
  if (!existsSync(file)) throw new InputError(`--resume: no checkpoint in ${resolve(out)} (${command} writes ${file} at the end of each epoch)`);
  const c = await loadCheckpoint<M>(file);
  if (c.meta.kind !== command || c.meta.fingerprint !== fingerprint || (command === 'fit' && c.fit === null)) {
    disposeCheckpoint(c);
    throw new InputError(`--resume: the checkpoint in ${resolve(out)} was made by a run with other data or settings; run again with the same options, or without --resume to start over`);
  }
  return c;
}

/**
 * `openCheckpoint` for a distributed run: rank 0 reads its checkpoint (written on
 * its machine) and sends the file to every rank through the group, so that all
 * continue from the same state; rank 0's refusal is every rank's. (Every rank's
 * weights, optimizer state and random generator equal rank 0's throughout a run.)
 */
export async function shareCheckpoint<M extends { kind: string; fingerprint: string }>(pg: ProcessGroup, out: string, command: 'train' | 'fit', fingerprint: string): Promise<Checkpoint<M>> {
  let mine: Checkpoint<M> | null = null;
  let bytes: Uint8Array | null = null;
  if (pg.rank === 0) {
    try {
      mine = await openCheckpoint<M>(out, command, fingerprint);
      bytes = await readRegularFile(checkpointFile(out));
    } catch (e) {
      pg.set('resume-error', (e as Error).message);
    }
  }
  const header = tensor(BigInt64Array.from([BigInt(bytes?.length ?? -1)]), { device: pg.device });
  await pg.broadcast([header], 0);
  const n = Number(header.toArray()[0]);
  header.dispose();
  if (n < 0) {
    const why = pg.rank === 0 ? null : pg.get('resume-error');
    if (pg.rank === 0) throw new InputError(pg.get('resume-error'));
    throw new InputError(`rank 0 cannot resume: ${why}`);
  }
  const payload = tensor(bytes ?? new Uint8Array(n), { device: pg.device });
  try {
    await pg.broadcast([payload], 0);
    if (mine) return mine;
    // The other ranks read rank 0's file from a private copy.
    const copy = join(tmpdir(), `fastvision-resume-${process.pid}-${pg.rank}.pth`);
    await writeFile(copy, payload.dataSync() as Uint8Array);
    try {
      return await loadCheckpoint<M>(copy);
    } finally {
      await rm(copy, { force: true });
    }
  } finally {
    payload.dispose();
  }
}

/**
 * Runs a training command's work; an OutOfMemoryError comes out saying where the
 * checkpoint of the last finished epoch is (it is never removed after a failure).
 */
export async function notingCheckpoint<T>(ckptFile: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (e) {
    if (e instanceof OutOfMemoryError && existsSync(ckptFile)) throw new OutOfMemoryError(`${e.message}; the checkpoint of the last finished epoch is kept in ${ckptFile}`, e.suggestedBs);
    throw e;
  }
}

/** `checkBatchFits` for a command: a batch too large for memory is an InputError ("try --bs N"). */
export function refuseBatchTooLarge(...args: Parameters<typeof checkBatchFits>): void {
  try {
    checkBatchFits(...args);
  } catch (e) {
    if (e instanceof BatchTooLargeError) throw new InputError(e.message);
    throw e;
  }
}
