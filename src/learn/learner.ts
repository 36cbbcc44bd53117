// ConvLearner: an ImageNet-pretrained body with fast.ai's head, layer groups for
// freezing and differential learning rates, precomputed activations, the fit loop
// with SGDR, the learning-rate finder, save/load, prediction and TTA.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  cat,
  F,
  getRngState,
  loadStateDictFile,
  nn,
  noGrad,
  optim,
  savePth,
  setRngState,
  tensor,
  tidy,
  type Tensor,
} from '../torch/index.js';
import { bodyGroups, type Arch, type ArchLike } from '../vision/models/archs.js';
import { buildClassifier, type Classifier, type ClassifierOptions } from './head.js';
import { cacheDirFor, ImageClassifierData } from '../vision/data.js';
import { FilesDataset } from '../vision/dataset.js';
import type { DataLoader } from '../vision/loader.js';
import { progress } from '../util/progress.js';
import { writeFileAtomic } from '../util/files.js';
import { lrFinderSpec, renderChart, scheduleSpec } from '../report/charts.js';
import { DivergenceGuard, TrainingDivergedError } from './guard.js';
import { activationsKey, cachedActivations, computeActivations, stateHash, type Activations } from './activations.js';
import { constantSchedule, lrFinderMultiplier, sgdrSchedule, SmoothedLoss, type Schedule } from './schedule.js';

/** Options of `ConvLearner.pretrained`: the network's shape (ClassifierOptions) and how it trains. */
export interface ConvLearnerOptions extends ClassifierOptions {
  /** Train the head on cached body activations (no augmentation) until turned off. */
  precompute?: boolean;
  /** 'sgd' (momentum 0.9, the default) or 'adam'. */
  optFn?: 'sgd' | 'adam';
  /** Metrics for `fit` when it is not given any (default: accuracy). */
  metrics?: Metric[];
  /** Where progress and epoch rows go (default stdout; null for silence). */
  log?: ((line: string) => void) | null;
}

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

/** A metric computed on the validation set: log-probabilities and targets in, a number out. */
export type Metric = { name: string; fn: (logProbs: Tensor, y: Tensor) => number };

/** Accuracy: the share of argmax predictions equal to the target. */
export const accuracy: Metric = { name: 'accuracy', fn: (lp, y) => tidy(() => lp.argmax(1).eq(y).float().mean().item()) };

/** Hooks into the training loop; `onBatchEnd` returning true stops training. */
export interface Callback {
  onTrainBegin?(): void;
  onBatchEnd?(info: { iteration: number; loss: number; smoothedLoss: number; lrs: number[] }): boolean | void;
  onEpochEnd?(record: EpochRecord): void;
  onCycleEnd?(cycle: number): void;
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
  /** SGDR cycles completed. */
  cycle: number;
  /** The smoothed training loss's running state. */
  smoothed: { avg: number; n: number };
  /** The training loader's pass counter (its shuffling and augmentation are seeded by it). */
  loaderEpoch: number;
  /** The rows of the epochs completed. */
  history: EpochRecord[];
  /** The best score so far of `bestSaveName` (lower is better). */
  best: number;
  optimizer: optim.OptimizerStateDict;
  /** libtorch's random generator (dropout masks). */
  rng: Tensor;
}

/** Options of `fit`. */
export interface FitOptions {
  cycleLen?: number;
  cycleMult?: number;
  /** Saves a snapshot at the end of each cycle as `{name}_cyc_{k}`. */
  cycleSaveName?: string;
  /** Saves the model whenever the first metric (or, without metrics, the validation loss) improves. */
  bestSaveName?: string;
  /** Weight decay, one for all groups or one per group. */
  wds?: number | number[];
  /** Metrics on the validation set after each epoch (default: accuracy). */
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

/** What the learning-rate finder recorded. */
export class LrFinderResult {
  constructor(
    /** The rate (of the last layer group) at each iteration. */
    readonly lrs: number[],
    /** The smoothed loss at each iteration. */
    readonly losses: number[],
  ) {}

  /** Loss against rate, without the first 10 and last 5 points (fast.ai's plot), as data. */
  plot(nSkip = 10, nSkipEnd = 5): { lr: number; loss: number }[] {
    return this.lrs.map((lr, i) => ({ lr, loss: this.losses[i]! })).slice(nSkip, Math.max(nSkip, this.lrs.length - nSkipEnd));
  }

  /** The rate at each iteration, as data. */
  plotLr(): { iteration: number; lr: number }[] {
    return this.lrs.map((lr, i) => ({ iteration: i, lr }));
  }

  /** `plot()` as a PNG (log-scale rate axis), with `mark` (e.g. the chosen rate) drawn; written to `file` when given. */
  async plotPng({ file, mark, nSkip = 10, nSkipEnd = 5 }: { file?: string; mark?: number; nSkip?: number; nSkipEnd?: number } = {}): Promise<Buffer> {
    const pts = this.plot(nSkip, nSkipEnd);
    const png = await renderChart(lrFinderSpec(pts.length > 1 ? pts : this.lrs.map((lr, i) => ({ lr, loss: this.losses[i]! })), mark));
    if (file) await writeFileAtomic(file, png);
    return png;
  }

  /** `plotLr()` as a PNG; written to `file` when given. */
  async plotLrPng({ file }: { file?: string } = {}): Promise<Buffer> {
    const png = await renderChart(scheduleSpec(this.plotLr().map((p) => ({ ...p, stage: 'learning-rate finder' }))));
    if (file) await writeFileAtomic(file, png);
    return png;
  }

  /**
   * A suggested rate and its rule: a tenth of the rate with the lowest smoothed
   * loss (fast.ai's advice: pick a rate well before the minimum, where the loss is
   * still clearly falling).
   */
  suggestion(): { lr: number; rule: string } {
    const pts = this.plot();
    const use = pts.length > 0 ? pts : this.lrs.map((lr, i) => ({ lr, loss: this.losses[i]! }));
    let best = use[0]!;
    for (const p of use) if (p.loss < best.loss) best = p;
    return { lr: best.lr / 10, rule: `a tenth of the rate with the lowest loss (${best.lr.toExponential(2)})` };
  }
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
  private precomputed: { trn: Activations; val: Activations | null } | null = null;
  private precomputeOn: boolean;
  private readonly optFn: 'sgd' | 'adam';
  private readonly defaultMetrics: Metric[];
  private readonly log: ((line: string) => void) | null;

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
    this.precomputeOn = options.precompute ?? false;
    this.optFn = options.optFn ?? 'sgd';
    this.defaultMetrics = options.metrics ?? [accuracy];
    this.log = options.log === undefined ? (l) => console.log(l) : options.log;
    this.freeze();
  }

  /** Builds a learner on `arch`'s pretrained body for `data` (fast.ai's ConvLearner.pretrained). */
  static async pretrained(arch: ArchLike, data: ImageClassifierData, options: ConvLearnerOptions = {}): Promise<ConvLearner> {
    return new ConvLearner(await buildClassifier(arch, data.c, options), data, options);
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

  /** Freezes layer groups before `n`, unfreezes `n` and later. */
  freezeTo(n: number): void {
    this.layerGroups.forEach((g, i) => {
      for (const m of g) m.requiresGrad_(i >= n);
    });
  }

  /** Where `save` writes: `$FASTVISION_HOME/cache/<data folder>-<hash>/models`. */
  get modelsDir(): string {
    return cacheDirFor(this.data.path, 'models');
  }

  /** Saves the model's weights as `{modelsDir}/{name}.pth` (a PyTorch state dict; atomic). */
  async save(name: string): Promise<string> {
    const path = join(this.modelsDir, `${name}.pth`);
    await savePth(path, this.model.stateDict());
    return path;
  }

  /** Loads weights saved by `save(name)` (or a .pth path). */
  async load(name: string): Promise<void> {
    const path = name.endsWith('.pth') && existsSync(name) ? name : join(this.modelsDir, `${name}.pth`);
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
      const key = activationsKey({ arch: this.arch.name, transform: dl.transform!, weights, split, ds });
      return cachedActivations(dir, key, ds, () => computeActivations(features, dl, this.log ? `precomputing ${split} activations` : null));
    };
    const trn = await one('trn', d.trnDs as FilesDataset, d.fixDl!);
    const val = d.valDs instanceof FilesDataset && d.valDl ? await one('val', d.valDs, d.valDl) : null;
    this.precomputed = { trn, val };
  }

  private async trainingData(): Promise<{ trn: DataLoader; val: DataLoader | null; net: nn.Module }> {
    if (!this.precomputeOn) return { trn: this.data.trnDl, val: this.data.valDl, net: this.model };
    await this.precomputeActivations();
    const p = this.precomputed!;
    // Rows are the images that could be read: each takes its own image's label.
    const labelsOf = (a: Activations, ds: FilesDataset): number[] => a.indices.map((i) => ds.labels[i]!);
    const arrays = ImageClassifierData.fromArrays(
      this.data.path,
      [p.trn.x, labelsOf(p.trn, this.data.trnDs as FilesDataset)],
      p.val && this.data.valDs ? [p.val.x, labelsOf(p.val, this.data.valDs as FilesDataset)] : null,
      this.data.classes,
      { bs: this.data.bs, seed: this.data.options.seed },
    );
    return { trn: arrays.trnDl, val: arrays.valDl, net: this.head };
  }

  private makeOptimizer(lrs: number[], wds: number[]): optim.Optimizer {
    const groups = this.layerGroups.map((g, i) => ({ params: g.flatMap((m) => m.parameters()), lr: lrs[i]!, weightDecay: wds[i]! }));
    return this.optFn === 'adam' ? new optim.Adam(groups, { lr: lrs[lrs.length - 1] }) : new optim.SGD(groups, { lr: lrs[lrs.length - 1]!, momentum: 0.9 });
  }

  private perGroup(v: number | number[], what: string): number[] {
    const n = this.layerGroups.length;
    if (typeof v === 'number') return new Array<number>(n).fill(v);
    if (v.length !== n) throw new Error(`${what}: ${v.length} values for ${n} layer groups`);
    return v;
  }

  /**
   * Trains. `lrs` is one rate or one per layer group. With `cycleLen`, `nCycle`
   * SGDR cycles (cosine annealing with restarts, each `cycleMult` times longer);
   * without, `nCycle` epochs at a constant rate. Prints a row per epoch and
   * returns them.
   */
  async fit(lrs: number | number[], nCycle: number, opts: FitOptions = {}): Promise<EpochRecord[]> {
    const { cycleLen, cycleMult = 1, cycleSaveName, bestSaveName, wds = 0, metrics = this.defaultMetrics, callbacks = [], guard = true, runawayFactor = 10, onCheckpoint, resume } = opts;
    const base = this.perGroup(lrs, 'lrs');
    const decay = this.perGroup(wds, 'wds');
    const { trn, val, net } = await this.trainingData();
    const perEpoch = trn.length;
    if (perEpoch === 0) throw new Error('fit: the training set gives no batches (no readable images?)');
    const sched: Schedule = cycleLen === undefined ? constantSchedule(nCycle, perEpoch) : sgdrSchedule(nCycle, perEpoch, cycleLen, cycleMult);
    const opt = this.makeOptimizer(base, decay);
    const history: EpochRecord[] = [];
    const smooth = new SmoothedLoss();
    let it = 0;
    let cycle = 0;
    let best = Infinity;
    let start = 0;
    if (resume) {
      if (resume.epoch > sched.epochs) throw new Error(`fit: the checkpoint is at epoch ${resume.epoch}, past this schedule's ${sched.epochs}`);
      opt.loadStateDict(resume.optimizer);
      setRngState(resume.rng);
      smooth.restore(resume.smoothed);
      history.push(...resume.history);
      ({ iteration: it, cycle, best, epoch: start } = resume);
      trn.epoch = resume.loaderEpoch;
    }
    const keeper = guard ? new DivergenceGuard(this.model, runawayFactor) : null;
    let stop = false;
    let skippedOne = false;
    this.log?.(['epoch'.padEnd(7), 'trn_loss'.padEnd(12), 'val_loss'.padEnd(12), ...metrics.map((m) => m.name.padEnd(12))].join('').trimEnd());
    for (const cb of callbacks) cb.onTrainBegin?.();
    try {
      for (let epoch = start; epoch < sched.epochs && !stop; epoch++) {
        this.trainMode();
        const bar = this.log ? progress(`epoch ${epoch}`, perEpoch) : null;
        let diverged: string | null = null;
        for await (const { x, y } of trn) {
          if (x.shape[0]! < 2) {
            // Batch norm cannot normalize a batch of one (its statistics would be NaN).
            if (!skippedOne) this.log?.('warning: skipping a training batch of one image');
            skippedOne = true;
            x.dispose();
            y.dispose();
            continue;
          }
          const m = sched.multipliers[Math.min(it, sched.multipliers.length - 1)]!;
          opt.paramGroups.forEach((g, i) => (g.lr = base[i]! * m));
          opt.zeroGrad();
          const loss = tidy(() => F.nllLoss(net.forward(x), y));
          loss.backward();
          opt.step();
          const l = loss.item();
          const smoothed = smooth.add(l);
          for (const t of [loss, x, y]) t.dispose();
          it++;
          bar?.tick();
          diverged = keeper?.checkBatch(l, smoothed) ?? null;
          if (diverged) break;
          for (const cb of callbacks) if (cb.onBatchEnd?.({ iteration: it, loss: l, smoothedLoss: smoothed, lrs: opt.paramGroups.map((g) => g.lr) })) stop = true;
          if (cycle < sched.cycleEnds.length && it === sched.cycleEnds[cycle]) {
            if (cycleSaveName) await this.save(`${cycleSaveName}_cyc_${cycle}`);
            for (const cb of callbacks) cb.onCycleEnd?.(cycle);
            cycle++;
          }
          if (stop) break;
        }
        bar?.stop();
        if (diverged) throw this.diverged(keeper!, diverged, epoch, history);
        const v = val ? await this.validate(val, net, metrics) : null;
        const rec: EpochRecord = { epoch, trnLoss: smooth.value, valLoss: v?.loss ?? null, accuracy: v?.metrics.accuracy ?? null, metrics: v?.metrics ?? {} };
        this.log?.(
          // A cell always ends with a space, so that even a huge loss stays apart from its neighbour.
          [String(epoch).padEnd(7), `${rec.trnLoss.toFixed(6)} `.padEnd(12), rec.valLoss === null ? ''.padEnd(12) : `${rec.valLoss.toFixed(6)} `.padEnd(12), ...metrics.map((mt) => (v ? `${(rec.metrics[mt.name] ?? Number.NaN).toFixed(6)} ` : '').padEnd(12))].join('').trimEnd(),
        );
        diverged = keeper?.checkEpoch(rec) ?? null;
        if (diverged) throw this.diverged(keeper!, diverged, epoch, history);
        history.push(rec);
        for (const cb of callbacks) cb.onEpochEnd?.(rec);
        if (bestSaveName && v) {
          // Lower is better: the validation loss, or minus the first metric.
          const score = metrics.length > 0 ? -v.metrics[metrics[0]!.name]! : v.loss;
          if (score < best) {
            best = score;
            await this.save(bestSaveName);
          }
        }
        if (onCheckpoint) {
          const rng = getRngState();
          try {
            await onCheckpoint({ epoch: epoch + 1, iteration: it, cycle, smoothed: smooth.state(), loaderEpoch: trn.epoch, history: [...history], best, optimizer: opt.stateDict(), rng });
          } finally {
            rng.dispose();
          }
        }
      }
    } finally {
      keeper?.dispose();
      opt.dispose();
    }
    return history;
  }

  /** Restores the guard's good weights and makes the error that says so. */
  private diverged(keeper: DivergenceGuard, reason: string, epoch: number, history: EpochRecord[]): TrainingDivergedError {
    const err = new TrainingDivergedError(reason, epoch, keeper.restore(), history);
    this.log?.(`stopped: ${err.message}`);
    return err;
  }

  private async validate(dl: DataLoader, net: nn.Module, metrics: Metric[]): Promise<{ loss: number; metrics: Record<string, number> }> {
    const { logProbs: lp, y } = await this.predictLoader(dl, net);
    const loss = noGrad(() => tidy(() => F.nllLoss(lp, y).item()));
    const values = Object.fromEntries(metrics.map((m) => [m.name, m.fn(lp, y)]));
    lp.dispose();
    y.dispose();
    return { loss, metrics: values };
  }

  /**
   * The learning-rate finder: one pass over the training data (or `numIt`
   * mini-batches, passing over the data as often as needed — a small dataset
   * otherwise gives a curve of a few coarse points) with the rate growing from
   * startLr to endLr (exponentially, or linearly), stopping when the smoothed
   * loss exceeds 4× its best; the weights are restored afterwards.
   */
  async lrFind({ startLr = 1e-5, endLr = 10, linear = false, numIt }: { startLr?: number | number[]; endLr?: number; linear?: boolean; numIt?: number } = {}): Promise<LrFinderResult> {
    if (numIt !== undefined && !(Number.isInteger(numIt) && numIt >= 2)) throw new RangeError(`lrFind: numIt must be an integer of at least 2, got ${numIt}`);
    const starts = this.perGroup(startLr, 'startLr');
    const saved = new Map([...this.model.stateDict()].map(([k, t]) => [k, t.clone()]));
    const { trn, net } = await this.trainingData();
    const nb = numIt ?? trn.length;
    const opt = this.makeOptimizer(starts, this.perGroup(0, 'wds'));
    const last = starts.length - 1;
    const smooth = new SmoothedLoss();
    const lrs: number[] = [];
    const losses: number[] = [];
    let best = Infinity;
    let it = 0;
    const bar = this.log ? progress('learning-rate finder', nb) : null;
    try {
      this.trainMode();
      let done = false;
      while (!done) {
        const before = it;
        for await (const { x, y } of trn) {
          bar?.tick();
          const mult = lrFinderMultiplier(it, nb, starts[last]!, endLr, linear);
          opt.paramGroups.forEach((g, i) => (g.lr = starts[i]! * mult));
          opt.zeroGrad();
          const loss = tidy(() => F.nllLoss(net.forward(x), y));
          loss.backward();
          opt.step();
          const s = smooth.add(loss.item());
          for (const t of [loss, x, y]) t.dispose();
          lrs.push(starts[last]! * mult);
          losses.push(s);
          it++;
          done = Number.isNaN(s) || s > 4 * best || it >= nb;
          if (done) break;
          if (s < best && it > 10) best = s;
        }
        if (it === before) break; // no batches at all
      }
    } finally {
      bar?.stop();
      opt.dispose();
      this.model.loadStateDict(saved);
      for (const t of saved.values()) t.dispose();
    }
    this.sched = new LrFinderResult(lrs, losses);
    return this.sched;
  }

  /** Log-probabilities for the validation (or test) set, in order, with the targets. */
  async predictWithTargets(isTest = false): Promise<{ logProbs: Tensor; y: Tensor }> {
    const dl = isTest ? this.data.testDl : this.data.valDl;
    if (!dl) throw new Error(isTest ? 'no test set: pass testName when creating the data' : 'no validation set');
    return this.predictLoader(dl, this.model, `predicting the ${isTest ? 'test' : 'validation'} set`);
  }

  /** Log-probabilities for the validation (or test) set, in order. */
  async predict(isTest = false): Promise<Tensor> {
    const { logProbs, y } = await this.predictWithTargets(isTest);
    y.dispose();
    return logProbs;
  }

  /** Log-probabilities for a batch of images already as a tensor (N×3×H×W, normalized). */
  predictArray(x: Tensor): Tensor {
    this.model.eval();
    return noGrad(() => this.model.forward(x));
  }

  /** `net`'s outputs for every batch of a loader, in order, with the targets. */
  private async predictLoader(dl: DataLoader, net: nn.Module = this.model, label?: string): Promise<{ logProbs: Tensor; y: Tensor }> {
    net.eval();
    const outs: Tensor[] = [];
    const ys: Tensor[] = [];
    const bar = this.log && label ? progress(label, dl.length) : null;
    for await (const { x, y } of dl) {
      outs.push(noGrad(() => net.forward(x)));
      ys.push(y);
      x.dispose();
      bar?.tick();
    }
    bar?.stop();
    const logProbs = stackRows(outs);
    const y = stackRows(ys);
    for (const t of [...outs, ...ys]) t.dispose();
    return { logProbs, y };
  }

  /**
   * Probabilities averaged over saved snapshots (e.g. the `cycleSaveName` ones: an
   * ensemble), for the validation or test set; the current weights are restored after.
   */
  async predictEnsemble(names: string[], { isTest = false }: { isTest?: boolean } = {}): Promise<{ probs: Tensor; y: Tensor }> {
    if (names.length === 0) throw new Error('predictEnsemble: no snapshot names');
    const current = new Map([...this.model.stateDict()].map(([k, t]) => [k, t.clone()]));
    let sum: Tensor | null = null;
    let y: Tensor | null = null;
    try {
      for (const name of names) {
        await this.load(name);
        const r = await this.predictWithTargets(isTest);
        const p = r.logProbs.exp();
        r.logProbs.dispose();
        if (y === null) y = r.y;
        else r.y.dispose();
        const next: Tensor = sum === null ? p : tidy(() => sum!.add(p));
        if (sum !== null) {
          sum.dispose();
          p.dispose();
        }
        sum = next;
      }
    } finally {
      this.model.loadStateDict(current);
      for (const t of current.values()) t.dispose();
    }
    const probs = sum!.div(names.length);
    sum!.dispose();
    return { probs, y: y! };
  }

  /**
   * Test-time augmentation: probabilities averaged over the original images and
   * `nAug` augmented versions (the training transforms), for validation or test.
   */
  async TTA({ nAug = 4, isTest = false }: { nAug?: number; isTest?: boolean } = {}): Promise<{ probs: Tensor; y: Tensor }> {
    const plain = isTest ? this.data.testDl : this.data.valDl;
    const aug = isTest ? this.data.testAugDl : this.data.augDl;
    if (!plain || !aug) throw new Error(isTest ? 'no test set: pass testName when creating the data' : 'no validation set');
    const first = await this.predictLoader(plain, this.model, `TTA pass 1/${nAug + 1}`);
    let sum = first.logProbs.exp();
    first.logProbs.dispose();
    for (let i = 0; i < nAug; i++) {
      const r = await this.predictLoader(aug, this.model, `TTA pass ${i + 2}/${nAug + 1}`);
      const next = tidy(() => sum.add(r.logProbs.exp()));
      sum.dispose();
      r.logProbs.dispose();
      r.y.dispose();
      sum = next;
    }
    const probs = sum.div(nAug + 1);
    sum.dispose();
    return { probs, y: first.y };
  }
}

/** Concatenates batches along the first dimension. */
function stackRows(parts: Tensor[]): Tensor {
  if (parts.length === 0) return tensor(new Float32Array(0), { shape: [0] });
  return cat(parts, 0);
}
