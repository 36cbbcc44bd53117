// The training session that `fastvision train` (trainRecipe) and `fastvision fit` share: the
// output folder's lock, the checkpoint in it and resuming from it (also across the ranks of a
// distributed run), a divergence that ends a fit with the last good weights, out-of-memory errors
// that say where the last checkpoint is, and the batch-size check before a run starts.
import { existsSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { tensor, type Tensor } from '../torch/index.js';
import type { ProcessGroup } from '../torch/distributed.js';
import { InputError } from '../util/errors.js';
import { readRegularFile } from '../util/read-files.js';
import { disposeCheckpoint, loadCheckpoint, saveCheckpoint, type Checkpoint } from './checkpoint.js';
import { TrainingDivergedError } from './guard.js';
import type { FitState } from './loop.js';
import { withOutput } from '../util/outputs.js';
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

/** What every checkpoint's description holds: the command that wrote it and the settings it ran with. */
export interface SessionMeta {
  kind: 'train' | 'fit';
  fingerprint: string;
}

/** Options of `TrainingSession.open`. */
export interface SessionOptions {
  /** What writes the checkpoint: a resume takes only a checkpoint of the same kind. */
  kind: 'train' | 'fit';
  /** The settings that decide the result: a resume takes only a checkpoint made with the same. */
  fingerprint: string;
  /** Continue from the checkpoint in the output folder (an InputError when there is none that fits). */
  resume?: boolean;
  /** A distributed run: rank 0 reads the checkpoint and sends it to every rank; only rank 0 writes. */
  pg?: ProcessGroup | null;
}

/**
 * A training run's life in its output folder, shared by `fastvision train` (trainRecipe) and
 * `fastvision fit`: the checkpoint written at each epoch's end (by rank 0 alone), the one a
 * resumed run continues from, a divergence that ends a fit with the last good weights, and the
 * checkpoint's removal once the run is complete. Run it inside `inSession`, which holds the output
 * folder's lock.
 */
export class TrainingSession<M extends SessionMeta> {
  private constructor(
    /** The output folder. */
    readonly out: string,
    /** The checkpoint that a resumed session continues from (null: a fresh start). */
    readonly resumed: Checkpoint<M> | null,
    /** Whether this process writes (rank 0, or the only process). */
    readonly writer: boolean,
  ) {}

  /** Opens a session in `out`; with `resume`, reads (or, distributed, receives) its checkpoint. */
  static async open<M extends SessionMeta>(out: string, o: SessionOptions): Promise<TrainingSession<M>> {
    const pg = o.pg ?? null;
    const resumed = o.resume ? (pg && pg.worldSize > 1 ? await shareCheckpoint<M>(pg, out, o.kind, o.fingerprint) : await openCheckpoint<M>(out, o.kind, o.fingerprint)) : null;
    return new TrainingSession<M>(resolve(out), resumed, pg === null || pg.rank === 0);
  }

  /** The checkpoint file. */
  get file(): string {
    return checkpointFile(this.out);
  }

  /** Writes an epoch's end: the description, the model's weights, the fit's state and named extra weights (rank 0 alone). */
  async checkpoint(meta: M, model: Map<string, Tensor>, fit: FitState, states?: Map<string, Map<string, Tensor>>): Promise<void> {
    if (!this.writer) return;
    await saveCheckpoint(this.file, { meta, model, fit, states, rng: fit.rng });
  }

  /** Runs a fit; a TrainingDivergedError (the guard put back the last good epoch's weights) is returned, anything else thrown. */
  async guarded(fit: () => Promise<unknown>): Promise<TrainingDivergedError | null> {
    try {
      await fit();
      return null;
    } catch (e) {
      if (e instanceof TrainingDivergedError) return e;
      throw e;
    }
  }

  /** The error for a run in which no epoch ended well: nothing is saved, and a previous model stays. */
  nothingSaved(why: string, option = '--lr'): Error {
    return new Error(`${why}, so no model was saved${existsSync(join(this.out, 'model.pth')) ? ' (the previous model is kept)' : ''}; try a lower ${option}`);
  }

  /** The run is complete: the checkpoint goes, so that a later resume has nothing to continue. */
  async complete(): Promise<void> {
    if (this.writer) await rm(this.file, { force: true });
  }

  /** Frees the tensors of the checkpoint the session resumed from. */
  release(): void {
    if (this.resumed) disposeCheckpoint(this.resumed);
  }
}

/**
 * Runs a training run's work with its output folder locked (a second run into it is refused while
 * this one lives); running out of memory says where the last epoch's checkpoint is.
 */
export function inSession<T>(out: string, work: () => Promise<T>, option = '--out'): Promise<T> {
  return notingCheckpoint(checkpointFile(out), () => withOutput(out, work, option));
}
