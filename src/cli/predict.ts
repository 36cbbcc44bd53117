// `fastvision predict` and `fastvision submit`: a saved model on new images.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { ImageClassifierData } from '../vision/data.js';
import { entryKind, FilesDataset, isImageFile, scanTestFolder } from '../vision/dataset.js';
import { archOf } from '../vision/models/archs.js';
import { flag, num, str, UsageError, type CommandSpec, type ParsedArgs } from './args.js';
import { imageLimitArg, tfmsFor } from './data-args.js';
import { ENSEMBLE, learnerFor, probabilitiesOf, readModel, snapshotsOf, type ModelInfo } from './model-file.js';
import { claimFile } from './outputs.js';
import { writeSubmission } from './submission.js';
import { predictedFiles } from './train.js';

/** Image files named on the command line: files, or folders (their images, sorted). */
export function collectImages(items: string[]): string[] {
  const files: string[] = [];
  for (const item of items) {
    if (!existsSync(item)) throw new UsageError(`no such file or folder: ${item}`);
    if (statSync(item).isDirectory()) {
      const found = readdirSync(item)
        .sort()
        .filter((f) => isImageFile(f) && entryKind(join(item, f)) === 'file')
        .map((f) => resolve(item, f));
      if (found.length === 0) throw new UsageError(`${item}: no images in this folder`);
      files.push(...found);
    } else if (isImageFile(basename(item))) files.push(resolve(item));
    else throw new UsageError(`${item}: not an image file (by its extension)`);
  }
  return files;
}

/** Probabilities (rows in the order of the returned files) for a test dataset, with or without TTA. */
async function probabilities(saved: { pth: string; info: ModelInfo }, ds: FilesDataset, args: ParsedArgs, tta: boolean): Promise<{ files: string[]; probs: Float32Array }> {
  const bs = num(args, 'bs', 32, { min: 1, max: 4096, integer: true });
  imageLimitArg(args);
  const data = new ImageClassifierData(dirname(ds.files[0]!), ds, null, ds, saved.info.classes, tfmsFor(args, archOf(saved.info.arch), saved.info.size, saved.info.multiLabel), { bs, seed: 0, channelsLast: false, onBadImage: 'skip' });
  const learn = await learnerFor(saved, data);
  const ensemble = flag(args, 'ensemble') ? snapshotsOf(saved) : undefined;
  const { probs } = await probabilitiesOf(learn, { tta, nAug: num(args, 'tta-aug', 4, { min: 0, max: 64, integer: true }), isTest: true, ensemble });
  const files = predictedFiles(ds);
  if (files.length === 0) throw new UsageError('none of the images could be read');
  return { files, probs };
}

const PREDICTION_OPTIONS = {
  bs: { type: 'string', arg: 'N', help: 'batch size', default: '32' },
  tta: { type: 'boolean', help: 'average over augmented copies (test-time augmentation)' },
  'tta-aug': { type: 'string', arg: 'N', help: 'with TTA: augmented copies', default: '4' },
  aug: { type: 'string', arg: 'KIND', help: 'with TTA: side-on, top-down or none', default: 'side-on' },
  ensemble: ENSEMBLE,
  'max-image-pixels': { type: 'string', arg: 'N', help: 'refuse images whose header declares more pixels (decompression bombs)', default: '178956970' },
} as const;

export const predictCommand: CommandSpec = {
  name: 'predict',
  summary: 'Classifies images with a saved model: the top classes of each, with probabilities (a multi-label model: the tags above its threshold).',
  positionals: ['<model>', '<images|folder>...'],
  options: {
    top: { type: 'string', arg: 'K', help: 'classes shown per image', default: '3' },
    json: { type: 'boolean', help: 'print JSON instead of a table' },
    ...PREDICTION_OPTIONS,
  },
  details: '<model> is the folder `train` wrote (holding model.pth and model.json), or the .pth file itself.',
  async run(args) {
    const saved = await readModel(args.positionals[0]!);
    const files = collectImages(args.positionals.slice(1));
    const k = Math.min(num(args, 'top', 3, { min: 1, max: 1000, integer: true }), saved.info.classes.length);
    const { files: kept, probs } = await probabilities(saved, new FilesDataset(files, files.map(() => -1), saved.info.classes), args, flag(args, 'tta'));
    const c = saved.info.classes.length;
    const threshold = saved.info.multiLabel ? (saved.info.threshold ?? 0.5) : null;
    const rows = kept.map((file, i) => {
      const ranked = saved.info.classes.map((label, j) => ({ label, p: probs[i * c + j]! })).sort((a, b) => b.p - a.p);
      // A multi-label model gives every tag above its threshold (and --top more for context in JSON).
      return threshold === null ? { file, top: ranked.slice(0, k) } : { file, tags: ranked.filter((t) => t.p > threshold).map((t) => t.label), top: ranked.slice(0, k) };
    });
    if (flag(args, 'json')) console.log(JSON.stringify(rows, null, 2));
    else if (threshold !== null) for (const r of rows) console.log(`${r.file}\t${r.top.filter((t) => t.p > threshold).map((t) => `${t.label} ${t.p.toFixed(4)}`).join('\t') || `(no tag above ${threshold})`}`);
    else for (const r of rows) console.log(`${r.file}\t${r.top.map((t) => `${t.label} ${t.p.toFixed(4)}`).join('\t')}`);
    const skipped = files.length - kept.length;
    if (skipped > 0) console.error(`${skipped} unreadable image(s) skipped`);
  },
};

export const submitCommand: CommandSpec = {
  name: 'submit',
  summary: 'Writes a Kaggle submission for a test folder: id (file name without extension) and one probability column per class, or the label (a multi-label model: id,tags).',
  positionals: ['<model>', '<test folder>'],
  options: {
    out: { type: 'string', arg: 'FILE', help: 'the CSV to write', default: 'submission.csv' },
    labels: { type: 'boolean', help: 'one column with the predicted label instead of probabilities' },
    'no-tta': { type: 'boolean', help: 'plain predictions instead of test-time augmentation' },
    ...PREDICTION_OPTIONS,
  },
  async run(args) {
    const saved = await readModel(args.positionals[0]!);
    const folder = resolve(args.positionals[1]!);
    if (!existsSync(folder) || !statSync(folder).isDirectory()) throw new UsageError(`no such folder: ${args.positionals[1]}`);
    const ds = scanTestFolder(dirname(folder), basename(folder), saved.info.classes);
    const outArg = str(args, 'out', 'submission.csv');
    // `-` is standard output; the summary line then goes to standard error.
    const out = outArg === '-' ? '-' : resolve(outArg);
    claimFile(out, '--out');
    const { files, probs } = await probabilities(saved, ds, args, !flag(args, 'no-tta'));
    // A multi-label model writes its tags above the threshold chosen on validation (planet's id,tags).
    await writeSubmission(out, files, probs, saved.info.classes, saved.info.multiLabel ? { tags: saved.info.threshold ?? 0.5 } : { labels: flag(args, 'labels') });
    (out === '-' ? console.error : console.log)(`${files.length} rows written to ${out === '-' ? 'standard output' : out}${files.length < ds.length ? ` (${ds.length - files.length} unreadable image(s) skipped)` : ''}`);
  },
};
