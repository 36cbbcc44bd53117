// Label cleaning: decisions a person made about photos (keep, relabel, exclude),
// kept as a CSV log beside a run's outputs (`cleaning.csv`, the studio writes it) and
// applied to the data when it is loaded (`--clean`). The data folder itself is never
// written: a decision names a photo by its path relative to the data folder.
import { parse } from 'csv-parse/sync';
import { relative, sep } from 'node:path';
import { existsSync } from 'node:fs';
import { writeFileAtomic } from '../util/files.js';
import { readRegularFileSync } from '../util/read-files.js';
import { shown } from '../util/shown.js';
import { DataError, FilesDataset } from './dataset.js';

/** What was decided about a photo: its label is right, it belongs to another class, or it does not belong in the data. */
export type CleaningAction = 'keep' | 'relabel' | 'exclude';

/** One decision: a photo (its path under the data folder, '/'-separated), what to do, and the new label of a relabel. */
export interface CleaningDecision {
  file: string;
  action: CleaningAction;
  /** The class a relabelled photo belongs to (null for keep and exclude). */
  label: string | null;
  /** The line of the cleaning file it was read from, for errors. */
  line?: number;
}

/** The first line of a cleaning file. */
export const CLEANING_HEADER = 'file,action,label';
const ACTIONS: readonly CleaningAction[] = ['keep', 'relabel', 'exclude'];
/** Cleaning files past this are refused: a person's decisions fit in far less. */
const MAX_CLEANING_BYTES = 64 * 2 ** 20;

/** The error of a cleaning file that cannot be used, naming it and the line. */
export class CleaningError extends DataError {}

/** A photo's key in cleaning decisions: its path under `root`, '/'-separated. */
export function cleaningKey(root: string, file: string): string {
  return relative(root, file).split(sep).join('/');
}

/**
 * A cleaning file's decisions, in the order made (a later decision about a photo
 * overrides an earlier one). Errors name `where` and the line.
 */
export function parseCleaning(text: string, where: string): CleaningDecision[] {
  let records: { record: string[]; info: { lines: number } }[];
  try {
    records = parse(text, { skip_empty_lines: true, relax_column_count: true, info: true }) as typeof records;
  } catch (e) {
    throw new CleaningError(`${where}: malformed CSV (${(e as Error).message})`);
  }
  const first = records[0]?.record.join(',');
  if (first !== CLEANING_HEADER) throw new CleaningError(`${where}, line 1: expected the header ${CLEANING_HEADER}, found '${shown(first ?? '')}'`);
  return records.slice(1).map(({ record, info }) => {
    const line = info.lines;
    if (record.length !== 3) throw new CleaningError(`${where}, line ${line}: expected 3 columns (${CLEANING_HEADER}), found ${record.length}`);
    const [file, action, label] = record as [string, string, string];
    if (file === '' || file.startsWith('/') || file.split('/').includes('..')) throw new CleaningError(`${where}, line ${line}: '${shown(file)}' is not a path inside the data folder`);
    if (!(ACTIONS as readonly string[]).includes(action)) throw new CleaningError(`${where}, line ${line}: action '${shown(action)}' is none of ${ACTIONS.join(', ')}`);
    if ((action === 'relabel') !== (label !== '')) throw new CleaningError(`${where}, line ${line}: ${action === 'relabel' ? 'a relabel needs the new label' : `${action} takes no label`}`);
    return { file, action: action as CleaningAction, label: action === 'relabel' ? label : null, line };
  });
}

/** Reads a cleaning file (a regular file of at most 64 MiB). */
export function readCleaning(path: string): CleaningDecision[] {
  let bytes: Buffer;
  try {
    bytes = readRegularFileSync(path, MAX_CLEANING_BYTES);
  } catch (e) {
    throw new CleaningError(`cleaning file ${shown(path)}: ${(e as Error).message}`);
  }
  return parseCleaning(bytes.toString('utf8'), path);
}

/** A CSV field, quoted when it must be. */
function csvField(v: string): string {
  return /[",\r\n]|^\s|\s$/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

/** Decisions as a cleaning file's text. */
export function serializeCleaning(decisions: readonly CleaningDecision[]): string {
  return [CLEANING_HEADER, ...decisions.map((d) => [d.file, d.action, d.label ?? ''].map(csvField).join(','))].join('\n') + '\n';
}

/**
 * Adds an exclusion for each photo (keys as `cleaningKey` gives them) to the cleaning file
 * at `path`, creating it if there is none; photos already excluded are left as they are.
 * The file is replaced whole or not at all. Returns how many decisions were added.
 */
export async function addExclusions(path: string, keys: readonly string[]): Promise<number> {
  const log = existsSync(path) ? readCleaning(path) : [];
  const added = exclusionsToAdd(log, keys);
  if (added.length > 0) await writeFileAtomic(path, serializeCleaning([...log, ...added]));
  return added.length;
}

/** The exclusions that `keys` add to a log of decisions: one per photo not already excluded. */
export function exclusionsToAdd(log: readonly CleaningDecision[], keys: readonly string[]): CleaningDecision[] {
  const now = currentDecisions(log);
  return [...new Set(keys)].filter((k) => now.get(k)?.action !== 'exclude').map((file) => ({ file, action: 'exclude', label: null }));
}

/** The decision in force for each photo: the last one made about it. */
export function currentDecisions(decisions: readonly CleaningDecision[]): Map<string, CleaningDecision> {
  const now = new Map<string, CleaningDecision>();
  for (const d of decisions) now.set(d.file, d);
  return now;
}

/**
 * A dataset with the decisions applied: excluded photos left out, relabelled ones
 * moved to their class (which must be one of the data's). Multi-label data takes
 * exclusions only. Photos without a decision, or kept, are unchanged.
 */
export function applyCleaning(root: string, ds: FilesDataset, decisions: ReadonlyMap<string, CleaningDecision>, where = 'cleaning'): FilesDataset {
  if (decisions.size === 0) return ds;
  const index = new Map(ds.classes.map((c, i) => [c, i]));
  const files: string[] = [];
  const labels: number[] = [];
  const tags: number[][] = [];
  ds.files.forEach((file, i) => {
    const d = decisions.get(cleaningKey(root, file));
    if (d?.action === 'exclude') return;
    let label = ds.labels[i]!;
    if (d?.action === 'relabel') {
      const at = `${where}${d.line === undefined ? '' : `, line ${d.line}`}`;
      if (ds.tags) throw new CleaningError(`${at}: '${shown(d.file)}' is relabelled, but the data is multi-label; only exclusions apply to it`);
      const to = index.get(d.label!);
      if (to === undefined) throw new CleaningError(`${at}: '${shown(d.label!)}' is not a class of the data (${ds.classes.map((c) => shown(c)).join(', ')})`);
      label = to;
    }
    files.push(file);
    labels.push(label);
    if (ds.tags) tags.push(ds.tags[i]!);
  });
  return new FilesDataset(files, labels, ds.classes, ds.tags ? tags : null);
}

/**
 * A labels CSV (`id,label`, with a header) of the cleaned photos of the given
 * datasets, ids relative to `root`: train on it with `--csv FILE --folder .`.
 */
export function cleanedLabelsCsv(root: string, datasets: readonly (FilesDataset | null)[]): string {
  const rows = datasets.flatMap((ds) => (ds === null ? [] : ds.files.map((f, i) => [cleaningKey(root, f), ds.tags ? ds.tags[i]!.map((t) => ds.classes[t]!).join(' ') : ds.classes[ds.labels[i]!]!])));
  return ['id,label', ...rows.map((r) => r.map(csvField).join(','))].join('\n') + '\n';
}
