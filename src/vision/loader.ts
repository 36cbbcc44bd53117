// DataLoader: batches of transformed images as tensors, decoded on worker
// threads with prefetch, in a seeded shuffled order for training and a fixed
// order for validation and test.
import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import { tensor, type Tensor } from '../torch/index.js';
import type { Transform } from './augment.js';
import { ArrayDataset, FilesDataset, seededPermutation, type Dataset } from './dataset.js';
import { maxImagePixels } from './image-limits.js';
import { processBatch, type BatchReply, type BatchRequest } from './loader-worker.js';
import { shown } from '../util/shown.js';

/** A batch: inputs (N×C×H×W float, or N×features for array datasets), int64 labels, dataset indices. */
export interface Batch {
  x: Tensor;
  y: Tensor;
  indices: number[];
}

/** What to do with an image that cannot be read. */
export type BadImagePolicy = 'skip' | 'error';

/** Options of DataLoader. */
export interface DataLoaderOptions {
  bs?: number;
  shuffle?: boolean;
  dropLast?: boolean;
  /** How images become tensors (required for image datasets). */
  transform?: Transform;
  /** Worker threads decoding images (default: cores, at most 4; 0 decodes on the main thread). */
  numWorkers?: number;
  /** Batches decoded ahead of the one in use (default 2 per worker). */
  prefetch?: number;
  /** Seed of the shuffling and of the augmentations (default 0). */
  seed?: number;
  /** Batches in channels-last memory format. */
  channelsLast?: boolean;
  /** Unreadable images: skipped with a warning (default) or an error. */
  onBadImage?: BadImagePolicy;
  /** Each pass draws every class as often as the most frequent one (rare classes repeat). */
  oversample?: boolean;
  /** Where warnings go (default console.warn). */
  warn?: (msg: string) => void;
  /**
   * Where batches are delivered: 'cpu' (the default) or a CUDA device ('cuda:0'), to
   * which each batch is copied from pinned host memory without blocking.
   */
  device?: string;
  /**
   * This process's share of each pass in distributed training (PyTorch's
   * DistributedSampler): the pass's order, padded by repeating its start to a
   * multiple of worldSize when `pad` (training), then every worldSize-th item from
   * `rank`. Every rank must use the same seed.
   */
  shard?: Shard;
}

/** A rank's share of the data: indices[rank::worldSize] of each pass. */
export interface Shard {
  rank: number;
  worldSize: number;
  /** Pad the pass to a multiple of worldSize (equal shares; training) — default true. */
  pad?: boolean;
}

/** One rank's items of an ordered pass (DistributedSampler's padding and striding). */
export function shardOf(order: number[], s: Shard): number[] {
  if (order.length === 0) return [];
  let all = order;
  if (s.pad ?? true) {
    const total = Math.ceil(order.length / s.worldSize) * s.worldSize;
    all = [...order];
    while (all.length < total) all.push(...order.slice(0, total - all.length));
  }
  return all.filter((_, i) => i % s.worldSize === s.rank);
}

/**
 * The decoding threads: a piscina pool, which replaces a worker that crashes and,
 * idle, never keeps the process alive (so scripts exit when they are done).
 */
class WorkerPool {
  private readonly pool: Piscina;

  constructor(readonly size: number) {
    this.pool = new Piscina({ filename: new URL('./loader-worker.js', import.meta.url).href, minThreads: size, maxThreads: size, idleTimeout: 5_000 });
  }

  /**
   * Runs one request. A thread that dies on it is replaced by the pool and the
   * request tried again, up to three times in all (bad images never kill a thread:
   * they are reported in the reply; a death is the thread's own trouble).
   */
  async run(req: BatchRequest): Promise<BatchReply> {
    let last: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        return (await this.pool.run(req)) as BatchReply;
      } catch (e) {
        last = e;
      }
    }
    throw new Error(`loader threads died three times on a batch of ${req.files.length} image(s) (${req.files.slice(0, 3).join(', ')}${req.files.length > 3 ? ', …' : ''}): ${(last as Error).message}`);
  }

  /** The pool's threads (for tests that make one crash). */
  get threads(): readonly { terminate(): Promise<number> }[] {
    return this.pool.threads;
  }

  async close(): Promise<void> {
    await this.pool.destroy();
  }
}

const pools = new Map<number, WorkerPool>();

function poolOf(size: number): WorkerPool {
  let p = pools.get(size);
  if (p === undefined) {
    p = new WorkerPool(size);
    pools.set(size, p);
  }
  return p;
}

/** The loader threads of the pools in use (for tests that make one crash). */
export function loaderThreads(): readonly { terminate(): Promise<number> }[] {
  return [...pools.values()].flatMap((p) => p.threads);
}

/** Stops the loader worker threads now. Not needed before exiting: idle threads never keep the process alive. */
export async function closeLoaderWorkers(): Promise<void> {
  const all = [...pools.values()];
  pools.clear();
  await Promise.all(all.map((p) => p.close()));
}

let nextRequest = 0;

/**
 * Decodes and transforms images (files, or bytes such as uploads) on the loader's
 * threads: the values (n × 3 × sz × sz, channels-first) and, per image, an error
 * message or null. Used outside training loops, e.g. by the prediction server.
 */
export async function transformImages(
  inputs: (string | Uint8Array)[],
  transform: Transform,
  { numWorkers = defaultWorkers(), seed = 0 }: { numWorkers?: number; seed?: number } = {},
): Promise<{ data: Float32Array; errors: (string | null)[] }> {
  const req: BatchRequest = { id: nextRequest++, files: inputs, seeds: inputs.map((_, i) => [seed, 0, i]), transform, nhwc: false, maxPixels: maxImagePixels() };
  const reply = numWorkers > 0 ? await poolOf(numWorkers).run(req) : await processBatch(req);
  return { data: new Float32Array(reply.buffer), errors: reply.errors };
}

/**
 * Decodes one image (a file, or bytes such as an upload) on the loader's threads to
 * upright RGB bytes, untransformed: the input of an exported graph with preprocessing.
 */
export async function decodeImage(
  input: string | Uint8Array,
  { numWorkers = defaultWorkers() }: { numWorkers?: number } = {},
): Promise<{ pixels: Uint8Array; width: number; height: number } | { error: string }> {
  const req: BatchRequest = {
    id: nextRequest++,
    files: [input],
    seeds: [[0, 0, 0]],
    transform: { sz: 1, maxZoom: 1, augs: [], crop: 'center', stats: { mean: [0, 0, 0], std: [1, 1, 1] } },
    nhwc: false,
    maxPixels: maxImagePixels(),
    pixelsOnly: true,
  };
  const reply = numWorkers > 0 ? await poolOf(numWorkers).run(req) : await processBatch(req);
  if (reply.errors[0] !== null || reply.size === undefined) return { error: reply.errors[0] ?? 'not decoded' };
  return { pixels: new Uint8Array(reply.buffer), width: reply.size[0], height: reply.size[1] };
}

/**
 * Iterates a dataset in batches: `for await (const { x, y } of loader)`. Each pass
 * is one epoch; training loaders reshuffle (seeded by seed and epoch) every pass.
 */
export class DataLoader {
  readonly bs: number;
  readonly shuffle: boolean;
  readonly dropLast: boolean;
  readonly numWorkers: number;
  readonly prefetch: number;
  readonly seed: number;
  readonly channelsLast: boolean;
  readonly onBadImage: BadImagePolicy;
  readonly oversample: boolean;
  transform: Transform | undefined;
  readonly shard: Shard | null;
  /** Completed and started passes; the next pass uses this epoch number. */
  epoch = 0;
  /** Where batches are delivered (DataLoaderOptions.device); a learner sets it to its own. */
  device: string;
  private readonly warn: (msg: string) => void;

  constructor(
    readonly dataset: Dataset,
    {
      bs = 64,
      shuffle = false,
      dropLast = false,
      transform,
      numWorkers,
      prefetch,
      seed = 0,
      channelsLast = false,
      onBadImage = 'skip',
      oversample = false,
      warn = (m) => console.warn(m),
      shard,
      device = 'cpu',
    }: DataLoaderOptions = {},
  ) {
    if (!Number.isInteger(bs) || bs < 1) throw new RangeError(`bs must be a positive integer, got ${bs}`);
    if (dataset instanceof FilesDataset && transform === undefined) throw new Error('DataLoader: an image dataset needs a transform');
    this.bs = bs;
    this.shuffle = shuffle;
    this.dropLast = dropLast;
    this.transform = transform;
    this.numWorkers = numWorkers ?? defaultWorkers();
    this.prefetch = prefetch ?? Math.max(2, 2 * this.numWorkers);
    this.seed = seed;
    this.channelsLast = channelsLast;
    this.onBadImage = onBadImage;
    this.oversample = oversample;
    this.warn = warn;
    this.device = device;
    if (shard && !(Number.isInteger(shard.worldSize) && shard.worldSize >= 1 && Number.isInteger(shard.rank) && shard.rank >= 0 && shard.rank < shard.worldSize))
      throw new RangeError(`shard: rank ${shard.rank} of ${shard.worldSize} is not a rank`);
    this.shard = shard ?? null;
  }

  /** Batches per pass. */
  get length(): number {
    let n = this.oversample ? this.oversampled(0).length : this.dataset.length - (this.dataset instanceof FilesDataset ? this.dataset.bad.size : 0);
    if (this.shard)
      n = shardOf(
        Array.from({ length: n }, (_, i) => i),
        this.shard,
      ).length;
    return this.dropLast ? Math.floor(n / this.bs) : Math.ceil(n / this.bs);
  }

  /** One pass's indices with every class drawn as often as the largest: rare images repeated, each at least once. */
  private oversampled(epoch: number): number[] {
    const byClass = new Map<number, number[]>();
    const bad = this.dataset instanceof FilesDataset ? this.dataset.bad : new Set<number>();
    this.dataset.labels.forEach((l, i) => {
      if (bad.has(i)) return;
      const list = byClass.get(l) ?? [];
      list.push(i);
      byClass.set(l, list);
    });
    const most = Math.max(...[...byClass.values()].map((v) => v.length));
    const out: number[] = [];
    for (const [label, items] of [...byClass].sort((a, b) => a[0] - b[0])) {
      // Every image of the class as many whole times as fit, then a seeded draw without
      // replacement for the rest: each rare image is seen in every pass, none twice more than another.
      const whole = Math.floor(most / items.length);
      for (let k = 0; k < whole; k++) out.push(...items);
      const perm = seededPermutation(items.length, this.seed * 7919 + epoch * 31 + label);
      for (let k = 0; k < most - whole * items.length; k++) out.push(items[perm[k]!]!);
    }
    return out;
  }

  /** The dataset indices of one pass, batch by batch. */
  batchIndices(epoch: number): number[][] {
    if (this.oversample) {
      const pool = this.oversampled(epoch);
      const perm = seededPermutation(pool.length, this.seed * 1000003 + epoch);
      return this.chunk(this.mine(perm.map((i) => pool[i]!)));
    }
    let order = this.shuffle ? seededPermutation(this.dataset.length, this.seed * 1000003 + epoch) : Array.from({ length: this.dataset.length }, (_, i) => i);
    if (this.dataset instanceof FilesDataset && this.dataset.bad.size > 0) {
      const bad = this.dataset.bad;
      order = order.filter((i) => !bad.has(i));
    }
    return this.chunk(this.mine(order));
  }

  /** This rank's part of a pass's order (all of it without a shard). */
  private mine(order: number[]): number[] {
    return this.shard ? shardOf(order, this.shard) : order;
  }

  private chunk(order: number[]): number[][] {
    const batches: number[][] = [];
    for (let i = 0; i < order.length; i += this.bs) {
      const b = order.slice(i, i + this.bs);
      if (b.length < this.bs && this.dropLast) break;
      batches.push(b);
    }
    return batches;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Batch> {
    const epoch = this.epoch++;
    const batches = this.batchIndices(epoch);
    const ds = this.dataset;
    if (ds instanceof ArrayDataset) {
      for (const idx of batches) {
        const ix = tensor(
          BigInt64Array.from(idx, (i) => BigInt(i)),
          { device: ds.x.device },
        );
        const x = ds.x.indexSelect(0, ix);
        ix.dispose();
        yield { x: this.place(x), y: this.place(labelsTensor(ds, idx)), indices: idx };
      }
      return;
    }
    const transform = this.transform!;
    const pool = this.numWorkers > 0 ? poolOf(this.numWorkers) : null;
    const request = async (idx: number[]): Promise<BatchReply> => {
      const part = (chunk: number[]): Promise<BatchReply> => {
        const req: BatchRequest = {
          id: nextRequest++,
          files: chunk.map((i) => ds.files[i]!),
          seeds: chunk.map((i) => [this.seed, epoch, i]),
          transform,
          nhwc: this.channelsLast,
          maxPixels: maxImagePixels(),
        };
        return pool ? pool.run(req) : processBatch(req);
      };
      if (pool === null || idx.length < 2 * this.numWorkers) return part(idx);
      // A batch is shared among the workers, so that it is ready as soon as possible.
      const size = Math.ceil(idx.length / this.numWorkers);
      const parts = await Promise.all(Array.from({ length: this.numWorkers }, (_, k) => part(idx.slice(k * size, (k + 1) * size))).filter((_, k) => k * size < idx.length));
      const total = parts.reduce((n, r) => n + r.buffer.byteLength, 0);
      const merged = new Float32Array(total / 4);
      let at = 0;
      for (const r of parts) {
        merged.set(new Float32Array(r.buffer), at);
        at += r.buffer.byteLength / 4;
      }
      return { id: parts[0]!.id, buffer: merged.buffer, errors: parts.flatMap((r) => r.errors) };
    };
    const inflight: Promise<BatchReply>[] = [];
    let next = 0;
    const fill = (): void => {
      while (next < batches.length && inflight.length < this.prefetch) inflight.push(request(batches[next++]!));
    };
    fill();
    for (let b = 0; b < batches.length; b++) {
      const reply = await inflight.shift()!;
      fill();
      const idx = batches[b]!;
      yield this.assemble(ds, idx, reply, transform);
    }
  }

  private assemble(ds: FilesDataset, idx: number[], reply: BatchReply, t: Transform): Batch {
    const per = t.sz * t.sz * 3;
    let data = new Float32Array(reply.buffer);
    let kept = idx;
    const failed = reply.errors.map((e, i) => (e === null ? -1 : i)).filter((i) => i >= 0);
    if (failed.length > 0) {
      for (const i of failed) {
        const msg = `cannot read image ${ds.files[idx[i]!]}: ${reply.errors[i]}`;
        if (this.onBadImage === 'error') throw new Error(`${msg} (onBadImage: 'error')`);
        ds.bad.add(idx[i]!);
        this.warn(`warning: skipping ${shown(msg.replace(/^cannot read image /, 'unreadable image '))}`);
      }
      const keep = idx.map((_, i) => i).filter((i) => reply.errors[i] === null);
      const compact = new Float32Array(keep.length * per);
      keep.forEach((src, dst) => compact.set(data.subarray(src * per, (src + 1) * per), dst * per));
      data = compact;
      kept = keep.map((i) => idx[i]!);
    }
    const n = kept.length;
    const x = this.channelsLast ? channelsLastFromNhwc(this.place(tensor(data, { shape: [n, t.sz, t.sz, 3] }))) : this.place(tensor(data, { shape: [n, 3, t.sz, t.sz] }));
    return { x, y: this.place(labelsTensor(ds, kept)), indices: kept };
  }

  /**
   * `t` on this loader's device (taking it over): to a CUDA device through pinned
   * memory and a non-blocking copy, as PyTorch's `pin_memory=True` loaders and
   * `.to(device, non_blocking=True)` do; the CPU's tensors stay as they are.
   */
  private place(t: Tensor): Tensor {
    if (t.device === this.device) return t;
    // Pinned (page-locked) memory only for CUDA, whose copies from it need not wait.
    const pinned = t.device === 'cpu' && this.device.startsWith('cuda') ? t.pinMemory() : null;
    const moved = (pinned ?? t).toDevice(this.device, { nonBlocking: pinned !== null });
    pinned?.dispose();
    t.dispose();
    return moved;
  }
}

/** A permuted view of an NHWC batch (taking it over): exactly an NCHW tensor in channels-last layout. */
function channelsLastFromNhwc(nhwc: Tensor): Tensor {
  const x = nhwc.permute(0, 3, 1, 2);
  nhwc.dispose();
  return x;
}

/** The targets of a batch: int64 class indices, or (multi-label) a float N×C multi-hot matrix. */
function labelsTensor(ds: Dataset, idx: number[]): Tensor {
  if (ds.tags) {
    const c = ds.classes.length;
    const hot = new Float32Array(idx.length * c);
    idx.forEach((i, r) => {
      for (const t of ds.tags![i]!) hot[r * c + t] = 1;
    });
    return tensor(hot, { shape: [idx.length, c] });
  }
  return tensor(BigInt64Array.from(idx, (i) => BigInt(ds.labels[i]!)));
}

function defaultWorkers(): number {
  return Math.min(4, availableParallelism());
}
