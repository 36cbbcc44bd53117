// The options every data-reading command shares (layout, size, batch size,
// augmentation) and the ImageClassifierData they describe.
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import { ImageClassifierData } from '../vision/data.js';
import { setMaxImagePixels } from '../vision/image-limits.js';
import { getCvIdxs, readLabelsCsv, tagsVerdict, type CsvReadOptions } from '../vision/dataset.js';
import { archOf, ARCHS, type Arch } from '../vision/models/archs.js';
import { randAugment, randomErasing, randomFlip, tfmsFromModel, transformsSideOn, trivialAugmentWide, transformsTopDown, type Augmentation, type Transforms } from '../vision/transforms.js';
import { choice, flag, num, rangeOf, str, UsageError, type OptionSpec, type ParsedArgs } from './args.js';

/** The default backbone: the one that works offline. */
export const DEFAULT_ARCH = 'mobilenet_v2_nsfwjs';

export const LAYOUT_OPTIONS: Record<string, OptionSpec> = {
  csv: { type: 'string', arg: 'FILE', help: 'labels CSV under <path> (id,label); without it: <path>/train|valid/<label>/ (images in subfolders of a class count as that class)' },
  header: { type: 'boolean', help: 'with --csv: line 1 is a header (default: a header unless its id names an existing image)' },
  'no-header': { type: 'boolean', help: 'with --csv: line 1 is data' },
  folder: { type: 'string', arg: 'NAME', help: 'with --csv: the images folder under <path>', default: 'train' },
  suffix: { type: 'string', arg: 'EXT', help: "with --csv: appended to each id to make the file name, e.g. '.jpg'" },
  test: { type: 'string', arg: 'NAME', help: 'unlabelled test folder under <path> (for TTA predictions and the submission)' },
  'val-pct': { type: 'string', arg: 'P', help: 'with --csv: share of rows held out for validation', default: '0.2', value: { kind: 'number', min: 0, max: 0.9 } },
  'multi-label': {
    type: 'boolean',
    help: 'with --csv: labels are space-separated tags (detected when the column is headed tags, or most rows list several that recur across labels); sigmoid outputs, binary cross entropy, F2',
  },
  'single-label': { type: 'boolean', help: "with --csv: each label is one class, spaces and all ('Maine Coon')" },
  clean: { type: 'string', arg: 'FILE', help: "label-cleaning decisions (the studio's <out>/cleaning.csv): excluded photos left out, relabelled ones moved" },
};

export const MODEL_OPTIONS: Record<string, OptionSpec> = {
  arch: { type: 'string', arg: 'NAME', help: `architecture (${Object.keys(ARCHS).join(', ')})`, default: DEFAULT_ARCH },
  size: { type: 'string', arg: 'PX', help: 'image side in pixels', default: '224', value: { kind: 'number', min: 8, max: 2048, integer: true } },
  bs: { type: 'string', arg: 'N', help: 'batch size', default: '32', value: { kind: 'number', min: 1, max: 4096, integer: true } },
  aug: {
    type: 'string',
    arg: 'KIND',
    help: "augmentation: side-on (photos from the side), top-down (satellite, microscopy), trivial or randaug (torchvision's TrivialAugmentWide or RandAugment, with flips), none",
    default: 'side-on; top-down for multi-label data',
    value: { kind: 'choice', choices: ['side-on', 'top-down', 'trivial', 'randaug', 'none'] },
  },
  erasing: {
    type: 'string',
    arg: 'P',
    help: "random erasing (torchvision's RandomErasing) with probability P, after the other augmentations",
    value: { kind: 'number', min: 0, max: 1 },
  },
  workers: { type: 'string', arg: 'N', help: 'image loading threads', default: 'cores, at most 4', value: { kind: 'number', min: 1, max: 64, integer: true } },
  oversample: { type: 'boolean', help: 'draw every class as often as the largest one in each training pass (for rare classes)' },
  'max-image-pixels': {
    type: 'string',
    arg: 'N',
    help: 'refuse images whose header declares more pixels (decompression bombs)',
    default: '178956970',
    value: { kind: 'number', min: 1, max: 2 ** 40, integer: true },
  },
};

const AUGS: Record<string, Augmentation[]> = {
  'side-on': transformsSideOn,
  'top-down': transformsTopDown,
  // torchvision's recipes: a random crop and flip, then the policy.
  trivial: [randomFlip(), trivialAugmentWide()],
  randaug: [randomFlip(), randAugment()],
  none: [],
};

/** The data folder argument, checked. */
export function dataPath(p: string | undefined): string {
  if (p === undefined) throw new UsageError('missing <path>: the data folder');
  const abs = resolve(p);
  if (!existsSync(abs)) throw new UsageError(`no such folder: ${p}`);
  if (!statSync(abs).isDirectory()) throw new UsageError(`not a folder: ${p}`);
  return abs;
}

/** The architecture option, checked. */
export function archArg(args: ParsedArgs): Arch {
  const name = str(args, 'arch', DEFAULT_ARCH);
  if (!Object.hasOwn(ARCHS, name)) throw new UsageError(`--arch: unknown architecture '${name}' (known: ${Object.keys(ARCHS).join(', ')})`);
  return archOf(name);
}

/** Lines already printed, so a run that loads its data at several sizes says each once. */
const noted = new Set<string>();

function noteOnce(line: string): void {
  if (noted.has(line)) return;
  noted.add(line);
  console.error(line);
}

/** How the options say to read the labels CSV (folder, suffix, header), refusing CSV options without --csv. */
export function csvReadArgs(args: ParsedArgs): CsvReadOptions & { csv: string | undefined } {
  const csv = str(args, 'csv');
  if (flag(args, 'header') && flag(args, 'no-header')) throw new UsageError('--header and --no-header exclude each other');
  if (csv === undefined) {
    const stray = ['folder', 'suffix', 'val-pct', 'header', 'no-header', 'multi-label', 'single-label'].find((o) => args.values[o] !== undefined);
    if (stray !== undefined) throw new UsageError(`--${stray} only applies to a labels CSV: give --csv FILE too`);
  }
  return { csv, folder: str(args, 'folder', 'train'), suffix: str(args, 'suffix', ''), header: flag(args, 'header') ? true : flag(args, 'no-header') ? false : 'auto' };
}

/**
 * Whether the data is multi-label: --multi-label, --single-label, or (with --csv) as
 * `tagsVerdict` decides from the labels, saying on one line what it chose and why.
 */
export function multiLabelArg(args: ParsedArgs, path: string): boolean {
  if (flag(args, 'multi-label') && flag(args, 'single-label')) throw new UsageError('--multi-label and --single-label exclude each other');
  const { csv, ...read } = csvReadArgs(args);
  if (flag(args, 'multi-label')) return true;
  if (flag(args, 'single-label') || csv === undefined || !existsSync(resolve(path, csv))) return false;
  const labels = readLabelsCsv(path, csv, read);
  if (labels.headerNote !== null) noteOnce(labels.headerNote);
  const verdict = tagsVerdict(
    labels.rows.map((r) => r.label),
    labels.labelColumn,
  );
  if (verdict.note !== null) noteOnce(verdict.note);
  return verdict.multiLabel;
}

/** The transforms `--aug` describes, for `arch` at side `size` (default: side-on; top-down for multi-label data, as for satellite tiles). */
export function tfmsFor(args: ParsedArgs, arch: Arch, size: number, multiLabel = false): Transforms {
  const aug = choice(args, 'aug', ['side-on', 'top-down', 'trivial', 'randaug', 'none'] as const, multiLabel ? 'top-down' : 'side-on');
  const erasing = num(args, 'erasing', undefined, rangeOf(MODEL_OPTIONS.erasing));
  const augTfms = erasing === undefined ? AUGS[aug]! : [...AUGS[aug]!, randomErasing(erasing)];
  return tfmsFromModel(arch, size, { augTfms, maxZoom: aug === 'none' ? 1 : 1.1 });
}

/** The data at image side `size`, laid out as the options say. */
export async function loadData(path: string, args: ParsedArgs, arch: Arch, size: number, shard?: { rank: number; worldSize: number }): Promise<ImageClassifierData> {
  const multiLabel = multiLabelArg(args, path);
  const tfms = tfmsFor(args, arch, size, multiLabel);
  const bs = num(args, 'bs', 32, rangeOf(MODEL_OPTIONS.bs));
  const numWorkers = num(args, 'workers', undefined, rangeOf(MODEL_OPTIONS.workers));
  const seed = num(args, 'seed', 0, { min: 0, max: 2 ** 31 - 1, integer: true });
  const oversample = args.values.oversample === true;
  imageLimitArg(args);
  const testName = str(args, 'test');
  if (testName !== undefined && !existsSync(resolve(path, testName))) throw new UsageError(`--test: no folder ${testName} under ${path}`);
  const { csv, folder = 'train', suffix = '', header } = csvReadArgs(args);
  const clean = str(args, 'clean');
  const cleaning = clean === undefined ? undefined : resolve(clean);
  if (csv === undefined) return ImageClassifierData.fromPaths(path, { tfms, bs, numWorkers, testName, seed, oversample, shard, cleaning });
  if (!existsSync(resolve(path, csv))) throw new UsageError(`--csv: no file ${csv} under ${path}`);
  if (!existsSync(resolve(path, folder))) throw new UsageError(`--folder: no folder ${folder} under ${path}`);
  const valPct = num(args, 'val-pct', 0.2, rangeOf(LAYOUT_OPTIONS['val-pct']));
  const valIdxs = getCvIdxs(readLabelsCsv(path, csv, { folder, suffix, header }).rows.length, { valPct });
  return ImageClassifierData.fromCsv(path, folder, csv, { tfms, bs, numWorkers, testName, valIdxs, suffix, header, seed, oversample, multiLabel, shard, cleaning });
}

/** The `--size` option. */
export function sizeArg(args: ParsedArgs, dflt: number): number {
  return num(args, 'size', dflt, rangeOf(MODEL_OPTIONS.size));
}

/** Applies `--max-image-pixels` (when given) to every decoder. */
export function imageLimitArg(args: ParsedArgs): void {
  const n = num(args, 'max-image-pixels', undefined, rangeOf(MODEL_OPTIONS['max-image-pixels']));
  if (n !== undefined) setMaxImagePixels(n);
}
