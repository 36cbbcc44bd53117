// Learner: fastai v2's generic trainer. Data, a model, a loss, an optimizer factory, layer
// groups (a splitter) and callbacks; the fits built on the one loop (loop.ts): fit (SGDR or
// constant), fitOneCycle, fineTune and lrFind; freezing by layer group, save and load, and
// predictions on a loader. ConvLearner (vision_learner) builds on it.
import { existsSync } from 'node:fs';
import { dirname, isAbsolute, join, sep } from 'node:path';
import { ensureDir } from '../util/files.js';
import { isOutOfMemory, loadStateDictFile, nn, noGrad, optim, resolveDevice, savePth, setRngState, type Tensor } from '../torch/index.js';
import type { ProcessGroup } from '../torch/distributed.js';
import { cacheDirFor } from '../vision/data.js';
import type { DataLoader } from '../vision/loader.js';
import { progress } from '../util/progress.js';
import { outOfMemory } from './memory.js';
import { checkMixedPrecision, MixedPrecision, type MixedPrecisionMode } from './mixed-precision.js';
import { constantSchedule, oneCycleSchedule, sgdrSchedule, type OneCycleOptions, type Schedule } from './schedule.js';
import { Loop, predictLoader, type Callback, type EpochRecord, type FitState, type LossFn } from './loop.js';
import { CheckpointCallback, CycleSnapshots, EpochTable, ParamScheduler, ProgressCallback, SaveModelCallback } from './callbacks.js';
import { DivergenceGuardCallback } from './guard.js';
import { LRFinder, LrFinderResult } from './lr-finder.js';
import { accuracy, type Metric } from './metrics.js';
import { crossEntropyLoss } from './losses.js';
import { DistributedDataParallel, gatherRows } from './ddp.js';

/** What a Learner trains on: fastai's DataLoaders, as this library names them. */
export interface LearnerData {
  /** The training batches (shuffled). */
  readonly trnDl: DataLoader;
  /** The validation batches, in order; null for none. */
  readonly valDl: DataLoader | null;
  /** The data's folder: `save(name)` writes under its cache folder. */
  readonly path: string;
  /** Where every loader delivers its batches (image data sets all of its loaders at once). */
  device?: string;
}

/**
 * The optimizer: a name ('sgd' with momentum 0.9, 'adam', 'adamw') or fastai's `opt_func`, a
 * factory given the layer groups (each with its rate and weight decay) and the default rate.
 */
export type OptFunc = 'sgd' | 'adam' | 'adamw' | ((groups: optim.ParamGroupSpec[], defaults: { lr: number }) => optim.Optimizer);

/** Options of a Learner (fastai v2's `Learner(dls, model, loss_func, opt_func, splitter, cbs, metrics, wd)`). */
export interface LearnerOptions {
  /** The loss (default: cross entropy on the model's logits). */
  lossFunc?: LossFn;
  /** The optimizer (default 'sgd'). */
  optFunc?: OptFunc;
  /** Splits the model into layer groups, for freezing and differential rates (default: one group, the whole model). */
  splitter?: (model: nn.Module) => nn.Module[][];
  /** Callbacks added to every fit (e.g. MixUp, CSVLogger). */
  cbs?: Callback[];
  /** Metrics for `fit` when it is not given any (default: accuracy). */
  metrics?: Metric[];
  /** Weight decay for every fit that does not give its own (default 0; 0.01 with AdamW). */
  wd?: number | number[];
  /**
   * Where the model trains and predicts: 'auto' (CUDA when this libtorch has a GPU, the
   * default), 'cpu', 'cuda' or 'cuda:N'. The data's batches are sent there too.
   */
  device?: string;
  /** fastai's to_fp16 / to_bf16: autocast around the forward pass and the loss, with loss scaling for fp16. */
  mixedPrecision?: MixedPrecisionMode;
  /**
   * Train data-parallel in this process group (every rank builds the same learner on data
   * sharded for its rank): fits run with DistributedDataParallel, predictions are gathered
   * from every rank, only rank 0 saves.
   */
  processGroup?: ProcessGroup;
  /** Where progress and epoch rows go (default stdout; null for silence). */
  log?: ((line: string) => void) | null;
}

/** Options of every fit. */
export interface BaseFitOptions {
  /** Weight decay, one for all groups or one per group (default: the learner's `wd`, else 0; 0.01 with AdamW). */
  wd?: number | number[];
  /** @deprecated The old name of `wd`. */
  wds?: number | number[];
  /** Metrics on the validation set after each epoch (default: the learner's). */
  metrics?: Metric[];
  /** Callbacks for this fit only, after the learner's own. */
  cbs?: Callback[];
  /** @deprecated The old name of `cbs`. */
  callbacks?: Callback[];
  /**
   * Stop when the loss becomes NaN or infinite or runs away (the smoothed or
   * validation loss above `runawayFactor` × max(the first loss, 1)), put back the
   * weights of the last good epoch, and throw a TrainingDivergedError (default true).
   */
  guard?: boolean;
  runawayFactor?: number;
  /** Called at the end of every epoch with the state to resume from (save it with the weights). */
  onCheckpoint?: (state: FitState) => Promise<void> | void;
  /** Continues a fit from a checkpoint's state (same data, schedule and model). */
  resume?: FitState;
}

/** Options of `fit`. */
export interface FitOptions extends BaseFitOptions {
  cycleLen?: number;
  cycleMult?: number;
  /** Saves a snapshot at the end of each cycle as `{name}_cyc_{k}`. */
  cycleSaveName?: string;
  /** Saves the model whenever the first metric (or, without metrics, the validation loss) improves, as its direction says. */
  bestSaveName?: string;
}

/** Options of `fineTune` (fastai v2's defaults). */
export interface FineTuneOptions extends BaseFitOptions {
  /** Epochs of the frozen stage (default 1). */
  freezeEpochs?: number;
  /** The body's first group trains lrMult times slower than the head (default 100). */
  lrMult?: number;
  /** The unfrozen stage's warm-up share (default 0.3). */
  pctStart?: number;
  /** The unfrozen stage's divFactor (default 5). */
  divFactor?: number;
  /** @deprecated The old name of `divFactor`. */
  div?: number;
}

/** The data-independent part of a fit, for `runLoop`. */
interface LoopPlan {
  baseLrs: number[];
  nEpochs: (perEpoch: number) => number;
  callbacks: (perEpoch: number) => Callback[];
  opts: BaseFitOptions;
  /** Without the learner's own callbacks (the finder). */
  bare?: boolean;
}

/**
 * fastai v2's Learner: trains `model` on `data` with `lossFunc` and `optFunc`, by layer groups
 * (`splitter`), with callbacks. A convnet written with `nn` trains in a few lines:
 *
 * ```ts
 * const data = { trnDl: new DataLoader(trainSet, { bs: 64, shuffle: true }), valDl: new DataLoader(validSet, { bs: 128 }), path: 'fashion' };
 * const learn = new Learner(data, model, { lossFunc: F.crossEntropy, optFunc: 'adamw' });
 * await learn.fitOneCycle(3e-3, 3);
 * ```
 */
export class Learner<D extends LearnerData = LearnerData> {
  /** Layer groups, first to last: frozen from the start, trained at their own rates. */
  readonly layerGroups: nn.Module[][];
  /** The last learning-rate finder's result. */
  sched: LrFinderResult | null = null;
  /** Callbacks added to every fit. */
  readonly cbs: Callback[];
  readonly lossFunc: LossFn;
  readonly optFunc: OptFunc;
  /** Where the model lives ('cpu', 'cuda:N'). */
  readonly device: string;
  /** Mixed precision for every fit (null: float32). */
  mixedPrecision: MixedPrecisionMode | null;
  readonly pg: ProcessGroup | null;
  protected readonly defaultMetrics: Metric[];
  protected readonly defaultWd: number | number[] | undefined;
  protected readonly log: ((line: string) => void) | null;
  /** Batch norms of every group but the last keep their statistics (see `bnFreeze`). */
  bnFrozen = false;

  constructor(
    public data: D,
    /** The whole network. */
    readonly model: nn.Module,
    options: LearnerOptions = {},
  ) {
    this.layerGroups = options.splitter ? options.splitter(model) : [[model]];
    if (this.layerGroups.length === 0 || this.layerGroups.some((g) => g.length === 0)) throw new RangeError('splitter: every layer group needs at least one module');
    this.lossFunc = options.lossFunc ?? crossEntropyLoss;
    this.optFunc = options.optFunc ?? 'sgd';
    if (typeof this.optFunc === 'string' && !['sgd', 'adam', 'adamw'].includes(this.optFunc)) throw new RangeError(`optFunc must be 'sgd', 'adam', 'adamw' or a function, got '${this.optFunc}'`);
    this.device = resolveDevice(options.device ?? 'auto');
    this.mixedPrecision = options.mixedPrecision ?? null;
    // Fails now, not at the first fit, for a precision this device and libtorch cannot run.
    if (this.mixedPrecision) checkMixedPrecision(this.mixedPrecision, this.device);
    this.model.to(this.device);
    this.sendData(data);
    this.defaultMetrics = options.metrics ?? [accuracy];
    this.defaultWd = options.wd;
    this.cbs = [...(options.cbs ?? [])];
    this.pg = options.processGroup ?? null;
    this.log = options.log === undefined ? (l) => console.log(l) : options.log;
  }

  /** Points the data's loaders at this learner's device. */
  protected sendData(data: LearnerData): void {
    if ('device' in data) data.device = this.device;
    else for (const dl of [data.trnDl, data.valDl]) if (dl) dl.device = this.device;
  }

  /** Freezes every group but the last: only the head trains. */
  freeze(): void {
    this.freezeTo(this.layerGroups.length - 1);
  }

  /** Unfreezes every layer group. */
  unfreeze(): void {
    this.freezeTo(0);
  }

  /** Freezes layer groups before `n`, unfreezes `n` and later. */
  freezeTo(n: number): void {
    this.layerGroups.forEach((g, i) => {
      for (const m of g) m.requiresGrad_(i >= n);
    });
  }

  /** Keeps the batch norm statistics of every group but the last fixed while training (fastai's bn_freeze), or lets unfrozen ones update again. */
  bnFreeze(on: boolean): void {
    this.bnFrozen = on;
  }

  /**
   * Puts the model in training mode, except the batch norm layers of frozen groups (and,
   * with bnFreeze, of every group but the last), which keep their statistics.
   */
  protected trainMode(): void {
    this.model.train();
    const kept = new Set(this.bnFrozen ? this.layerGroups.slice(0, -1).flatMap((g) => g.flatMap((m) => m.modules())) : []);
    for (const m of this.model.modules()) {
      if (!(m instanceof nn.BatchNorm2d || m instanceof nn.BatchNorm1d)) continue;
      if (!m.parameters().some((p) => p.requiresGrad) || kept.has(m)) m.eval();
    }
  }

  /** Where `save` writes names: `$FASTVISION_HOME/cache/<data folder>-<hash>/models`. */
  get modelsDir(): string {
    return cacheDirFor(this.data.path, 'models');
  }

  /** The file a name stands for: a path (with a folder or ending in .pth) as it is, else `{modelsDir}/{name}.pth`. */
  modelFile(name: string): string {
    return isAbsolute(name) || name.includes(sep) || name.includes('/') || name.endsWith('.pth') ? (name.endsWith('.pth') ? name : `${name}.pth`) : join(this.modelsDir, `${name}.pth`);
  }

  /** Saves the model's weights (a PyTorch state dict, atomically) under a name or at a path; returns the file. */
  async save(name: string): Promise<string> {
    const path = this.modelFile(name);
    // Distributed: every rank holds the same weights; rank 0 writes them.
    if (this.pg && this.pg.rank !== 0) return path;
    ensureDir(dirname(path));
    await savePth(path, this.model.stateDict());
    return path;
  }

  /** Loads weights saved by `save(name)` (a name or a path). */
  async load(name: string): Promise<void> {
    const path = this.modelFile(name);
    if (!existsSync(path)) throw new Error(`no saved model '${name}' (looked for ${path})`);
    const state = await loadStateDictFile(path);
    this.model.loadStateDict(state);
    for (const t of state.values()) t.dispose();
  }

  /** Saves the weights as cycle `k`'s snapshot of `name` (what `cycleSaveName` writes). */
  async saveCycle(name: string, k: number): Promise<string> {
    return this.save(`${name}_cyc_${k}`);
  }

  /** Loads cycle `k`'s snapshot of `name`. */
  async loadCycle(name: string, k: number): Promise<void> {
    await this.load(`${name}_cyc_${k}`);
  }

  /** What a fit trains on: the data's loaders and the whole model (a ConvLearner may train its head on cached activations). */
  protected trainingData(): Promise<{ trn: DataLoader; val: DataLoader | null; net: nn.Module }> {
    return Promise.resolve({ trn: this.data.trnDl, val: this.data.valDl, net: this.model });
  }

  private makeOptimizer(lrs: number[], wds: number[]): optim.Optimizer {
    const groups = this.layerGroups.map((g, i) => ({ params: g.flatMap((m) => m.parameters()), lr: lrs[i]!, weightDecay: wds[i]! }));
    const lr = lrs[lrs.length - 1]!;
    if (typeof this.optFunc === 'function') return this.optFunc(groups, { lr });
    if (this.optFunc === 'adam') return new optim.Adam(groups, { lr });
    if (this.optFunc === 'adamw') return new optim.AdamW(groups, { lr });
    return new optim.SGD(groups, { lr, momentum: 0.9 });
  }

  /** One value per layer group from one value or a list of one per group. */
  protected perGroup(v: number | number[], what: string): number[] {
    const n = this.layerGroups.length;
    if (typeof v === 'number') return new Array<number>(n).fill(v);
    if (v.length !== n) throw new Error(`${what}: ${v.length} values for ${n} layer groups`);
    return v;
  }

  /**
   * Runs the loop for `nEpochs(batchesPerEpoch)` epochs with `callbacks(batchesPerEpoch)`
   * (the schedule first) and, unless `bare`, the learner's standard ones: progress
   * bars, the epoch table and the divergence guard.
   */
  private async runLoop(p: LoopPlan): Promise<EpochRecord[]> {
    const { metrics = this.defaultMetrics, guard = true, runawayFactor = 10, onCheckpoint, resume } = p.opts;
    const extra = p.opts.cbs ?? p.opts.callbacks ?? [];
    const decay = this.perGroup(p.opts.wd ?? p.opts.wds ?? this.defaultWd ?? (this.optFunc === 'adamw' ? 0.01 : 0), 'wd');
    const { trn, val, net } = await this.trainingData();
    const perEpoch = trn.length;
    if (perEpoch === 0) throw new Error('fit: the training set gives no batches (no readable images?)');
    const opt = this.makeOptimizer(p.baseLrs, decay);
    // A bare loop (the finder) runs without the learner's own callbacks (loggers, savers).
    const cbs: Callback[] = [...p.callbacks(perEpoch), ...(p.bare ? [] : this.cbs), ...extra];
    if (this.pg && this.pg.worldSize > 1) cbs.push(new DistributedDataParallel(this.pg));
    if (!p.bare) {
      if (this.log) cbs.push(new ProgressCallback(), new EpochTable(this.log));
      if (guard) cbs.push(new DivergenceGuardCallback(runawayFactor));
    }
    if (this.mixedPrecision) cbs.push(new MixedPrecision(this.mixedPrecision, this.device));
    if (onCheckpoint) cbs.push(new CheckpointCallback(onCheckpoint));
    const loop = new Loop({
      net,
      model: this.model,
      saveModel: (name) => this.save(name),
      opt,
      trn,
      val,
      nEpochs: p.nEpochs(perEpoch),
      lossFunc: this.lossFunc,
      metrics,
      callbacks: cbs,
      trainMode: () => this.trainMode(),
      log: this.log,
    });
    try {
      if (resume) {
        if (resume.epoch > loop.nEpochs) throw new Error(`fit: the checkpoint is at epoch ${resume.epoch}, past this schedule's ${loop.nEpochs}`);
        opt.loadStateDict(resume.optimizer);
        setRngState(resume.rng);
        trn.epoch = resume.loaderEpoch;
        loop.restore(resume);
      }
      return await loop.run();
    } catch (e) {
      // The loop has let go of the batch; the caller's checkpoints are untouched.
      if (isOutOfMemory(e)) throw outOfMemory(e, trn.bs, this.device);
      throw e;
    } finally {
      opt.dispose();
    }
  }

  /**
   * Trains. `lrs` is one rate or one per layer group. With `cycleLen`, `nCycle`
   * SGDR cycles (cosine annealing with restarts, each `cycleMult` times longer);
   * without, `nCycle` epochs at a constant rate. Prints a row per epoch and
   * returns them.
   */
  async fit(lrs: number | number[], nCycle: number, opts: FitOptions = {}): Promise<EpochRecord[]> {
    const { cycleLen, cycleMult = 1, cycleSaveName, bestSaveName } = opts;
    const base = this.perGroup(lrs, 'lrs');
    let sched: Schedule | null = null;
    const schedule = (perEpoch: number): Schedule => (sched ??= cycleLen === undefined ? constantSchedule(nCycle, perEpoch) : sgdrSchedule(nCycle, perEpoch, cycleLen, cycleMult));
    const metrics = opts.metrics ?? this.defaultMetrics;
    return this.runLoop({
      baseLrs: base,
      nEpochs: (n) => schedule(n).epochs,
      callbacks: (n) => [
        new ParamScheduler(
          (it) => {
            const m = schedule(n).multipliers;
            return base.map((b) => b * m[Math.min(it, m.length - 1)]!);
          },
          undefined,
          schedule(n).cycleEnds,
        ),
        ...(cycleSaveName ? [new CycleSnapshots((k) => this.saveCycle(cycleSaveName, k))] : []),
        // The best by the first metric in its own direction (an error rate goes down), else by the validation loss.
        ...(bestSaveName ? [new SaveModelCallback({ monitor: metrics[0]?.name ?? 'val_loss', fname: bestSaveName, restoreBest: false })] : []),
      ],
      opts,
    });
  }

  /**
   * fastai v2's fit_one_cycle: `epochs` epochs with the rate warming up from
   * lrMax/divFactor to lrMax (one per group, or [first, last] spread over the
   * groups) and annealing to lrMax/finalDiv, momentum moving the other way.
   */
  async fitOneCycle(lrMax: number | number[], epochs: number, opts: BaseFitOptions & OneCycleOptions = {}): Promise<EpochRecord[]> {
    if (!(Number.isInteger(epochs) && epochs >= 1)) throw new RangeError(`fitOneCycle: epochs must be a positive integer, got ${epochs}`);
    const base = this.rates(lrMax);
    return this.runLoop({
      baseLrs: base,
      nEpochs: () => epochs,
      callbacks: (n) => {
        const s = oneCycleSchedule(epochs * n, opts);
        return [new ParamScheduler((it) => base.map((b) => b * s.lr(it)), s.mom)];
      },
      opts,
    });
  }

  /**
   * fastai v2's fine_tune: `freezeEpochs` one-cycle epochs of the head (warm-up
   * 99%), then, unfrozen, `epochs` one-cycle epochs at baseLr/2 for the head and
   * baseLr/2/lrMult for the body's first group (pctStart 0.3, divFactor 5).
   */
  async fineTune(epochs: number, baseLr = 2e-3, opts: FineTuneOptions = {}): Promise<EpochRecord[]> {
    const { freezeEpochs, lrMult, pctStart, div, divFactor = div, ...rest } = opts;
    const records: EpochRecord[] = [];
    for (const st of fineTuneSchedule(this.layerGroups.length, epochs, baseLr, { freezeEpochs, lrMult, pctStart, divFactor })) {
      if (st.train === 'head') this.freeze();
      else this.unfreeze();
      if (st.epochs > 0) records.push(...(await this.fitOneCycle(st.lrs, st.epochs, { ...rest, pctStart: st.pctStart, divFactor: st.divFactor })));
    }
    return records;
  }

  /** Rates per layer group: one for all, one per group, or (fastai's slice(a, b)) [first, last] spread geometrically over the groups. */
  rates(lr: number | number[]): number[] {
    const n = this.layerGroups.length;
    if (typeof lr !== 'number' && lr.length === 2 && n !== 2) return spreadRates(lr[0]!, lr[1]!, n);
    return this.perGroup(lr, 'lrs');
  }

  /**
   * The learning-rate finder: `numIt` mini-batches (default one pass over the
   * training data, passing over it as often as needed) of the ordinary loop with
   * the rate growing from startLr to endLr (exponentially, or linearly), stopping
   * when the smoothed loss exceeds 4× its best; the weights are restored after.
   * `result.suggestion(rule)` suggests a rate.
   */
  async lrFind({ startLr = 1e-5, endLr = 10, linear = false, numIt }: { startLr?: number | number[]; endLr?: number; linear?: boolean; numIt?: number } = {}): Promise<LrFinderResult> {
    if (numIt !== undefined && !(Number.isInteger(numIt) && numIt >= 2)) throw new RangeError(`lrFind: numIt must be an integer of at least 2, got ${numIt}`);
    const starts = this.perGroup(startLr, 'startLr');
    const made: LRFinder[] = [];
    await this.runLoop({
      baseLrs: starts,
      // Enough passes for numIt batches; the finder cancels the fit once they are done.
      nEpochs: (perEpoch) => Math.ceil((numIt ?? perEpoch) / Math.max(1, perEpoch)) + 1,
      callbacks: (perEpoch) => {
        const nb = numIt ?? perEpoch;
        const finder = new LRFinder({ startLr: starts, endLr, linear, numIt: nb });
        made.push(finder);
        return [finder, ...(this.log ? [new ProgressCallback({ label: 'learning-rate finder', total: nb })] : [])];
      },
      opts: { wd: 0 },
      bare: true,
    });
    this.sched = made[0]!.result();
    return this.sched;
  }

  /** The network's outputs (no gradient, evaluation mode) for a batch already as a tensor. */
  predictArray(x: Tensor): Tensor {
    this.model.eval();
    return noGrad(() => this.model.forward(x));
  }

  /** The model's outputs and the targets for every batch of `dl`, in order (gathered from every rank when distributed). */
  async getPreds(dl: DataLoader | null = this.data.valDl, label?: string): Promise<{ out: Tensor; y: Tensor }> {
    if (!dl) throw new Error('getPreds: no validation set');
    const bar = this.log && label ? progress(label, dl.length) : null;
    let r: { out: Tensor; y: Tensor };
    try {
      r = await predictLoader(this.model, dl, () => bar?.tick());
    } finally {
      bar?.stop();
    }
    const pg = this.pg;
    if (!pg || pg.worldSize === 1) return r;
    // Each rank predicted its share: gather them all, in order.
    try {
      return { out: await gatherRows(pg, r.out), y: await gatherRows(pg, r.y) };
    } finally {
      r.out.dispose();
      r.y.dispose();
    }
  }
}

/** One stage of fastai v2's fine_tune: which layers train, for how many one-cycle epochs, at what rates. */
export interface FineTuneStage {
  train: 'head' | 'all';
  epochs: number;
  /** One rate per layer group. */
  lrs: number[];
  pctStart: number;
  divFactor: number;
}

/**
 * fastai v2's fine_tune as data, for `groups` layer groups: the head for `freezeEpochs` one-cycle
 * epochs at baseLr (earlier groups, frozen, at a tenth; warm-up 99%), then every group for
 * `epochs` at baseLr/2 for the head down to baseLr/2/lrMult for the first group, spread
 * geometrically (pctStart 0.3, divFactor 5). `Learner.fineTune` and `fastvision train
 * --recipe fine-tune` both run it.
 */
export function fineTuneSchedule(
  groups: number,
  epochs: number,
  baseLr = 2e-3,
  { freezeEpochs = 1, lrMult = 100, pctStart = 0.3, divFactor = 5 }: { freezeEpochs?: number; lrMult?: number; pctStart?: number; divFactor?: number } = {},
): [FineTuneStage, FineTuneStage] {
  if (!(Number.isInteger(epochs) && epochs >= 0)) throw new RangeError(`fineTune: epochs must be a non-negative integer, got ${epochs}`);
  if (!(Number.isInteger(freezeEpochs) && freezeEpochs >= 0)) throw new RangeError(`fineTune: freezeEpochs must be a non-negative integer, got ${freezeEpochs}`);
  const lr = baseLr / 2;
  return [
    { train: 'head', epochs: freezeEpochs, lrs: Array.from({ length: groups }, (_, i) => (i === groups - 1 ? baseLr : baseLr / 10)), pctStart: 0.99, divFactor: 25 },
    { train: 'all', epochs, lrs: spreadRates(lr / lrMult, lr, groups), pctStart, divFactor },
  ];
}

/** fastai's slice(a, b): `groups` rates from a (the first group) to b (the last), spread geometrically; one group takes b. */
export function spreadRates(a: number, b: number, groups: number): number[] {
  return groups === 1 ? [b] : Array.from({ length: groups }, (_, i) => a * (b / a) ** (i / (groups - 1)));
}
