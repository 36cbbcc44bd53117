// The callbacks a fit is made of (the schedule, the epoch table, progress bars,
// cycle snapshots, checkpoints) and the ones users add (SaveModelCallback,
// EarlyStoppingCallback, GradientAccumulation, CSVLogger), fastai v2's names.
import { readFile } from 'node:fs/promises';
import { getRngState, type Tensor } from '../torch/index.js';
import { progress, type Progress } from '../util/progress.js';
import { writeFileAtomic } from '../util/files.js';
import { CancelFitError, CancelStepError, type Callback, type EpochRecord, type FitState, type Loop } from './loop.js';
import { monitorDirection } from './metrics.js';
import { snapshotState, updateSnapshot, disposeState, type StateSnapshot } from './state.js';

/** Sets each group's rate (and momentum, when given) before every batch from the iteration count. */
export class ParamScheduler implements Callback {
  readonly order = -30;
  /** The rates (last group's) and momenta applied, batch by batch. */
  readonly lrs: number[] = [];
  readonly moms: number[] = [];
  /**
   * `lrAt`/`momAt` give iteration i's rates (one per group) and momentum;
   * `cycleEnds` are the iterations at which the schedule's cycles end (SGDR's snapshot points).
   */
  constructor(
    private readonly lrAt: (iteration: number) => number[],
    private readonly momAt?: (iteration: number) => number,
    readonly cycleEnds: number[] = [],
  ) {}

  beforeBatch(loop: Loop): void {
    const lrs = this.lrAt(loop.iteration);
    const mom = this.momAt?.(loop.iteration);
    loop.opt.paramGroups.forEach((g, i) => {
      g.lr = lrs[i] ?? lrs[lrs.length - 1]!;
      if (mom !== undefined) {
        // SGD's momentum; Adam's first beta plays the same part.
        g.momentum = mom;
        g.betas = [mom, g.betas[1]];
      }
    });
    this.lrs.push(lrs[lrs.length - 1]!);
    if (mom !== undefined) this.moms.push(mom);
  }
}

/** Weights kept in memory with the epoch row and the stage they are from. */
export interface KeptWeights {
  stage: string;
  record: EpochRecord;
  state: StateSnapshot;
}

/**
 * Keeps in memory the weights with the lowest validation loss among SGDR's
 * snapshot points — the end of each cycle, where the rate has annealed — and
 * each fit's last epoch, across several fits (the stages of a recipe). A later
 * stage (unfreezing, above all) can end worse; the recipe hands back the best.
 */
export class BestWeightsKeeper implements Callback {
  readonly order = 50;
  /** The stage the next fits belong to (recorded with the weights). */
  stage = '';
  best: KeptWeights | null = null;

  afterEpoch(loop: Loop): void {
    const rec = loop.record!;
    const ends = loop.find(ParamScheduler)?.cycleEnds ?? [];
    if (!ends.includes(loop.iteration) && rec.epoch !== loop.nEpochs - 1) return;
    if (rec.valLoss === null || !Number.isFinite(rec.valLoss) || (this.best !== null && rec.valLoss >= this.best.record.valLoss!)) return;
    if (this.best) updateSnapshot(this.best.state, loop.model);
    this.best = { stage: this.stage, record: rec, state: this.best?.state ?? snapshotState(loop.model) };
  }

  /** Frees the kept weights. */
  dispose(): void {
    if (this.best) disposeState(this.best.state);
    this.best = null;
  }
}

/** Calls `save(k)` as the schedule's cycle k ends (SGDR's snapshots, for an ensemble). */
export class CycleSnapshots implements Callback {
  readonly order = 10;
  constructor(private readonly save: (cycle: number) => Promise<unknown>) {}

  async afterBatch(loop: Loop): Promise<void> {
    const k = loop.find(ParamScheduler)?.cycleEnds.indexOf(loop.iteration) ?? -1;
    if (k >= 0) await this.save(k);
  }
}

/** Prints the epoch table: a header, then a row per epoch (losses and metrics). */
export class EpochTable implements Callback {
  readonly order = -20;
  constructor(private readonly say: (line: string) => void) {}

  beforeFit(loop: Loop): void {
    this.say(['epoch'.padEnd(7), 'trn_loss'.padEnd(12), 'val_loss'.padEnd(12), ...loop.metrics.map((m) => m.name.padEnd(12))].join('').trimEnd());
  }

  afterEpoch(loop: Loop): void {
    const r = loop.record!;
    // A cell always ends with a space, so that even a huge loss stays apart from its neighbour.
    const cell = (v: number | null | undefined): string => (v === null || v === undefined ? '' : `${v.toFixed(6)} `).padEnd(12);
    this.say(
      [String(r.epoch).padEnd(7), cell(r.trnLoss), cell(r.valLoss), ...loop.metrics.map((m) => (r.valLoss === null ? ''.padEnd(12) : cell(r.metrics[m.name] ?? Number.NaN)))].join('').trimEnd(),
    );
  }
}

/** Progress bars: one per epoch's training part, or (with a label) one for the whole fit. */
export class ProgressCallback implements Callback {
  readonly order = -25;
  private bar: Progress | null = null;
  constructor(private readonly whole?: { label: string; total: number }) {}

  beforeFit(): void {
    if (this.whole) this.bar = progress(this.whole.label, this.whole.total);
  }
  beforeTrain(loop: Loop): void {
    if (!this.whole) this.bar = progress(`epoch ${loop.epoch}`, loop.itersPerEpoch);
  }
  afterBatch(): void {
    this.bar?.tick();
  }
  afterTrain(): void {
    if (!this.whole) this.stop();
  }
  afterFit(): void {
    this.stop();
  }
  private stop(): void {
    this.bar?.stop();
    this.bar = null;
  }
}

/** The value of a monitored quantity in an epoch's row: trn_loss, val_loss or a metric's name. */
export function monitored(r: EpochRecord, monitor: string): number | null {
  if (monitor === 'trn_loss') return r.trnLoss;
  if (monitor === 'val_loss') return r.valLoss;
  return r.metrics[monitor] ?? null;
}

/** Options shared by the callbacks that track a monitored quantity. */
export interface TrackerOptions {
  /** What to watch, by its epoch-table name: 'val_loss' (default), 'trn_loss', or a metric such as 'accuracy' or 'error_rate'. */
  monitor?: string;
  /** 'min', 'max', or 'auto' (default: losses go down, metrics as they declare). */
  mode?: 'min' | 'max' | 'auto';
  /** How much better than the best a value must be to count as an improvement. */
  minDelta?: number;
}

/** Tracks the best value of a monitored quantity (fastai's TrackerCallback). */
abstract class Tracker implements Callback {
  abstract readonly name: string;
  readonly monitor: string;
  protected best = Number.NaN;
  private sign = 1;
  constructor(private readonly o: TrackerOptions) {
    this.monitor = o.monitor ?? 'val_loss';
  }

  beforeFit(loop: Loop): void {
    if (this.monitor !== 'trn_loss' && !loop.val) throw new Error(`${this.name}: monitoring '${this.monitor}' needs a validation set`);
    const dir = this.o.mode === undefined || this.o.mode === 'auto' ? monitorDirection(this.monitor, loop.metrics) : this.o.mode;
    this.sign = dir === 'min' ? 1 : -1;
  }

  /** Whether this epoch's value improves on the best; updates the best when it does. */
  protected improved(loop: Loop): boolean {
    const v = monitored(loop.record!, this.monitor);
    if (v === null || !Number.isFinite(v)) return false;
    if (!Number.isNaN(this.best) && !(this.sign * (v - this.best) < -(this.o.minDelta ?? 0))) return false;
    this.best = v;
    return true;
  }

  /** The best value seen so far (NaN before the first). */
  get bestValue(): number {
    return this.best;
  }
}

/** Options of SaveModelCallback. */
export interface SaveModelOptions extends TrackerOptions {
  /** The saved model's name (default 'model'): a name under the learner's models folder, or a .pth path. */
  fname?: string;
  /** Save every epoch as `{fname}_{epoch}` instead of only improvements. */
  everyEpoch?: boolean;
  /** At the end of the fit, put back the best weights (default true; not with everyEpoch). */
  restoreBest?: boolean;
}

/**
 * Saves the model whenever the monitored quantity improves (or every epoch), and
 * at the end of the fit puts the best weights back (fastai's SaveModelCallback).
 */
export class SaveModelCallback extends Tracker {
  readonly name = 'SaveModelCallback';
  readonly order = 20;
  private kept: StateSnapshot | null = null;
  private readonly fname: string;
  constructor(private readonly opts: SaveModelOptions = {}) {
    super(opts);
    this.fname = opts.fname ?? 'model';
  }

  async afterEpoch(loop: Loop): Promise<void> {
    if (this.opts.everyEpoch) {
      await loop.saveModel(`${this.fname}_${loop.record!.epoch}`);
      return;
    }
    if (!this.improved(loop)) return;
    await loop.saveModel(this.fname);
    if (this.opts.restoreBest ?? true) {
      if (this.kept) updateSnapshot(this.kept, loop.model);
      else this.kept = snapshotState(loop.model);
    }
  }

  afterFit(loop: Loop): void {
    if (!this.kept) return;
    loop.model.loadStateDict(this.kept);
    loop.log?.(`SaveModelCallback: kept the weights with the best ${this.monitor} (${this.best.toFixed(6)})`);
    disposeState(this.kept);
    this.kept = null;
  }

  state(): unknown {
    return { best: Number.isNaN(this.best) ? null : this.best };
  }
  restore(s: unknown): void {
    const b = (s as { best: number | null }).best;
    this.best = b === null ? Number.NaN : b;
  }
}

/** Options of EarlyStoppingCallback. */
export interface EarlyStoppingOptions extends TrackerOptions {
  /** Epochs without improvement before stopping (default 1). */
  patience?: number;
}

/** Stops the fit once the monitored quantity has not improved for `patience` epochs. */
export class EarlyStoppingCallback extends Tracker {
  readonly name = 'EarlyStoppingCallback';
  readonly order = 30;
  private wait = 0;
  private readonly patience: number;
  constructor(opts: EarlyStoppingOptions = {}) {
    super(opts);
    this.patience = opts.patience ?? 1;
    if (!(Number.isInteger(this.patience) && this.patience >= 1)) throw new RangeError(`EarlyStoppingCallback: patience must be a positive integer, got ${opts.patience}`);
  }

  afterEpoch(loop: Loop): void {
    if (this.improved(loop)) {
      this.wait = 0;
      return;
    }
    this.wait++;
    if (this.wait >= this.patience) {
      loop.log?.(`No improvement since epoch ${loop.record!.epoch - this.wait}: early stopping`);
      throw new CancelFitError();
    }
  }

  state(): unknown {
    return { best: Number.isNaN(this.best) ? null : this.best, wait: this.wait };
  }
  restore(s: unknown): void {
    const st = s as { best: number | null; wait: number };
    this.best = st.best === null ? Number.NaN : st.best;
    this.wait = st.wait;
  }
}

/**
 * Accumulates gradients over `nImages` images before each optimizer step, so a
 * batch too large for memory trains as if it were one (fastai's GradientAccumulation):
 * each batch's loss is scaled by its size / nImages and steps are skipped until
 * nImages images have been seen.
 */
export class GradientAccumulation implements Callback {
  readonly name = 'GradientAccumulation';
  readonly order = -5;
  private count = 0;
  constructor(readonly nImages = 32) {
    if (!(Number.isInteger(nImages) && nImages >= 1)) throw new RangeError(`GradientAccumulation: nImages must be a positive integer, got ${nImages}`);
  }

  beforeFit(): void {
    this.count = 0;
  }

  afterLoss(loop: Loop): void {
    const scaled = loop.loss!.mul(loop.y!.shape[0]! / this.nImages);
    loop.loss!.dispose();
    loop.loss = scaled;
  }

  beforeStep(loop: Loop): void {
    this.count += loop.y!.shape[0]!;
    if (this.count < this.nImages) throw new CancelStepError();
    this.count = 0;
  }

  state(): unknown {
    return { count: this.count };
  }
  restore(s: unknown): void {
    this.count = (s as { count: number }).count;
  }
}

/** Writes the epoch table to a CSV file after every epoch (atomically): epoch, trn_loss, val_loss, metrics, seconds. */
export class CSVLogger implements Callback {
  readonly order = 40;
  private rows: string[] = [];
  private header = '';
  private started = 0;
  constructor(
    readonly file = 'history.csv',
    private readonly append = false,
  ) {}

  async beforeFit(loop: Loop): Promise<void> {
    this.header = ['epoch', 'trn_loss', 'val_loss', ...loop.metrics.map((m) => m.name), 'seconds'].join(',');
    this.rows = [];
    if (this.append) {
      const old = await readFile(this.file, 'utf8').catch(() => '');
      const lines = old.split('\n').filter((l) => l !== '');
      if (lines.length > 0 && lines[0] !== this.header) throw new Error(`CSVLogger: ${this.file} has other columns (${lines[0]}); cannot append`);
      this.rows = lines.slice(1);
    }
  }

  beforeEpoch(): void {
    this.started = performance.now();
  }

  async afterEpoch(loop: Loop): Promise<void> {
    const r = loop.record!;
    const v = (x: number | null | undefined): string => (x === null || x === undefined ? '' : String(x));
    this.rows.push([r.epoch, v(r.trnLoss), v(r.valLoss), ...loop.metrics.map((m) => v(r.metrics[m.name])), ((performance.now() - this.started) / 1000).toFixed(3)].join(','));
    await writeFileAtomic(this.file, `${[this.header, ...this.rows].join('\n')}\n`);
  }
}

/** Hands the fit's state to `onCheckpoint` at the end of every epoch (after every other callback). */
export class CheckpointCallback implements Callback {
  readonly order = 100;
  constructor(private readonly onCheckpoint: (state: FitState) => Promise<void> | void) {}

  async afterEpoch(loop: Loop): Promise<void> {
    const rng: Tensor = getRngState();
    try {
      await this.onCheckpoint({
        epoch: loop.epoch + 1,
        iteration: loop.iteration,
        smoothed: loop.smoother.state(),
        loaderEpoch: loop.trn.epoch,
        history: [...loop.history],
        callbacks: loop.callbackStates(),
        optimizer: loop.opt.stateDict(),
        rng,
      });
    } finally {
      rng.dispose();
    }
  }
}
