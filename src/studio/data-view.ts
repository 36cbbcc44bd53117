// What the studio's Data screen shows: the photos of a data folder (folder or CSV
// layout) with their labels before and after cleaning, counts per class, image sizes,
// and what was skipped and why. Read once when the studio starts; cleaning decisions
// are applied on the fly.
import { resolve } from 'node:path';
import { readImageSizes } from '../vision/data.js';
import { csvRowCount, FilesDataset, getCvIdxs, scanCsv, scanFolders } from '../vision/dataset.js';
import { cleaningKey, type CleaningDecision } from '../vision/cleaning.js';

/** Where the studio's data is and how it is laid out: `train/<label>/` and `valid/<label>/` folders, or a labels CSV. */
export interface StudioDataSpec {
  /** The data folder. */
  path: string;
  /** A labels CSV under the folder (id,label); absent: the folder layout. */
  csv?: string;
  /** With csv: the images' folder under the data folder (default 'train'). */
  folder?: string;
  /** With csv: appended to each id to make the file name. */
  suffix?: string;
  /** With csv: share of rows held out for validation (default 0.2). */
  valPct?: number;
}

/** A photo of the data: its key (path under the data folder), split and label as given. */
export interface StudioPhoto {
  file: string;
  split: 'train' | 'valid';
  label: string;
}

/** A photo or entry left out, and why. */
export interface SkippedFile {
  file: string | null;
  reason: string;
}

/** The data as the studio shows it. */
export interface DataView {
  root: string;
  classes: string[];
  photos: StudioPhoto[];
  /** Photos by key. */
  byKey: Map<string, StudioPhoto>;
  sizes: { file: string; width: number; height: number }[];
  skipped: SkippedFile[];
  /** The datasets as scanned, for exporting cleaned labels. */
  datasets: { trn: FilesDataset; val: FilesDataset | null };
}

/** The CSV rows held out for validation: the same split for the Data screen and the runs. */
export function csvValIdxs(spec: StudioDataSpec & { csv: string }): number[] {
  return getCvIdxs(csvRowCount(resolve(spec.path), spec.csv, { folder: spec.folder ?? 'train', suffix: spec.suffix ?? '' }), { valPct: spec.valPct ?? 0.2 });
}

/** Reads the data folder as `spec` says (multi-label data is refused: the studio cleans single labels). */
export async function readDataView(spec: StudioDataSpec): Promise<DataView> {
  const root = resolve(spec.path);
  const skipped: SkippedFile[] = [];
  const warn = (m: string): void => void skipped.push({ file: null, reason: m.replace(/^warning: /, '') });
  let scanned: { trn: FilesDataset; val: FilesDataset | null; classes: string[] };
  if (spec.csv === undefined) scanned = scanFolders(root, 'train', 'valid', warn);
  else {
    scanned = scanCsv(root, spec.folder ?? 'train', spec.csv, { valIdxs: csvValIdxs({ ...spec, csv: spec.csv }), suffix: spec.suffix ?? '', multiLabel: false });
  }
  const { trn, val, classes } = scanned;
  const sizes: DataView['sizes'] = [];
  const photos: StudioPhoto[] = [];
  for (const [ds, split] of [
    [trn, 'train'],
    [val, 'valid'],
  ] as const) {
    if (ds === null) continue;
    const unreadable = new Set<string>();
    sizes.push(
      ...(await readImageSizes(ds, (file, reason) => {
        unreadable.add(file);
        skipped.push({ file: cleaningKey(root, file), reason });
      })),
    );
    ds.files.forEach((f, i) => {
      if (!unreadable.has(f)) photos.push({ file: cleaningKey(root, f), split, label: classes[ds.labels[i]!]! });
    });
  }
  return { root, classes, photos, byKey: new Map(photos.map((p) => [p.file, p])), sizes, skipped, datasets: { trn, val } };
}

/** A photo's label once the decisions apply: its class, or null when excluded. */
export function cleanedLabel(p: StudioPhoto, decisions: ReadonlyMap<string, CleaningDecision>): string | null {
  const d = decisions.get(p.file);
  if (d?.action === 'exclude') return null;
  return d?.action === 'relabel' ? d.label! : p.label;
}

/** Photos per class and split once the decisions apply. */
export function classCounts(view: DataView, decisions: ReadonlyMap<string, CleaningDecision>): { label: string; train: number; valid: number }[] {
  const counts = new Map(view.classes.map((c) => [c, { label: c, train: 0, valid: 0 }]));
  for (const p of view.photos) {
    const l = cleanedLabel(p, decisions);
    if (l !== null) counts.get(l)![p.split]++;
  }
  return [...counts.values()];
}

/** A histogram of the images' shorter sides, in bins of powers of two times 1, 1.5. */
export function sizeHistogram(sizes: readonly { width: number; height: number }[]): { from: number; to: number; n: number }[] {
  const edges = [0, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, Infinity];
  const bins = edges.slice(0, -1).map((from, i) => ({ from, to: edges[i + 1]!, n: 0 }));
  for (const s of sizes) {
    const side = Math.min(s.width, s.height);
    bins.find((b) => side >= b.from && side < b.to)!.n++;
  }
  // From the first bin with photos to the last.
  const first = bins.findIndex((b) => b.n > 0);
  const last = bins.length - 1 - [...bins].reverse().findIndex((b) => b.n > 0);
  return first < 0 ? [] : bins.slice(first, last + 1);
}
