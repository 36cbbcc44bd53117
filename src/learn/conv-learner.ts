// ConvLearner (fastai v2's vision_learner): a Learner on a pretrained body with fast.ai's head,
// the architecture's layer groups, precomputed activations, and what images add to the
// Learner's fits: predicting one image, TTA, ensembles, Grad-CAM and the model file.
import { saveModel } from './saved-model.js';
import { unfreezePlan, type UnfreezeChoices, type UnfreezePlan } from './unfreeze-plan.js';
import { loadTransformed } from '../vision/augment.js';
import { basename, dirname } from 'node:path';
import { ensureDir } from '../util/files.js';
import { channelsLastConvIsSound, getNumThreads, libtorchVersion, nn, noGrad, tensor, type Tensor } from '../torch/index.js';
import { bodyGroups, type Arch, type ArchLike } from '../vision/models/archs.js';
import { cacheDirFor, ImageClassifierData } from '../vision/data.js';
import { InputError } from '../util/errors.js';
import { FilesDataset } from '../vision/dataset.js';
import type { DataLoader } from '../vision/loader.js';
import { buildClassifier, type Classifier, type ClassifierOptions } from './head.js';
import { activationsKey, cachedActivations, computeActivations, stateHash, type Activations } from './activations.js';
import type { LossFn } from './loop.js';
import { accuracy, accuracyThresh, fbeta, type Metric } from './metrics.js';
import { bceWithLogits, inverseFrequencyWeights, nllLoss, weightedNllLoss } from './losses.js';
import { averageProbabilities, keepingWeights, type Probabilities } from './predict.js';
import { gradCam, type CamMaps } from './gradcam.js';
import { gatherRows } from './ddp.js';
import { Learner, type LearnerOptions } from './learner.js';

/**
 * Options of `visionLearner` and `ConvLearner.pretrained`: the network's shape (ClassifierOptions)
 * and the Learner's options (the layer groups are the architecture's: the body's early and later
 * layers, and the head).
 */
export interface ConvLearnerOptions extends ClassifierOptions, Omit<LearnerOptions, 'splitter'> {
  /** Train the head on cached body activations (no augmentation) until turned off. */
  precompute?: boolean;
  /** @deprecated The old name of `optFunc`. */
  optFn?: 'sgd' | 'adam' | 'adamw';
  /** @deprecated The old name of `lossFunc`. */
  lossFn?: LossFn;
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
  lossFunc?: LossFn;
  /**
   * Weigh each class in the loss: one weight per class, or 'auto' for inverse frequency in
   * the training set (`inverseFrequencyWeights`), beside or instead of oversampling. Single-label only.
   */
  classWeights?: number[] | 'auto';
}

/** The loss a ConvLearner trains with: the given one, or NLL (weighted by class if asked), or BCE for tags. */
function convLoss(data: ImageClassifierData, options: ConvLearnerOptions, multiLabel: boolean): LossFn {
  const given = options.lossFunc ?? options.lossFn;
  const cw = options.classWeights;
  if (cw !== undefined) {
    if (multiLabel) throw new InputError('class weights apply to single-label data; for tags, oversample rare ones instead');
    if (given) throw new InputError('give either a loss function or class weights, not both');
    const n = data.classes.length;
    const weights = cw === 'auto' ? inverseFrequencyWeights(data.trnDs.labels, n) : cw;
    if (weights.length !== n) throw new InputError(`class weights: ${weights.length} given for ${n} classes (${data.classes.join(', ')})`);
    return weightedNllLoss(weights);
  }
  return given ?? (multiLabel ? bceWithLogits : nllLoss);
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
export class ConvLearner extends Learner<ImageClassifierData> {
  /** The whole network: `body` then `pool` (concat pooling + flatten) then `head`. */
  declare readonly model: nn.Sequential;
  /** Outputs are independent sigmoids (tags), not a softmax over classes. */
  readonly multiLabel: boolean;
  private precomputed: { trn: Activations; val: Activations | null } | null = null;
  private precomputeOn: boolean;
  /** The layout of the network's 4-d weights and activations (ConvLearnerOptions.memoryFormat). */
  readonly memoryFormat: 'channelsLast' | 'contiguous';

  readonly arch: Arch;
  readonly body: nn.Module;
  readonly pool: nn.Sequential;
  readonly head: nn.Module;
  /** fast.ai's head as built: hidden layer sizes and dropouts (null for a custom head). */
  readonly headSpec: { xtraFc: number[]; ps: number[] } | null;

  private constructor(c: Classifier, data: ImageClassifierData, options: ConvLearnerOptions) {
    const multiLabel = options.multiLabel ?? false;
    const [early, late] = bodyGroups(c.arch, c.body);
    super(data, c.model, {
      ...options,
      device: options.device ?? data.options.device ?? 'auto',
      // The body's early layers, its later layers, the head: fast.ai's three groups.
      splitter: () => [early, late, [c.head]],
      optFunc: options.optFunc ?? options.optFn ?? 'sgd',
      lossFunc: convLoss(data, options, multiLabel),
      // fastai's planet lesson: accuracy and F2 at a threshold of 0.2 for tags.
      metrics: options.metrics ?? (multiLabel ? [accuracyThresh(0.2), fbeta(2, 0.2)] : [accuracy]),
    });
    ({ arch: this.arch, body: this.body, pool: this.pool, head: this.head, headSpec: this.headSpec } = c);
    this.multiLabel = multiLabel;
    this.precomputeOn = options.precompute ?? false;
    // Channels-last is faster (0.91 of NCHW's step here; cuDNN prefers it under autocast), but
    // some libtorch builds compute it wrongly on the CPU (the probe runs there).
    const sound = this.device !== 'cpu' || channelsLastConvIsSound();
    this.memoryFormat = options.memoryFormat ?? (sound ? 'channelsLast' : 'contiguous');
    if (this.memoryFormat === 'channelsLast' && !sound) warnUnsoundChannelsLast();
    if (this.memoryFormat !== 'channelsLast' && this.memoryFormat !== 'contiguous') throw new Error(`memoryFormat must be 'channelsLast' or 'contiguous', got '${String(this.memoryFormat)}'`);
    // Before any optimizer exists: parameters change layout in place, keeping their identity.
    if (this.memoryFormat === 'channelsLast') this.model.toMemoryFormat('channelsLast');
    if (this.pg && this.pg.worldSize > 1) {
      const s = data.options.shard;
      if (!s || s.rank !== this.pg.rank || s.worldSize !== this.pg.worldSize)
        throw new Error(`distributed learner: the data must be sharded for rank ${this.pg.rank} of ${this.pg.worldSize} (pass shard: { rank, worldSize } when creating it)`);
    }
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

  /** Unfreezes every layer group; precompute is turned off, since the body now changes. */
  override unfreeze(): void {
    super.unfreeze();
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

  /** Switches to new data (e.g. larger images for progressive resizing), re-frozen as after `pretrained`. */
  setData(data: ImageClassifierData): void {
    if (data.c !== this.data.c) throw new Error(`setData: the new data has ${data.c} classes, the model ${this.data.c}`);
    this.data = data;
    this.sendData(data);
    this.disposePrecomputed();
    this.freeze();
  }

  private disposePrecomputed(): void {
    if (this.precomputed) {
      for (const a of [this.precomputed.trn, this.precomputed.val]) a?.x.dispose();
      this.precomputed = null;
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

  protected override async trainingData(): Promise<{ trn: DataLoader; val: DataLoader | null; net: nn.Module }> {
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
    const { out, y } = await this.getPreds(dl, `predicting the ${isTest ? 'test' : 'validation'} set`);
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

  private async probsOn(dl: DataLoader, label?: string): Promise<Probabilities> {
    const { out, y } = await this.getPreds(dl, label);
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
 * frozen but for the head, with fastai v2's optimizer: AdamW (weight decay 0.01) unless
 * `optFunc` says otherwise. `learn.fineTune()` then trains as `fastvision train` does by default.
 * (`ConvLearner.pretrained` is the lesson's form, with SGD.)
 *
 * ```ts
 * const learn = await visionLearner(data, mobilenet_v2_nsfwjs);
 * await learn.fineTune(3);
 * ```
 */
export function visionLearner(data: ImageClassifierData, arch: ArchLike, options: ConvLearnerOptions = {}): Promise<ConvLearner> {
  return ConvLearner.pretrained(arch, data, { ...options, optFunc: options.optFunc ?? options.optFn ?? 'adamw' });
}
