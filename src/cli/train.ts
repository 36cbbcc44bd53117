// `fastvision train`: the lesson's steps to a world-class image classifier,
// done for a folder of photos — learning-rate finder, head on precomputed
// activations, augmentation, unfreezing with differential rates and cycleMult 2,
// optional progressive resizing, TTA — then the model, report, JSON and submission.
import { basename, join, resolve } from 'node:path';
import { ConvLearner, type Callback, type EpochRecord } from '../learn/learner.js';
import type { Arch } from '../vision/models/archs.js';
import { addAugmentationPreview, addDataSection, addInterpretation, addLrFinder, addTraining } from './figures.js';
import { Report } from '../report/html.js';
import { TrainingLog } from './training-log.js';
import { F, noGrad, tidy, type Tensor } from '../torch/index.js';
import { writeFileAtomic } from '../util/files.js';
import type { ImageClassifierData } from '../vision/data.js';
import { FilesDataset } from '../vision/dataset.js';
import { flag, num, numList, str, UsageError, type CommandSpec, type OptionSpec, type ParsedArgs } from './args.js';
import { archArg, dataPath, LAYOUT_OPTIONS, loadData, MODEL_OPTIONS, sizeArg } from './data-args.js';
import { saveModel } from './model-file.js';
import { writeSubmission } from './submission.js';

/** What the recipe needs, with the CLI's defaults filled in. */
export interface RecipeSettings {
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
  out: string;
  json?: string;
}

/** A JSON-friendly summary of a training run (what `--json` writes). */
export interface TrainSummary {
  data: { path: string; classes: string[]; counts: { trn: Record<string, number>; val: Record<string, number> | null }; test: number };
  arch: string;
  sizes: number[];
  /** The settings the recipe ran with. */
  settings: Omit<RecipeSettings, 'out' | 'json'>;
  lr: { chosen: number; suggested: number | null; rule: string; finder: { lr: number; loss: number }[] };
  stages: { name: string; size: number; lrs: number[]; nCycle: number; cycleLen?: number; cycleMult?: number; seconds: number; history: { epoch: number; trnLoss: number; valLoss: number | null; accuracy: number | null }[] }[];
  /** The model saved: its validation figures, and the stage and epoch it is from (the best snapshot point by validation loss, unless --keep-last). */
  final: { valLoss: number | null; accuracy: number | null; stage: string | null; epoch: number | null };
  tta: { accuracy: number; loss: number; nAug: number } | null;
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
 * How the recipe unfreezes: the user's --bn-freeze / --unfreeze-lr, else the
 * architecture's measured advice (unless --lesson-unfreeze), else the lesson's
 * way (batch statistics, the same rate). `note` says when advice was followed.
 */
export function unfreezePlan(arch: Arch, lr: number, s: Pick<RecipeSettings, 'bnFreeze' | 'unfreezeLr' | 'lessonUnfreeze'>): { bnFreeze: boolean; lr: number; note?: string } {
  const advice = s.lessonUnfreeze ? undefined : arch.unfreezeAdvice;
  const bnFreeze = s.bnFreeze ?? advice?.bnFreeze ?? false;
  const top = s.unfreezeLr ?? Math.min(lr * (advice?.lrFactor ?? 1), advice?.maxLr ?? Infinity);
  const followed = advice !== undefined && (s.bnFreeze === undefined || s.unfreezeLr === undefined);
  return { bnFreeze, lr: top, note: followed ? `unfreezing ${arch.name} with batch-norm statistics ${bnFreeze ? 'kept' : 'updated'} and the head at ${top.toExponential(2)}: ${advice.why} (--lesson-unfreeze for the lesson's way)` : undefined };
}

/** Runs the recipe on `data` (at `settings.sizes[0]`); `dataAt` gives the data at later sizes. */
export async function runRecipe(data: ImageClassifierData, arch: string, settings: RecipeSettings, dataAt: (size: number) => Promise<ImageClassifierData>, say: (line: string) => void = console.log): Promise<TrainSummary> {
  const t0 = performance.now();
  const out = resolve(settings.out);
  const report = new Report(out, `fastvision: ${basename(data.path)} (${arch})`);
  say(`${data.trnDs.length} training, ${data.valDs?.length ?? 0} validation${data.testDs ? `, ${data.testDs.length} test` : ''} images; ${data.c} classes: ${data.classes.slice(0, 10).join(', ')}${data.c > 10 ? ', …' : ''}`);
  if (!data.valDs || data.valDs.length === 0) throw new UsageError(`${data.path}: no validation images; the recipe needs a validation set (valid/ folder or --val-pct above 0)`);
  const { trn: trnCounts, val: valCounts } = await addDataSection(report, data);
  await addAugmentationPreview(report, data);
  const learn = await ConvLearner.pretrained(arch, data, { precompute: true, pretrained: settings.weights ?? true });
  const log = new TrainingLog();
  const size0 = settings.sizes[0]!;

  say('\n# learning-rate finder');
  // At least 100 mini-batches (cheap on precomputed activations): one pass over a small dataset is a handful of coarse points.
  const finder = await learn.lrFind({ numIt: Math.max(100, data.trnDl.length) });
  const suggestion = finder.suggestion();
  const lr = settings.lr ?? suggestion.lr;
  const rule = settings.lr === undefined ? suggestion.rule : 'given by --lr';
  say(`${finder.lrs.length} iterations; suggested ${suggestion.lr.toExponential(2)} (${suggestion.rule}); using ${lr.toExponential(2)}`);
  await addLrFinder(report, finder, lr, rule);

  const d = settings.groupDiv;
  const plan = unfreezePlan(learn.arch, lr, settings);
  const groupLrs = [plan.lr / d / d, plan.lr / d, plan.lr];
  // The weights with the lowest validation loss among SGDR's snapshot points — the end of each
  // cycle, where the rate has annealed — and each stage's last epoch: a later stage (unfreezing,
  // above all) can end worse, and the recipe should not hand back the worse model.
  let best: { stage: string; record: EpochRecord; state: Map<string, Tensor> } | null = null;
  const consider = (name: string, rec: EpochRecord): void => {
    if (!settings.keepBest || rec.valLoss === null || !Number.isFinite(rec.valLoss) || (best !== null && rec.valLoss >= best.record.valLoss!)) return;
    if (best) for (const t of best.state.values()) t.dispose();
    best = { stage: name, record: rec, state: new Map([...learn.model.stateDict()].map(([k, t]) => [k, noGrad(() => t.clone())])) };
  };
  const stage = async (name: string, size: number, lrs: number[], nCycle: number, opts: { cycleLen?: number; cycleMult?: number }): Promise<void> => {
    if (nCycle === 0) return;
    say(`\n# ${name}`);
    const cb = log.begin({ name, size, lrs, nCycle, ...opts });
    const epochs = opts.cycleLen === undefined ? nCycle : opts.cycleLen * Array.from({ length: nCycle }, (_, k) => (opts.cycleMult ?? 1) ** k).reduce((a, b) => a + b, 0);
    let cycleEnded = false;
    const keeper: Callback = {
      onCycleEnd: () => void (cycleEnded = true),
      onEpochEnd: (rec) => {
        if (cycleEnded || rec.epoch === epochs - 1) consider(name, rec);
        cycleEnded = false;
      },
    };
    await learn.fit(lrs.length === 1 ? lrs[0]! : lrs, nCycle, { ...opts, callbacks: [cb, keeper] });
  };
  await stage('head on precomputed activations', size0, [lr], settings.cycles, {});
  learn.precompute = false;
  await stage('head with augmentation', size0, [lr], settings.cycles, { cycleLen: 1 });
  learn.unfreeze();
  learn.bnFreeze(plan.bnFreeze);
  if (plan.note && settings.unfreezeCycles > 0) say(`\n${plan.note}`);
  await stage('unfrozen, differential rates', size0, groupLrs, settings.unfreezeCycles, { cycleLen: 1, cycleMult: 2 });
  let size = size0;
  for (const next of settings.sizes.slice(1)) {
    size = next;
    say(`\n# progressive resizing to ${size}`);
    learn.setData(await dataAt(size));
    await stage(`size ${size}: head with augmentation`, size, [lr], settings.cycles, { cycleLen: 1 });
    learn.unfreeze();
    learn.bnFreeze(plan.bnFreeze);
    await stage(`size ${size}: unfrozen, differential rates`, size, groupLrs, settings.unfreezeCycles, { cycleLen: 1, cycleMult: 2 });
  }
  let last = log.last();
  let kept: { stage: string; epoch: number; valLoss: number | null } | null = null;
  const chosen = best as { stage: string; record: EpochRecord; state: Map<string, Tensor> } | null;
  if (chosen && last && chosen.record !== last) {
    say(`\nkeeping the weights from epoch ${chosen.record.epoch} of '${chosen.stage}' (validation loss ${chosen.record.valLoss!.toFixed(4)}; training ended at ${last.valLoss?.toFixed(4)}); --keep-last keeps the last ones`);
    learn.model.loadStateDict(chosen.state);
    last = chosen.record;
  }
  if (chosen) {
    kept = { stage: chosen.stage, epoch: chosen.record.epoch, valLoss: chosen.record.valLoss };
    for (const t of chosen.state.values()) t.dispose();
  }
  const saved = await saveModel(out, learn, size);
  await addTraining(report, log);

  say(`\n# test-time augmentation (${settings.ttaAug} augmented copies + the original)`);
  const tta = await learn.TTA({ nAug: settings.ttaAug });
  const ttaScore = scoreProbs(tta.probs, tta.y);
  say(`validation accuracy ${last?.accuracy?.toFixed(4) ?? '-'} (loss ${last?.valLoss?.toFixed(4) ?? '-'}), with TTA ${ttaScore.accuracy.toFixed(4)} (loss ${ttaScore.loss.toFixed(4)})`);
  const valDs = learn.data.valDs;
  let confusion: number[][] | null = null;
  if (valDs instanceof FilesDataset) {
    const files = predictedFiles(valDs);
    const probs = tta.probs.dataSync() as Float32Array;
    ({ confusion } = await addInterpretation(report, { probs, c: data.c, y: tta.y.toArray() }, files, data.classes));
  }
  tta.probs.dispose();
  tta.y.dispose();

  let submission: string | null = null;
  const testDs = learn.data.testDs;
  if (testDs instanceof FilesDataset && testDs.length > 0) {
    say('\n# predictions for the test set (TTA)');
    const t = await learn.TTA({ nAug: settings.ttaAug, isTest: true });
    submission = join(out, 'submission.csv');
    await writeSubmission(submission, predictedFiles(testDs), t.probs.dataSync() as Float32Array, data.classes);
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
      ['its validation accuracy', last?.accuracy ?? ''],
      ['TTA accuracy', ttaScore.accuracy],
      ['model', saved.model],
      ...(submission ? [['submission', submission] as [string, string]] : []),
    ],
  );
  const reportFile = await report.write();
  const summary: TrainSummary = {
    data: { path: data.path, classes: data.classes, counts: { trn: trnCounts, val: valCounts }, test: data.testDs?.length ?? 0 },
    arch,
    sizes: settings.sizes,
    settings: { sizes: settings.sizes, cycles: settings.cycles, unfreezeCycles: settings.unfreezeCycles, lr: settings.lr, groupDiv: settings.groupDiv, bnFreeze: plan.bnFreeze, unfreezeLr: plan.lr, lessonUnfreeze: settings.lessonUnfreeze, weights: settings.weights, ttaAug: settings.ttaAug, keepBest: settings.keepBest },
    lr: { chosen: lr, suggested: suggestion.lr, rule, finder: finder.lrs.map((l, i) => ({ lr: l, loss: finder.losses[i]! })) },
    stages: log.stages.map((s) => ({ name: s.name, size: s.size, lrs: s.lrs, nCycle: s.nCycle, cycleLen: s.cycleLen, cycleMult: s.cycleMult, seconds: s.seconds, history: s.history.map((h) => ({ epoch: h.epoch, trnLoss: h.trnLoss, valLoss: h.valLoss, accuracy: h.accuracy })) })),
    final: { valLoss: last?.valLoss ?? null, accuracy: last?.accuracy ?? null, stage: kept?.stage ?? log.stages.at(-1)?.name ?? null, epoch: kept?.epoch ?? last?.epoch ?? null },
    tta: { ...ttaScore, nAug: settings.ttaAug },
    confusion,
    artifacts: { out, model: saved.model, modelInfo: saved.info, report: reportFile, pictures: report.pictures, submission, json: settings.json ? resolve(settings.json) : null },
    seconds: (performance.now() - t0) / 1000,
  };
  if (settings.json) await writeFileAtomic(resolve(settings.json), `${JSON.stringify(summary, null, 2)}\n`);
  say(`\nmodel:  ${saved.model}\nreport: ${reportFile}${submission ? `\nsubmission: ${submission}` : ''}${settings.json ? `\nsummary: ${resolve(settings.json)}` : ''}`);
  return summary;
}

export const RECIPE_OPTIONS: Record<string, OptionSpec> = {
  sizes: { type: 'string', arg: 'PX,PX', help: 'progressive resizing: train at each size in turn (overrides --size)' },
  cycles: { type: 'string', arg: 'N', help: 'cycles of each frozen stage', default: '3' },
  'unfreeze-cycles': { type: 'string', arg: 'N', help: 'cycles of the unfrozen stage (cycleMult 2: 1+2+4 epochs for 3)', default: '3' },
  lr: { type: 'string', arg: 'RATE', help: "learning rate (default: the finder's suggestion)" },
  'group-div': { type: 'string', arg: 'K', help: 'rate factor between layer groups once unfrozen (3 for satellite or medical images)', default: '10' },
  'bn-freeze': { type: 'boolean', help: "keep the body's batch-norm statistics once unfrozen (fast.ai's bn_freeze)" },
  'lesson-unfreeze': { type: 'boolean', help: "unfreeze as the lesson does even where the architecture advises otherwise (batch statistics, the same rate)" },
  'unfreeze-lr': { type: 'string', arg: 'RATE', help: "the head's rate once unfrozen (the body's are K and K² times lower)", default: "--lr, times the architecture's advice" },
  weights: { type: 'string', arg: 'NAME|FILE', help: "the body's pretrained weights: a zoo name or a .pth file (default: the architecture's own)" },
  'tta-aug': { type: 'string', arg: 'N', help: 'augmented copies averaged by test-time augmentation', default: '4' },
  'keep-last': { type: 'boolean', help: 'save the weights training ended with, not those of the cycle end with the lowest validation loss' },
  out: { type: 'string', arg: 'DIR', help: 'where the model, pictures, report and submission go', default: './fastvision-out/<folder name>' },
  json: { type: 'string', arg: 'FILE', help: 'also write a machine-readable summary there' },
};

/** The recipe's settings from the command line. */
export function recipeSettings(args: ParsedArgs, path: string, dfltSize = 224): RecipeSettings {
  const sizes = numList(args, 'sizes', { min: 8, max: 2048, integer: true }) ?? [sizeArg(args, dfltSize)];
  if (sizes.some((s, i) => i > 0 && s <= sizes[i - 1]!)) throw new UsageError(`--sizes: ${sizes.join(',')} must grow, e.g. 128,224`);
  return {
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
    out: str(args, 'out', join('fastvision-out', basename(path))),
    json: str(args, 'json'),
  };
}

export const trainCommand: CommandSpec = {
  name: 'train',
  summary: "Trains a classifier on a folder of labelled photos with the lesson's recipe, then saves the model, an HTML report with pictures, and (with --test) a Kaggle submission.",
  positionals: ['<path>'],
  options: { ...LAYOUT_OPTIONS, ...MODEL_OPTIONS, ...RECIPE_OPTIONS },
  details: [
    'steps: learning-rate finder → head on precomputed activations (--cycles) → head with augmentation (cycleLen 1)',
    '       → unfreeze, rates [u/K², u/K, u] (K = --group-div, u = --unfreeze-lr, or lr times the architecture\'s advice), cycleLen 1, cycleMult 2 (--unfreeze-cycles) → TTA',
    "mobilenet_v2_nsfwjs's advice (measured on pets-sample): keep batch-norm statistics and unfreeze at lr/5, at most 1e-3; --lesson-unfreeze ignores it.",
    'examples:',
    '  fastvision train photos/dogscats                     # photos/dogscats/train/<label>/*.jpg and valid/',
    '  fastvision train photos/breeds --csv labels.csv --suffix .jpg --test test --sizes 128,224 --json run.json',
  ].join('\n'),
  async run(args) {
    const path = dataPath(args.positionals[0]);
    const arch = archArg(args);
    const settings = recipeSettings(args, path);
    const data = await loadData(path, args, arch, settings.sizes[0]!);
    await runRecipe(data, arch.name, settings, (size) => loadData(path, args, arch, size));
  },
};
