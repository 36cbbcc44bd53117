// torch.distributed's process group, on libtorch's own c10d: a TCPStore for the
// rendezvous, a ProcessGroupGloo for the collectives. The rendezvous is
// torch.distributed's (env://): the same store prefixes ("default_pg", then the
// group's "0"; on 2.x "0/" and the device's "cpu/") and, on 1.13, the same
// store-based barrier, so a fastvision rank and a PyTorch rank can join one group.
// Collectives return promises: they run on a worker thread while the event loop
// (heartbeats, progress) keeps going.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { cat, empty } from './creation.js';
import { libtorchVersion, noGrad } from './autograd.js';
import { packageRoot, type Handle } from './native.js';
import { Tensor } from './tensor.js';
import { FastvisionError } from '../util/errors.js';

type StoreHandle = { readonly __store: unique symbol };
type GroupHandle = { readonly __group: unique symbol };
type ReducerHandle = { readonly __reducer: unique symbol };

interface DistAddon {
  createStore(host: string, port: number, isServer: boolean, worldSize: number, timeoutMs: number, waitWorkers: boolean): StoreHandle;
  prefixStore(store: StoreHandle, prefix: string): StoreHandle;
  storeSet(store: StoreHandle, key: string, value: Buffer): void;
  storeGet(store: StoreHandle, key: string): Buffer;
  storeAdd(store: StoreHandle, key: string, n: number): number;
  storeCheck(store: StoreHandle, key: string): boolean;
  storeSetTimeout(store: StoreHandle, ms: number): void;
  closeStore(store: StoreHandle): void;
  newGloo(store: StoreHandle, rank: number, size: number, timeoutMs: number, ifname: string | null, hostname: string | null): GroupHandle;
  newNccl(store: StoreHandle, rank: number, size: number, timeoutMs: number): GroupHandle;
  ncclAvailable(): boolean;
  destroyGroup(g: GroupHandle): void;
  setSequenceNumber(g: GroupHandle): void;
  allreduce(g: GroupHandle, tensors: Handle[], op: string): Promise<void>;
  broadcast(g: GroupHandle, tensors: Handle[], root: number): Promise<void>;
  allgather(g: GroupHandle, outputs: Handle[], input: Handle): Promise<void>;
  barrier(g: GroupHandle): Promise<void>;
  newReducer(g: GroupHandle, params: Handle[], bucketCapBytes: number): ReducerHandle;
  reducerForward(r: ReducerHandle): void;
  reducerBackward(r: ReducerHandle): void;
  destroyReducer(r: ReducerHandle): void;
}

let addon: DistAddon | null = null;

/** The c10d addon (build/Release/fastvision_dist.node), loaded on first use. */
function dist(): DistAddon {
  if (addon) return addon;
  const file = join(packageRoot(), 'build', 'Release', 'fastvision_dist.node');
  if (!existsSync(file)) throw new Error(`fastvision: distributed training is not built (${file} is missing): it needs Gloo's headers (apt-get install libgloo-dev), then \`npm run setup\``);
  addon = createRequire(import.meta.url)(file) as DistAddon;
  return addon;
}

/** Where and how a process joins a group (torchrun's environment fills what is not given). */
export interface InitProcessGroupOptions {
  /** 'gloo' (CPU tensors, the default) or 'nccl' (CUDA tensors; needs a CUDA build of the addon). */
  backend?: 'gloo' | 'nccl';
  /** Number of processes (WORLD_SIZE). */
  worldSize?: number;
  /** This process's rank, 0 … worldSize − 1 (RANK). */
  rank?: number;
  /** Rank 0's address, where the store listens (MASTER_ADDR). */
  masterAddr?: string;
  /** The store's port (MASTER_PORT, default 29500). */
  masterPort?: number;
  /** How long the rendezvous and each collective may take (default 30 minutes, as PyTorch). */
  timeoutMs?: number;
  /** The network interface Gloo uses (GLOO_SOCKET_IFNAME). */
  ifname?: string;
  /**
   * Where this rank's tensors live: the CPU for Gloo (the default), this rank's GPU for
   * NCCL (default `cuda:LOCAL_RANK`, one rank per GPU as torchrun places them).
   */
  device?: string;
}

/** A failure of the group: a rank lost, the store unreachable, a timeout. */
export class DistributedError extends FastvisionError {}

/** The settings `initProcessGroup` ends up with, from options and the environment. */
export function resolveInitOptions(o: InitProcessGroupOptions = {}, env: NodeJS.ProcessEnv = process.env): Required<Omit<InitProcessGroupOptions, 'ifname'>> & { ifname: string | null } {
  const int = (v: number | undefined, name: string, fallback?: number): number => {
    const raw = v ?? (env[name] !== undefined ? Number(env[name]) : fallback);
    if (raw === undefined || !Number.isInteger(raw) || raw < 0)
      throw new DistributedError(`${name}: expected a non-negative integer, got ${String(env[name] ?? v)}${raw === undefined ? ' (not set)' : ''}`);
    return raw;
  };
  const worldSize = int(o.worldSize, 'WORLD_SIZE');
  const rank = int(o.rank, 'RANK');
  if (worldSize < 1) throw new DistributedError('WORLD_SIZE must be at least 1');
  if (rank >= worldSize) throw new DistributedError(`RANK ${rank} is not below WORLD_SIZE ${worldSize}`);
  const masterPort = int(o.masterPort, 'MASTER_PORT', 29500);
  if (masterPort < 1 || masterPort > 65535) throw new DistributedError(`MASTER_PORT ${masterPort} is not a port`);
  const masterAddr = o.masterAddr ?? env.MASTER_ADDR;
  if (!masterAddr) throw new DistributedError("MASTER_ADDR: rank 0's address is not set");
  const backend = o.backend ?? 'gloo';
  const localRank = env.LOCAL_RANK !== undefined ? int(undefined, 'LOCAL_RANK') : 0;
  const device = o.device ?? (backend === 'nccl' ? `cuda:${localRank}` : 'cpu');
  return { backend, worldSize, rank, masterAddr, masterPort, timeoutMs: o.timeoutMs ?? 30 * 60_000, ifname: o.ifname ?? env.GLOO_SOCKET_IFNAME ?? null, device };
}

/** Reduce operations Gloo offers (no average: sum, then divide). */
export type ReduceOp = 'sum' | 'max' | 'min' | 'product';

/** A process group: this process's rank among `worldSize`, and the collectives. */
export class ProcessGroup {
  private heartbeat: NodeJS.Timeout | null = null;
  /** @internal Made by `initProcessGroup`. */
  constructor(
    private readonly group: GroupHandle,
    /** The fastvision-private part of the store (heartbeats, checks). */
    private readonly store: StoreHandle,
    private readonly root: StoreHandle,
    readonly rank: number,
    readonly worldSize: number,
    readonly timeoutMs: number,
    /** Where the collectives' tensors must be: 'cpu' for Gloo, this rank's GPU for NCCL. */
    readonly device = 'cpu',
  ) {}

  /** Sums (or max/min/product) each tensor over the ranks, in place. */
  async allReduce(tensors: Tensor[], op: ReduceOp = 'sum'): Promise<void> {
    await this.guard(
      'all-reduce',
      dist().allreduce(
        this.group,
        tensors.map((t) => t.handle),
        op,
      ),
    );
  }

  /** Copies rank `root`'s tensors into every rank's, in place. */
  async broadcast(tensors: Tensor[], root = 0): Promise<void> {
    await this.guard(
      'broadcast',
      dist().broadcast(
        this.group,
        tensors.map((t) => t.handle),
        root,
      ),
    );
  }

  /** Every rank's `input` (same shape and dtype everywhere), in rank order. */
  async allGather(input: Tensor): Promise<Tensor[]> {
    const outs = Array.from({ length: this.worldSize }, () => empty(input.shape, { dtype: input.dtype, device: input.device }));
    try {
      await this.guard(
        'all-gather',
        dist().allgather(
          this.group,
          outs.map((t) => t.handle),
          input.handle,
        ),
      );
    } catch (e) {
      for (const t of outs) t.dispose();
      throw e;
    }
    return outs;
  }

  /**
   * c10d's Reducer (the engine of PyTorch's DistributedDataParallel) over these
   * parameters: call `beforeForward()` before each forward and `beforeBackward()`
   * before its backward; during backward each bucket's all-reduce starts as soon as
   * its gradients exist, and when backward returns every .grad holds the average
   * over the ranks. Every rank must pass the same parameters in the same order.
   */
  reducer(params: Tensor[], bucketCapBytes = 25 * 1024 * 1024): Reducer {
    return new Reducer(
      dist().newReducer(
        this.group,
        params.map((p) => p.handle),
        bucketCapBytes,
      ),
    );
  }

  /** Waits until every rank gets here. */
  async barrier(): Promise<void> {
    await this.guard('barrier', dist().barrier(this.group));
  }

  /** Sets a key every rank can read (small values: settings, checks). */
  set(key: string, value: string): void {
    dist().storeSet(this.store, key, Buffer.from(value));
  }

  /** Reads a key, waiting for it (up to the group's timeout). */
  get(key: string): string {
    return dist().storeGet(this.store, key).toString();
  }

  /**
   * Starts writing this rank's heartbeat (every `everyMs`) into the store, so that
   * when a collective fails the others can say which rank stopped.
   */
  startHeartbeat(everyMs = 1000): void {
    const beat = (): void => {
      try {
        this.set(`heartbeat/${this.rank}`, String(Date.now()));
      } catch {
        // The store is gone (rank 0 lost): the next collective says so.
      }
    };
    beat();
    this.heartbeat = setInterval(beat, everyMs);
    this.heartbeat.unref();
  }

  /** The ranks whose heartbeat is older than `staleMs` (or missing), with what they said about themselves. */
  silentRanks(staleMs = 3000): number[] {
    const now = Date.now();
    const silent: number[] = [];
    for (let r = 0; r < this.worldSize; r++) {
      if (r === this.rank) continue;
      try {
        const key = `heartbeat/${r}`;
        if (!dist().storeCheck(this.store, key) || now - Number(this.get(key)) > staleMs) silent.push(r);
      } catch {
        return [0]; // the store, which rank 0 serves, is unreachable
      }
    }
    return silent;
  }

  /** Where each rank runs (host and pid), as announced at the start. */
  whereIs(rank: number): string {
    try {
      return this.get(`where/${rank}`);
    } catch {
      return 'unknown host';
    }
  }

  private async guard(what: string, p: Promise<void>): Promise<void> {
    try {
      await p;
    } catch (e) {
      throw this.explain(what, e as Error);
    }
  }

  /** A collective's failure, naming the rank that was lost when the heartbeats tell. */
  explain(what: string, e: Error): DistributedError {
    if (e instanceof DistributedError) return e;
    // Give a rank that just died time to miss a heartbeat.
    const waitUntil = Date.now() + 3500;
    let silent: number[] = [];
    while (Date.now() < waitUntil) {
      silent = this.silentRanks();
      if (silent.length > 0) break;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 250);
    }
    const who = silent.length > 0 ? `rank ${silent.join(', rank ')} (${silent.map((r) => this.whereIs(r)).join('; ')}) stopped responding` : 'a rank failed';
    return new DistributedError(`distributed ${what} failed on rank ${this.rank}: ${who} (${e.message.split('\n')[0]})`);
  }

  /** Leaves the group (stops the heartbeat, closes the store). */
  destroy(): void {
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
    try {
      dist().destroyGroup(this.group);
      dist().closeStore(this.root);
    } catch {
      // already gone
    }
  }
}

/** Gradient averaging that overlaps backward (see `ProcessGroup.reducer`). */
export class Reducer {
  /** @internal Made by `ProcessGroup.reducer`. */
  constructor(private handle: ReducerHandle | null) {}

  /** Before each forward pass. */
  beforeForward(): void {
    dist().reducerForward(this.live());
  }

  /** After the forward pass, before backward. */
  beforeBackward(): void {
    dist().reducerBackward(this.live());
  }

  /** Removes its hooks from the parameters. */
  destroy(): void {
    if (this.handle) dist().destroyReducer(this.handle);
    this.handle = null;
  }

  private live(): ReducerHandle {
    if (!this.handle) throw new DistributedError('the reducer was destroyed');
    return this.handle;
  }
}

let defaultGroup: ProcessGroup | null = null;

/** The group `initProcessGroup` made, or null when this process trains alone. */
export function defaultProcessGroup(): ProcessGroup | null {
  return defaultGroup;
}

/**
 * Joins the default process group (torch.distributed.init_process_group with
 * init_method env://): rank 0 serves a TCPStore at masterAddr:masterPort, every
 * rank connects, waits for all `worldSize`, sets up Gloo and passes the
 * store-based barrier. Errors say what is wrong (port in use, master unreachable).
 */
export async function initProcessGroup(options: InitProcessGroupOptions = {}): Promise<ProcessGroup> {
  if (defaultGroup) throw new DistributedError('the default process group is already initialized');
  const o = resolveInitOptions(options);
  if (o.backend !== 'gloo' && o.backend !== 'nccl') throw new DistributedError(`backend must be 'gloo' or 'nccl', got '${String(o.backend)}'`);
  const d = dist();
  if (o.backend === 'nccl' && !d.ncclAvailable())
    throw new DistributedError("backend nccl: this build of fastvision has no NCCL (it needs a CUDA libtorch and NCCL's headers when it is built; `fastvision doctor` says what was found)");
  let root: StoreHandle;
  try {
    root = d.createStore(o.masterAddr, o.masterPort, o.rank === 0, o.worldSize, o.timeoutMs, true);
  } catch (e) {
    const m = (e as Error).message;
    if (o.rank === 0 && /in use|EADDRINUSE|bind/i.test(m))
      throw new DistributedError(`rank 0 cannot serve the store on ${o.masterAddr}:${o.masterPort}: the port is in use (choose another MASTER_PORT / --master) [${m.split('\n')[0]}]`);
    if (o.rank === 0 && /Timed out|timeout/i.test(m))
      throw new DistributedError(`rank 0 waited ${o.timeoutMs / 1000} s for ${o.worldSize} ranks to join at ${o.masterAddr}:${o.masterPort}; not all came [${m.split('\n')[0]}]`);
    throw new DistributedError(`rank ${o.rank} cannot reach the store at ${o.masterAddr}:${o.masterPort} (MASTER_ADDR, MASTER_PORT) within ${o.timeoutMs / 1000} s [${m.split('\n')[0]}]`);
  }
  const pgStore = d.prefixStore(root, 'default_pg');
  // torch.distributed's keys for the default group: 1.13 hands Gloo "default_pg/0"; 2.x
  // names the group "0/" and gives each device's backend its own "cpu/" below it.
  const torch2 = Number.parseInt(libtorchVersion(), 10) >= 2;
  const groupStore = torch2 ? d.prefixStore(d.prefixStore(pgStore, '0/'), o.backend === 'nccl' ? 'cuda/' : 'cpu/') : d.prefixStore(pgStore, '0');
  let group: GroupHandle;
  try {
    group = o.backend === 'nccl' ? d.newNccl(groupStore, o.rank, o.worldSize, o.timeoutMs) : d.newGloo(groupStore, o.rank, o.worldSize, o.timeoutMs, o.ifname, null);
  } catch (e) {
    throw new DistributedError(
      `rank ${o.rank}: ${o.backend === 'nccl' ? 'NCCL' : 'Gloo'} could not connect the ranks${o.ifname ? ` on interface ${o.ifname}` : ''} [${(e as Error).message.split('\n')[0]}]`,
    );
  }
  if (torch2) {
    // 2.x sets the sequence number as soon as the backend exists, and has no start-up
    // barrier unless TORCH_DIST_INIT_BARRIER=1 (Gloo's own connection waits for every rank).
    d.setSequenceNumber(group);
  } else {
    // torch.distributed 1.13's store-based barrier, so that a PyTorch rank finds what it expects.
    d.storeAdd(pgStore, 'store_based_barrier_key:1', 1);
    const deadline = Date.now() + o.timeoutMs;
    while (d.storeAdd(pgStore, 'store_based_barrier_key:1', 0) < o.worldSize) {
      if (Date.now() > deadline) throw new DistributedError(`rank ${o.rank}: timed out in the start-up barrier`);
      await new Promise((r) => setTimeout(r, 10));
    }
    // After the barrier, as torch.distributed 1.13 does (rank 0 sets it, the others wait for it).
    d.setSequenceNumber(group);
  }
  const own = d.prefixStore(root, 'fastvision');
  const pg = new ProcessGroup(group, own, root, o.rank, o.worldSize, o.timeoutMs, o.device);
  pg.set(`where/${o.rank}`, `${hostname()} pid ${process.pid}`);
  pg.startHeartbeat();
  defaultGroup = pg;
  return pg;
}

/** Whether this build can make NCCL groups (a CUDA libtorch, and NCCL's headers when it was built); false where distributed training is not built. */
export function ncclAvailable(): boolean {
  try {
    return dist().ncclAvailable();
  } catch {
    return false;
  }
}

/** Leaves the default group. */
export function destroyProcessGroup(): void {
  defaultGroup?.destroy();
  defaultGroup = null;
}

/** Tensors as one flat 1-D tensor (a bucket for one collective). */
export function flatten(ts: Tensor[]): Tensor {
  const flat = ts.map((t) => t.reshape(-1));
  const out = cat(flat, 0);
  for (const f of flat) f.dispose();
  return out;
}

/** Copies a flat tensor's values back into `ts` (in order, as `flatten` laid them out). */
export function unflattenInto(flat: Tensor, ts: Tensor[]): void {
  let offset = 0;
  noGrad(() => {
    for (const t of ts) {
      const n = t.numel;
      const part = flat.narrow(0, offset, n);
      const shaped = part.view(...t.shape);
      t.copy_(shaped);
      shaped.dispose();
      part.dispose();
      offset += n;
    }
  });
}
