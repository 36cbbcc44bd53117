// Datasets of labelled images: from a folder tree (train/<label>/...), from a
// Kaggle-style CSV, or from arrays (precomputed activations). Scanning checks the
// input and names the culprit; it never writes to the user's folders.
import { existsSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { basename, extname, join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { shown } from '../util/shown.js';
import type { Tensor } from '../torch/index.js';
import { NotAFileError, readRegularFileSync } from '../util/read-files.js';
import { InputError } from '../util/errors.js';

/** File extensions read as images (others, such as .txt or .DS_Store, are counted and named as skipped). */
export const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.jpe', '.jfif', '.png', '.webp', '.gif', '.tif', '.tiff', '.avif', '.bmp', '.dib', '.heic', '.heif']);

/** Whether a file name looks like an image fastvision reads. */
export function isImageFile(name: string): boolean {
  return IMAGE_EXTENSIONS.has(extname(name).toLowerCase()) && !name.startsWith('.');
}

/** A clear message about the user's data, naming the folder, file or line at fault. */
export class DataError extends InputError {}

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

  /** How many readable images each class (multi-label: each tag) has: files found unreadable are not counted. */
  labelCounts(): Map<string, number> {
    const perItem = this.tags ?? this.labels.map((l) => (l >= 0 ? [l] : []));
    return countLabels(
      this.classes,
      perItem.filter((_, i) => !this.bad.has(i)),
    );
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

/** Folders that are never classes: archive and system litter. */
const LITTER_FOLDERS = new Set(['__MACOSX', '$RECYCLE.BIN', 'System Volume Information', '@eaDir', 'lost+found']);

/** Where scanning warnings go (a file skipped); tests and the CLI may redirect them. */
export type Warn = (message: string) => void;

const consoleWarn: Warn = (m) => console.warn(m);

/**
 * The names in a folder, sorted. A name that is not valid UTF-8 cannot be opened
 * through a JavaScript string, so it is skipped with a warning that shows its bytes.
 */
function listDir(dir: string, what: string, warn: Warn = consoleWarn): string[] {
  let raw: Buffer[];
  try {
    raw = readdirSync(dir, { encoding: 'buffer' });
  } catch {
    throw new DataError(`${what} ${shown(dir)} does not exist or cannot be read`);
  }
  const names: string[] = [];
  for (const b of raw) {
    const name = b.toString('utf8');
    if (Buffer.from(name, 'utf8').equals(b)) names.push(name);
    else warn(`warning: skipping ${shown(join(dir, asciiOrEscaped(b)))} (bytes ${b.toString('hex')}): its name is not valid UTF-8; rename it`);
  }
  return names.sort();
}

/** A name that is not UTF-8, with every byte beyond ASCII written as `\xNN`. */
function asciiOrEscaped(b: Buffer): string {
  return [...b].map((c) => (c < 0x80 ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, '0')}`)).join('');
}

/** What `path` is, following symbolic links, or null when it cannot be told (no warning). */
function entryKindQuiet(path: string): 'file' | 'dir' | 'other' | null {
  return entryKind(path, () => undefined);
}

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
    warn(`warning: skipping ${shown(path)}: ${why}`);
    return null;
  }
}

/** HEIF brands whose pictures are coded in HEVC, which libvips as shipped with sharp cannot decode. */
const HEVC_BRANDS = new Set(['heic', 'heix', 'hevc', 'hevx', 'heim', 'heis', 'hevm', 'hevs']);

/** Why an image file that fastvision lists cannot be read, from its first bytes (null: try it). */
function unreadableKind(path: string): string | null {
  const ext = extname(path).toLowerCase();
  if (ext !== '.heic' && ext !== '.heif') return null;
  try {
    const head = readRegularFileSync(path).subarray(0, 12);
    const brand = head.subarray(8, 12).toString('latin1');
    if (head.subarray(4, 8).toString('latin1') === 'ftyp' && HEVC_BRANDS.has(brand))
      return 'a HEIC photo coded in HEVC, which this build of libvips cannot decode; convert it to JPEG (e.g. heif-convert, or export as "Most Compatible" on the phone)';
  } catch {
    return null; // the loader names it when it fails
  }
  return null;
}

/** What a scan left out, counted and named once per scan instead of once per file. */
class Skipped {
  private readonly byReason = new Map<string, string[]>();
  add(reason: string, path: string): void {
    (this.byReason.get(reason) ?? this.byReason.set(reason, []).get(reason)!).push(path);
  }
  /** Per reason: how many, why, and the first few by name. */
  summaries(): string[] {
    return [...this.byReason].map(([reason, paths]) => {
      const names = paths
        .slice(0, 3)
        .map((p) => shown(basename(p)))
        .join(', ');
      return `${paths.length} file${paths.length === 1 ? '' : 's'}: ${reason} (${names}${paths.length > 3 ? ', …' : ''})`;
    });
  }
  /** One warning per reason. */
  report(where: string, warn: Warn): void {
    for (const line of this.summaries()) warn(`warning: skipped under ${shown(where)}: ${line}`);
  }
}

const NOT_AN_IMAGE = 'not image files (by their extension)';

/**
 * The images under `dir`, subfolders included (a class may be sorted further into
 * folders of its own); hidden files and folders, archive litter and link loops are
 * passed over, and whatever is left out is recorded in `skipped`.
 */
function imagesUnder(dir: string, warn: Warn, skipped: Skipped, seen = new Set<string>(), depth = 0): string[] {
  let real: string;
  try {
    real = realpathSync(dir);
  } catch {
    return [];
  }
  if (seen.has(real) || depth > 32) return [];
  seen.add(real);
  const out: string[] = [];
  for (const name of listDir(dir, 'folder', warn)) {
    if (name.startsWith('.')) continue;
    const path = join(dir, name);
    const kind = entryKind(path, warn);
    if (kind === 'dir') {
      if (LITTER_FOLDERS.has(name)) skipped.add('archive or system folders', path);
      else out.push(...imagesUnder(path, warn, skipped, seen, depth + 1));
    } else if (kind === 'other') {
      skipped.add('not regular files (named pipes, devices, sockets)', path);
    } else if (kind === 'file') {
      if (!isImageFile(name)) {
        skipped.add(NOT_AN_IMAGE, path);
        continue;
      }
      const why = unreadableKind(path);
      if (why !== null) skipped.add(why, path);
      else out.push(path);
    }
  }
  return out;
}

function subfolders(dir: string, warn: Warn): string[] {
  return listDir(dir, 'folder', warn).filter((f) => {
    if (f.startsWith('.')) return false;
    if (entryKind(join(dir, f), warn) !== 'dir') return false;
    if (LITTER_FOLDERS.has(f)) {
      warn(`warning: skipping ${shown(join(dir, f))}: archive or system folder, not a class`);
      return false;
    }
    return true;
  });
}

/** Why a folder gave no images, naming what was there instead and what is read. */
function noImagesMessage(what: string, dir: string, skipped: Skipped): string {
  return `${what} ${shown(dir)} holds no images fastvision reads (${[...IMAGE_EXTENSIONS].join(', ')})${skippedSummary(skipped)}`;
}

function skippedSummary(skipped: Skipped): string {
  const parts = skipped.summaries();
  return parts.length > 0 ? `; left out: ${parts.join('; ')}` : '';
}

/** The images under a folder, subfolders included, sorted; what is left out is named through `warn`. */
export function findImages(dir: string, warn: Warn = consoleWarn): string[] {
  const skipped = new Skipped();
  const files = imagesUnder(dir, warn, skipped);
  skipped.report(dir, warn);
  return files;
}

/** Reads an unlabelled folder of images (a test set), subfolders included. */
export function scanTestFolder(path: string, testName: string, classes: string[], warn: Warn = consoleWarn): FilesDataset {
  const dir = join(path, testName);
  if (!existsSync(dir)) throw new DataError(`test folder ${shown(dir)} does not exist (testName: '${shown(testName)}')`);
  const skipped = new Skipped();
  const files = imagesUnder(dir, warn, skipped);
  if (files.length === 0) throw new DataError(noImagesMessage('test folder', dir, skipped));
  skipped.report(dir, warn);
  return new FilesDataset(
    files,
    files.map(() => -1),
    classes,
  );
}

/**
 * Reads the folder layout: `{path}/{trnName}/<label>/**` and the same under
 * `valName`. Classes come from the training folder's subfolders, sorted; the
 * images of a class may sit in folders of their own under it.
 */
export function scanFolders(path: string, trnName: string, valName: string | null, warn: Warn = consoleWarn): { trn: FilesDataset; val: FilesDataset | null; classes: string[] } {
  if (!existsSync(path)) throw new DataError(`data folder ${shown(path)} does not exist`);
  const trnDir = join(path, trnName);
  if (!existsSync(trnDir)) {
    throw new DataError(
      `training folder ${shown(trnDir)} is missing; ${shown(path)} holds: ${
        listDir(path, 'folder', warn)
          .map((n) => shown(n))
          .join(', ') || 'nothing'
      } (set trnName to the right one)`,
    );
  }
  // gather() lists the training folder again and warns then: listing it here says nothing.
  const classes = subfolders(trnDir, () => undefined);
  if (classes.length === 0) throw new DataError(`training folder ${shown(trnDir)} has no class subfolders (expected ${shown(trnDir)}/<label>/<image>)`);
  const gather = (dir: string, known: string[], strict: boolean): FilesDataset => {
    const files: string[] = [];
    const labels: number[] = [];
    for (const cls of subfolders(dir, warn)) {
      const label = known.indexOf(cls);
      if (label < 0) {
        throw new DataError(`${shown(join(dir, cls))}: label '${shown(cls)}' is not among the training labels (${known.map((k) => shown(k)).join(', ')})`);
      }
      const mine = new Skipped();
      const found = imagesUnder(join(dir, cls), warn, mine);
      if (found.length === 0 && strict) throw new DataError(noImagesMessage('class folder', join(dir, cls), mine));
      mine.report(join(dir, cls), warn);
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
      throw new DataError(
        `validation folder ${shown(valDir)} is missing; ${shown(path)} holds: ${listDir(path, 'folder', warn)
          .map((n) => shown(n))
          .join(', ')} (set valName, or valName: null to train on everything)`,
      );
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

/** What a labels CSV holds, and how it was read. */
export interface LabelsCsv {
  csvPath: string;
  /** The data rows: id, label as written (trimmed), and line number. */
  rows: { id: string; label: string; line: number }[];
  /** Whether line 1 was taken as a header. */
  header: boolean;
  /** The label column's name in the header, if any. */
  labelColumn: string | null;
  /** Why the first row was taken as data, when it was (null otherwise). */
  headerNote: string | null;
}

/** Options for reading a labels CSV. */
export interface CsvReadOptions {
  /** The images folder under the data folder (to tell a header from a first data row). */
  folder?: string;
  suffix?: string;
  /** true: line 1 is a header; false: it is data; 'auto' (default): data when its id names an existing image. */
  header?: boolean | 'auto';
}

/**
 * Parses a labels CSV (`id,label`): every record checked for two columns and no empty
 * field, each named by its line. Whether line 1 is a header is decided as `header` says.
 */
export function readLabelsCsv(path: string, csvFile: string, { folder = 'train', suffix = '', header = 'auto' }: CsvReadOptions = {}): LabelsCsv {
  const { csvPath, text } = readCsvText(path, csvFile);
  let records: { record: string[]; info: { lines: number } }[];
  try {
    records = parse(text, { skip_empty_lines: true, trim: true, relax_column_count: true, info: true }) as typeof records;
  } catch (e) {
    const err = e as Error & { lines?: number; code?: string };
    // csv-parse reports an unclosed quote at the end of the file; the user needs the line where it opens.
    const line = err.code === 'CSV_QUOTE_NOT_CLOSED' ? (unclosedQuoteLine(text) ?? err.lines) : err.lines;
    throw new DataError(`${csvPath}${line ? `, line ${line}` : ''}: malformed CSV (${err.message.replace(/^Invalid.*?: /, '')})`);
  }
  // A quoted field may span lines: a record is named by the line it starts on, the first
  // non-empty line after the previous record's last.
  const lines = text.split('\n');
  const starts: number[] = [];
  let next = 1;
  for (const r of records) {
    while (next <= lines.length && lines[next - 1]!.trim() === '') next++;
    starts.push(next);
    next = r.info.lines + 1;
  }
  let isHeader = header === true;
  let headerNote: string | null = null;
  const first = records[0]?.record;
  if (header === 'auto' && first !== undefined) {
    const candidate = join(path, folder, `${first[0] ?? ''}${suffix}`);
    const isData = first.length === 2 && first[0] !== '' && entryKindQuiet(candidate) === 'file';
    isHeader = !isData;
    if (isData) headerNote = `${csvPath}: line 1 (${shown(first.join(','))}) is data, not a header: its image ${candidate} exists; --header reads it as a header`;
  }
  const rows: LabelsCsv['rows'] = [];
  for (let i = isHeader ? 1 : 0; i < records.length; i++) {
    const rec = records[i]!.record;
    const line = starts[i]!;
    if (rec.length !== 2) throw new DataError(`${csvPath}, line ${line}: expected 2 columns (id, label), found ${rec.length}: ${shown(rec.join(','))}`);
    const [id, label] = rec as [string, string];
    if (id === '' || label === '') throw new DataError(`${csvPath}, line ${line}: empty ${id === '' ? 'id' : 'label'}`);
    rows.push({ id, label, line });
  }
  if (rows.length === 0) throw new DataError(`${csvPath} has no data rows`);
  return { csvPath, rows, header: isHeader, labelColumn: isHeader && first?.length === 2 ? first[1]! : null, headerNote };
}

/** Whether labels are space-separated tags, and why, in words for the user. */
export interface TagsVerdict {
  multiLabel: boolean;
  /** One line: what was chosen, why, and the flag that changes it (null when no label has a space). */
  note: string | null;
}

/**
 * Decides whether a CSV's labels are lists of space-separated tags (planet's
 * `agriculture clear water`) or names that hold spaces (`Maine Coon`). Tags are
 * chosen when the label column is headed `tags`, or when most rows have several
 * words and most of those share a word with a different label (tags recombine;
 * names rarely do).
 */
export function tagsVerdict(labels: readonly string[], labelColumn: string | null = null): TagsVerdict {
  const tokens = labels.map((l) => [...new Set(l.split(/\s+/))]);
  const several = tokens.filter((t) => t.length > 1);
  if (several.length === 0) return { multiLabel: false, note: null };
  const labelsWith = new Map<string, Set<string>>();
  labels.forEach((l, i) => {
    for (const t of tokens[i]!) (labelsWith.get(t) ?? labelsWith.set(t, new Set()).get(t)!).add(tokens[i]!.slice().sort().join(' '));
  });
  const shared = several.filter((ts) => ts.some((t) => labelsWith.get(t)!.size > 1)).length;
  const n = labels.length;
  const example = shown(labels.find((l) => /\s/.test(l))!);
  if (labelColumn !== null && /^tags?$/i.test(labelColumn.trim())) {
    return {
      multiLabel: true,
      note: `labels: multi-label: the label column is headed '${shown(labelColumn)}' and ${several.length} of ${n} rows list several space-separated tags; --single-label reads each label whole`,
    };
  }
  if (several.length * 2 >= n && shared * 2 >= several.length) {
    return {
      multiLabel: true,
      note: `labels: multi-label: ${several.length} of ${n} rows list several space-separated tags, and ${shared} of them share a tag with a different label; --single-label reads each label whole`,
    };
  }
  return {
    multiLabel: false,
    note: `labels: single-label: labels such as '${example}' hold spaces but read as names (${several.length} of ${n} rows have several words, ${shared} share a word with a different label); --multi-label reads them as space-separated tags`,
  };
}

/**
 * Reads a Kaggle-style labels CSV (`id,label`) and splits it: rows whose index is in
 * `valIdxs` form the validation set. Files are `{path}/{folder}/{id}{suffix}`.
 * Classes are all labels, sorted. A multi-label CSV (planet-style: space-separated
 * tags, e.g. `agriculture clear water`) gives datasets with `tags`; `multiLabel`
 * 'auto' (the default) decides as `tagsVerdict` does, true or false insists.
 */
export function scanCsv(
  path: string,
  folder: string,
  csvFile: string,
  { valIdxs, suffix = '', header = 'auto', multiLabel = 'auto' }: { valIdxs: number[]; suffix?: string; header?: boolean | 'auto'; multiLabel?: boolean | 'auto' },
): { trn: FilesDataset; val: FilesDataset | null; classes: string[]; multiLabel: boolean } {
  const csv = readLabelsCsv(path, csvFile, { folder, suffix, header });
  const { csvPath } = csv;
  const multi =
    multiLabel === 'auto'
      ? tagsVerdict(
          csv.rows.map((r) => r.label),
          csv.labelColumn,
        ).multiLabel
      : multiLabel;
  const rows: CsvRow[] = csv.rows.map(({ id, label, line }) => {
    const tags = multi ? [...new Set(label.split(/\s+/))].sort() : [label];
    return { file: join(path, folder, `${id}${suffix}`), label: tags.join(' '), tags, line };
  });
  const firstById = new Map<string, CsvRow>();
  for (const r of rows) {
    const prev = firstById.get(r.file);
    if (prev === undefined) firstById.set(r.file, r);
    else if (prev.label !== r.label) throw new DataError(`${csvPath}, line ${r.line}: this image is already labelled '${shown(prev.label)}' on line ${prev.line}, here '${shown(r.label)}'`);
    else throw new DataError(`${csvPath}, line ${r.line}: repeats line ${prev.line} (the same image would be counted twice, perhaps in training and in validation)`);
  }
  for (const r of rows) {
    const kind = entryKindQuiet(r.file);
    if (kind === null) throw new DataError(`${csvPath}, line ${r.line}: image ${shown(r.file)} does not exist (check folder '${folder}' and suffix '${suffix}')`);
    if (kind !== 'file') throw new DataError(`${csvPath}, line ${r.line}: ${shown(r.file)} is not a regular file`);
  }
  const classes = [...new Set(rows.flatMap((r) => r.tags))].sort();
  const valSet = new Set(valIdxs);
  for (const i of valSet)
    if (!(Number.isInteger(i) && i >= 0 && i < rows.length)) throw new DataError(`valIdxs: ${i} is not a row index of ${csvPath} (0..${rows.length - 1}: it has ${rows.length} data rows)`);
  // A class seen only in the held-out rows has nothing to learn from.
  const trained = new Set(rows.filter((_, i) => !valSet.has(i)).flatMap((r) => r.tags));
  const unseen = rows.filter((r, i) => valSet.has(i) && r.tags.some((l) => !trained.has(l)));
  if (unseen.length > 0) {
    const r = unseen[0]!;
    const l = r.tags.find((x) => !trained.has(x))!;
    throw new DataError(
      `${csvPath}, line ${r.line}: ${multi ? 'tag' : 'label'} '${shown(l)}' has no training rows (${unseen.filter((u) => u.tags.includes(l)).length} row(s), all held out for validation); give it more rows or remove it`,
    );
  }
  const index = new Map(classes.map((c, i) => [c, i]));
  const pick = (inVal: boolean): FilesDataset => {
    const chosen = rows.filter((_, i) => valSet.has(i) === inVal);
    const tags = multi ? chosen.map((r) => r.tags.map((t) => index.get(t)!)) : null;
    return new FilesDataset(
      chosen.map((r) => r.file),
      chosen.map((r) => index.get(r.tags[0]!)!),
      classes,
      tags,
    );
  };
  return { trn: pick(false), val: valSet.size > 0 ? pick(true) : null, classes, multiLabel: multi };
}

/** The number of data rows of a labels CSV (for `getCvIdxs`): records, not lines, so a quoted line break counts once. */
export function csvRowCount(path: string, csvFile: string, options: CsvReadOptions = {}): number {
  return readLabelsCsv(path, csvFile, options).rows.length;
}

function readCsvText(path: string, csvFile: string): { csvPath: string; text: string } {
  const csvPath = csvFile.startsWith('/') ? csvFile : join(path, csvFile);
  try {
    return { csvPath, text: readRegularFileSync(csvPath).toString('utf8') };
  } catch (e) {
    if (e instanceof NotAFileError) throw new DataError(`labels file ${shown(e.message)}`);
    throw new DataError(`labels file ${shown(csvPath)} does not exist or cannot be read`);
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
