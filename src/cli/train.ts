// `fastvision train`: the lesson's steps to a world-class image classifier,
// done for a folder of photos — learning-rate finder, head on precomputed
// activations, augmentation, unfreezing with differential rates and cycleMult 2,
// optional progressive resizing, TTA — then the model, report, JSON and submission.
import { unfreezePlan } from '../learn/unfreeze-plan.js';
import { deviceArg, mixedPrecisionArg, TRAINING_DEVICE_OPTIONS } from './device-args.js';
import type { MixedPrecisionMode } from '../learn/mixed-precision.js';
import { existsSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { ConvLearner, type BaseFitOptions } from '../learn/conv-learner.js';
import { LrFinderResult, SUGGESTION_RULES, type SuggestionRule } from '../learn/lr-finder.js';
import type { EpochRecord, FitState } from '../learn/loop.js';
import { BestWeightsKeeper } from '../learn/callbacks.js';
import { checkSameEverywhere } from '../learn/ddp.js';
import type { ProcessGroup } from '../torch/distributed.js';
import { DIST_OPTION_NAMES, DIST_OPTIONS, distRole, joinGroup, launchRanks, leaveGroup, rankLogger } from './distributed.js';
import { disposeCheckpoint, loadCheckpoint, saveCheckpoint, type Checkpoint } from '../learn/checkpoint.js';
import { TrainingDivergedError } from '../learn/guard.js';
import { BatchTooLargeError, checkBatchFits, OutOfMemoryError } from '../learn/memory.js';
import { addAugmentationPreview, addDataSection, addInterpretation, addLrFinder, addTagTable, addTraining, camTiles } from './figures.js';
import { bestThreshold } from '../learn/metrics.js';
import { Report } from '../report/html.js';
import { TrainingLog, type StageShape } from './training-log.js';
import { F, manualSeed, noGrad, setRngState, tensor, tidy, type Tensor } from '../torch/index.js';
import { writeFileAtomic } from '../util/files.js';
import type { ImageClassifierData } from '../vision/data.js';
import { FilesDataset } from '../vision/dataset.js';
import { choice, flag, num, numList, str, UsageError, type CommandSpec, type OptionSpec, type ParsedArgs } from './args.js';
import { archArg, dataPath, LAYOUT_OPTIONS, loadData, MODEL_OPTIONS, sizeArg } from './data-args.js';
import { saveModel } from './model-file.js';
import { claimFile, withOutput } from './outputs.js';
import { writeSubmission } from './submission.js';
import { readRegularFile } from '../util/read-files.js';
import { shown } from '../util/shown.js';

/** What the recipe needs, with the CLI's defaults filled in. */
export interface RecipeSettings {
  /**
   * 'lesson': fast.ai's Lesson 2 (head on activations, augmentation, unfreeze with
   * SGDR); 'fine-tune': fastai v2's fine_tune (AdamW, one-cycle, head then all).
   */
  recipe: Recipe;
  /** The finder's suggestion rule (lesson: a tenth of the minimum; fine-tune: valley). */
  suggest: SuggestionRule;
  /** fine-tune: one-cycle epochs with the body frozen, then unfrozen. */
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
}

/** The recipes `train` knows. */
export type Recipe = 'lesson' | 'fine-tune';
export const RECIPES: Recipe[] = ['lesson', 'fine-tune'];

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

/** One stage of the recipe: how to enter it (freezing, data) and what to fit (with `oneCycle`, nCycle is the cycle's epochs). */
interface StagePlan extends StageShape {
  /** A one-cycle fit (fine-tune's stages) instead of SGDR. */
  oneCycle?: { pctStart: number; divFactor: number };
  enter: () => Promise<void>;
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

/** Where `train` and `fit` keep their checkpoint in the output folder. */
export function checkpointFile(out: string): string {
  return join(resolve(out), 'checkpoint.pth');
}

/**
 * The checkpoint `--resume` continues from: the one in `out`, written by `command`
 * with the same fingerprint; anything else is a UsageError saying why.
 */
export async function openCheckpoint<M extends { kind: string; fingerprint: string }>(out: string, command: 'train' | 'fit', fingerprint: string): Promise<Checkpoint<M>> {
  const file = checkpointFile(out);
  if (!existsSync(file)) throw new UsageError(`--resume: no checkpoint in ${resolve(out)} (${command} writes ${file} at the end of each epoch)`);
  const c = await loadCheckpoint<M>(file);
  if (c.meta.kind !== command || c.meta.fingerprint !== fingerprint || (command === 'fit' && c.fit === null)) {
    disposeCheckpoint(c);
    throw new UsageError(`--resume: the checkpoint in ${resolve(out)} was made by a run with other data or settings; run again with the same options, or without --resume to start over`);
  }
  return c;
}

/**
 * `openCheckpoint` for a distributed run: rank 0 reads its checkpoint (written on
 * its machine) and sends the file to every rank through the group, so that all
 * continue from the same state; rank 0's refusal is every rank's. (Every rank's
 * weights, optimizer state and random generator equal rank 0's throughout a run.)
 */
export async function shareCheckpoint<M extends { kind: string; fingerprint: string }>(pg: ProcessGroup, out: string, command: 'train' | 'fit', fingerprint: string): Promise<Checkpoint<M>> {
  let mine: Checkpoint<M> | null = null;
  let bytes: Uint8Array | null = null;
  if (pg.rank === 0) {
    try {
      mine = await openCheckpoint<M>(out, command, fingerprint);
      bytes = await readRegularFile(checkpointFile(out));
    } catch (e) {
      pg.set('resume-error', (e as Error).message);
    }
  }
  const header = tensor(BigInt64Array.from([BigInt(bytes?.length ?? -1)]), { device: pg.device });
  await pg.broadcast([header], 0);
  const n = Number(header.toArray()[0]);
  header.dispose();
  if (n < 0) {
    const why = pg.rank === 0 ? null : pg.get('resume-error');
    if (pg.rank === 0) throw new UsageError(pg.get('resume-error'));
    throw new UsageError(`rank 0 cannot resume: ${why}`);
  }
  const payload = tensor(bytes ?? new Uint8Array(n), { device: pg.device });
  try {
    await pg.broadcast([payload], 0);
    if (mine) return mine;
    // The other ranks read rank 0's file from a private copy.
    const copy = join(tmpdir(), `fastvision-resume-${process.pid}-${pg.rank}.pth`);
    await writeFile(copy, payload.dataSync() as Uint8Array);
    try {
      return await loadCheckpoint<M>(copy);
    } finally {
      await rm(copy, { force: true });
    }
  } finally {
    payload.dispose();
  }
}

/**
 * Runs a training command's work; an OutOfMemoryError comes out saying where the
 * checkpoint of the last finished epoch is (it is never removed after a failure).
 */
export async function notingCheckpoint<T>(ckptFile: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (e) {
    if (e instanceof OutOfMemoryError && existsSync(ckptFile)) throw new OutOfMemoryError(`${e.message}; the checkpoint of the last finished epoch is kept in ${ckptFile}`, e.suggestedBs);
    throw e;
  }
}

/** `checkBatchFits` for a command: a batch too large for memory is a UsageError ("try --bs N"). */
export function refuseBatchTooLarge(...args: Parameters<typeof checkBatchFits>): void {
  try {
    checkBatchFits(...args);
  } catch (e) {
    if (e instanceof BatchTooLargeError) throw new UsageError(e.message);
    throw e;
  }
}

/**
 * Runs the recipe on `data` (at `settings.sizes[0]`); `dataAt` gives the data at
 * later sizes. A checkpoint is written at each epoch's end; with
 * `settings.resume` the run continues from it and ends as an uninterrupted run
 * with the same seed would. A stage whose loss diverges stops the training: the
 * last good weights are kept, and without any good epoch nothing is saved.
 */
export async function runRecipe(
  data: ImageClassifierData,
  arch: string,
  settings: RecipeSettings,
  dataAt: (size: number) => Promise<ImageClassifierData>,
  say: (line: string) => void = console.log,
  pg: ProcessGroup | null = null,
): Promise<TrainSummary> {
  const t0 = performance.now();
  const out = resolve(settings.out);
  const ckptFile = checkpointFile(out);
  // Distributed: every rank trains; rank 0 alone draws, saves and writes.
  const writer = pg === null || pg.rank === 0;
  let resume = settings.resume
    ? pg && pg.worldSize > 1
      ? await shareCheckpoint<RecipeMeta>(pg, out, 'train', settings.fingerprint)
      : await openCheckpoint<RecipeMeta>(out, 'train', settings.fingerprint)
    : null;
  const report = new Report(out, `fastvision: ${basename(data.path)} (${arch})`, !writer);
  say(
    `${data.trnDs.length} training, ${data.valDs?.length ?? 0} validation${data.testDs ? `, ${data.testDs.length} test` : ''} images; ${data.c} classes: ${data.classes
      .slice(0, 10)
      .map((c) => shown(c))
      .join(', ')}${data.c > 10 ? ', …' : ''}`,
  );
  if (!data.valDs || data.valDs.length === 0) throw new UsageError(`${data.path}: no validation images; the recipe needs a validation set (valid/ folder or --val-pct above 0)`);
  manualSeed(settings.seed);
  const counts = writer ? await addDataSection(report, data) : { trn: {}, val: null };
  const { trn: trnCounts, val: valCounts } = counts;
  if (writer) await addAugmentationPreview(report, data);
  const fineTune = settings.recipe === 'fine-tune';
  // fastai v2 trains with AdamW (weight decay 0.01); the lesson with SGD and momentum.
  const learn = await ConvLearner.pretrained(arch, data, {
    precompute: true,
    pretrained: settings.weights ?? true,
    optFn: fineTune ? 'adamw' : 'sgd',
    processGroup: pg ?? undefined,
    log: writer ? undefined : null,
    device: settings.device ?? 'cpu',
    mixedPrecision: settings.mixedPrecision ?? undefined,
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

  const d = settings.groupDiv;
  const plan = unfreezePlan(learn.arch, lr, settings);
  const groupLrs = [plan.lr / d / d, plan.lr / d, plan.lr];
  const log = resume ? TrainingLog.from(resume.meta.log) : new TrainingLog();
  // The weights with the lowest validation loss among SGDR's snapshot points and each stage's end.
  const keeper = new BestWeightsKeeper();
  if (resume?.meta.best && resume.states.has('best')) keeper.best = { ...resume.meta.best, state: resume.states.get('best')! };
  // The unfrozen stage at a size: all layer groups, differential rates, SGDR with cycleMult 2.
  const unfrozen = (name: string, size: number, note?: string): StagePlan => ({
    name,
    size,
    lrs: groupLrs,
    nCycle: settings.unfreezeCycles,
    cycleLen: 1,
    cycleMult: 2,
    enter: async () => {
      learn.unfreeze();
      learn.bnFreeze(plan.bnFreeze);
      if (note && settings.unfreezeCycles > 0) say(`\n${note}`);
    },
  });
  // fastai v2's fine_tune at each size: the head for freezeEpochs (warm-up 99%), then everything at
  // half the rate, the body's first group 100× slower (pctStart 0.3, divFactor 5), both one-cycle.
  const fineTuneStages = (size: number, prefix: string, enterData?: () => Promise<void>): StagePlan[] => [
    {
      name: `${prefix}fine-tune: head, one cycle`,
      size,
      lrs: [lr / 10, lr / 10, lr],
      nCycle: settings.freezeEpochs,
      oneCycle: { pctStart: 0.99, divFactor: 25 },
      enter: async () => {
        await enterData?.();
        learn.freeze();
        learn.precompute = false;
      },
    },
    {
      name: `${prefix}fine-tune: unfrozen, one cycle`,
      size,
      lrs: [lr / 2 / 100, lr / 2 / 10, lr / 2],
      nCycle: settings.epochs,
      oneCycle: { pctStart: 0.3, divFactor: 5 },
      enter: async () => {
        learn.unfreeze();
        learn.bnFreeze(settings.bnFreeze ?? false);
      },
    },
  ];
  const stages: StagePlan[] = fineTune
    ? [
        ...fineTuneStages(size0, ''),
        ...settings.sizes.slice(1).flatMap((size) =>
          fineTuneStages(size, `size ${size}: `, async () => {
            say(`\n# progressive resizing to ${size}`);
            learn.setData(await dataAt(size));
          }),
        ),
      ]
    : [
        { name: 'head on precomputed activations', size: size0, lrs: [lr], nCycle: settings.cycles, enter: async () => void (learn.precompute = true) },
        { name: 'head with augmentation', size: size0, lrs: [lr], nCycle: settings.cycles, cycleLen: 1, enter: async () => void (learn.precompute = false) },
        unfrozen('unfrozen, differential rates', size0, plan.note),
        ...settings.sizes.slice(1).flatMap((size): StagePlan[] => [
          {
            name: `size ${size}: head with augmentation`,
            size,
            lrs: [lr],
            nCycle: settings.cycles,
            cycleLen: 1,
            enter: async () => {
              say(`\n# progressive resizing to ${size}`);
              learn.setData(await dataAt(size));
            },
          },
          unfrozen(`size ${size}: unfrozen, differential rates`, size),
        ]),
      ];

  let diverged: { stage: string; error: TrainingDivergedError } | null = null;
  const resumedFrom = resume ? { stage: resume.meta.stage, epoch: resume.fit?.epoch ?? null } : null;
  for (const [i, st] of stages.entries()) {
    await st.enter();
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
      await saveCheckpoint(ckptFile, { meta, model: learn.model.stateDict(), fit: fs, states: chosen ? new Map([['best', chosen.state]]) : undefined, rng: fs.rng });
    };
    if (fitResume) learn.data.trnDl.epoch = fitResume.meta.imageLoaderEpoch;
    try {
      await runStage(learn, st, { callbacks: settings.keepBest ? [cb, keeper] : [cb], onCheckpoint: writer ? onCheckpoint : undefined, resume: fitResume?.fit ?? undefined });
    } catch (e) {
      if (!(e instanceof TrainingDivergedError)) throw e;
      diverged = { stage: st.name, error: e };
      say(`\n${e.message}`);
    } finally {
      if (fitResume) disposeCheckpoint({ ...fitResume, states: new Map() });
    }
  }
  let last = log.last();
  if (last === undefined) {
    throw new Error(
      `${diverged ? `training diverged in '${diverged.stage}' (${diverged.error.reason})` : 'no epoch was trained'} before any epoch ended well, so no model was saved${existsSync(join(out, 'model.pth')) ? ' (the previous model is kept)' : ''}; try a lower --lr`,
    );
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
  if (writer) await rm(ckptFile, { force: true });
  say(
    `\nmodel:  ${saved.model}\nreport: ${reportFile}${submission ? `\nsubmission: ${submission}` : ''}${settings.json ? `\nsummary: ${settings.json === '-' ? 'standard output' : resolve(settings.json)}` : ''}`,
  );
  if (diverged) say(`warning: training stopped early (${diverged.error.reason} in '${diverged.stage}'); the model saved is the last good one`);
  return summary;
}

export const RECIPE_OPTIONS: Record<string, OptionSpec> = {
  recipe: { type: 'string', arg: 'NAME', help: 'fine-tune (fastai v2: AdamW, one-cycle, head then all) or lesson (fast.ai Lesson 2: SGD, head on activations, SGDR, unfreeze)', default: 'fine-tune' },
  suggest: { type: 'string', arg: 'RULE', help: `the finder's suggestion rule (${SUGGESTION_RULES.join(', ')})`, default: 'lesson for --recipe lesson, valley for fine-tune' },
  'freeze-epochs': { type: 'string', arg: 'N', help: 'fine-tune: one-cycle epochs of the head alone', default: '1' },
  epochs: { type: 'string', arg: 'N', help: 'fine-tune: one-cycle epochs of the unfrozen model', default: '4' },
  sizes: { type: 'string', arg: 'PX,PX', help: 'progressive resizing: train at each size in turn (overrides --size)' },
  cycles: { type: 'string', arg: 'N', help: 'cycles of each frozen stage', default: '3' },
  'unfreeze-cycles': { type: 'string', arg: 'N', help: 'cycles of the unfrozen stage (cycleMult 2: 1+2+4 epochs for 3)', default: '3' },
  lr: { type: 'string', arg: 'RATE', help: "learning rate (default: the finder's suggestion)" },
  'group-div': { type: 'string', arg: 'K', help: 'rate factor between layer groups once unfrozen (3 for satellite or medical images)', default: '10' },
  'bn-freeze': { type: 'boolean', help: "keep the body's batch-norm statistics once unfrozen (fast.ai's bn_freeze)" },
  'lesson-unfreeze': { type: 'boolean', help: 'unfreeze as the lesson does even where the architecture advises otherwise (batch statistics, the same rate)' },
  'unfreeze-lr': { type: 'string', arg: 'RATE', help: "the head's rate once unfrozen (the body's are K and K² times lower)", default: "--lr, times the architecture's advice" },
  weights: { type: 'string', arg: 'NAME|FILE', help: "the body's pretrained weights: a zoo name or a .pth file (default: the architecture's own)" },
  'tta-aug': { type: 'string', arg: 'N', help: 'augmented copies averaged by test-time augmentation', default: '4' },
  'keep-last': { type: 'boolean', help: 'save the weights training ended with, not those of the cycle end with the lowest validation loss' },
  seed: { type: 'string', arg: 'N', help: "seed of the head's initial weights, dropout, shuffling and augmentation", default: '0' },
  resume: { type: 'boolean', help: "continue an interrupted run from --out's checkpoint (written at each epoch's end), with the same options" },
  out: { type: 'string', arg: 'DIR', help: 'where the model, pictures, report and submission go', default: './fastvision-out/<folder name>' },
  json: { type: 'string', arg: 'FILE', help: 'also write a machine-readable summary there' },
};

/**
 * The options that decide what a run computes (the data, the model, the
 * schedule, the seed), as one string: a resumed run must be given the same.
 * Where the results go, and how many threads load images, do not count.
 */
export function runFingerprint(args: ParsedArgs, path: string): string {
  // The device is not among them: a checkpoint written on the CPU resumes on a GPU, and back.
  const ignored = new Set(['resume', 'out', 'json', 'workers', 'device', ...DIST_OPTION_NAMES]);
  const values = Object.entries(args.values)
    .filter(([k, v]) => !ignored.has(k) && v !== undefined)
    .sort(([a], [b]) => a.localeCompare(b));
  return JSON.stringify({ path: resolve(path), values });
}

/** The options only one recipe reads: given with the other, they would be silently ignored. */
const RECIPE_ONLY: Record<Recipe, string[]> = {
  lesson: ['cycles', 'unfreeze-cycles', 'group-div', 'unfreeze-lr', 'lesson-unfreeze'],
  'fine-tune': ['freeze-epochs', 'epochs'],
};

/** A UsageError for an option that belongs to the recipe not chosen, naming that recipe. */
function refuseOtherRecipesOptions(args: ParsedArgs, recipe: Recipe): void {
  for (const [other, names] of Object.entries(RECIPE_ONLY) as [Recipe, string[]][]) {
    if (other === recipe) continue;
    const given = names.find((n) => args.values[n] !== undefined);
    if (given)
      throw new UsageError(
        `--${given} belongs to --recipe ${other}; ${recipe === 'fine-tune' ? 'the fine-tune recipe (the default) trains --freeze-epochs, then --epochs' : 'the lesson recipe trains --cycles, then --unfreeze-cycles'}`,
      );
  }
}

/** The recipe's settings from the command line. */
export function recipeSettings(args: ParsedArgs, path: string, dfltSize = 224): RecipeSettings {
  const sizes = numList(args, 'sizes', { min: 8, max: 2048, integer: true }) ?? [sizeArg(args, dfltSize)];
  if (sizes.some((s, i) => i > 0 && s <= sizes[i - 1]!)) throw new UsageError(`--sizes: ${sizes.join(',')} must grow, e.g. 128,224`);
  // fine-tune is the default: more accuracy per minute on pets-sample (npm run bench:recipes, BENCHMARKS.md).
  const recipe = choice(args, 'recipe', RECIPES, 'fine-tune');
  refuseOtherRecipesOptions(args, recipe);
  return {
    recipe,
    suggest: choice(args, 'suggest', SUGGESTION_RULES, recipe === 'fine-tune' ? 'valley' : 'lesson'),
    freezeEpochs: num(args, 'freeze-epochs', 1, { min: 0, max: 1000, integer: true }),
    epochs: num(args, 'epochs', 4, { min: 1, max: 1000, integer: true }),
    sizes,
    cycles: num(args, 'cycles', 3, { min: 1, max: 1000, integer: true }),
    unfreezeCycles: num(args, 'unfreeze-cycles', 3, { min: 0, max: 12, integer: true }),
    lr: num(args, 'lr', undefined, { min: 1e-8, max: 10 }),
    groupDiv: num(args, 'group-div', 10, { min: 1, max: 1000 }),
    bnFreeze: flag(args, 'bn-freeze') ? true : undefined,
    lessonUnfreeze: flag(args, 'lesson-unfreeze'),
    unfreezeLr: num(args, 'unfreeze-lr', undefined, { min: 1e-8, max: 10 }),
    weights: str(args, 'weights'),
    ttaAug: num(args, 'tta-aug', 4, { min: 0, max: 64, integer: true }),
    keepBest: !flag(args, 'keep-last'),
    seed: num(args, 'seed', 0, { min: 0, max: 2 ** 31 - 1, integer: true }),
    resume: flag(args, 'resume'),
    mixedPrecision: mixedPrecisionArg(args),
    fingerprint: runFingerprint(args, path),
    out: str(args, 'out', join('fastvision-out', basename(path))),
    json: str(args, 'json'),
  };
}

export const trainCommand: CommandSpec = {
  name: 'train',
  summary:
    "Trains a classifier on a folder of labelled photos (fastai v2's fine-tune recipe, or --recipe lesson), then saves the model, an HTML report with pictures, and (with --test) a Kaggle submission.",
  positionals: ['<path>'],
  options: { ...LAYOUT_OPTIONS, ...MODEL_OPTIONS, ...RECIPE_OPTIONS, ...TRAINING_DEVICE_OPTIONS, ...DIST_OPTIONS },
  details: [
    '--recipe fine-tune (fastai v2, the default): learning-rate finder (valley) → head for --freeze-epochs, one cycle → unfreeze, rates [lr/200, lr/20, lr/2], --epochs of one cycle (AdamW) → TTA',
    '--recipe lesson: learning-rate finder → head on precomputed activations (--cycles) → head with augmentation (cycleLen 1)',
    "       → unfreeze, rates [u/K², u/K, u] (K = --group-div, u = --unfreeze-lr, or lr times the architecture's advice), cycleLen 1, cycleMult 2 (--unfreeze-cycles) → TTA",
    "mobilenet_v2_nsfwjs's advice (measured on pets-sample): keep batch-norm statistics and unfreeze at lr/5, at most 1e-3; --lesson-unfreeze ignores it.",
    "several processes: --nproc N on this machine; on several machines the same command with --world-size, --rank, --master HOST:PORT (or torchrun's environment); --bs is per process",
    'examples:',
    '  fastvision train photos/dogscats                     # photos/dogscats/train/<label>/*.jpg and valid/',
    '  fastvision train photos/breeds --csv labels.csv --suffix .jpg --test test --sizes 128,224 --json run.json',
  ].join('\n'),
  async run(args) {
    const path = dataPath(args.positionals[0]);
    const arch = archArg(args);
    const settings = recipeSettings(args, path);
    const role = distRole(args);
    if (role.kind === 'launcher') {
      const code = await launchRanks(role.nproc, process.argv.slice(2), resolve(settings.out), num(args, 'dist-timeout', 1800, { min: 1, max: 86400 }) * 1000);
      if (code !== 0) throw new Error(`distributed training failed (exit code ${code}); each rank's log is in ${join(resolve(settings.out), 'logs')}`);
      return;
    }
    // After the launcher: each rank resolves its own GPU (cuda is cuda:LOCAL_RANK).
    settings.device = deviceArg(args);
    const pg = await joinGroup(role, settings.device);
    {
      const shard = pg ? { rank: pg.rank, worldSize: pg.worldSize } : undefined;
      const work = async (): Promise<void> => {
        const data = await loadData(path, args, arch, settings.sizes[0]!, shard);
        await runRecipe(data, arch.name, settings, (size) => loadData(path, args, arch, size, shard), rankLogger(resolve(settings.out), pg), pg);
      };
      // Rank 0 owns the output folder; the others only add their logs to it.
      if (pg && pg.rank !== 0) await work();
      else
        await notingCheckpoint(checkpointFile(resolve(settings.out)), () =>
          withOutput(settings.out, async () => {
            if (settings.json) claimFile(settings.json, '--json');
            await work();
          }),
        );
      // Left on success; after a failure the process exits (a group whose peer died may not shut down cleanly).
      if (pg) leaveGroup();
    }
  },
};
