// `fastvision predict` and `fastvision submit`: a saved model on new images.
import { DEVICE_OPTIONS, deviceArg } from './device-args.js';
import { existsSync, statSync, type Stats } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { ImageClassifierData } from '../vision/data.js';
import { findImages, FilesDataset, IMAGE_EXTENSIONS, isImageFile, scanTestFolder } from '../vision/dataset.js';
import type { ConvLearner } from '../learn/conv-learner.js';
import { notAFileReason } from '../util/read-files.js';
import { shown } from '../util/shown.js';
import { archOf } from '../vision/models/archs.js';
import { flag, num, rangeOf, str, UsageError, type CommandSpec, type OptionSpec, type ParsedArgs } from './args.js';
import { imageLimitArg, MODEL_OPTIONS, tfmsFor } from './data-args.js';
import { ENSEMBLE, learnerFor, probabilitiesOf, readModel, snapshotsOf, type ModelInfo } from './model-file.js';
import { claimFile } from '../util/outputs.js';
import { imageId, looksLikeFormula, writeSubmission } from '../learn/submission.js';
import { predictedFiles } from '../learn/recipe.js';

/** Image files named on the command line: files, or folders (their images, subfolders included, sorted). */
export function collectImages(items: string[]): string[] {
  const files: string[] = [];
  for (const item of items) {
    let st: Stats;
    try {
      st = statSync(item);
    } catch {
      throw new UsageError(`no such file or folder: ${item}`);
    }
    if (st.isDirectory()) {
      const found = findImages(resolve(item));
      if (found.length === 0) throw new UsageError(`${item}: no images in this folder (${[...IMAGE_EXTENSIONS].join(', ')})`);
      files.push(...found);
    } else if (!st.isFile()) throw new UsageError(notAFileReason(item, st));
    else if (isImageFile(basename(item))) files.push(resolve(item));
    else throw new UsageError(`${item}: not an image file (by its extension: ${[...IMAGE_EXTENSIONS].join(', ')})`);
  }
  return files;
}

/** Probabilities for one batch of files: the rows of those that could be read. */
interface Chunk {
  files: string[];
  probs: Float32Array;
  /** Files of this chunk that could not be read. */
  skipped: number;
}

/**
 * Probabilities for `files`, a chunk at a time (rows in the order of each chunk's
 * readable files), so that results can be shown while the rest is computed. The
 * learner is built once; each chunk is a new test set on it.
 */
async function* predictChunks(saved: { pth: string; info: ModelInfo }, files: string[], args: ParsedArgs, tta: boolean): AsyncGenerator<Chunk> {
  const bs = num(args, 'bs', 32, rangeOf(PREDICTION_OPTIONS.bs));
  const nAug = num(args, 'tta-aug', 4, rangeOf(PREDICTION_OPTIONS['tta-aug']));
  imageLimitArg(args);
  const ensemble = flag(args, 'ensemble') ? snapshotsOf(saved) : undefined;
  const tfms = tfmsFor(args, archOf(saved.info.arch), saved.info.size, saved.info.multiLabel);
  const per = Math.max(bs * 4, 64);
  const device = deviceArg(args);
  let learn: ConvLearner | null = null;
  for (let start = 0; start < files.length; start += per) {
    const part = files.slice(start, start + per);
    const ds = new FilesDataset(
      part,
      part.map(() => -1),
      saved.info.classes,
    );
    const data = new ImageClassifierData(dirname(part[0]!), ds, null, ds, saved.info.classes, tfms, { bs, seed: 0, channelsLast: false, onBadImage: 'skip' });
    if (learn === null) learn = await learnerFor(saved, data, { device });
    else learn.setData(data);
    const { probs } = await probabilitiesOf(learn, { tta, nAug, isTest: true, ensemble });
    const kept = predictedFiles(ds);
    yield { files: kept, probs, skipped: part.length - kept.length };
  }
}

/** Progress on standard error, when it is a terminal. */
function progressLine(done: number, total: number): void {
  if (process.stderr.isTTY !== true) return;
  process.stderr.write(done < total ? `\r${done}/${total} images` : '\r\x1b[K');
}

/** All probabilities at once (rows in the order of the returned files), for a submission. */
async function probabilities(saved: { pth: string; info: ModelInfo }, ds: FilesDataset, args: ParsedArgs, tta: boolean): Promise<{ files: string[]; probs: Float32Array }> {
  const files: string[] = [];
  const parts: Float32Array[] = [];
  let done = 0;
  for await (const chunk of predictChunks(saved, ds.files, args, tta)) {
    files.push(...chunk.files);
    parts.push(chunk.probs);
    done += chunk.files.length + chunk.skipped;
    progressLine(done, ds.length);
  }
  if (files.length === 0) throw new UsageError('none of the images could be read');
  const probs = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    probs.set(p, at);
    at += p.length;
  }
  return { files, probs };
}

const PREDICTION_OPTIONS = {
  bs: MODEL_OPTIONS.bs!,
  tta: { type: 'boolean', help: 'average over augmented copies (test-time augmentation)' },
  'tta-aug': { type: 'string', arg: 'N', help: 'with TTA: augmented copies', default: '4', value: { kind: 'number', min: 0, max: 64, integer: true } },
  aug: { type: 'string', arg: 'KIND', help: 'with TTA: side-on, top-down or none', default: 'side-on', value: { kind: 'choice', choices: ['side-on', 'top-down', 'none'] } },
  ensemble: ENSEMBLE,
  'max-image-pixels': MODEL_OPTIONS['max-image-pixels']!,
} satisfies Record<string, OptionSpec>;

export const predictCommand: CommandSpec = {
  name: 'predict',
  summary: 'Classifies images with a saved model: the top classes of each, with probabilities (a multi-label model: the tags above its threshold).',
  positionals: ['<model>', '<images|folder>...'],
  options: {
    ...DEVICE_OPTIONS,
    top: { type: 'string', arg: 'K', help: 'classes shown per image', default: '3', value: { kind: 'number', min: 1, max: 1000, integer: true } },
    json: { type: 'boolean', help: 'print JSON instead of a table' },
    ...PREDICTION_OPTIONS,
  },
  details: '<model> is the folder `train` wrote (holding model.pth and model.json), or the .pth file itself.',
  async run(args) {
    const files = collectImages(args.positionals.slice(1));
    const saved = await readModel(args.positionals[0]!);
    const k = Math.min(num(args, 'top', 3), saved.info.classes.length);
    const c = saved.info.classes.length;
    const threshold = saved.info.multiLabel ? (saved.info.threshold ?? 0.5) : null;
    const json = flag(args, 'json');
    // Rows are printed as each chunk is done. In JSON, one row is held back each time,
    // so that every row but the last is printed with its separating comma.
    let printed = 0;
    let skipped = 0;
    let held: string | null = null;
    if (json) console.log('[');
    for await (const chunk of predictChunks(saved, files, args, flag(args, 'tta'))) {
      skipped += chunk.skipped;
      const lines: string[] = [];
      chunk.files.forEach((file, i) => {
        const ranked = saved.info.classes.map((label, j) => ({ label, p: chunk.probs[i * c + j]! })).sort((a, b) => b.p - a.p);
        // A multi-label model gives every tag above its threshold (and --top more for context in JSON).
        const row = threshold === null ? { file, top: ranked.slice(0, k) } : { file, tags: ranked.filter((t) => t.p > threshold).map((t) => t.label), top: ranked.slice(0, k) };
        printed++;
        if (json) {
          if (held !== null) lines.push(`${held},`);
          held = `  ${JSON.stringify(row)}`;
          return;
        }
        const shownTop = threshold === null ? row.top : row.top.filter((t) => t.p > threshold);
        lines.push(`${shown(file)}\t${shownTop.map((t) => `${shown(t.label)} ${t.p.toFixed(4)}`).join('\t') || `(no tag above ${threshold})`}`);
      });
      progressLine(printed + skipped, files.length);
      if (lines.length > 0) console.log(lines.join('\n'));
    }
    if (json) console.log(held === null ? ']' : `${held as string}\n]`);
    if (printed === 0) throw new UsageError('none of the images could be read');
    if (skipped > 0) console.error(`${skipped} unreadable image(s) skipped`);
  },
};

export const submitCommand: CommandSpec = {
  name: 'submit',
  summary: 'Writes a Kaggle submission for a test folder: id (file name without extension) and one probability column per class, or the label (a multi-label model: id,tags).',
  positionals: ['<model>', '<test folder>'],
  options: {
    ...DEVICE_OPTIONS,
    out: { type: 'string', arg: 'FILE', help: 'the CSV to write', default: 'submission.csv' },
    labels: { type: 'boolean', help: 'one column with the predicted label instead of probabilities' },
    'spreadsheet-safe': { type: 'boolean', help: "prefix ' to ids and labels that start with = + - @ (formulas in a spreadsheet); Kaggle needs them raw, so off by default" },
    // TTA is on for a submission; --no-tta turns it off (a --tta beside it would say nothing).
    'no-tta': { type: 'boolean', help: 'plain predictions instead of test-time augmentation (on by default here)' },
    ...Object.fromEntries(Object.entries(PREDICTION_OPTIONS).filter(([name]) => name !== 'tta')),
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
    const safe = flag(args, 'spreadsheet-safe');
    await writeSubmission(out, files, probs, saved.info.classes, { ...(saved.info.multiLabel ? { tags: saved.info.threshold ?? 0.5 } : { labels: flag(args, 'labels') }), spreadsheetSafe: safe });
    const risky = files.map(imageId).concat(saved.info.classes).filter(looksLikeFormula);
    if (risky.length > 0 && !safe)
      console.error(
        `warning: ${risky.length} id(s) or label(s) start with = + - or @ (e.g. ${shown(risky[0]!)}) and would run as formulas if the file is opened in a spreadsheet; written raw, as Kaggle needs them (--spreadsheet-safe quotes them)`,
      );
    (out === '-' ? console.error : console.log)(
      `${files.length} rows written to ${out === '-' ? 'standard output' : out}${files.length < ds.length ? ` (${ds.length - files.length} unreadable image(s) skipped)` : ''}`,
    );
  },
};
