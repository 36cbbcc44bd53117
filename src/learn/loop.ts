// The one training loop. A fit is epochs of mini-batch steps followed by a
// validation pass; everything else — the schedule, the epoch table, progress
// bars, snapshots, the divergence guard, the learning-rate finder, best-weights
// keepers, early stopping — is a callback on this loop (fastai v2's shape).
// Callbacks read and change the loop's state (`loop.x`, `loop.loss`, the
// optimizer's rates) and cancel a batch, a step, an epoch, the validation or
// the whole fit by throwing the matching Cancel* error.
import { cat, F, noGrad, tensor, tidy, type nn, type optim, type Tensor } from '../torch/index.js';
import type { DataLoader } from '../vision/loader.js';
import type { Metric } from './metrics.js';
import { SmoothedLoss } from './schedule.js';
import { FastvisionError } from '../util/errors.js';

/** One row of the epoch table. */
export interface EpochRecord {
  epoch: number;
  trnLoss: number;
  valLoss: number | null;
  /** Accuracy when it is among the metrics (the default). */
  accuracy: number | null;
  /** Every metric by name. */
  metrics: Record<string, number>;
}

/** Skips the rest of this batch (no backward, no step). */
export class CancelBatchError extends FastvisionError {}
/** Skips this batch's optimizer step and the zeroing of gradients (they accumulate). */
export class CancelStepError extends FastvisionError {}
/** Ends this epoch's training part at once (validation still runs). */
export class CancelTrainError extends FastvisionError {}
/** Skips this epoch's validation. */
export class CancelValidateError extends FastvisionError {}
/** Ends the fit after this point; `afterFit` hooks still run. */
export class CancelFitError extends FastvisionError {}

/** One event's handler in a callback: it reads and changes the loop's state. */
export type Hook = (loop: Loop) => void | Promise<void>;

/** The forward pass with no context around it. */
const direct = <T>(fn: () => T): T => fn();

/**
 * A callback: any of the events below, called in ascending `order` (default 0).
 * Per batch: beforeBatch → forward → afterPred → loss → afterLoss → backward →
 * beforeStep → step → afterStep → afterBatch. Per epoch: beforeEpoch →
 * beforeTrain → batches → afterTrain → beforeValidate → afterValidate →
 * afterEpoch (the row is in `loop.record` and `loop.history` by then).
 * A callback with a `name` and `state`/`restore` is resumed from checkpoints.
 */
export interface Callback {
  order?: number;
  name?: string;
  beforeFit?: Hook;
  beforeEpoch?: Hook;
  beforeTrain?: Hook;
  beforeBatch?: Hook;
  afterPred?: Hook;
  afterLoss?: Hook;
  beforeStep?: Hook;
  afterStep?: Hook;
  afterBatch?: Hook;
  afterTrain?: Hook;
  beforeValidate?: Hook;
  afterValidate?: Hook;
  afterEpoch?: Hook;
  afterCancelFit?: Hook;
  /** Always called last, also when the fit throws (release resources here). */
  afterFit?: Hook;
  /** May turn an error the fit threw into a clearer one (e.g. which rank was lost); return nothing to keep it. */
  onError?: (loop: Loop, error: unknown) => unknown;
  /** JSON-able state for checkpoints. */
  state?(): unknown;
  /** Continues from what `state()` returned. */
  restore?(state: unknown): void;
}

const EVENTS = [
  'beforeFit',
  'beforeEpoch',
  'beforeTrain',
  'beforeBatch',
  'afterPred',
  'afterLoss',
  'beforeStep',
  'afterStep',
  'afterBatch',
  'afterTrain',
  'beforeValidate',
  'afterValidate',
  'afterEpoch',
  'afterCancelFit',
  'afterFit',
] as const;
type EventName = (typeof EVENTS)[number];

/**
 * A loss: the network's outputs and the targets in; the batch mean out, or with
 * reduction 'none' one loss per image (what MixUp and CutMix mix).
 */
export type LossFn = (out: Tensor, y: Tensor, reduction?: 'mean' | 'none') => Tensor;

/** What a loop is built from. */
export interface LoopOptions {
  /** What trains: the whole model, or the head alone on precomputed activations. */
  net: nn.Module;
  /** The whole model (what callbacks save and restore; default `net`). */
  model?: nn.Module;
  /** Saves the whole model under a name (the learner's `save`). */
  saveModel?: (name: string) => Promise<string>;
  opt: optim.Optimizer;
  trn: DataLoader;
  val: DataLoader | null;
  nEpochs: number;
  lossFunc?: LossFn;
  metrics?: Metric[];
  callbacks?: Callback[];
  /** Puts the network in training mode (the learner keeps frozen batch norms in eval mode). */
  trainMode?: () => void;
  log?: ((line: string) => void) | null;
}

/**
 * Where a fit stands at the end of an epoch: everything needed to continue it and
 * get what an uninterrupted run would have given (with the model's weights, which
 * the caller saves). `rng` and the optimizer's tensors are owned by the caller.
 */
export interface FitState {
  /** Epochs completed. */
  epoch: number;
  /** Mini-batches completed (the schedule's position). */
  iteration: number;
  /** The smoothed training loss's running state. */
  smoothed: { avg: number; n: number };
  /** The training loader's pass counter (its shuffling and augmentation are seeded by it). */
  loaderEpoch: number;
  /** The rows of the epochs completed. */
  history: EpochRecord[];
  /** Named callbacks' states (best values, counters). */
  callbacks: Record<string, unknown>;
  optimizer: optim.OptimizerStateDict;
  /** libtorch's random generator (dropout masks). */
  rng: Tensor;
}

/** Where a resumed loop starts. */
export interface LoopStart {
  epoch: number;
  iteration: number;
  smoothed: { avg: number; n: number };
  history: EpochRecord[];
  callbacks: Record<string, unknown>;
}

/** A fit in progress: its state is public so that callbacks can read and steer it. */
export class Loop {
  readonly net: nn.Module;
  readonly model: nn.Module;
  /** Saves the whole model under a name; returns the file. */
  readonly saveModel: (name: string) => Promise<string>;
  readonly opt: optim.Optimizer;
  readonly trn: DataLoader;
  readonly val: DataLoader | null;
  readonly nEpochs: number;
  lossFunc: LossFn;
  readonly metrics: Metric[];
  readonly callbacks: Callback[];
  readonly log: ((line: string) => void) | null;
  /** Mini-batches per epoch. */
  readonly itersPerEpoch: number;
  /** The current epoch (0-based). */
  epoch = 0;
  /** Training mini-batches done so far in this fit (the schedule's position). */
  iteration = 0;
  /** True during the training part of an epoch. */
  training = false;
  /** The current batch (callbacks may replace them in beforeBatch). */
  x: Tensor | null = null;
  y: Tensor | null = null;
  /** The network's output for the current batch. */
  pred: Tensor | null = null;
  /** The loss that backward runs on (afterPred may set it; afterLoss may replace it). */
  loss: Tensor | null = null;
  /** The current batch's loss as a number (before any afterLoss scaling of `loss`). */
  lossValue = Number.NaN;
  /**
   * Turns this process's validation outputs and targets into the whole set's
   * (distributed training gathers every rank's share); identity by default.
   */
  gather: ((out: Tensor, y: Tensor) => Promise<{ out: Tensor; y: Tensor }>) | null = null;
  /**
   * Runs the forward pass and the loss (training and validation) inside a context, such
   * as MixedPrecision's autocast region; set in beforeFit. Backward and the step run outside it.
   */
  forwardContext: (<T>(fn: () => T) => T) | null = null;
  readonly smoother = new SmoothedLoss();
  /** The epoch row being completed (set after the training part). */
  record: EpochRecord | null = null;
  readonly history: EpochRecord[] = [];
  private readonly trainMode: () => void;
  private readonly hooks = new Map<EventName, Hook[]>();
  private skippedOne = false;

  constructor(o: LoopOptions) {
    this.net = o.net;
    this.model = o.model ?? o.net;
    this.saveModel =
      o.saveModel ??
      (() => {
        throw new Error('this loop has no way to save the model (give saveModel)');
      });
    this.opt = o.opt;
    this.trn = o.trn;
    this.val = o.val;
    this.nEpochs = o.nEpochs;
    this.lossFunc = o.lossFunc ?? ((out, y, reduction) => F.nllLoss(out, y, { reduction }));
    this.metrics = o.metrics ?? [];
    this.callbacks = [...(o.callbacks ?? [])].sort((a, b) => (a.order ?? 0) - (b.order ?? 0));
    this.trainMode = o.trainMode ?? (() => this.net.train());
    this.log = o.log ?? null;
    this.itersPerEpoch = o.trn.length;
    // Only the callbacks that define an event are called for it: a batch costs a handful of calls.
    for (const e of EVENTS) {
      this.hooks.set(
        e,
        this.callbacks.filter((c) => typeof c[e] === 'function').map((c) => (c[e] as Hook).bind(c)),
      );
    }
  }

  /** The smoothed training loss so far. */
  get smoothedLoss(): number {
    return this.smoother.value;
  }

  /** Training iterations of the whole fit. */
  get totalIterations(): number {
    return this.nEpochs * this.itersPerEpoch;
  }

  /** The first callback of a class, if any. */
  find<T extends Callback>(cls: new (...args: never[]) => T): T | undefined {
    return this.callbacks.find((c): c is T => c instanceof cls);
  }

  private async emit(e: EventName): Promise<void> {
    for (const h of this.hooks.get(e)!) await h(this);
  }

  /** Named callbacks' states (for a checkpoint). */
  callbackStates(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const c of this.callbacks) if (c.name && c.state) out[c.name] = c.state();
    return out;
  }

  /** Puts the loop where a checkpoint left it. */
  restore(s: LoopStart): void {
    this.epoch = s.epoch;
    this.iteration = s.iteration;
    this.smoother.restore(s.smoothed);
    this.history.push(...s.history);
    for (const c of this.callbacks) if (c.name && c.restore && c.name in s.callbacks) c.restore(s.callbacks[c.name]);
  }

  /** Runs the fit from `this.epoch` to `nEpochs`; returns the epoch rows. */
  async run(): Promise<EpochRecord[]> {
    try {
      this.opt.zeroGrad();
      await this.emit('beforeFit');
      for (; this.epoch < this.nEpochs; this.epoch++) await this.oneEpoch();
    } catch (e) {
      if (!(e instanceof CancelFitError)) {
        let err: unknown = e;
        for (const c of this.callbacks) err = c.onError?.(this, err) ?? err;
        throw err;
      }
      await this.emit('afterCancelFit');
    } finally {
      this.disposeBatch();
      await this.emit('afterFit');
    }
    return this.history;
  }

  private async oneEpoch(): Promise<void> {
    await this.emit('beforeEpoch');
    this.trainMode();
    this.training = true;
    try {
      await this.emit('beforeTrain');
      for await (const { x, y } of this.trn) {
        this.x = x;
        this.y = y;
        try {
          await this.oneBatch();
        } finally {
          this.disposeBatch();
        }
      }
    } catch (e) {
      if (!(e instanceof CancelTrainError)) throw e;
    }
    this.training = false;
    await this.emit('afterTrain');
    this.record = { epoch: this.epoch, trnLoss: this.smoother.value, valLoss: null, accuracy: null, metrics: {} };
    if (this.val) {
      try {
        await this.emit('beforeValidate');
        const v = await this.validate(this.val);
        Object.assign(this.record, { valLoss: v.loss, accuracy: v.metrics.accuracy ?? null, metrics: v.metrics });
        await this.emit('afterValidate');
      } catch (e) {
        if (!(e instanceof CancelValidateError)) throw e;
      }
    }
    this.history.push(this.record);
    await this.emit('afterEpoch');
  }

  private async oneBatch(): Promise<void> {
    if (this.x!.shape[0]! < 2) {
      // Batch norm cannot normalize a batch of one (its statistics would be NaN).
      if (!this.skippedOne) this.log?.('warning: skipping a training batch of one image');
      this.skippedOne = true;
      return;
    }
    try {
      await this.emit('beforeBatch');
      const inContext = this.forwardContext ?? direct;
      this.pred = inContext(() => this.net.forward(this.x!));
      await this.emit('afterPred');
      this.loss ??= inContext(() => tidy(() => this.lossFunc(this.pred!, this.y!)));
      this.lossValue = this.loss.item();
      // afterLoss may change the recorded value (distributed training averages it over the ranks).
      await this.emit('afterLoss');
      this.smoother.add(this.lossValue);
      this.loss.backward();
      try {
        await this.emit('beforeStep');
        this.opt.step();
        await this.emit('afterStep');
        this.opt.zeroGrad();
      } catch (e) {
        if (!(e instanceof CancelStepError)) throw e;
      }
      this.iteration++;
      await this.emit('afterBatch');
    } catch (e) {
      if (!(e instanceof CancelBatchError)) throw e;
    }
  }

  private disposeBatch(): void {
    const seen = new Set<Tensor>();
    for (const t of [this.x, this.y, this.pred, this.loss]) {
      if (t && !seen.has(t)) {
        seen.add(t);
        t.dispose();
      }
    }
    this.x = this.y = this.pred = this.loss = null;
  }

  private async validate(dl: DataLoader): Promise<{ loss: number; metrics: Record<string, number> }> {
    let { out, y } = await predictLoader(this.net, dl, undefined, this.forwardContext ?? undefined);
    if (this.gather) {
      const mine = { out, y };
      try {
        ({ out, y } = await this.gather(out, y));
      } finally {
        mine.out.dispose();
        mine.y.dispose();
      }
    }
    try {
      const inContext = this.forwardContext ?? direct;
      const loss = noGrad(() => inContext(() => tidy(() => this.lossFunc(out, y).item())));
      return { loss, metrics: Object.fromEntries(this.metrics.map((m) => [m.name, noGrad(() => m.fn(out, y))])) };
    } finally {
      out.dispose();
      y.dispose();
    }
  }
}

/**
 * `net`'s outputs for every batch of a loader, in order, with the targets (eval mode, no
 * gradients), in float32; `context` wraps each forward pass (an autocast region).
 */
export async function predictLoader(net: nn.Module, dl: DataLoader, onBatch?: () => void, context?: <T>(fn: () => T) => T): Promise<{ out: Tensor; y: Tensor }> {
  net.eval();
  const outs: Tensor[] = [];
  const ys: Tensor[] = [];
  try {
    for await (const { x, y } of dl) {
      outs.push(
        noGrad(() => {
          const out = context ? context(() => net.forward(x)) : net.forward(x);
          if (out.dtype === 'float32') return out;
          const f = out.float();
          out.dispose();
          return f;
        }),
      );
      ys.push(y);
      x.dispose();
      onBatch?.();
    }
    return { out: stackRows(outs), y: stackRows(ys) };
  } finally {
    for (const t of [...outs, ...ys]) t.dispose();
  }
}

/** Concatenates batches along the first dimension. */
function stackRows(parts: Tensor[]): Tensor {
  if (parts.length === 0) return tensor(new Float32Array(0), { shape: [0] });
  return cat(parts, 0);
}
