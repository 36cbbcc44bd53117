// Precomputed activations: the frozen body's pooled features for every image of
// a loader, cached on disk under FASTVISION_HOME. A cache entry is keyed on
// everything that decides its values — the architecture, the transform, a hash of
// the body's weights, and each file's path, size and modification time — so it is
// never served stale; an entry that cannot be read is recomputed; old entries are pruned.
import { createHash } from 'node:crypto';
import { readdirSync, statSync, unlinkSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { cat, loadPth, nn, noGrad, savePth, tensor, type Tensor } from '../torch/index.js';
import { FilesDataset } from '../vision/dataset.js';
import type { DataLoader } from '../vision/loader.js';
import type { Transform } from '../vision/augment.js';
import { progress } from '../util/progress.js';

/** Activations of the images a loader could read, row by row, with the dataset index of each row. */
export interface Activations {
  x: Tensor;
  indices: number[];
}

/** How many activation files a cache folder keeps (least recently used go first). */
export const CACHE_ENTRIES = 16;

/** A hash of a module's state (names, shapes, dtypes and values): what makes its activations what they are. */
export function stateHash(m: nn.Module): string {
  const h = createHash('sha256');
  for (const [k, t] of m.stateDict()) {
    h.update(`${k}:${t.dtype}:${t.shape.join(',')}\n`);
    const d = t.dataSync();
    h.update(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
  }
  return h.digest('hex');
}

/** The cache key of a dataset's activations; a file that cannot be stat'ed counts as changed. */
export function activationsKey(parts: { arch: string; transform: Transform; weights: string; split: string; ds: FilesDataset }): string {
  const h = createHash('sha256');
  h.update(`${parts.arch}\n${parts.split}\n${JSON.stringify(parts.transform)}\n${parts.weights}\n`);
  for (const f of parts.ds.files) {
    let stamp = 'missing';
    try {
      const st = statSync(f);
      stamp = `${st.size}:${st.mtimeMs}`;
    } catch {
      // unreadable now: the loader will skip it; the key still differs from a readable file's
    }
    h.update(`${f}\t${stamp}\n`);
  }
  return h.digest('hex').slice(0, 24);
}

/** Runs `features` on every batch of `dl`, in order; rows of unreadable images are absent from `indices`. */
export async function computeActivations(features: (x: Tensor) => Tensor, dl: DataLoader, label: string | null): Promise<Activations> {
  const parts: Tensor[] = [];
  const indices: number[] = [];
  const bar = label ? progress(label, dl.length) : null;
  for await (const { x, y, indices: idx } of dl) {
    parts.push(noGrad(() => features(x)));
    indices.push(...idx);
    x.dispose();
    y.dispose();
    bar?.tick();
  }
  bar?.stop();
  const x = parts.length === 0 ? tensor(new Float32Array(0), { shape: [0] }) : cat(parts, 0);
  for (const p of parts) p.dispose();
  return { x, indices };
}

/** Reads a cache entry; null when it is missing, unreadable or inconsistent (it is then recomputed). */
async function readEntry(file: string, n: number, warn: (m: string) => void): Promise<Activations | null> {
  let v: unknown;
  try {
    v = await loadPth(file);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT' && !/ENOENT/.test((e as Error).message))
      warn(`warning: the activation cache ${file} cannot be read (${(e as Error).message}); computing it again`);
    return null;
  }
  const m = v instanceof Map ? (v as Map<string, unknown>) : null;
  const x = m?.get('x') as Tensor | undefined;
  const idx = m?.get('indices') as Tensor | undefined;
  const ok = x !== undefined && idx !== undefined && typeof x.shape === 'object' && idx.dtype === 'int64' && idx.shape.length === 1 && x.shape[0] === idx.shape[0];
  const indices = ok ? idx.toArray() : [];
  if (!ok || indices.some((i, k) => !Number.isInteger(i) || i < 0 || i >= n || (k > 0 && i <= indices[k - 1]!))) {
    for (const t of [x, idx]) if (t && typeof t.dispose === 'function') t.dispose();
    warn(`warning: the activation cache ${file} is not what fastvision writes; computing it again`);
    return null;
  }
  idx.dispose();
  return { x, indices };
}

/**
 * The activations of `ds` through `dl`: from `dir`'s cache when an entry with
 * `key` is there and sound, else computed and stored. Images found unreadable
 * (absent from the rows) are marked bad in `ds`, so the loaders skip them.
 */
export async function cachedActivations(
  dir: string,
  key: string,
  ds: FilesDataset,
  compute: () => Promise<Activations>,
  warn: (m: string) => void = (m) => console.warn(m),
  device = 'cpu',
): Promise<Activations> {
  const file = join(dir, `act_${key}.pth`);
  let a = await readEntry(file, ds.length, warn);
  if (a !== null && a.x.device !== device) {
    // Files hold CPU tensors; the activations train on the learner's device.
    const moved = a.x.toDevice(device);
    a.x.dispose();
    a = { x: moved, indices: a.indices };
  }
  if (a !== null) {
    try {
      const now = new Date();
      utimesSync(file, now, now);
    } catch {
      // a read-only cache still serves
    }
  } else {
    a = await compute();
    const idx = tensor(BigInt64Array.from(a.indices, BigInt));
    try {
      await savePth(
        file,
        new Map<string, Tensor>([
          ['x', a.x],
          ['indices', idx],
        ]),
      );
    } finally {
      idx.dispose();
    }
    pruneCache(dir, CACHE_ENTRIES);
  }
  const kept = new Set(a.indices);
  for (let i = 0; i < ds.length; i++) if (!kept.has(i)) ds.bad.add(i);
  return a;
}

/** Deletes all but the `keep` most recently used activation files of a cache folder. */
export function pruneCache(dir: string, keep: number): string[] {
  let entries: { file: string; mtime: number }[];
  try {
    entries = readdirSync(dir)
      .filter((f) => f.startsWith('act_') && f.endsWith('.pth'))
      .map((f) => ({ file: join(dir, f), mtime: statSync(join(dir, f)).mtimeMs }));
  } catch {
    return [];
  }
  const old = entries.sort((a, b) => b.mtime - a.mtime).slice(keep);
  for (const e of old) {
    try {
      unlinkSync(e.file);
    } catch {
      // another process pruned it first
    }
  }
  return old.map((e) => e.file);
}
