// ConvLearner: a pretrained body with fast.ai's head, layer groups for freezing
// and differential learning rates, precomputed activations, and the fits built
// on the one loop (loop.ts) with callbacks: fit (SGDR or constant),
// fitOneCycle, fineTune, lrFind; save/load; prediction, TTA and ensembles.
import { outOfMemory } from './memory.js';
import { saveModel } from './saved-model.js';
import { unfreezePlan, type UnfreezeChoices, type UnfreezePlan } from './unfreeze-plan.js';
import { loadTransformed } from '../vision/augment.js';
import { existsSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, sep } from 'node:path';
import { ensureDir } from '../util/files.js';
import {
  channelsLastConvIsSound,
  getNumThreads,
  isOutOfMemory,
  libtorchVersion,
  loadStateDictFile,
  nn,
  noGrad,
  optim,
  resolveDevice,
  savePth,
  setRngState,
  tensor,
  type Tensor,
} from '../torch/index.js';
import { checkMixedPrecision, MixedPrecision, type MixedPrecisionMode } from './mixed-precision.js';
import { bodyGroups, type Arch, type ArchLike } from '../vision/models/archs.js';
import { cacheDirFor, ImageClassifierData } from '../vision/data.js';
import { FilesDataset } from '../vision/dataset.js';
import type { DataLoader } from '../vision/loader.js';
import { progress } from '../util/progress.js';
import { buildClassifier, type Classifier, type ClassifierOptions } from './head.js';
import { activationsKey, cachedActivations, computeActivations, stateHash, type Activations } from './activations.js';
import { constantSchedule, oneCycleSchedule, sgdrSchedule, type OneCycleOptions, type Schedule } from './schedule.js';
import { Loop, predictLoader, type Callback, type EpochRecord, type FitState, type LossFn } from './loop.js';
import { CheckpointCallback, CycleSnapshots, EpochTable, ParamScheduler, ProgressCallback, SaveModelCallback } from './callbacks.js';
import { DivergenceGuardCallback } from './guard.js';
import { LRFinder, LrFinderResult } from './lr-finder.js';
import { accuracy, accuracyThresh, fbeta, type Metric } from './metrics.js';
import { bceWithLogits, nllLoss } from './losses.js';
import { averageProbabilities, keepingWeights, type Probabilities } from './predict.js';
import { gradCam, type CamMaps } from './gradcam.js';
import { DistributedDataParallel, gatherRows } from './ddp.js';
import type { ProcessGroup } from '../torch/distributed.js';

/** Options of `ConvLearner.pretrained`: the network's shape (ClassifierOptions) and how it trains. */
export interface ConvLearnerOptions extends ClassifierOptions {
  /** Train the head on cached body activations (no augmentation) until turned off. */
  precompute?: boolean;
  /** 'sgd' (momentum 0.9, the default), 'adam', or 'adamw' (decoupled weight decay, fastai v2's default). */
  optFn?: 'sgd' | 'adam' | 'adamw';
  /**
   * The layout of the network's 4-d weights, and so of its activations: 'channelsLast'
   * (NHWC, the default: oneDNN's convolutions prefer it, and a ResNet-18 training step
   * takes ~0.91 of the NCHW time on libtorch 2.6 and 1.13 here; see BENCHMARKS.md) or
   * 'contiguous' (NCHW). Results agree within floating-point rounding; files are the same.
   * Where the libtorch computes channels-last convolutions wrongly (`channelsLastConvIsSound`:
   * Debian 13's 2.6 on AVX-512 with several threads), the default on the CPU is 'contiguous'.
   */
  memoryFormat?: 'channelsLast' | 'contiguous';
  /** Metrics for `fit` when it is not given any (default: accuracy; multi-label: accuracy and F2 at a threshold of 0.2). */
  metrics?: Metric[];
  /** The loss (default: NLL of the LogSoftmax head; multi-label: binary cross entropy on logits). */
  lossFn?: LossFn;
  /** Callbacks added to every fit (e.g. MixUp, CSVLogger). */
  cbs?: Callback[];
  /** Where progress and epoch rows go (default stdout; null for silence). */
  log?: ((line: string) => void) | null;
  /**
   * Train data-parallel in this process group (every rank builds the same learner
   * on data sharded for its rank): fits run with DistributedDataParallel,
   * predictions and activations are gathered from every rank, only rank 0 saves.
   */
  processGroup?: ProcessGroup;
  /**
   * Where the network trains and predicts: 'auto' (CUDA when this libtorch has a GPU, the
   * default), 'cpu', 'cuda' or 'cuda:N'. The data's batches are sent there too. Asking for
   * a GPU that is not there throws a DeviceUnavailableError naming `fastvision doctor`.
   */
  device?: string;
  /**
   * Mixed precision, as fastai's to_fp16: the forward pass and loss under autocast in
   * bf16, or in fp16 with dynamic loss scaling (PyTorch's GradScaler). Weights stay float32.
   */
  mixedPrecision?: MixedPrecisionMode;
}

/** What `learn.predict` says of one image (fastai's learn.predict, by name). */
export interface ImagePrediction {
  /** The most probable class. */
  label: string;
  /** Its probability. */
  probability: number;
  /** Every class's probability, in `learn.data.classes`' order. */
  probs: number[];
  /** Multi-label models: the tags above the learner's threshold, most probable first. */
  labels?: string[];
}

/** Options of every fit. */
export interface BaseFitOptions {
  /** Weight decay, one for all groups or one per group (default 0; 0.01 with AdamW). */
  wds?: number | number[];
  /** Metrics on the validation set after each epoch (default: the learner's). */
  metrics?: Metric[];
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
  div?: number;
}

let warnedChannelsLast = false;

/** Says once per process that channels-last was asked for where it computes wrongly. */
function warnUnsoundChannelsLast(): void {
  if (warnedChannelsLast) return;
  warnedChannelsLast = true;
  console.warn(
    `warning: this libtorch (${libtorchVersion()}, ${getNumThreads()} threads) computes some channels-last convolutions wrongly (1×1 kernels over small images); memoryFormat 'contiguous' avoids it, and is what ConvLearner picks by default here`,
  );
}

/** Image classifier: a pretrained convolutional body and a new head. */
export class ConvLearner {
  /** The whole network: `body` then `pool` (concat pooling + flatten) then `head`. */
  readonly model: nn.Sequential;
  /** Layer groups: body's early layers, body's later layers, the head. */
  readonly layerGroups: nn.Module[][];
  /** The last `lrFind` result. */
  sched: LrFinderResult | null = null;
  /** Keep every batch norm layer's statistics fixed, even in unfrozen groups (fast.ai's bn_freeze). */
  bnFrozen = false;
  /** Callbacks added to every fit. */
  readonly cbs: Callback[];
  /** Outputs are independent sigmoids (tags), not a softmax over classes. */
  readonly multiLabel: boolean;
  readonly lossFn: LossFn;
  private precomputed: { trn: Activations; val: Activations | null } | null = null;
  private precomputeOn: boolean;
  private readonly optFn: 'sgd' | 'adam' | 'adamw';
  /** The layout of the network's 4-d weights and activations (ConvLearnerOptions.memoryFormat). */
  readonly memoryFormat: 'channelsLast' | 'contiguous';
  private readonly defaultMetrics: Metric[];
  private readonly log: ((line: string) => void) | null;
  /** The process group of distributed training (null: this process alone). */
  readonly pg: ProcessGroup | null;
  /** Where the network lives and its batches go ('cpu' or 'cuda:N'). */
  readonly device: string;
  /** Mixed precision in every fit (null: float32). */
  mixedPrecision: MixedPrecisionMode | null;

  readonly arch: Arch;
  readonly body: nn.Module;
  readonly pool: nn.Sequential;
  readonly head: nn.Module;
  /** fast.ai's head as built: hidden layer sizes and dropouts (null for a custom head). */
  readonly headSpec: { xtraFc: number[]; ps: number[] } | null;

  private constructor(
    c: Classifier,
    public data: ImageClassifierData,
    options: ConvLearnerOptions,
  ) {
    ({ arch: this.arch, body: this.body, pool: this.pool, head: this.head, model: this.model, headSpec: this.headSpec } = c);
    const [early, late] = bodyGroups(this.arch, this.body);
    this.layerGroups = [early, late, [this.head]];
    this.multiLabel = options.multiLabel ?? false;
    this.precomputeOn = options.precompute ?? false;
    this.optFn = options.optFn ?? 'sgd';
    this.device = resolveDevice(options.device ?? data.options.device ?? 'auto');
    this.mixedPrecision = options.mixedPrecision ?? null;
    // Fails now, not at the first fit, for a precision this device and libtorch cannot run.
    if (this.mixedPrecision) checkMixedPrecision(this.mixedPrecision, this.device);
    this.model.to(this.device);
    data.device = this.device;
    // Channels-last is faster (0.91 of NCHW's step here; cuDNN prefers it under autocast), but
    // some libtorch builds compute it wrongly on the CPU (the probe runs there).
    const sound = this.device !== 'cpu' || channelsLastConvIsSound();
    this.memoryFormat = options.memoryFormat ?? (sound ? 'channelsLast' : 'contiguous');
    if (this.memoryFormat === 'channelsLast' && !sound) warnUnsoundChannelsLast();
    if (this.memoryFormat !== 'channelsLast' && this.memoryFormat !== 'contiguous') throw new Error(`memoryFormat must be 'channelsLast' or 'contiguous', got '${String(this.memoryFormat)}'`);
    // Before any optimizer exists: parameters change layout in place, keeping their identity.
    if (this.memoryFormat === 'channelsLast') this.model.toMemoryFormat('channelsLast');
    // fastai's planet lesson: accuracy and F2 at a threshold of 0.2 for tags.
    this.defaultMetrics = options.metrics ?? (this.multiLabel ? [accuracyThresh(0.2), fbeta(2, 0.2)] : [accuracy]);
    this.lossFn = options.lossFn ?? (this.multiLabel ? bceWithLogits : nllLoss);
    this.cbs = [...(options.cbs ?? [])];
    this.pg = options.processGroup ?? null;
    if (this.pg && this.pg.worldSize > 1) {
      const s = data.options.shard;
      if (!s || s.rank !== this.pg.rank || s.worldSize !== this.pg.worldSize)
        throw new Error(`distributed learner: the data must be sharded for rank ${this.pg.rank} of ${this.pg.worldSize} (pass shard: { rank, worldSize } when creating it)`);
    }
    this.log = options.log === undefined ? (l) => console.log(l) : options.log;
    this.freeze();
  }

  /** Builds a learner on `arch`'s pretrained body for `data` (fast.ai's ConvLearner.pretrained). */
  static async pretrained(arch: ArchLike, data: ImageClassifierData, options: ConvLearnerOptions = {}): Promise<ConvLearner> {
    const multiLabel = options.multiLabel ?? data.multiLabel;
    return new ConvLearner(await buildClassifier(arch, data.c, { ...options, multiLabel }), data, { ...options, multiLabel });
  }

  /** Whether training runs on cached body activations (turning it on computes them). */
  get precompute(): boolean {
    return this.precomputeOn;
  }

  set precompute(on: boolean) {
    this.precomputeOn = on;
  }

  /** Freezes the whole body (the default): only the head trains. */
  freeze(): void {
    this.freezeTo(this.layerGroups.length - 1);
  }

  /** Unfreezes every layer group; precompute is turned off, since the body now changes. */
  unfreeze(): void {
    this.freezeTo(0);
    this.precomputeOn = false;
  }

  /**
   * Unfreezes as `fastvision train` does: the architecture's measured advice on batch-norm
   * statistics and the head's rate, unless `choices` decide (see `unfreezePlan`). Returns
   * the plan: fit at `plan.lr` for the head (and the body's groups below it).
   */
  unfreezeAsAdvised(lr: number, choices: UnfreezeChoices = {}): UnfreezePlan {
    const plan = unfreezePlan(this.arch, lr, choices);
    this.unfreeze();
    this.bnFreeze(plan.bnFreeze);
    return plan;
  }

  /** Freezes layer groups before `n`, unfreezes `n` and later. */
  freezeTo(n: number): void {
    this.layerGroups.forEach((g, i) => {
      for (const m of g) m.requiresGrad_(i >= n);
    });
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

  /** Switches to new data (e.g. larger images for progressive resizing), re-frozen as after `pretrained`. */
  setData(data: ImageClassifierData): void {
    if (data.c !== this.data.c) throw new Error(`setData: the new data has ${data.c} classes, the model ${this.data.c}`);
    this.data = data;
    data.device = this.device;
    this.disposePrecomputed();
    this.freeze();
  }

  private disposePrecomputed(): void {
    if (this.precomputed) {
      for (const a of [this.precomputed.trn, this.precomputed.val]) a?.x.dispose();
      this.precomputed = null;
    }
  }

  /** Keeps the body's batch norm statistics fixed while training (or lets unfrozen ones update again). */
  bnFreeze(on: boolean): void {
    this.bnFrozen = on;
  }

  /**
   * Puts the model in training mode, except the batch norm layers of frozen
   * groups (and, with bnFreeze, of the whole body), which keep their statistics.
   */
  private trainMode(): void {
    this.model.train();
    const bodyModules = new Set(this.body.modules());
    for (const m of this.model.modules()) {
      if (!(m instanceof nn.BatchNorm2d || m instanceof nn.BatchNorm1d)) continue;
      if (!m.parameters().some((p) => p.requiresGrad) || (this.bnFrozen && bodyModules.has(m))) m.eval();
    }
  }

  private features(x: Tensor): Tensor {
    return nn.pipe(x, this.body, this.pool);
  }

  /**
   * Computes (or loads from the cache) the body's activations for the training and
   * validation sets. The cache is keyed on the architecture, the transform, the
   * body's weights and each file's size and modification time.
   */
  async precomputeActivations(): Promise<void> {
    if (this.precomputed) return;
    const d = this.data;
    const dir = cacheDirFor(d.path, 'tmp');
    const weights = stateHash(this.body);
    const features = (x: Tensor): Tensor => this.features(x);
    const one = async (split: string, ds: FilesDataset, dl: DataLoader): Promise<Activations> => {
      this.model.eval();
      const pg = this.pg;
      if (pg && pg.worldSize > 1) {
        // Each rank computes its share; every rank gets all of them, in order (no cache: the shares differ).
        const mine = await computeActivations(features, dl, this.log ? `precomputing ${split} activations (rank ${pg.rank}'s share)` : null);
        const x = await gatherRows(pg, mine.x);
        const idx = tensor(Float32Array.from(mine.indices), { device: pg.device });
        const all = await gatherRows(pg, idx);
        const indices = all.toArray();
        for (const t of [mine.x, idx, all]) t.dispose();
        return { x, indices };
      }
      const key = activationsKey({ arch: this.arch.name, transform: dl.transform!, weights, split, ds });
      return cachedActivations(dir, key, ds, () => computeActivations(features, dl, this.log ? `precomputing ${split} activations` : null), undefined, this.device);
    };
    const trn = await one('trn', d.trnDs as FilesDataset, d.fixDl!);
    const val = d.valDs instanceof FilesDataset && d.valDl ? await one('val', d.valDs, d.valDl) : null;
    this.precomputed = { trn, val };
  }

  private async trainingData(): Promise<{ trn: DataLoader; val: DataLoader | null; net: nn.Module }> {
    if (!this.precomputeOn) return { trn: this.data.trnDl, val: this.data.valDl, net: this.model };
    await this.precomputeActivations();
    const p = this.precomputed!;
    // Rows are the images that could be read: each takes its own image's label(s).
    const labelsOf = (a: Activations, ds: FilesDataset): number[] | number[][] => (ds.tags ? a.indices.map((i) => ds.tags![i]!) : a.indices.map((i) => ds.labels[i]!));
    const arrays = ImageClassifierData.fromArrays(
      this.data.path,
      [p.trn.x, labelsOf(p.trn, this.data.trnDs as FilesDataset)],
      p.val && this.data.valDs ? [p.val.x, labelsOf(p.val, this.data.valDs as FilesDataset)] : null,
      this.data.classes,
      { bs: this.data.bs, seed: this.data.options.seed, shard: this.data.options.shard, device: this.device },
    );
    return { trn: arrays.trnDl, val: arrays.valDl, net: this.head };
  }

  private makeOptimizer(lrs: number[], wds: number[]): optim.Optimizer {
    const groups = this.layerGroups.map((g, i) => ({ params: g.flatMap((m) => m.parameters()), lr: lrs[i]!, weightDecay: wds[i]! }));
    const lr = lrs[lrs.length - 1]!;
    if (this.optFn === 'adam') return new optim.Adam(groups, { lr });
    if (this.optFn === 'adamw') return new optim.AdamW(groups, { lr });
    return new optim.SGD(groups, { lr, momentum: 0.9 });
  }

  /** One value per layer group from one value, a list of one per group, or (fastai's slice) [first, last] spread geometrically. */
  private perGroup(v: number | number[], what: string): number[] {
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
  private async runLoop(p: { baseLrs: number[]; nEpochs: (perEpoch: number) => number; callbacks: (perEpoch: number) => Callback[]; opts: BaseFitOptions; bare?: boolean }): Promise<EpochRecord[]> {
    const { metrics = this.defaultMetrics, callbacks = [], guard = true, runawayFactor = 10, onCheckpoint, resume } = p.opts;
    const decay = this.perGroup(p.opts.wds ?? (this.optFn === 'adamw' ? 0.01 : 0), 'wds');
    const { trn, val, net } = await this.trainingData();
    const perEpoch = trn.length;
    if (perEpoch === 0) throw new Error('fit: the training set gives no batches (no readable images?)');
    const opt = this.makeOptimizer(p.baseLrs, decay);
    // A bare loop (the finder) runs without the learner's own callbacks (loggers, savers).
    const cbs: Callback[] = [...p.callbacks(perEpoch), ...(p.bare ? [] : this.cbs), ...callbacks];
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
      lossFn: this.lossFn,
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
    const { freezeEpochs = 1, lrMult = 100, pctStart = 0.3, div = 5, ...rest } = opts;
    this.freeze();
    // fastai's slice(baseLr): the head at baseLr, earlier groups (frozen here) at a tenth.
    const n = this.layerGroups.length;
    const first =
      freezeEpochs > 0
        ? await this.fitOneCycle(
            Array.from({ length: n }, (_, i) => (i === n - 1 ? baseLr : baseLr / 10)),
            freezeEpochs,
            { ...rest, pctStart: 0.99 },
          )
        : [];
    const lr = baseLr / 2;
    this.unfreeze();
    const second = await this.fitOneCycle([lr / lrMult, lr], epochs, { ...rest, pctStart, divFactor: div });
    return [...first, ...second];
  }

  /** Rates per layer group: one for all, one per group, or (fastai's slice(a, b)) [first, last] spread geometrically over the groups. */
  rates(lr: number | number[]): number[] {
    const n = this.layerGroups.length;
    if (typeof lr !== 'number' && lr.length === 2 && n !== 2) {
      const [a, b] = lr as [number, number];
      return Array.from({ length: n }, (_, i) => a * (b / a) ** (i / (n - 1)));
    }
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
      opts: { wds: 0 },
      bare: true,
    });
    this.sched = made[0]!.result();
    return this.sched;
  }

  /**
   * Grad-CAM heatmaps of images `x` (N×3×H×W, normalized): for each, where the
   * body's last feature maps respond to `classes[i]` (default: the predicted class).
   */
  gradCam(x: Tensor, classes?: number[]): CamMaps & { classes: number[] } {
    const picked =
      classes ??
      noGrad(() => {
        const out = this.predictArray(x);
        const top = out.argmax(1);
        const v = top.toArray();
        out.dispose();
        top.dispose();
        return v;
      });
    return { ...gradCam({ body: this.body, pool: this.pool, head: this.head }, x, picked), classes: picked };
  }

  /** The tag threshold of a multi-label learner's `predict` and `export` (0.5 until set, e.g. to the one chosen on validation). */
  threshold = 0.5;

  /**
   * `predict(image)`: classifies one image, a path or a file's bytes, as fastai's `learn.predict`: the
   * validation transform (torchvision's Resize + CenterCrop at the data's size), the
   * network in evaluation mode on the learner's device. Unreadable images throw a
   * BadImageError naming the file.
   */
  private async predictImage(image: string | Uint8Array): Promise<ImagePrediction> {
    const t = this.data.tfms?.val;
    if (!t) throw new Error('predict: the learner’s data has no transforms (image data made with tfmsFromModel)');
    const pixels = new Float32Array(3 * t.sz * t.sz);
    await loadTransformed(typeof image === 'string' ? image : Buffer.from(image.buffer, image.byteOffset, image.byteLength), t, () => 0.5, pixels, 0);
    this.model.eval();
    const probs = noGrad(() => {
      const x = tensor(pixels, { shape: [1, 3, t.sz, t.sz], device: this.device });
      const input = this.memoryFormat === 'channelsLast' ? x.contiguous('channelsLast') : x;
      const out = this.model.forward(input);
      const p = this.probabilities(out.float());
      const values = Array.from(p.dataSync() as Float32Array);
      for (const u of new Set([x, input, out, p])) u.dispose();
      return values;
    });
    const best = probs.reduce((b, v, i) => (v > probs[b]! ? i : b), 0);
    const classes = this.data.classes;
    const result: ImagePrediction = { label: classes[best]!, probability: probs[best]!, probs };
    if (this.multiLabel)
      result.labels = probs
        .map((p, i) => ({ p, i }))
        .filter((e) => e.p > this.threshold)
        .sort((a, b) => b.p - a.p)
        .map((e) => classes[e.i]!);
    return result;
  }

  /**
   * Writes the self-describing model file (fastai's `learn.export`): the weights as a PyTorch
   * state dict carrying the architecture, classes, size and head, and the same description
   * beside it as `.json`. `loadLearner(path)` reads it back; `fastvision predict`, `export`
   * and `serve` take it. Returns the `.pth` path.
   */
  async export(path = 'model.pth'): Promise<string> {
    const size = this.data.sz;
    if (size === undefined) throw new Error('export: the learner’s data has no image size (image data made with tfmsFromModel)');
    const file = path.endsWith('.pth') ? path : `${path}.pth`;
    ensureDir(dirname(file));
    const { model } = await saveModel(dirname(file), this, size, { name: basename(file, '.pth'), threshold: this.multiLabel ? this.threshold : undefined });
    return model;
  }

  /** Turns the network's outputs into probabilities: exp of log-probabilities, or sigmoids of multi-label logits. */
  probabilities(out: Tensor): Tensor {
    return noGrad(() => (this.multiLabel ? out.sigmoid() : out.exp()));
  }

  /** The network's outputs for the validation (or test) set, in order, with the targets. */
  async predictWithTargets(isTest = false): Promise<{ logProbs: Tensor; y: Tensor }> {
    const dl = isTest ? this.data.testDl : this.data.valDl;
    if (!dl) throw new Error(isTest ? 'no test set: pass testName when creating the data' : 'no validation set');
    const { out, y } = await this.predictOn(dl, `predicting the ${isTest ? 'test' : 'validation'} set`);
    return { logProbs: out, y };
  }

  /** The lesson's form: the network's outputs (log-probabilities; multi-label: logits) for the validation (or test) set, in order. */
  predict(isTest?: boolean): Promise<Tensor>;
  /** fastai v2's form: one image (a path or a file's bytes) classified, as `{ label, probability, probs }`. */
  predict(image: string | Uint8Array): Promise<ImagePrediction>;
  async predict(what: boolean | string | Uint8Array = false): Promise<Tensor | ImagePrediction> {
    if (typeof what !== 'boolean') return this.predictImage(what);
    const { logProbs, y } = await this.predictWithTargets(what);
    y.dispose();
    return logProbs;
  }

  /** The network's outputs for a batch of images already as a tensor (N×3×H×W, normalized). */
  predictArray(x: Tensor): Tensor {
    this.model.eval();
    return noGrad(() => this.model.forward(x));
  }

  private async predictOn(dl: DataLoader, label?: string): Promise<{ out: Tensor; y: Tensor }> {
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

  private async probsOn(dl: DataLoader, label?: string): Promise<Probabilities> {
    const { out, y } = await this.predictOn(dl, label);
    const probs = this.probabilities(out);
    out.dispose();
    return { probs, y };
  }

  /**
   * Probabilities averaged over saved snapshots (e.g. the `cycleSaveName` ones: an
   * ensemble), for the validation or test set; the current weights are restored after.
   */
  async predictEnsemble(names: string[], { isTest = false, tta }: { isTest?: boolean; tta?: { nAug: number } } = {}): Promise<Probabilities> {
    if (names.length === 0) throw new Error('predictEnsemble: no snapshot names');
    return keepingWeights(this.model, () =>
      averageProbabilities(names.length, async (k) => {
        await this.load(names[k]!);
        return tta ? this.TTA({ nAug: tta.nAug, isTest }) : this.probsOn(this.loaderFor(isTest).plain);
      }),
    );
  }

  private loaderFor(isTest: boolean): { plain: DataLoader; aug: DataLoader } {
    const plain = isTest ? this.data.testDl : this.data.valDl;
    const aug = isTest ? this.data.testAugDl : this.data.augDl;
    if (!plain || !aug) throw new Error(isTest ? 'no test set: pass testName when creating the data' : 'no validation set');
    return { plain, aug };
  }

  /**
   * Test-time augmentation: probabilities averaged over the original images and
   * `nAug` augmented versions (the training transforms), for validation or test.
   */
  async TTA({ nAug = 4, isTest = false }: { nAug?: number; isTest?: boolean } = {}): Promise<Probabilities> {
    const { plain, aug } = this.loaderFor(isTest);
    return averageProbabilities(nAug + 1, (k) => this.probsOn(k === 0 ? plain : aug, `TTA pass ${k + 1}/${nAug + 1}`));
  }
}

/**
 * fastai v2's `vision_learner(dls, arch)`: `arch`'s pretrained body with a new head for `data`,
 * frozen but for the head. The same learner as `ConvLearner.pretrained(arch, data, options)`.
 *
 * ```ts
 * const learn = await visionLearner(data, mobilenet_v2_nsfwjs);
 * await learn.fineTune(3);
 * ```
 */
export function visionLearner(data: ImageClassifierData, arch: ArchLike, options: ConvLearnerOptions = {}): Promise<ConvLearner> {
  return ConvLearner.pretrained(arch, data, options);
}
