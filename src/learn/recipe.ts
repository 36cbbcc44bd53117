// fastvision's training recipes as a library function: what `fastvision train` runs. The recipe
// is data (`recipeStages`: a list of stage plans, each saying which layers train, on what, at
// what rates and schedule) run by a small runner (`trainRecipe`) in the training session
// (session.ts): the learning-rate finder, the stages with checkpoints and resume, the
// best-weights keeper and the divergence guard, then TTA, the report and the submission.
import { basename, join, resolve } from 'node:path';
import { F, manualSeed, noGrad, setRngState, tidy, type Tensor } from '../torch/index.js';
import type { ProcessGroup } from '../torch/distributed.js';
import { InputError } from '../util/errors.js';
import { writeFileAtomic } from '../util/files.js';
import { shown } from '../util/shown.js';
import type { ImageClassifierData } from '../vision/data.js';
import { FilesDataset } from '../vision/dataset.js';
import { cleaningKey } from '../vision/cleaning.js';
import { Report } from '../report/html.js';
import { BestWeightsKeeper } from './callbacks.js';
import { disposeCheckpoint } from './checkpoint.js';
import { ConvLearner } from './conv-learner.js';
import { checkSameEverywhere } from './ddp.js';
import { addAugmentationPreview, addDataSection, addInterpretation, addLrFinder, addTagTable, addTraining, camTiles } from './figures.js';
import { TrainingDivergedError } from './guard.js';
import type { BaseFitOptions } from './learner.js';
import type { Callback, EpochRecord, FitState } from './loop.js';
import { LrFinderResult, type SuggestionRule } from './lr-finder.js';
import { bestThreshold } from './metrics.js';
import type { MixedPrecisionMode } from './mixed-precision.js';
import { saveModel } from './saved-model.js';
import { refuseBatchTooLarge, TrainingSession } from './session.js';
import { writeSubmission } from './submission.js';
import { TrainingLog, type StageShape } from './training-log.js';
import { unfreezePlan } from './unfreeze-plan.js';
import { spreadRates } from './learner.js';
import type { Arch } from '../vision/models/archs.js';

/** What the recipe needs, with the CLI's defaults filled in. */
export interface RecipeSettings {
  /**
   * 'lesson': fast.ai's Lesson 2 (head on activations, augmentation, unfreeze with
   * SGDR); 'fine-tune': fastai v2's fine_tune with the head on precomputed activations
   * (AdamW, one-cycle, head then all as the architecture advises).
   */
  recipe: Recipe;
  /** The finder's suggestion rule (lesson: a tenth of the minimum; fine-tune: valley). */
  suggest: SuggestionRule;
  /** fine-tune: one-cycle epochs of the head on precomputed activations (0: none), then of the unfrozen network. */
  freezeEpochs: number;
  epochs: number;
  /** Image sides, smallest first (progressive resizing). */
  sizes: number[];
  /** Cycles of the frozen stages (head on activations; with augmentation). */
  cycles: number;
  /** Cycles of the unfrozen stage (cycleLen 1, cycleMult 2: 1 + 2 + 4 … epochs). */
  unfreezeCycles: number;
  /** The rate; undefined: the learning-rate finder's suggestion. */
  lr?: number;
  /** Weigh the loss by class ('auto': inverse frequency in the training set); undefined: unweighted. */
  classWeights?: number[] | 'auto';
  /** Factor between successive layer groups' rates once unfrozen. */
  groupDiv: number;
  /** Keep the body's batch-norm statistics once unfrozen (fast.ai's bn_freeze); undefined: as the architecture advises. */
  bnFreeze?: boolean;
  /** The head's rate once unfrozen (the body's follow by groupDiv); undefined: as the architecture advises, else the same rate. */
  unfreezeLr?: number;
  /** Unfreeze as the lesson does (batch statistics, the same rate), ignoring the architecture's advice. */
  lessonUnfreeze: boolean;
  /** Zoo name or .pth file for the body's weights; undefined: the architecture's own. */
  weights?: string;
  /** Augmented copies averaged by TTA. */
  ttaAug: number;
  /** Hand back the weights from the end of the stage with the lowest validation loss (else the last ones). */
  keepBest: boolean;
  /** Seed of libtorch's generator (the head's initial weights, dropout) and of the loaders. */
  seed: number;
  /** Continue from the output folder's checkpoint. */
  resume: boolean;
  /** Where the network trains ('cpu' or 'cuda:N'); a checkpoint resumes on any device. */
  device?: string;
  /** Mixed precision (null or absent: float32). */
  mixedPrecision?: MixedPrecisionMode | null;
  /** The options that decide the run's result: a resume must be given the same. */
  fingerprint: string;
  out: string;
  json?: string;
  /** Told of the run's progress as it happens (the studio's live charts); does not change the result. */
  observer?: RecipeObserver;
}

/** A training stage as the observer sees it. */
export interface StageEvent {
  /** 0-based, of `count` stages. */
  index: number;
  count: number;
  name: string;
  size: number;
  /** Epochs the stage trains, and how many were done before (a resumed stage). */
  epochs: number;
  done: number;
}

/** What a recipe tells while it runs: each method is optional, and called on rank 0's process as things happen. */
export interface RecipeObserver {
  /** The learning-rate finder's curve, the rate suggested (null: none) and the one chosen. */
  finder?(e: { lrs: number[]; losses: number[]; suggested: number | null; chosen: number; rule: string }): void;
  /** What a resumed run had done: the loss per iteration and the epochs, by stage. */
  restored?(e: { iterations: { iteration: number; loss: number; stage: string }[]; epochs: { stage: string; record: EpochRecord }[] }): void;
  /** A stage starts or resumes. */
  stage?(e: StageEvent): void;
  /** A training mini-batch ended: the global iteration, the smoothed loss, the last group's rate, and where in the stage's epochs it is. */
  batch?(e: { iteration: number; loss: number; lr: number; epoch: number; batch: number; batches: number }): void;
  /** An epoch ended, with its figures. */
  epoch?(e: { stage: string; record: EpochRecord; iteration: number }): void;
  /** A step without mini-batches to count began: 'tta', 'report'. */
  phase?(name: string): void;
}

/** The recipes `train` knows. */
export type Recipe = 'lesson' | 'fine-tune';
/** Every recipe, the default first. */
export const RECIPES: Recipe[] = ['fine-tune', 'lesson'];

/**
 * The recipe's defaults, declared once: `trainRecipe` fills what it is not given from them, and
 * `fastvision train`'s options show and use the same values.
 */
export const RECIPE_DEFAULTS = {
  // fine-tune: as accurate as the lesson's on pets-sample, in less time (npm run bench:recipes).
  recipe: 'fine-tune',
  // Epochs of the head on precomputed activations: each costs about as little as a forward pass of the head.
  freezeEpochs: 8,
  epochs: 4,
  cycles: 3,
  unfreezeCycles: 3,
  groupDiv: 10,
  lessonUnfreeze: false,
  ttaAug: 4,
  keepBest: true,
  seed: 0,
  resume: false,
} as const satisfies Partial<RecipeSettings>;

/** The finder's default suggestion rule for a recipe: a tenth of the minimum (the lesson's), or the valley (fastai v2's). */
export function defaultSuggestion(recipe: Recipe): SuggestionRule {
  return recipe === 'fine-tune' ? 'valley' : 'lesson';
}

/** What `trainRecipe` is given: where the results go, and any settings that differ from RECIPE_DEFAULTS. */
export type RecipeOptions = Partial<RecipeSettings> & Pick<RecipeSettings, 'out'>;

/** The settings with RECIPE_DEFAULTS filled in (sizes: the data's; the fingerprint: the settings that decide the result). */
export function completeRecipeSettings(o: RecipeOptions, data: Pick<ImageClassifierData, 'sz' | 'path'>): RecipeSettings {
  const recipe = o.recipe ?? RECIPE_DEFAULTS.recipe;
  if (!RECIPES.includes(recipe)) throw new InputError(`recipe must be one of ${RECIPES.join(', ')}, got '${String(recipe)}'`);
  const sizes = o.sizes ?? (data.sz === undefined ? undefined : [data.sz]);
  if (!sizes || sizes.length === 0) throw new InputError('the recipe needs sizes (or image data made with tfmsFromModel)');
  // A setting given as undefined is not given: its default holds.
  const given = Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as RecipeOptions;
  const filled = { ...RECIPE_DEFAULTS, suggest: defaultSuggestion(recipe), ...given, recipe, sizes };
  const { out: _out, json: _json, resume: _resume, device: _device, fingerprint: _fp, observer: _observer, ...deciding } = filled;
  return { ...filled, fingerprint: o.fingerprint ?? JSON.stringify({ path: resolve(data.path), ...deciding }) };
}

/** The file beside the model holding the validation set's TTA probabilities (for the studio's results, and any tool). */
export const VALIDATION_PREDICTIONS = 'validation.json';

/** What `validation.json` holds: the classes, and for each validation photo its path under the data folder, its label and its probabilities. */
export interface ValidationPredictions {
  classes: string[];
  files: string[];
  y: number[];
  /** Row-major, one row of `classes.length` per file, rounded to 6 decimals. */
  probs: number[];
}

/** Writes `validation.json` into `out`. */
async function writeValidationPredictions(out: string, data: ImageClassifierData, valDs: FilesDataset, probs: Float32Array, y: number[]): Promise<void> {
  const v: ValidationPredictions = { classes: data.classes, files: predictedFiles(valDs).map((f) => cleaningKey(data.path, f)), y, probs: Array.from(probs, (p) => Math.round(p * 1e6) / 1e6) };
  if (v.files.length !== y.length) return; // the photos predicted cannot be told apart from those skipped
  await writeFileAtomic(join(out, VALIDATION_PREDICTIONS), `${JSON.stringify(v)}\n`);
}

/** A JSON-friendly summary of a training run (what `--json` writes). */
export interface TrainSummary {
  data: { path: string; classes: string[]; counts: { trn: Record<string, number>; val: Record<string, number> | null }; test: number };
  arch: string;
  sizes: number[];
  /** The settings the recipe ran with. */
  settings: Omit<RecipeSettings, 'out' | 'json' | 'resume' | 'fingerprint'>;
  lr: { chosen: number; suggested: number | null; rule: string; finder: { lr: number; loss: number }[] };
  stages: (StageShape & { seconds: number; history: { epoch: number; trnLoss: number; valLoss: number | null; accuracy: number | null }[] })[];
  /** The model saved: its validation figures, and the stage and epoch it is from (the best snapshot point by validation loss, unless --keep-last). */
  final: { valLoss: number | null; accuracy: number | null; stage: string | null; epoch: number | null };
  /** Where training diverged and stopped, if it did (the weights kept are the last good ones). */
  diverged: { stage: string; epoch: number; reason: string; restoredTo: string } | null;
  /** The checkpoint a resumed run continued from. */
  resumedFrom: { stage: string; epoch: number | null } | null;
  /** With TTA; multi-label: accuracy at the threshold, F2, and the threshold chosen on validation. */
  tta: { accuracy: number; loss: number; nAug: number; f2?: number; threshold?: number } | null;
  /** Whether the classifier predicts tags (multi-label) rather than one class. */
  multiLabel: boolean;
  /** Processes that trained it (data-parallel), 1 alone. */
  worldSize: number;
  confusion: number[][] | null;
  artifacts: { out: string; model: string; modelInfo: string; report: string; pictures: string[]; submission: string | null; json: string | null };
  seconds: number;
}

/** Validation files in prediction order (unreadable ones are skipped by the loaders). */
export function predictedFiles(ds: FilesDataset): string[] {
  return ds.files.filter((_, i) => !ds.bad.has(i));
}

/** Accuracy and loss of averaged probabilities. */
function scoreProbs(probs: Tensor, y: Tensor): { accuracy: number; loss: number } {
  return noGrad(() => tidy(() => ({ accuracy: probs.argmax(1).eq(y).float().mean().item(), loss: F.nllLoss(probs.clamp(1e-8, null).log(), y).item() })));
}

/**
 * Multi-label figures of averaged probabilities and multi-hot targets: the
 * threshold with the best F2 (the planet lesson's opt_th), F2 and accuracy at it,
 * and the binary cross entropy.
 */
export function scoreTags(probs: Tensor, y: Tensor): { accuracy: number; loss: number; f2: number; threshold: number } {
  const c = y.shape[1]!;
  const p = probs.dataSync() as Float32Array;
  const t = y.dataSync() as Float32Array;
  const { threshold, score } = bestThreshold(p, t, c, 2);
  let agree = 0;
  let bce = 0;
  for (let i = 0; i < p.length; i++) {
    if (p[i]! > threshold === t[i]! > 0.5) agree++;
    const q = Math.min(Math.max(p[i]!, 1e-7), 1 - 1e-7);
    bce -= t[i]! * Math.log(q) + (1 - t[i]!) * Math.log(1 - q);
  }
  return { accuracy: agree / p.length, loss: bce / p.length, f2: score, threshold };
}

/** What a recipe checkpoint describes besides its tensors. */
interface RecipeMeta {
  kind: 'train';
  /** The settings the run was started with; a resume must match them. */
  fingerprint: string;
  lr: number;
  suggested: number | null;
  rule: string;
  finder: { lrs: number[]; losses: number[] };
  /** The stage in progress, and whether it is complete. */
  stage: number;
  stageDone: boolean;
  /** The image training loader's pass counter (its shuffling and augmentation are seeded by it). */
  imageLoaderEpoch: number;
  log: ReturnType<TrainingLog['toJSON']>;
  best: { stage: string; record: EpochRecord } | null;
  seconds: number;
}

/**
 * One stage of a recipe, as data: which layers train and on what, at what rates, on which
 * schedule (SGDR or constant as `fit`, or one cycle as `fitOneCycle`; with `oneCycle`, nCycle
 * is the cycle's epochs). Entering a stage at another size than the learner's data switches to
 * the data at that size (progressive resizing).
 */
export interface StagePlan extends StageShape {
  /** The head alone (the body frozen), or every layer group. */
  train: 'head' | 'all';
  /** Train the head on the body's precomputed activations (no augmentation); only with `train: 'head'`. */
  precompute: boolean;
  /** With `train: 'all'`: keep the body's batch-norm statistics (fast.ai's bn_freeze). */
  bnFreeze?: boolean;
  /** A one-cycle fit (fine-tune's stages) instead of SGDR. */
  oneCycle?: { pctStart: number; divFactor: number };
  /** Said when the stage starts (the architecture's advice on unfreezing). */
  note?: string;
}

/** What `recipeStages` needs of the settings. */
export type StageSettings = Pick<RecipeSettings, 'recipe' | 'sizes' | 'cycles' | 'unfreezeCycles' | 'freezeEpochs' | 'epochs' | 'groupDiv' | 'bnFreeze' | 'unfreezeLr' | 'lessonUnfreeze'>;

/**
 * The recipe's stages for a learner on `arch` at rate `lr`, as data.
 * - 'lesson' (fast.ai's Lesson 2): the head on precomputed activations (constant rate), the head
 *   with augmentation (SGDR, cycleLen 1), then every group at [u/K², u/K, u] (SGDR, cycleMult 2),
 *   `u` and bn_freeze as the architecture advises; at each later size, the last two again.
 * - 'fine-tune' (fastai v2's fine_tune, at each size, with the lesson's precomputed head): the
 *   head on precomputed activations for `freezeEpochs` of one cycle at lr (pctStart 0.25), then
 *   every group one cycle at [u/100, u/10, u] (pctStart 0.3, divFactor 5), u = min(lr/2, the
 *   architecture's advised rate) or `unfreezeLr`, bn_freeze as the architecture advises.
 */
export function recipeStages(settings: StageSettings, lr: number, arch: Arch): StagePlan[] {
  const [size0, ...later] = settings.sizes;
  if (size0 === undefined) throw new InputError('the recipe needs at least one size');
  if (settings.recipe === 'fine-tune') {
    // The head trains on precomputed activations: cheap enough for many epochs, which with a
    // few photos per class is where the lesson's recipe won (bench:recipes, issue 21). The body
    // then unfreezes as the architecture advises, at most at fastai's half rate.
    const plan = unfreezePlan(arch, lr, settings);
    const u = settings.unfreezeLr ?? Math.min(plan.lr, lr / 2);
    const atSize = (size: number, prefix: string, note?: string): StagePlan[] => [
      ...(settings.freezeEpochs > 0
        ? [
            {
              name: `${prefix}fine-tune: head on precomputed activations, one cycle`,
              size,
              lrs: [lr],
              nCycle: settings.freezeEpochs,
              oneCycle: { pctStart: 0.25, divFactor: 25 },
              train: 'head' as const,
              precompute: true,
            },
          ]
        : []),
      {
        name: `${prefix}fine-tune: unfrozen, one cycle`,
        size,
        lrs: spreadRates(u / 100, u, 3),
        nCycle: settings.epochs,
        oneCycle: { pctStart: 0.3, divFactor: 5 },
        train: 'all',
        precompute: false,
        bnFreeze: plan.bnFreeze,
        ...(note ? { note } : {}),
      },
    ];
    return [...atSize(size0, '', plan.note), ...later.flatMap((size) => atSize(size, `size ${size}: `))];
  }
  const plan = unfreezePlan(arch, lr, settings);
  const d = settings.groupDiv;
  const unfrozen = (name: string, size: number, note?: string): StagePlan => ({
    name,
    size,
    lrs: [plan.lr / d / d, plan.lr / d, plan.lr],
    nCycle: settings.unfreezeCycles,
    cycleLen: 1,
    cycleMult: 2,
    train: 'all',
    precompute: false,
    bnFreeze: plan.bnFreeze,
    ...(note && settings.unfreezeCycles > 0 ? { note } : {}),
  });
  return [
    { name: 'head on precomputed activations', size: size0, lrs: [lr], nCycle: settings.cycles, train: 'head', precompute: true },
    { name: 'head with augmentation', size: size0, lrs: [lr], nCycle: settings.cycles, cycleLen: 1, train: 'head', precompute: false },
    unfrozen('unfrozen, differential rates', size0, plan.note),
    ...later.flatMap((size): StagePlan[] => [
      { name: `size ${size}: head with augmentation`, size, lrs: [lr], nCycle: settings.cycles, cycleLen: 1, train: 'head', precompute: false },
      unfrozen(`size ${size}: unfrozen, differential rates`, size),
    ]),
  ];
}

/** Puts the learner in a stage's state: its data's size, which layers train, precompute and bn_freeze. */
async function enterStage(learn: ConvLearner, st: StagePlan, dataAt: (size: number) => Promise<ImageClassifierData>, say: (line: string) => void): Promise<void> {
  if (learn.data.sz !== undefined && st.size !== learn.data.sz) {
    say(`\n# progressive resizing to ${st.size}`);
    learn.setData(await dataAt(st.size));
  }
  if (st.train === 'head') {
    learn.freeze();
    learn.precompute = st.precompute;
  } else {
    learn.unfreeze();
    learn.bnFreeze(st.bnFreeze ?? false);
    if (st.note) say(`\n${st.note}`);
  }
}

/** Epochs of a fit: nCycle, or SGDR's cycleLen × (1 + mult + mult² …). */
function stageEpochs(s: Pick<StagePlan, 'nCycle' | 'cycleLen' | 'cycleMult'>): number {
  return s.cycleLen === undefined ? s.nCycle : s.cycleLen * Array.from({ length: s.nCycle }, (_, k) => (s.cycleMult ?? 1) ** k).reduce((a, b) => a + b, 0);
}

/** Runs one stage's fit: SGDR (or a constant rate) as `fit`, or `fitOneCycle`. */
function runStage(learn: ConvLearner, st: StagePlan, opts: BaseFitOptions): Promise<EpochRecord[]> {
  const lrs = st.lrs.length === 1 ? st.lrs[0]! : st.lrs;
  if (st.oneCycle) return learn.fitOneCycle(lrs, st.nCycle, { ...opts, ...st.oneCycle });
  return learn.fit(lrs, st.nCycle, { ...opts, cycleLen: st.cycleLen, cycleMult: st.cycleMult });
}

/**
 * Runs the recipe on `data` (at `settings.sizes[0]`), as `fastvision train` does: the finder, the
 * stages of `recipeStages`, TTA, then the model file, the HTML report, the submission (with a
 * test set) and the JSON summary in `options.out`. Settings not given are RECIPE_DEFAULTS';
 * `dataAt` gives the data at later sizes. A checkpoint is written at each epoch's end; with
 * `resume` the run continues from it and ends as an uninterrupted run with the same seed would.
 * A stage whose loss diverges stops the training: the last good weights are kept, and without
 * any good epoch nothing is saved.
 *
 * ```ts
 * const summary = await trainRecipe(data, 'mobilenet_v2_nsfwjs', { out: 'out/pets', epochs: 2 });
 * ```
 */
export async function trainRecipe(
  data: ImageClassifierData,
  arch: string,
  options: RecipeOptions,
  dataAt?: (size: number) => Promise<ImageClassifierData>,
  say: (line: string) => void = console.log,
  pg: ProcessGroup | null = null,
): Promise<TrainSummary> {
  const settings = completeRecipeSettings(options, data);
  if (settings.sizes.length > 1 && !dataAt) throw new InputError(`progressive resizing (sizes ${settings.sizes.join(', ')}) needs the data at each size: pass dataAt`);
  const t0 = performance.now();
  const out = resolve(settings.out);
  // Distributed: every rank trains; rank 0 alone draws, saves and writes.
  const session = await TrainingSession.open<RecipeMeta>(out, { kind: 'train', fingerprint: settings.fingerprint, resume: settings.resume, pg });
  const { writer, file: ckptFile } = session;
  let resume = session.resumed;
  const report = new Report(out, `fastvision: ${basename(data.path)} (${arch})`, !writer);
  say(
    `${data.trnDs.length} training, ${data.valDs?.length ?? 0} validation${data.testDs ? `, ${data.testDs.length} test` : ''} images; ${data.c} classes: ${data.classes
      .slice(0, 10)
      .map((c) => shown(c))
      .join(', ')}${data.c > 10 ? ', …' : ''}`,
  );
  if (!data.valDs || data.valDs.length === 0) throw new InputError(`${data.path}: no validation images; the recipe needs a validation set (valid/ folder or --val-pct above 0)`);
  manualSeed(settings.seed);
  const counts = writer ? await addDataSection(report, data) : { trn: {}, val: null };
  const { trn: trnCounts, val: valCounts } = counts;
  if (writer) await addAugmentationPreview(report, data);
  const fineTune = settings.recipe === 'fine-tune';
  // fastai v2 trains with AdamW (weight decay 0.01); the lesson with SGD and momentum.
  const learn = await ConvLearner.pretrained(arch, data, {
    precompute: true,
    pretrained: settings.weights ?? true,
    optFunc: fineTune ? 'adamw' : 'sgd',
    processGroup: pg ?? undefined,
    log: writer ? undefined : null,
    device: settings.device ?? 'cpu',
    mixedPrecision: settings.mixedPrecision ?? undefined,
    classWeights: settings.classWeights,
  });
  // Every rank must run the same command on the same model.
  if (pg && pg.worldSize > 1) await checkSameEverywhere(pg, learn.model, settings.fingerprint);
  if (settings.unfreezeCycles > 0 || settings.sizes.length > 1 || fineTune)
    refuseBatchTooLarge(learn.model, { arch, size: settings.sizes[settings.sizes.length - 1]!, bs: data.bs, unfrozen: settings.unfreezeCycles > 0 });
  const size0 = settings.sizes[0]!;

  let lr: number;
  let suggestion: { lr: number; rule: string } | null = null;
  let rule: string;
  let finder: LrFinderResult;
  if (resume) {
    say(`\nresuming from ${ckptFile}: '${resume.meta.log.stages.at(-1)?.name ?? 'the start'}' had finished ${resume.fit?.epoch ?? 0} epoch(s)`);
    ({ lr, rule } = resume.meta);
    suggestion = resume.meta.suggested === null ? null : { lr: resume.meta.suggested, rule: resume.meta.rule };
    finder = new LrFinderResult(resume.meta.finder.lrs, resume.meta.finder.losses);
    learn.model.loadStateDict(resume.model);
  } else {
    say('\n# learning-rate finder');
    // At least 100 mini-batches (cheap on precomputed activations): one pass over a small dataset is a handful of coarse points.
    finder = await learn.lrFind({ numIt: Math.max(100, data.trnDl.length) });
    suggestion = finder.suggestion(settings.suggest);
    lr = settings.lr ?? suggestion.lr;
    rule = settings.lr === undefined ? suggestion.rule : 'given by --lr';
    say(`${finder.lrs.length} iterations; suggested ${suggestion.lr.toExponential(2)} (${suggestion.rule}); using ${lr.toExponential(2)}`);
  }
  if (writer) await addLrFinder(report, finder, lr, rule);
  const observer = writer ? settings.observer : undefined;
  observer?.finder?.({ lrs: finder.lrs, losses: finder.losses, suggested: suggestion?.lr ?? null, chosen: lr, rule });

  const log = resume ? TrainingLog.from(resume.meta.log) : new TrainingLog();
  if (resume) observer?.restored?.({ iterations: log.iterations, epochs: log.stages.flatMap((s) => s.history.map((record) => ({ stage: s.name, record }))) });
  // The weights with the lowest validation loss among SGDR's snapshot points and each stage's end.
  const keeper = new BestWeightsKeeper();
  if (resume?.meta.best && resume.states.has('best')) keeper.best = { ...resume.meta.best, state: resume.states.get('best')! };
  const stages = recipeStages(settings, lr, learn.arch);
  // What the unfrozen stages ran with, for the summary.
  const plan = unfreezePlan(learn.arch, lr, settings);

  let diverged: { stage: string; error: TrainingDivergedError } | null = null;
  const resumedFrom = resume ? { stage: resume.meta.stage, epoch: resume.fit?.epoch ?? null } : null;
  for (const [i, st] of stages.entries()) {
    // dataAt is there whenever a stage changes size: checked at the start.
    await enterStage(learn, st, dataAt!, say);
    if (resume && i < resume.meta.stage) continue;
    const fitResume = resume && i === resume.meta.stage ? resume : null;
    resume = null;
    if (fitResume?.meta.stageDone) {
      // The checkpoint is this stage's end: the next stage starts from its loaders and random state.
      learn.data.trnDl.epoch = fitResume.meta.imageLoaderEpoch;
      setRngState(fitResume.rng);
      disposeCheckpoint({ ...fitResume, states: new Map() });
      continue;
    }
    if (st.nCycle === 0 || diverged) continue;
    if (!fitResume) say(`\n# ${st.name}`);
    const cb = fitResume?.fit ? log.continueLast(fitResume.fit.iteration) : log.begin({ name: st.name, size: st.size, lrs: st.lrs, nCycle: st.nCycle, cycleLen: st.cycleLen, cycleMult: st.cycleMult });
    const epochs = stageEpochs(st);
    keeper.stage = st.name;
    observer?.stage?.({ index: i, count: stages.length, name: st.name, size: st.size, epochs, done: fitResume?.fit?.epoch ?? 0 });
    const watch: Callback = {
      afterBatch: (loop) => {
        const at = log.iterations.at(-1);
        if (at) observer?.batch?.({ iteration: at.iteration, loss: at.loss, lr: at.lr, epoch: loop.epoch, batch: loop.iteration - loop.epoch * loop.itersPerEpoch, batches: loop.itersPerEpoch });
      },
      afterEpoch: (loop) => {
        if (loop.record) observer?.epoch?.({ stage: st.name, record: loop.record, iteration: log.iterations.at(-1)?.iteration ?? 0 });
      },
    };
    const onCheckpoint = async (fs: FitState): Promise<void> => {
      const chosen = keeper.best;
      const meta: RecipeMeta = {
        kind: 'train',
        fingerprint: settings.fingerprint,
        lr,
        suggested: suggestion?.lr ?? null,
        rule,
        finder: { lrs: finder.lrs, losses: finder.losses },
        stage: i,
        stageDone: fs.epoch === epochs,
        imageLoaderEpoch: learn.data.trnDl.epoch,
        log: log.toJSON(),
        best: chosen ? { stage: chosen.stage, record: chosen.record } : null,
        seconds: (performance.now() - t0) / 1000,
      };
      await session.checkpoint(meta, learn.model.stateDict(), fs, chosen ? new Map([['best', chosen.state]]) : undefined);
    };
    if (fitResume) learn.data.trnDl.epoch = fitResume.meta.imageLoaderEpoch;
    try {
      const error = await session.guarded(() =>
        runStage(learn, st, { cbs: [cb, ...(settings.keepBest ? [keeper] : []), ...(observer ? [watch] : [])], onCheckpoint, resume: fitResume?.fit ?? undefined }),
      );
      if (error) {
        diverged = { stage: st.name, error };
        say(`\n${error.message}`);
      }
    } finally {
      // The best weights ('states') live on in the keeper.
      if (fitResume) disposeCheckpoint({ ...fitResume, states: new Map() });
    }
  }
  let last = log.last();
  if (last === undefined) {
    throw session.nothingSaved(`${diverged ? `training diverged in '${diverged.stage}' (${diverged.error.reason})` : 'no epoch was trained'} before any epoch ended well`);
  }
  let kept: { stage: string; epoch: number; valLoss: number | null } | null = null;
  const chosen = keeper.best;
  if (chosen && chosen.record !== last && !(chosen.record.epoch === last.epoch && chosen.record.valLoss === last.valLoss && chosen.stage === log.stages.at(-1)?.name)) {
    say(
      `\nkeeping the weights from epoch ${chosen.record.epoch} of '${chosen.stage}' (validation loss ${chosen.record.valLoss!.toFixed(4)}; training ended at ${last.valLoss?.toFixed(4)}); --keep-last keeps the last ones`,
    );
    learn.model.loadStateDict(chosen.state);
    last = chosen.record;
  }
  if (chosen) kept = { stage: chosen.stage, epoch: chosen.record.epoch, valLoss: chosen.record.valLoss };
  keeper.dispose();
  const modelFile = join(out, 'model.pth');
  const saved = writer ? await saveModel(out, learn, learn.data.sz ?? size0) : { model: modelFile, info: join(out, 'model.json') };
  if (writer) await addTraining(report, log);

  say(`\n# test-time augmentation (${settings.ttaAug} augmented copies + the original)`);
  observer?.phase?.('tta');
  const tta = await learn.TTA({ nAug: settings.ttaAug });
  const multi = learn.multiLabel;
  const ttaScore: TrainSummary['tta'] & object = { ...(multi ? scoreTags(tta.probs, tta.y) : scoreProbs(tta.probs, tta.y)), nAug: settings.ttaAug };
  if (multi) {
    say(
      `validation F2 ${last?.metrics.f2?.toFixed(4) ?? '-'} at 0.2 (loss ${last?.valLoss?.toFixed(4) ?? '-'}), with TTA ${ttaScore.f2!.toFixed(4)} at the best threshold, ${ttaScore.threshold!.toFixed(2)} (accuracy ${ttaScore.accuracy.toFixed(4)})`,
    );
    // The threshold chosen on validation goes with the model: predict and submit use it.
    if (writer) await saveModel(out, learn, learn.data.sz ?? size0, { threshold: ttaScore.threshold });
  } else say(`validation accuracy ${last?.accuracy?.toFixed(4) ?? '-'} (loss ${last?.valLoss?.toFixed(4) ?? '-'}), with TTA ${ttaScore.accuracy.toFixed(4)} (loss ${ttaScore.loss.toFixed(4)})`);
  const valDs = learn.data.valDs;
  let confusion: number[][] | null = null;
  if (!writer) {
    // Only rank 0 interprets.
  } else if (multi && valDs instanceof FilesDataset) {
    addTagTable(report, tta.probs.dataSync() as Float32Array, tta.y.dataSync() as Float32Array, data.classes, ttaScore.threshold!);
  } else if (valDs instanceof FilesDataset) {
    const files = predictedFiles(valDs);
    const probs = tta.probs.dataSync() as Float32Array;
    observer?.phase?.('report');
    await writeValidationPredictions(out, data, valDs, probs, tta.y.toArray());
    ({ confusion } = await addInterpretation(report, { probs, c: data.c, y: tta.y.toArray() }, files, data.classes, { cam: camTiles(learn) }));
  }
  tta.probs.dispose();
  tta.y.dispose();

  let submission: string | null = null;
  const testDs = learn.data.testDs;
  if (testDs instanceof FilesDataset && testDs.length > 0) {
    say('\n# predictions for the test set (TTA)');
    const t = await learn.TTA({ nAug: settings.ttaAug, isTest: true });
    submission = join(out, 'submission.csv');
    if (writer) await writeSubmission(submission, predictedFiles(testDs), t.probs.dataSync() as Float32Array, data.classes, multi ? { tags: ttaScore.threshold! } : {});
    t.probs.dispose();
    t.y.dispose();
  }
  report.addTable(
    'Summary',
    ['', 'value'],
    [
      ['classes', data.c],
      ['architecture', arch],
      ['sizes', settings.sizes.join(', ')],
      ['learning rate', lr.toExponential(2)],
      ['model kept from', `${kept?.stage ?? log.stages.at(-1)?.name ?? ''}, epoch ${kept?.epoch ?? last?.epoch ?? ''}`],
      ['its validation loss', last?.valLoss ?? ''],
      ...(multi
        ? ([
            ['its validation F2 (threshold 0.2)', last?.metrics.f2 ?? ''],
            ['TTA F2', ttaScore.f2!],
            ['threshold (best F2 on validation)', ttaScore.threshold!],
          ] as [string, number | string][])
        : ([
            ['its validation accuracy', last?.accuracy ?? ''],
            ['TTA accuracy', ttaScore.accuracy],
          ] as [string, number | string][])),
      ['model', saved.model],
      ...(submission ? [['submission', submission] as [string, string]] : []),
    ],
  );
  const reportFile = await report.write();
  const summary: TrainSummary = {
    data: { path: data.path, classes: data.classes, counts: { trn: trnCounts, val: valCounts }, test: data.testDs?.length ?? 0 },
    arch,
    sizes: settings.sizes,
    settings: {
      recipe: settings.recipe,
      suggest: settings.suggest,
      freezeEpochs: settings.freezeEpochs,
      epochs: settings.epochs,
      sizes: settings.sizes,
      cycles: settings.cycles,
      unfreezeCycles: settings.unfreezeCycles,
      lr: settings.lr,
      groupDiv: settings.groupDiv,
      bnFreeze: plan.bnFreeze,
      unfreezeLr: plan.lr,
      lessonUnfreeze: settings.lessonUnfreeze,
      weights: settings.weights,
      ttaAug: settings.ttaAug,
      keepBest: settings.keepBest,
      seed: settings.seed,
    },
    lr: { chosen: lr, suggested: suggestion?.lr ?? null, rule, finder: finder.lrs.map((l, i) => ({ lr: l, loss: finder.losses[i]! })) },
    stages: log.stages.map((s) => ({
      name: s.name,
      size: s.size,
      lrs: s.lrs,
      nCycle: s.nCycle,
      cycleLen: s.cycleLen,
      cycleMult: s.cycleMult,
      seconds: s.seconds,
      history: s.history.map((h) => ({ epoch: h.epoch, trnLoss: h.trnLoss, valLoss: h.valLoss, accuracy: h.accuracy })),
    })),
    final: { valLoss: last?.valLoss ?? null, accuracy: last?.accuracy ?? null, stage: kept?.stage ?? log.stages.at(-1)?.name ?? null, epoch: kept?.epoch ?? last?.epoch ?? null },
    tta: ttaScore,
    multiLabel: multi,
    confusion,
    artifacts: {
      out,
      model: saved.model,
      modelInfo: saved.info,
      report: reportFile,
      pictures: report.pictures,
      submission,
      json: settings.json ? (settings.json === '-' ? '-' : resolve(settings.json)) : null,
    },
    diverged: diverged ? { stage: diverged.stage, epoch: diverged.error.epoch, reason: diverged.error.reason, restoredTo: diverged.error.restoredTo } : null,
    resumedFrom: resumedFrom ? { stage: stages[resumedFrom.stage]!.name, epoch: resumedFrom.epoch } : null,
    worldSize: pg?.worldSize ?? 1,
    seconds: (performance.now() - t0) / 1000,
  };
  if (settings.json && writer) await writeFileAtomic(settings.json === '-' ? '-' : resolve(settings.json), `${JSON.stringify(summary, null, 2)}\n`);
  // The run is complete: a later --resume has nothing to continue.
  await session.complete();
  say(
    `\nmodel:  ${saved.model}\nreport: ${reportFile}${submission ? `\nsubmission: ${submission}` : ''}${settings.json ? `\nsummary: ${settings.json === '-' ? 'standard output' : resolve(settings.json)}` : ''}`,
  );
  if (diverged) say(`warning: training stopped early (${diverged.error.reason} in '${diverged.stage}'); the model saved is the last good one`);
  return summary;
}
