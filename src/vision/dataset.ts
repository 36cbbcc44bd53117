// Datasets of labelled images: from a folder tree (train/<label>/...), from a
// Kaggle-style CSV, or from arrays (precomputed activations). Scanning checks the
// input and names the culprit; it never writes to the user's folders.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { parse } from 'csv-parse/sync';
import type { Tensor } from '../torch/index.js';

/** File extensions read as images (others, such as .txt or .DS_Store, are ignored). */
export const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif', '.jfif']);

/** Whether a file name looks like an image fastvision reads. */
export function isImageFile(name: string): boolean {
  return IMAGE_EXTENSIONS.has(extname(name).toLowerCase()) && !name.startsWith('.');
}

/** A clear message about the user's data, naming the folder, file or line at fault. */
export class DataError extends Error {}

/**
 * Image files with integer labels (-1 for unlabelled test images); a multi-label
 * dataset also has `tags`, each image's class indices (and `labels` holds the
 * first tag, or -1 for none, for whatever wants one label per image).
 */
export class FilesDataset {
  /** Files found unreadable while loading; loaders skip them from then on. */
  readonly bad = new Set<number>();

  constructor(
    readonly files: string[],
    readonly labels: number[],
    readonly classes: string[],
    readonly tags: number[][] | null = null,
  ) {
    if (files.length !== labels.length) throw new Error('FilesDataset: files and labels differ in length');
    if (tags && tags.length !== files.length) throw new Error('FilesDataset: files and tags differ in length');
  }

  get length(): number {
    return this.files.length;
  }

  /** File names relative to `root` (for reports and submissions). */
  fileNames(root: string): string[] {
    return this.files.map((f) => (f.startsWith(root) ? f.slice(root.length).replace(/^\/+/, '') : f));
  }

  /** How many images each class (multi-label: each tag) has. */
  labelCounts(): Map<string, number> {
    return countLabels(this.classes, this.tags ?? this.labels.map((l) => (l >= 0 ? [l] : [])));
  }
}

function countLabels(classes: string[], perItem: number[][]): Map<string, number> {
  const counts = new Map<string, number>(classes.map((c) => [c, 0]));
  for (const ls of perItem) for (const l of ls) counts.set(classes[l]!, (counts.get(classes[l]!) ?? 0) + 1);
  return counts;
}

/** Precomputed inputs (one row per item) with integer labels, or (multi-label) tags. */
export class ArrayDataset {
  constructor(
    readonly x: Tensor,
    readonly labels: number[],
    readonly classes: string[],
    readonly tags: number[][] | null = null,
  ) {
    if (x.shape[0] !== labels.length) throw new Error(`ArrayDataset: ${x.shape[0]} rows but ${labels.length} labels`);
  }

  get length(): number {
    return this.labels.length;
  }
}

/** Any dataset the loaders take. */
export type Dataset = FilesDataset | ArrayDataset;

/**
 * fast.ai's get_cv_idxs: a random `valPct` share of 0..n-1 (seeded), for a
 * validation split. `cvIdx` picks another fold of the same permutation.
 */
export function getCvIdxs(n: number, { valPct = 0.2, seed = 42, cvIdx = 0 }: { valPct?: number; seed?: number; cvIdx?: number } = {}): number[] {
  if (!(valPct >= 0 && valPct < 1)) throw new RangeError(`valPct must be in [0, 1), got ${valPct}`);
  const perm = seededPermutation(n, seed);
  const nVal = Math.floor(valPct * n);
  return perm.slice(cvIdx * nVal, cvIdx * nVal + nVal).sort((a, b) => a - b);
}

/** A seeded Fisher-Yates permutation of 0..n-1. */
export function seededPermutation(n: number, seed: number): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  let s = (seed ^ 0x5bd1e995) >>> 0;
  for (let i = n - 1; i > 0; i--) {
    s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    s = (s ^ (s >>> 13)) >>> 0;
    const j = s % (i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

function listDir(dir: string, what: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    throw new DataError(`${what} ${dir} does not exist or cannot be read`);
  }
}

/** Where scanning warnings go (a file skipped); tests and the CLI may redirect them. */
export type Warn = (message: string) => void;

const consoleWarn: Warn = (m) => console.warn(m);

/**
 * What `path` is, following symbolic links; null (with a warning) when it cannot
 * be told — a link loop, a dangling link, no permission — so that one bad entry is
 * skipped instead of stopping the scan.
 */
export function entryKind(path: string, warn: Warn = consoleWarn): 'file' | 'dir' | 'other' | null {
  try {
    const st = statSync(path);
    return st.isFile() ? 'file' : st.isDirectory() ? 'dir' : 'other';
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ELOOP' ? 'a symbolic link loop' : code === 'ENOENT' ? 'a dangling symbolic link' : (e as Error).message;
    warn(`warning: skipping ${path}: ${why}`);
    return null;
  }
}

function imagesIn(dir: string, warn: Warn): string[] {
  return listDir(dir, 'folder')
    .filter(isImageFile)
    .filter((f) => entryKind(join(dir, f), warn) === 'file')
    .map((f) => join(dir, f));
}

function subfolders(dir: string, warn: Warn): string[] {
  return listDir(dir, 'folder').filter((f) => !f.startsWith('.') && entryKind(join(dir, f), warn) === 'dir');
}

/** Reads an unlabelled folder of images (a test set). */
export function scanTestFolder(path: string, testName: string, classes: string[], warn: Warn = consoleWarn): FilesDataset {
  const dir = join(path, testName);
  if (!existsSync(dir)) throw new DataError(`test folder ${dir} does not exist (testName: '${testName}')`);
  const files = imagesIn(dir, warn);
  if (files.length === 0) throw new DataError(`test folder ${dir} holds no images (${[...IMAGE_EXTENSIONS].join(', ')})`);
  return new FilesDataset(files, files.map(() => -1), classes);
}

/**
 * Reads the folder layout: `{path}/{trnName}/<label>/*.jpg` and the same under
 * `valName`. Classes come from the training folder's subfolders, sorted.
 */
export function scanFolders(path: string, trnName: string, valName: string | null, warn: Warn = consoleWarn): { trn: FilesDataset; val: FilesDataset | null; classes: string[] } {
  if (!existsSync(path)) throw new DataError(`data folder ${path} does not exist`);
  const trnDir = join(path, trnName);
  if (!existsSync(trnDir)) {
    throw new DataError(`training folder ${trnDir} is missing; ${path} holds: ${listDir(path, 'folder').join(', ') || 'nothing'} (set trnName to the right one)`);
  }
  const classes = subfolders(trnDir, warn);
  if (classes.length === 0) throw new DataError(`training folder ${trnDir} has no class subfolders (expected ${trnDir}/<label>/<image>)`);
  const gather = (dir: string, known: string[], strict: boolean): FilesDataset => {
    const files: string[] = [];
    const labels: number[] = [];
    for (const cls of subfolders(dir, warn)) {
      const label = known.indexOf(cls);
      if (label < 0) {
        throw new DataError(`${join(dir, cls)}: label '${cls}' is not among the training labels (${known.join(', ')})`);
      }
      const found = imagesIn(join(dir, cls), warn);
      if (found.length === 0 && strict) throw new DataError(`class folder ${join(dir, cls)} holds no images`);
      for (const f of found) {
        files.push(f);
        labels.push(label);
      }
    }
    return new FilesDataset(files, labels, known);
  };
  const trn = gather(trnDir, classes, true);
  let val: FilesDataset | null = null;
  if (valName !== null) {
    const valDir = join(path, valName);
    if (!existsSync(valDir)) {
      throw new DataError(`validation folder ${valDir} is missing; ${path} holds: ${listDir(path, 'folder').join(', ')} (set valName, or valName: null to train on everything)`);
    }
    val = gather(valDir, classes, false);
  }
  return { trn, val, classes };
}

/** One labelled row of a CSV. */
interface CsvRow {
  tags: string[];
  file: string;
  label: string;
  line: number;
}

/**
 * Reads a Kaggle-style labels CSV (`id,label` with a header) and splits it: rows
 * whose index is in `valIdxs` form the validation set. Files are
 * `{path}/{folder}/{id}{suffix}`. Classes are all labels, sorted. A multi-label
 * CSV (planet-style: space-separated tags, e.g. `agriculture clear water`) gives
 * datasets with `tags`; `multiLabel` 'auto' (the default) decides by whether any
 * label has a space, true or false insists.
 */
export function scanCsv(path: string, folder: string, csvFile: string, { valIdxs, suffix = '', skipHeader = true, multiLabel = 'auto' }: { valIdxs: number[]; suffix?: string; skipHeader?: boolean; multiLabel?: boolean | 'auto' }): { trn: FilesDataset; val: FilesDataset | null; classes: string[]; multiLabel: boolean } {
  const { csvPath, text } = readCsvText(path, csvFile);
  let records: string[][];
  try {
    records = parse(text, { skip_empty_lines: true, trim: true, relax_column_count: true }) as string[][];
  } catch (e) {
    const err = e as Error & { lines?: number; code?: string };
    // csv-parse reports an unclosed quote at the end of the file; the user needs the line where it opens.
    const line = err.code === 'CSV_QUOTE_NOT_CLOSED' ? (unclosedQuoteLine(text) ?? err.lines) : err.lines;
    throw new DataError(`${csvPath}${line ? `, line ${line}` : ''}: malformed CSV (${err.message.replace(/^Invalid.*?: /, '')})`);
  }
  const rows: CsvRow[] = [];
  const start = skipHeader ? 1 : 0;
  // csv-parse drops empty lines, so count lines in the text to name them.
  const lineNumbers = text.split(/\r?\n/).flatMap((l, i) => (l.trim() === '' ? [] : [i + 1]));
  for (let i = start; i < records.length; i++) {
    const rec = records[i]!;
    const line = lineNumbers[i] ?? i + 1;
    if (rec.length !== 2) throw new DataError(`${csvPath}, line ${line}: expected 2 columns (id, label), found ${rec.length}: ${rec.join(',')}`);
    const [id, label] = rec as [string, string];
    if (id === '' || label === '') throw new DataError(`${csvPath}, line ${line}: empty ${id === '' ? 'id' : 'label'}`);
    if (multiLabel === false && /\s/.test(label)) throw new DataError(`${csvPath}, line ${line}: label '${label}' has several tags; leave out --single-label (or multiLabel: false) to train a multi-label classifier`);
    const tags = [...new Set(label.split(/\s+/))].sort();
    rows.push({ file: join(path, folder, `${id}${suffix}`), label: tags.join(' '), tags, line });
  }
  if (rows.length === 0) throw new DataError(`${csvPath} has no data rows`);
  const multi = multiLabel === 'auto' ? rows.some((r) => r.tags.length > 1) : multiLabel;
  const firstById = new Map<string, CsvRow>();
  for (const r of rows) {
    const prev = firstById.get(r.file);
    if (prev === undefined) firstById.set(r.file, r);
    else if (prev.label !== r.label) throw new DataError(`${csvPath}, line ${r.line}: this image is already labelled '${prev.label}' on line ${prev.line}, here '${r.label}'`);
    else throw new DataError(`${csvPath}, line ${r.line}: repeats line ${prev.line} (the same image would be counted twice, perhaps in training and in validation)`);
  }
  for (const r of rows) {
    if (!existsSync(r.file)) throw new DataError(`${csvPath}, line ${r.line}: image ${r.file} does not exist (check folder '${folder}' and suffix '${suffix}')`);
  }
  const classes = [...new Set(rows.flatMap((r) => (multi ? r.tags : [r.label])))].sort();
  const valSet = new Set(valIdxs);
  for (const i of valSet) if (!(Number.isInteger(i) && i >= 0 && i < rows.length)) throw new DataError(`valIdxs: ${i} is not a row index (0..${rows.length - 1})`);
  // A class seen only in the held-out rows has nothing to learn from.
  const labelsOf = (r: CsvRow): string[] => (multi ? r.tags : [r.label]);
  const trained = new Set(rows.filter((_, i) => !valSet.has(i)).flatMap(labelsOf));
  const unseen = rows.filter((r, i) => valSet.has(i) && labelsOf(r).some((l) => !trained.has(l)));
  if (unseen.length > 0) {
    const r = unseen[0]!;
    const l = labelsOf(r).find((x) => !trained.has(x))!;
    throw new DataError(`${csvPath}, line ${r.line}: ${multi ? 'tag' : 'label'} '${l}' has no training rows (${unseen.filter((u) => labelsOf(u).includes(l)).length} row(s), all held out for validation); give it more rows or remove it`);
  }
  const index = new Map(classes.map((c, i) => [c, i]));
  const pick = (inVal: boolean): FilesDataset => {
    const chosen = rows.filter((_, i) => valSet.has(i) === inVal);
    const tags = multi ? chosen.map((r) => r.tags.map((t) => index.get(t)!)) : null;
    return new FilesDataset(
      chosen.map((r) => r.file),
      chosen.map((r) => index.get(labelsOf(r)[0]!)!),
      classes,
      tags,
    );
  };
  return { trn: pick(false), val: valSet.size > 0 ? pick(true) : null, classes, multiLabel: multi };
}

/** Whether a labels CSV is multi-label: some row's label holds several space-separated tags. */
export function csvHasTags(path: string, csvFile: string, skipHeader = true): boolean {
  const { text } = readCsvText(path, csvFile);
  try {
    const records = parse(text, { skip_empty_lines: true, trim: true, relax_column_count: true }) as string[][];
    return records.slice(skipHeader ? 1 : 0).some((r) => r.length === 2 && /\s/.test(r[1]!));
  } catch {
    return false; // scanCsv reports the malformed line
  }
}

/** The number of data rows of a labels CSV (for `getCvIdxs`). */
export function csvRowCount(path: string, csvFile: string, skipHeader = true): number {
  const { text } = readCsvText(path, csvFile);
  const n = text.split(/\r?\n/).filter((l) => l.trim() !== '').length;
  return Math.max(0, n - (skipHeader ? 1 : 0));
}

function readCsvText(path: string, csvFile: string): { csvPath: string; text: string } {
  const csvPath = csvFile.startsWith('/') ? csvFile : join(path, csvFile);
  try {
    return { csvPath, text: readFileSync(csvPath, 'utf8') };
  } catch {
    throw new DataError(`labels file ${csvPath} does not exist or cannot be read`);
  }
}

/** The line (1-based) where a quoted field opens and is never closed, or null. */
export function unclosedQuoteLine(text: string): number | null {
  let line = 1;
  let inQuote = false;
  let openedAt = 0;
  let fieldStart = true;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (inQuote) {
      if (c === '"') {
        if (text[i + 1] === '"') i++;
        else inQuote = false;
      } else if (c === '\n') line++;
      continue;
    }
    if (c === '"' && fieldStart) {
      inQuote = true;
      openedAt = line;
    } else if (c === '\n') line++;
    fieldStart = c === ',' || c === '\n' || (c === '\r' && text[i + 1] === '\n') || (fieldStart && (c === ' ' || c === '\t'));
  }
  return inQuote ? openedAt : null;
}
