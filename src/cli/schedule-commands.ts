// `fastvision lr-find` and `fastvision fit`: the recipe's steps one at a time,
// for users who want to choose the rate and the schedule themselves.
import { basename, join, resolve } from 'node:path';
import { TrainingDivergedError } from '../learn/guard.js';
import { ConvLearner } from '../learn/conv-learner.js';
import { CycleSnapshots } from '../learn/callbacks.js';
import { addLrFinder, addTraining } from '../learn/figures.js';
import { Report } from '../report/html.js';
import { TrainingLog } from '../learn/training-log.js';
import { manualSeed } from '../torch/index.js';
import { archOf } from '../vision/models/archs.js';
import { choice, flag, num, numList, str, UsageError, type CommandSpec, type OptionSpec } from './args.js';
import { SUGGESTION_RULES } from '../learn/lr-finder.js';
import { archArg, dataPath, LAYOUT_OPTIONS, loadData, MODEL_OPTIONS, sizeArg } from './data-args.js';
import { learnerFor, readModel, saveModel } from './model-file.js';
import { withOutput } from '../util/outputs.js';
import { deviceArg, mixedPrecisionArg, TRAINING_DEVICE_OPTIONS } from './device-args.js';
import { runFingerprint } from './train.js';
import { inSession, refuseBatchTooLarge, TrainingSession } from '../learn/session.js';

const OUT: OptionSpec = { type: 'string', arg: 'DIR', help: 'where the pictures, report (and model) go', default: './fastvision-out/<folder name>' };
const UNFREEZE: OptionSpec = { type: 'boolean', help: 'train the whole network (no precomputed activations)' };
const FROM: OptionSpec = { type: 'string', arg: 'MODEL', help: 'start from a saved model (folder or .pth) instead of the pretrained body and a new head' };

export const lrFindCommand: CommandSpec = {
  name: 'lr-find',
  summary: 'Runs the learning-rate finder and suggests a rate; draws the loss against the rate.',
  positionals: ['<path>'],
  options: {
    ...LAYOUT_OPTIONS,
    ...MODEL_OPTIONS,
    unfreeze: UNFREEZE,
    precompute: { type: 'boolean', help: 'measure on precomputed activations, as fit --precompute trains (else with augmentation, as fit)' },
    from: FROM,
    ...TRAINING_DEVICE_OPTIONS,
    'num-it': {
      type: 'string',
      arg: 'N',
      help: 'mini-batches to run (going over a small training set several times)',
      default: 'max(100, one pass)',
      value: { kind: 'number', min: 2, max: 100000, integer: true },
    },
    suggest: { type: 'string', arg: 'RULE', help: 'the suggestion marked on the curve', default: 'valley', value: { kind: 'choice', choices: SUGGESTION_RULES } },
    out: OUT,
  },
  async run(args) {
    const path = dataPath(args.positionals[0]);
    const out = resolve(str(args, 'out', join('fastvision-out', basename(path))));
    const from = str(args, 'from');
    if (flag(args, 'precompute') && flag(args, 'unfreeze')) throw new UsageError('--precompute and --unfreeze exclude each other (an unfrozen body has no fixed activations)');
    const saved = from === undefined ? null : await readModel(from);
    const arch = archArg(args);
    const device = deviceArg(args);
    const mixedPrecision = mixedPrecisionArg(args) ?? undefined;
    await withOutput(out, async () => {
      const data = await loadData(path, args, saved ? archOf(saved.info.arch) : arch, sizeArg(args, saved?.info.size ?? 224));
      // The conditions of the fit it suggests a rate for: fit trains with augmentation unless --precompute.
      const learn = saved ? await learnerFor(saved, data, { device, mixedPrecision }) : await ConvLearner.pretrained(arch, data, { device, mixedPrecision });
      if (flag(args, 'unfreeze')) learn.unfreeze();
      if (flag(args, 'precompute')) learn.precompute = true;
      // As train does: at least 100 mini-batches, so that a small dataset gives a curve, not a handful of points.
      const numIt = num(args, 'num-it', Math.max(100, data.trnDl.length));
      const finder = await learn.lrFind({ numIt });
      const { lr, rule } = finder.suggestion(choice(args, 'suggest', SUGGESTION_RULES, 'valley'));
      for (const p of finder.plot().filter((_, i, a) => i % Math.max(1, Math.floor(a.length / 15)) === 0)) console.log(`lr ${p.lr.toExponential(2)}  loss ${p.loss.toFixed(4)}`);
      const early = finder.lrs.length < numIt ? ` (stopped early at ${finder.lrs.at(-1)!.toExponential(2)}: the loss passed 4× its best)` : '';
      console.log(`${finder.lrs.length} iterations${early}; suggested rate ${lr.toExponential(2)} (${rule})`);
      const all = finder.suggestions();
      console.log(`every rule: ${SUGGESTION_RULES.map((r) => `${r} ${all[r].lr.toExponential(2)}`).join(', ')}`);
      const report = new Report(out, `fastvision lr-find: ${basename(path)}`);
      await addLrFinder(report, finder, lr, rule);
      console.log(`report: ${await report.write('lr-find.html')}`);
    });
  },
};

/** What `fit`'s checkpoint describes besides its tensors. */
interface FitMeta {
  kind: 'fit';
  fingerprint: string;
  log: ReturnType<TrainingLog['toJSON']>;
}

export const fitCommand: CommandSpec = {
  name: 'fit',
  summary: 'Trains with an explicit schedule (constant, or SGDR with --cycle-len) and saves the model.',
  positionals: ['<path>'],
  options: {
    ...LAYOUT_OPTIONS,
    ...MODEL_OPTIONS,
    lr: { type: 'string', arg: 'RATE[,RATE,RATE]', help: 'learning rate, or one per layer group (early body, late body, head)', default: '0.01', value: { kind: 'numbers', min: 1e-10, max: 100 } },
    cycles: { type: 'string', arg: 'N', help: 'number of cycles (epochs without --cycle-len)', default: '3', value: { kind: 'number', min: 1, max: 1000, integer: true } },
    'cycle-len': { type: 'string', arg: 'N', help: 'epochs per cycle: cosine annealing with restarts (SGDR)', value: { kind: 'number', min: 1, max: 1000, integer: true } },
    'cycle-mult': { type: 'string', arg: 'M', help: 'each cycle M times longer than the one before', default: '1', value: { kind: 'number', min: 1, max: 10, integer: true } },
    wd: { type: 'string', arg: 'W[,W,W]', help: 'weight decay, or one per layer group', default: '0', value: { kind: 'numbers', min: 0, max: 1 } },
    precompute: { type: 'boolean', help: 'train the head on precomputed activations (no augmentation)' },
    unfreeze: UNFREEZE,
    opt: {
      type: 'string',
      arg: 'NAME',
      help: "the optimizer: sgd (momentum 0.9), adam, or adamw (decoupled weight decay, fastai v2's default)",
      default: 'sgd',
      value: { kind: 'choice', choices: ['sgd', 'adam', 'adamw'] },
    },
    from: FROM,
    'save-cycles': { type: 'boolean', help: 'also save a snapshot at the end of each cycle (model_cyc_K.pth; predict --ensemble averages them)' },
    seed: {
      type: 'string',
      arg: 'N',
      help: "seed of the head's initial weights, dropout, shuffling and augmentation",
      default: '0',
      value: { kind: 'number', min: 0, max: 2 ** 31 - 1, integer: true },
    },
    resume: { type: 'boolean', help: "continue an interrupted fit from --out's checkpoint, with the same options (on any --device)" },
    ...TRAINING_DEVICE_OPTIONS,
    out: OUT,
  },
  async run(args) {
    const path = dataPath(args.positionals[0]);
    const out = resolve(str(args, 'out', join('fastvision-out', basename(path))));
    const lrs = numList(args, 'lr') ?? [0.01];
    const wds = numList(args, 'wd') ?? [0];
    for (const [name, v] of [
      ['lr', lrs],
      ['wd', wds],
    ] as const)
      if (v.length !== 1 && v.length !== 3) throw new UsageError(`--${name}: give one value or three (one per layer group), not ${v.length}`);
    const nCycle = num(args, 'cycles', 3);
    const cycleLen = num(args, 'cycle-len');
    const cycleMult = num(args, 'cycle-mult', 1);
    if (cycleLen === undefined && args.values['cycle-mult'] !== undefined) throw new UsageError('--cycle-mult needs --cycle-len');
    if (flag(args, 'precompute') && flag(args, 'unfreeze')) throw new UsageError('--precompute and --unfreeze exclude each other (an unfrozen body has no fixed activations)');
    const from = str(args, 'from');
    const saved = from === undefined ? null : await readModel(from);
    const arch = saved ? archOf(saved.info.arch) : archArg(args);
    const size = sizeArg(args, saved?.info.size ?? 224);
    const fingerprint = runFingerprint(args, path);
    const device = deviceArg(args);
    const mixedPrecision = mixedPrecisionArg(args) ?? undefined;
    await inSession(out, async () => {
      const session = await TrainingSession.open<FitMeta>(out, { kind: 'fit', fingerprint, resume: flag(args, 'resume') });
      const resume = session.resumed;
      manualSeed(num(args, 'seed', 0));
      const data = await loadData(path, args, arch, size);
      if (saved && saved.info.classes.join('\n') !== data.classes.join('\n')) throw new UsageError(`${path}: its classes are not those of ${from}`);
      const optFunc = choice(args, 'opt', ['sgd', 'adam', 'adamw'] as const, 'sgd');
      const learn = saved ? await learnerFor(saved, data, { optFunc, device, mixedPrecision }) : await ConvLearner.pretrained(arch, data, { optFunc, device, mixedPrecision });
      if (flag(args, 'unfreeze')) learn.unfreeze();
      if (flag(args, 'precompute')) learn.precompute = true;
      refuseBatchTooLarge(learn.model, { arch: arch.name, size, bs: data.bs, unfrozen: flag(args, 'unfreeze') });
      const log = resume ? TrainingLog.from(resume.meta.log) : new TrainingLog();
      const cb = resume ? log.continueLast(resume.fit!.iteration) : log.begin({ name: 'fit', size, lrs, nCycle, cycleLen, cycleMult });
      if (resume) {
        learn.model.loadStateDict(resume.model);
        console.log(`resuming from ${session.file} at epoch ${resume.fit!.epoch}`);
      }
      // Each cycle's snapshot is a complete model file (its description inside), written as the cycle ends.
      let snapshots = 0;
      const snap = new CycleSnapshots(async (k) => {
        snapshots++;
        await saveModel(out, learn, size, { name: `model_cyc_${k}`, json: false });
      });
      let diverged: TrainingDivergedError | null;
      try {
        diverged = await session.guarded(() =>
          learn.fit(lrs.length === 1 ? lrs[0]! : lrs, nCycle, {
            cycleLen,
            cycleMult,
            wd: wds.length === 1 ? wds[0]! : wds,
            cbs: flag(args, 'save-cycles') ? [cb, snap] : [cb],
            onCheckpoint: (fs) => session.checkpoint({ kind: 'fit', fingerprint, log: log.toJSON() }, learn.model.stateDict(), fs),
            resume: resume?.fit ?? undefined,
          }),
        );
      } finally {
        session.release();
      }
      if (diverged && log.last() === undefined) {
        await session.complete();
        throw session.nothingSaved(`${diverged.message.replace(/ Try a lower learning rate\.$/, '')}; no epoch ended well`);
      }
      const { model } = await saveModel(out, learn, size);
      await session.complete();
      if (snapshots > 0) console.log(`cycle snapshots: ${join(out, 'model_cyc_*.pth')} (${snapshots})`);
      const report = new Report(out, `fastvision fit: ${basename(path)}`);
      await addTraining(report, log);
      console.log(`model:  ${model}\nreport: ${await report.write('fit.html')}`);
      if (diverged) console.log(`warning: training stopped early (${diverged.reason}); the model saved is that of ${diverged.restoredTo}`);
    });
  },
};
