// Distributed data parallel training as a callback on the loop, with PyTorch
// DDP's semantics: at the start every rank checks that its parameters have the
// shapes rank 0's have, then takes rank 0's parameters and buffers; before each
// forward, rank 0's batch-norm buffers; gradients summed over the ranks in
// ~25 MB buckets (parameters in reverse order, as backward produces them) and
// divided by the world size (Gloo has no average) — by c10d's Reducer during
// backward (the default), or here, after backward, with `overlap: false`.
// The loss each rank records is averaged too, so that every decision made from
// it (the schedule's stop, the finder, the guard) is the same on every rank.
import { createHash } from 'node:crypto';
import { cat, noGrad, tensor, zeros, zerosLike, type nn, type Tensor } from '../torch/index.js';
import { DistributedError, flatten, unflattenInto, type ProcessGroup, type Reducer } from '../torch/distributed.js';
import type { Callback, Loop } from './loop.js';

/** Options of DistributedDataParallel (PyTorch's names). */
export interface DDPOptions {
  /** Gradient bucket size in MiB (default 25). */
  bucketCapMB?: number;
  /** Broadcast rank 0's buffers (batch-norm statistics) before each forward (default true). */
  broadcastBuffers?: boolean;
  /**
   * Reduce gradients during backward with c10d's Reducer, each bucket as soon as its
   * gradients exist, as PyTorch's DDP does (default true); false reduces them all
   * after backward, before the optimizer's step.
   */
  overlap?: boolean;
}

/** Tensors split into buckets of at most `capBytes` (a tensor larger than that is a bucket of its own). */
export function buckets(ts: Tensor[], capBytes: number): Tensor[][] {
  const out: Tensor[][] = [];
  let cur: Tensor[] = [];
  let bytes = 0;
  for (const t of ts) {
    const b = t.numel * 4;
    if (cur.length > 0 && bytes + b > capBytes) {
      out.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(t);
    bytes += b;
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

/** Broadcasts tensors of one dtype from `root`, in buckets. */
async function broadcastTensors(pg: ProcessGroup, ts: Tensor[], capBytes: number, root = 0): Promise<void> {
  for (const dtype of [...new Set(ts.map((t) => t.dtype))]) {
    for (const b of buckets(
      ts.filter((t) => t.dtype === dtype),
      capBytes,
    )) {
      const flat = flatten(b);
      try {
        await pg.broadcast([flat], root);
        unflattenInto(flat, b);
      } finally {
        flat.dispose();
      }
    }
  }
}

/** A short fingerprint of a module's state-dict keys and shapes, as two int64 words. */
function shapeSignature(m: nn.Module): { words: bigint[]; text: string } {
  const text = [...m.stateDict()].map(([k, t]) => `${k}:${t.shape.join('x')}:${t.dtype}`).join(';');
  const h = createHash('sha256').update(text).digest();
  return { words: [h.readBigInt64LE(0), h.readBigInt64LE(8)], text };
}

/**
 * Checks that every rank has the same model (keys, shapes, dtypes) and the same
 * `settings` string (what the run computes); throws naming the first rank that differs.
 */
export async function checkSameEverywhere(pg: ProcessGroup, model: nn.Module, settings = ''): Promise<void> {
  const sig = shapeSignature(model);
  const h = createHash('sha256').update(settings).digest();
  const mine = tensor(BigInt64Array.from([...sig.words, h.readBigInt64LE(0)]), { device: pg.device });
  const all = await pg.allGather(mine);
  try {
    const rows = all.map((t) => t.toArray());
    const ref = rows[0]!;
    rows.forEach((r, rank) => {
      if (r[0] !== ref[0] || r[1] !== ref[1]) throw new DistributedError(`rank ${rank}'s model differs from rank 0's (architecture, classes or head): every rank must build the same network`);
      if (r[2] !== ref[2]) throw new DistributedError(`rank ${rank} was started with other settings than rank 0 (data, options or seed): every rank must run the same command`);
    });
  } finally {
    mine.dispose();
    for (const t of all) t.dispose();
  }
}

/** Gathers every rank's rows of an in-order sharded pass (rank r has items r, r+R, …) back into order. */
export async function gatherRows(pg: ProcessGroup, mine: Tensor): Promise<Tensor> {
  const r = pg.worldSize;
  const count = tensor(Float32Array.from([mine.shape[0]!]), { device: pg.device });
  const counts = await pg.allGather(count);
  count.dispose();
  const n = counts.map((c) => c.item());
  for (const c of counts) c.dispose();
  const most = Math.max(...n);
  const total = n.reduce((a, b) => a + b, 0);
  const rest = mine.shape.slice(1);
  // Equal shapes for all-gather: pad each share to the largest with zero rows.
  const padded = noGrad(() => {
    if (mine.shape[0]! === most) return mine.clone();
    const pad = zeros([most - mine.shape[0]!, ...rest], { dtype: mine.dtype, device: mine.device });
    const out = cat([mine, pad], 0);
    pad.dispose();
    return out;
  });
  const parts = await pg.allGather(padded);
  padded.dispose();
  const stacked = cat(parts, 0);
  for (const p of parts) p.dispose();
  // Item i is rank i % R's row ⌊i / R⌋.
  const idx = tensor(
    BigInt64Array.from({ length: total }, (_, i) => BigInt((i % r) * most + Math.floor(i / r))),
    { device: stacked.device },
  );
  const out = stacked.indexSelect(0, idx);
  idx.dispose();
  stacked.dispose();
  return out;
}

/** DistributedDataParallel as a loop callback; add it to a fit on every rank. */
export class DistributedDataParallel implements Callback {
  // After GradientAccumulation (-5), which may skip a step: gradients are reduced only when one is taken.
  readonly order = 5;
  private readonly capBytes: number;
  private readonly broadcastBuffers: boolean;
  private readonly overlap: boolean;
  private reducer: Reducer | null = null;
  /** The trained network's float buffers (batch-norm statistics), found once per fit. */
  private floatBuffers: Tensor[] = [];
  /** Seconds spent waiting on collectives in this fit (the communication share of a step). */
  commSeconds = 0;
  constructor(
    readonly pg: ProcessGroup,
    { bucketCapMB = 25, broadcastBuffers = true, overlap = true }: DDPOptions = {},
  ) {
    this.capBytes = bucketCapMB * 1024 * 1024;
    this.broadcastBuffers = broadcastBuffers;
    this.overlap = overlap;
  }

  /** The parameters that train, in the optimizer's order (the same on every rank). */
  private trainable(loop: Loop): Tensor[] {
    return loop.opt.paramGroups.flatMap((g) => g.params).filter((p) => p.requiresGrad);
  }

  async beforeFit(loop: Loop): Promise<void> {
    this.commSeconds = 0;
    await checkSameEverywhere(this.pg, loop.model);
    await this.timed(() => broadcastTensors(this.pg, [...loop.model.stateDict().values()], this.capBytes));
    loop.gather = async (out, y) => ({ out: await gatherRows(this.pg, out), y: await gatherRows(this.pg, y) });
    if (this.overlap) this.reducer = this.pg.reducer(this.trainable(loop), this.capBytes);
    this.floatBuffers = this.broadcastBuffers ? loop.net.buffers().filter((t) => t.dtype === 'float32') : [];
  }

  async beforeBatch(): Promise<void> {
    if (this.floatBuffers.length > 0) await this.timed(() => broadcastTensors(this.pg, this.floatBuffers, this.capBytes));
    this.reducer?.beforeForward();
  }

  async afterLoss(loop: Loop): Promise<void> {
    const v = tensor(Float32Array.from([loop.lossValue]), { device: this.pg.device });
    try {
      await this.timed(() => this.pg.allReduce([v]));
      loop.lossValue = v.item() / this.pg.worldSize;
    } finally {
      v.dispose();
    }
    this.reducer?.beforeBackward();
  }

  async beforeStep(loop: Loop): Promise<void> {
    // With the reducer, backward has already averaged the gradients.
    if (this.reducer) return;
    const params = this.trainable(loop);
    // Reverse order: the order backward produces gradients in (and PyTorch's Reducer buckets them).
    const grads = params.reverse().map((p) => {
      const g = p.grad;
      if (g !== null) return g;
      // A parameter this batch did not reach contributes zeros.
      p.grad = zerosLike(p);
      return p.grad;
    });
    // Every bucket's all-reduce is issued at once: Gloo's threads work on them side by side.
    const parts = buckets(grads, this.capBytes);
    const flats = parts.map((b) => flatten(b));
    try {
      await this.timed(() => Promise.all(flats.map((f) => this.pg.allReduce([f]))).then(() => undefined));
      flats.forEach((f, i) => {
        noGrad(() => f.div_(this.pg.worldSize));
        unflattenInto(f, parts[i]!);
      });
    } finally {
      for (const f of flats) f.dispose();
    }
    // The handles only; the gradients stay with their parameters.
    for (const g of grads) g.dispose();
  }

  /** A collective that failed inside backward (the reducer's) is explained as the others are: which rank was lost. */
  onError(_loop: Loop, error: unknown): unknown {
    if (error instanceof Error && !(error instanceof DistributedError) && /gloo|connection|peer|timed out|c10d/i.test(error.message)) return this.pg.explain('gradient all-reduce', error);
    return undefined;
  }

  afterFit(loop: Loop): void {
    loop.gather = null;
    this.floatBuffers = [];
    this.reducer?.destroy();
    this.reducer = null;
  }

  private async timed(fn: () => Promise<void>): Promise<void> {
    const t0 = performance.now();
    try {
      await fn();
    } finally {
      this.commSeconds += (performance.now() - t0) / 1000;
    }
  }
}
