// ImageClassifierData: training, validation and test sets with their loaders,
// from a folder tree, a labels CSV, or arrays, as in fast.ai's lesson.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { ensureDir, renameIntoPlace } from '../util/files.js';
import { removeOnInterrupt } from '../util/cleanup.js';
import { maxImagePixels } from './image-limits.js';
import { basename, dirname, join, relative, resolve } from 'node:path';
import sharp from 'sharp';
import type { Tensor } from '../torch/index.js';
import { progress } from '../util/progress.js';
import type { Transform } from './augment.js';
import { ArrayDataset, csvRowCount, DataError, FilesDataset, getCvIdxs, scanCsv, scanFolders, scanTestFolder, type Dataset, type Warn } from './dataset.js';
import { DataLoader, type BadImagePolicy } from './loader.js';
import { fastvisionHome } from './zoo.js';
import type { Transforms } from './transforms.js';
import { shown } from '../util/shown.js';
import { readRegularFile } from '../util/read-files.js';
import { bmpSize, isBmp } from './bmp.js';
import { applyCleaning, currentDecisions, readCleaning, type CleaningDecision } from './cleaning.js';

/** Options shared by the constructors. */
export interface DataOptions {
  /** Transforms from `tfmsFromModel` (required for images). */
  tfms?: Transforms;
  /** Batch size (default 64). */
  bs?: number;
  /** Loader worker threads (default: cores, at most 4). */
  numWorkers?: number;
  /** Name of an unlabelled test folder under the data folder. */
  testName?: string;
  /** Unreadable images: skipped with a warning (default) or an error. */
  onBadImage?: BadImagePolicy;
  /** Seed of shuffling and augmentation. */
  seed?: number;
  /** Batches in channels-last memory format. */
  channelsLast?: boolean;
  /** Training passes draw every class as often as the most frequent one (for rare classes). */
  oversample?: boolean;
  /**
   * Distributed training: this rank's share of every loader (DistributedSampler's):
   * training padded to equal shares, the rest in order without padding (their
   * outputs are gathered back into order).
   */
  shard?: { rank: number; worldSize: number };
  /**
   * Where the loaders deliver batches: 'cpu' (the default) or a CUDA device such as
   * 'cuda:0', copied from pinned memory without blocking. A learner sets it to its own.
   */
  device?: string;
  /**
   * Label-cleaning decisions to apply to the training and validation sets (a
   * cleaning file's path, or its decisions): excluded photos are left out, relabelled
   * ones moved to their class. The data folder is not touched.
   */
  cleaning?: string | readonly CleaningDecision[];
}

/**
 * The data of an image classifier: `trnDs`, `valDs`, `testDs` and their loaders
 * (`trnDl` shuffled with training transforms, without a last partial batch, `valDl` and `testDl` in order with
 * validation transforms, `augDl` / `testAugDl` the validation and test sets with
 * training transforms, for test-time augmentation).
 */
export class ImageClassifierData {
  readonly trnDl: DataLoader;
  readonly valDl: DataLoader | null;
  readonly testDl: DataLoader | null;
  readonly augDl: DataLoader | null;
  readonly testAugDl: DataLoader | null;
  /** The training set in order with validation transforms (for precomputing activations). */
  readonly fixDl: DataLoader | null;

  constructor(
    /** The data folder (read, never written). */
    readonly path: string,
    readonly trnDs: Dataset,
    readonly valDs: Dataset | null,
    readonly testDs: Dataset | null,
    readonly classes: string[],
    readonly tfms: Transforms | null,
    readonly options: Required<Pick<DataOptions, 'bs' | 'seed' | 'channelsLast' | 'onBadImage'>> & {
      numWorkers?: number;
      oversample?: boolean;
      shard?: { rank: number; worldSize: number };
      device?: string;
    },
  ) {
    const common = { bs: options.bs, numWorkers: options.numWorkers, seed: options.seed, channelsLast: options.channelsLast, onBadImage: options.onBadImage, device: options.device };
    const inOrder = options.shard ? { shard: { ...options.shard, pad: false } } : {};
    const loader = (ds: Dataset | null, t: Transform | undefined, shuffle: boolean): DataLoader | null => (ds === null ? null : new DataLoader(ds, { ...common, transform: t, shuffle, ...inOrder }));
    // Training drops the last partial batch, as fast.ai does: a batch of one would give
    // batch norm NaN statistics, and a tiny last batch a noisy step. A training set
    // smaller than one batch is one batch.
    const perRank = options.shard ? Math.ceil(trnDs.length / options.shard.worldSize) : trnDs.length;
    this.trnDl = new DataLoader(trnDs, { ...common, transform: tfms?.trn, shuffle: true, dropLast: perRank > options.bs, oversample: options.oversample ?? false, shard: options.shard });
    this.valDl = loader(valDs, tfms?.val, false);
    this.testDl = loader(testDs, tfms?.val, false);
    this.augDl = loader(valDs, tfms?.trn, false);
    this.testAugDl = loader(testDs, tfms?.trn, false);
    this.fixDl = loader(trnDs, tfms?.val, false);
  }

  /** Where the loaders deliver batches ('cpu' or 'cuda:N'). */
  get device(): string {
    return this.trnDl.device;
  }

  /** Sends every loader's batches to `device` from now on (and the data made from this one with withTfms). */
  set device(device: string) {
    for (const dl of [this.trnDl, this.valDl, this.testDl, this.augDl, this.testAugDl, this.fixDl]) if (dl) dl.device = device;
    this.options.device = device;
  }

  /** Whether images carry several tags each (a multi-label CSV) rather than one class. */
  get multiLabel(): boolean {
    return this.trnDs.tags !== null;
  }

  /** Number of classes. */
  get c(): number {
    return this.classes.length;
  }

  /** The image side the transforms produce. */
  get sz(): number | undefined {
    return this.tfms?.trn.sz;
  }

  /** The batch size. */
  get bs(): number {
    return this.options.bs;
  }

  /**
   * Reads the folder layout: `{path}/{trnName}/<label>/*` and `{path}/{valName}/<label>/*`
   * (valName: null trains on everything), with an optional unlabelled `testName` folder.
   */
  static async fromPaths(path: string, { trnName = 'train', valName = 'valid', ...opts }: DataOptions & { trnName?: string; valName?: string | null } = {}): Promise<ImageClassifierData> {
    const root = resolve(path);
    const { trn, val, classes } = scanFolders(root, trnName, valName);
    const test = opts.testName ? scanTestFolder(root, opts.testName, classes) : null;
    return ImageClassifierData.build(root, trn, val, test, classes, opts);
  }

  /**
   * Reads the CSV layout: images in `{path}/{folder}/{id}{suffix}`, labels in
   * `csvFile` (`id,label` with a header). `valIdxs` are the rows held out for
   * validation (default: a seeded random 20%, as `getCvIdxs`; `[]` for none).
   */
  static async fromCsv(
    path: string,
    folder: string,
    csvFile: string,
    { valIdxs, suffix = '', header = 'auto', multiLabel = 'auto', ...opts }: DataOptions & { valIdxs?: number[]; suffix?: string; header?: boolean | 'auto'; multiLabel?: boolean | 'auto' } = {},
  ): Promise<ImageClassifierData> {
    const root = resolve(path);
    const idxs = valIdxs ?? getCvIdxs(csvRowCount(root, csvFile, { folder, suffix, header }));
    const { trn, val, classes } = scanCsv(root, folder, csvFile, { valIdxs: idxs, suffix, header, multiLabel });
    const test = opts.testName ? scanTestFolder(root, opts.testName, classes) : null;
    return ImageClassifierData.build(root, trn, val, test, classes, opts);
  }

  /**
   * Data already turned into arrays, e.g. a frozen body's activations: one row
   * per item in `trn[0]` / `val[0]`, integer labels (or, multi-label, lists of
   * tags) in `trn[1]` / `val[1]`.
   */
  static fromArrays(
    path: string,
    trn: [Tensor, number[] | number[][]],
    val: [Tensor, number[] | number[][]] | null,
    classes: string[],
    { test, bs = 64, seed = 0, shard, device }: { test?: Tensor; bs?: number; seed?: number; shard?: { rank: number; worldSize: number }; device?: string } = {},
  ): ImageClassifierData {
    const ds = (x: Tensor, l: number[] | number[][]): ArrayDataset => {
      const tags = l.length > 0 && Array.isArray(l[0]) ? (l as number[][]) : null;
      return new ArrayDataset(x, tags ? tags.map((t) => t[0] ?? -1) : (l as number[]), classes, tags);
    };
    const trnDs = ds(trn[0], trn[1]);
    const valDs = val ? ds(val[0], val[1]) : null;
    const testDs = test ? new ArrayDataset(test, new Array<number>(test.shape[0]!).fill(0), classes) : null;
    return new ImageClassifierData(resolve(path), trnDs, valDs, testDs, classes, null, { bs, seed, channelsLast: false, onBadImage: 'skip', shard, device });
  }

  private static build(root: string, trn: FilesDataset, val: FilesDataset | null, test: FilesDataset | null, classes: string[], opts: DataOptions): ImageClassifierData {
    if (opts.cleaning !== undefined) {
      const where = typeof opts.cleaning === 'string' ? opts.cleaning : 'cleaning';
      const now = currentDecisions(typeof opts.cleaning === 'string' ? readCleaning(opts.cleaning) : opts.cleaning);
      trn = applyCleaning(root, trn, now, where);
      if (val) val = applyCleaning(root, val, now, where);
    }
    if (!opts.tfms) throw new DataError('image data needs transforms: pass tfms (from tfmsFromModel(arch, size))');
    if (trn.length === 0) throw new DataError(`no training images found under ${root}`);
    if (classes.length < 2) throw new DataError(`${root}: only one class ('${classes[0]}'); a classifier needs at least two`);
    if (trn.length < 2) throw new DataError(`${root}: only one training image; training needs at least two`);
    return new ImageClassifierData(root, trn, val, test, classes, opts.tfms, {
      bs: opts.bs ?? 64,
      numWorkers: opts.numWorkers,
      seed: opts.seed ?? 0,
      channelsLast: opts.channelsLast ?? false,
      onBadImage: opts.onBadImage ?? 'skip',
      oversample: opts.oversample ?? false,
      shard: opts.shard,
      device: opts.device,
    });
  }

  /** The same data with other transforms (e.g. a new size for progressive resizing) or batch size. */
  withTfms(tfms: Transforms, bs = this.bs): ImageClassifierData {
    return new ImageClassifierData(this.path, this.trnDs, this.valDs, this.testDs, this.classes, tfms, { ...this.options, bs });
  }

  /** Images per class in the training set (and validation set, when there is one). */
  labelCounts(): { trn: Map<string, number>; val: Map<string, number> | null } {
    const counts = (ds: Dataset | null): Map<string, number> | null => {
      if (ds === null) return null;
      if (ds instanceof FilesDataset) return ds.labelCounts();
      const m = new Map<string, number>(this.classes.map((c) => [c, 0]));
      for (const l of ds.labels) m.set(this.classes[l]!, (m.get(this.classes[l]!) ?? 0) + 1);
      return m;
    };
    return { trn: counts(this.trnDs)!, val: counts(this.valDs) };
  }

  /**
   * Width and height of every training image (from headers; EXIF rotation applied),
   * for the size histogram. An image whose header cannot be read is left out with a
   * warning naming it, and marked bad so that the loaders skip it too.
   */
  async imageSizes(ds: Dataset | null = this.trnDs, warn: Warn = (m) => console.warn(m)): Promise<{ file: string; width: number; height: number }[]> {
    if (!(ds instanceof FilesDataset)) throw new Error('imageSizes needs an image dataset');
    return readImageSizes(ds, (file, reason) => warn(`warning: skipping unreadable image ${shown(file)}: ${shown(reason)}`));
  }

  /** Where caches for this data go (under FASTVISION_HOME, keyed by the data folder; see `cacheDirFor`). */
  cacheDir(name = 'tmp'): string {
    return cacheDirFor(this.path, name);
  }

  /**
   * Writes copies of every image whose shorter side is above `targetSize`, shrunk
   * to that side, under `{cache}/{targetSize}/`, and returns data reading them, so
   * that big photos are not decoded at full size every epoch. Copies are reused on
   * later calls; the original folder is never modified.
   */
  async resize(targetSize: number, newPath = 'tmp'): Promise<ImageClassifierData> {
    const dest = join(this.cacheDir(newPath), String(targetSize));
    const all = [this.trnDs, this.valDs, this.testDs].filter((d): d is FilesDataset => d instanceof FilesDataset);
    const total = all.reduce((n, d) => n + d.length, 0);
    const bar = progress(`resizing to ${targetSize}px`, total);
    const mapFile = async (file: string): Promise<string> => {
      const rel = relative(this.path, file);
      const out = join(dest, rel.startsWith('..') ? createHash('sha1').update(file).digest('hex').slice(0, 16) + '-' + basename(file) : rel);
      if (!existsSync(out)) {
        ensureDir(dirname(out));
        const tmp = `${out}.${process.pid}.tmp`;
        const unregister = removeOnInterrupt(tmp);
        try {
          await sharp(file, { failOn: 'error', limitInputPixels: maxImagePixels() })
            .rotate()
            .resize(targetSize, targetSize, { fit: 'outside', withoutEnlargement: true })
            .toFormat('jpeg', { quality: 92 })
            .toFile(tmp);
          await renameIntoPlace(tmp, out);
        } catch {
          // An unreadable original stays as it is; the loader reports it.
          await rm(tmp, { force: true });
          bar.tick();
          return file;
        } finally {
          unregister();
        }
      }
      bar.tick();
      return out;
    };
    const remap = async (ds: Dataset | null): Promise<Dataset | null> => {
      if (!(ds instanceof FilesDataset)) return ds;
      const files: string[] = [];
      for (const f of ds.files) files.push(await mapFile(f));
      return new FilesDataset(files, ds.labels, ds.classes);
    };
    const trn = await remap(this.trnDs);
    const val = await remap(this.valDs);
    const test = await remap(this.testDs);
    bar.stop();
    return new ImageClassifierData(this.path, trn!, val, test, this.classes, this.tfms, this.options);
  }
}

/**
 * Width and height of a dataset's images from their headers (EXIF rotation applied).
 * An image whose header cannot be read is left out, marked bad (loaders then skip
 * it), and reported to `unreadable` with the reason.
 */
export async function readImageSizes(ds: FilesDataset, unreadable: (file: string, reason: string) => void): Promise<{ file: string; width: number; height: number }[]> {
  const sizes = await mapLimit(ds.files, 16, async (file, i) => {
    if (ds.bad.has(i)) return null;
    try {
      const bytes = await readRegularFile(file);
      if (isBmp(bytes)) return { file, ...bmpSize(bytes) };
      const m = await sharp(bytes).metadata();
      if (!m.width || !m.height) throw new Error('no image size in its header');
      const swap = (m.orientation ?? 1) >= 5;
      return { file, width: swap ? m.height : m.width, height: swap ? m.width : m.height };
    } catch (e) {
      ds.bad.add(i);
      unreadable(file, (e as Error).message);
      return null;
    }
  });
  return sizes.filter((s): s is { file: string; width: number; height: number } => s !== null);
}

/**
 * A cache folder for data at `path`: `$FASTVISION_HOME/cache/<folder name>-<hash of its path>/{name}`.
 * Caches never go inside the data folder: it may be shared or read-only, and
 * fastvision never modifies the user's folders.
 */
export function cacheDirFor(path: string, name: string): string {
  const hash = createHash('sha1').update(resolve(path)).digest('hex').slice(0, 10);
  const dir = join(fastvisionHome(), 'cache', `${basename(resolve(path))}-${hash}`, name);
  ensureDir(dir);
  return dir;
}

/** `fn` over `items` with at most `limit` calls in flight (thousands of open files at once fail). */
async function mapLimit<T, R>(items: T[], limit: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
