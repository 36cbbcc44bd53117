// The report's sections for the CLI, from data, training logs and predictions:
// the glue between the learner's objects and src/report's plain-data pictures.
import { basename } from 'node:path';
import type { LrFinderResult } from './lr-finder.js';
import type { ConvLearner } from './conv-learner.js';
import { overlayHeatmap } from '../report/heatmap.js';
import { MIN_CAM_SIDE } from './gradcam.js';
import { tensor, tidy } from '../torch/index.js';
import { confusionSpec, labelCountsSpec, lossSpec, renderChart, scheduleSpec, sizeHistogramSpec } from '../report/charts.js';
import { imageGrid, type RgbPixels, type Tile } from '../report/grids.js';
import type { Report } from '../report/html.js';
import { confusionMatrix, mostConfidentCorrect, mostIncorrect, mostUncertain, type Pick, type Predictions } from '../report/interpret.js';
import { loadTransformed, rngFor, type Transform } from '../vision/augment.js';
import type { ImageClassifierData } from '../vision/data.js';
import { FilesDataset } from '../vision/dataset.js';
import type { TrainingLog } from './training-log.js';

/** Image size histogram and label counts; returns the counts (and the sizes read) for the summary. */
export async function addDataSection(
  report: Report,
  data: ImageClassifierData,
): Promise<{ trn: Record<string, number>; val: Record<string, number> | null; sizes: { width: number; height: number }[] | null }> {
  // Headers first: an image that cannot be read is marked, and then not counted.
  const sizes = data.trnDs instanceof FilesDataset ? await data.imageSizes() : null;
  if (data.valDs instanceof FilesDataset) await data.imageSizes(data.valDs);
  const counts = data.labelCounts();
  const rows = data.classes.flatMap((label) => [{ label, split: 'train', n: counts.trn.get(label) ?? 0 }, ...(counts.val ? [{ label, split: 'valid', n: counts.val.get(label) ?? 0 }] : [])]);
  await report.addPicture('label-counts', 'Images per class', await renderChart(labelCountsSpec(rows)));
  if (sizes) {
    await report.addPicture('image-sizes', 'Image sizes', await renderChart(sizeHistogramSpec(sizes)), `Training images are resized so that the shorter side is ${data.sz} pixels.`);
  }
  return { trn: Object.fromEntries(counts.trn), val: counts.val ? Object.fromEntries(counts.val) : null, sizes };
}

/** One training photo through the training augmentations six times. */
export async function addAugmentationPreview(report: Report, data: ImageClassifierData): Promise<void> {
  if (!(data.trnDs instanceof FilesDataset) || !data.tfms || data.trnDs.length === 0) return;
  await report.addPicture('augmentation-preview', 'Augmentation preview', await augmentationPreview(data.trnDs.files[0]!, data.tfms.trn, { n: 6 }), basename(data.trnDs.files[0]!));
}

/** The learning-rate finder's curve with the chosen rate marked. */
export async function addLrFinder(report: Report, finder: LrFinderResult, chosen: number, rule: string): Promise<void> {
  await report.addPicture('lr-finder', 'Learning-rate finder', await finder.plotPng({ mark: chosen }), `Chosen rate ${chosen.toExponential(2)}: ${rule}.`);
}

/** The learning-rate schedule, the losses and each stage's epoch table. */
export async function addTraining(report: Report, log: TrainingLog): Promise<void> {
  if (log.iterations.length === 0) return;
  await report.addPicture('lr-schedule', 'Learning-rate schedule', await renderChart(scheduleSpec(log.iterations)));
  await report.addPicture('losses', 'Training and validation loss', await renderChart(lossSpec(log.iterations, log.validationPoints())));
  for (const s of log.stages) {
    const how = `size ${s.size}, rates ${s.lrs.map((l) => l.toExponential(1)).join(' / ')}, ${s.nCycle} cycle(s)${s.cycleLen ? ` of ${s.cycleLen} epoch(s)` : ''}${s.cycleMult && s.cycleMult !== 1 ? `, cycleMult ${s.cycleMult}` : ''}; ${s.seconds.toFixed(0)} s`;
    const metrics = Object.keys(s.history[0]?.metrics ?? { accuracy: 0 });
    report.addTable(
      `Stage: ${s.name}`,
      ['epoch', 'trn_loss', 'val_loss', ...metrics],
      s.history.map((h) => [h.epoch, h.trnLoss, h.valLoss ?? '', ...metrics.map((m) => h.metrics[m] ?? '')]),
      how,
    );
  }
}

function tiles(picks: Pick[], files: string[], classes: string[]): Tile[] {
  return picks.map((p) => ({
    image: files[p.index]!,
    caption: [
      basename(files[p.index]!),
      `${classes[p.actual]} (p=${p.pActual.toFixed(2)})`,
      p.predicted === p.actual ? 'predicted correctly' : `predicted ${classes[p.predicted]} (${p.pPredicted.toFixed(2)})`,
    ],
  }));
}

/**
 * Multi-label results per tag on validation, at `threshold`: how many images
 * have it, how many were given it, precision, recall and F2.
 */
export function addTagTable(report: Report, probs: ArrayLike<number>, targets: ArrayLike<number>, tags: string[], threshold: number): void {
  const c = tags.length;
  const n = probs.length / c;
  const rows = tags.map((tag, k) => {
    let tp = 0;
    let fp = 0;
    let fn = 0;
    for (let i = 0; i < n; i++) {
      const p = Number(probs[i * c + k]) > threshold;
      const t = Number(targets[i * c + k]) > 0.5;
      if (p && t) tp++;
      else if (p) fp++;
      else if (t) fn++;
    }
    const precision = tp + fp === 0 ? 0 : tp / (tp + fp);
    const recall = tp + fn === 0 ? 0 : tp / (tp + fn);
    const f2 = 5 * tp + 4 * fn + fp === 0 ? 0 : (5 * tp) / (5 * tp + 4 * fn + fp);
    return [tag, tp + fn, tp + fp, precision, recall, f2] as (string | number)[];
  });
  report.addTable(
    'Tags on the validation set',
    ['tag', 'images with it', 'given it', 'precision', 'recall', 'F2'],
    rows,
    `With TTA, tags given above the threshold ${threshold.toFixed(2)} (the best F2 over images).`,
  );
}

/** A Grad-CAM picture: the model's input pixels with the heatmap over them (or alone, when the map is too coarse to show). */
export interface CamPicture {
  pixels: RgbPixels;
  /** The layer looked at ('body': the body's output). */
  layer: string;
  /** The map's size, height and width. */
  grid: [number, number];
  /** No layer's map was fine enough: no heatmap is drawn. */
  coarse: boolean;
}

/** A Grad-CAM tile for an image and the class it is for. */
export type CamTile = (file: string, cls: number) => Promise<CamPicture>;

/** A short caption for a Grad-CAM picture of class `label`. */
export function camCaption(cam: CamPicture, label: string): string {
  const [h, w] = cam.grid;
  return cam.coarse ? `Grad-CAM: ${h}×${w} map, too coarse to show` : `Grad-CAM ${h}×${w}: ${label}`;
}

/**
 * The confusion matrix and the three grids of validation images (most
 * incorrect, most confident correct, most uncertain), from probabilities
 * (e.g. TTA's) for `files` in order.
 */
export async function addInterpretation(report: Report, p: Predictions, files: string[], classes: string[], { k = 8, cam }: { k?: number; cam?: CamTile } = {}): Promise<{ confusion: number[][] }> {
  const confusion = confusionMatrix(p);
  await report.addPicture('confusion-matrix', 'Confusion matrix', await renderChart(confusionSpec(confusion, classes)));
  const grids: [string, string, Pick[], string][] = [
    ['most-incorrect', 'Most incorrect', mostIncorrect(p, k), 'Wrong predictions, lowest probability on the true class first.'],
    ['most-correct', 'Most confident correct', mostConfidentCorrect(p, k), 'Right predictions, highest probability first.'],
    ['most-uncertain', 'Most uncertain', mostUncertain(p, k), 'Smallest margin between the two most probable classes.'],
  ];
  for (const [name, title, picks, note] of grids) {
    if (picks.length === 0) {
      report.addText(title, 'No images in this group.');
      continue;
    }
    if (name === 'most-incorrect' && cam) {
      // Under each row of pictures, the same pictures with Grad-CAM of the (wrong) predicted class.
      const plain = tiles(picks, files, classes);
      const heat = await Promise.all(
        picks.map(async (pk) => {
          const c = await cam(files[pk.index]!, pk.predicted);
          return { image: c.pixels, caption: [camCaption(c, classes[pk.predicted]!)] };
        }),
      );
      const cols = Math.min(4, plain.length);
      const blank: Tile = { image: { data: new Uint8Array([255, 255, 255]), width: 1, height: 1 }, caption: [] };
      const pad = (row: Tile[]): Tile[] => [...row, ...new Array<Tile>(cols - row.length).fill(blank)];
      const rows: Tile[] = [];
      for (let r = 0; r < plain.length; r += cols) rows.push(...pad(plain.slice(r, r + cols)), ...pad(heat.slice(r, r + cols)));
      await report.addPicture(
        name,
        title,
        await imageGrid(rows, { cols, title }),
        `${note} Under each row: where the model looked for the class it predicted (Grad-CAM of the last convolutional layer, or of an earlier one where the last is under ${MIN_CAM_SIDE}×${MIN_CAM_SIDE}; each map stretched to its own range).`,
      );
      continue;
    }
    await report.addPicture(name, title, await imageGrid(tiles(picks, files, classes), { cols: 4, title }), note);
  }
  return { confusion };
}

/** One image through a transform, as pixels (normalization undone). */
export async function transformedPixels(file: string, t: Transform, seed: number): Promise<RgbPixels> {
  return (await transformedImage(file, t, seed)).pixels;
}

/** One image through a transform: the normalized values (height × width × RGB) and, normalization undone, its pixels. */
async function transformedImage(file: string, t: Transform, seed: number): Promise<{ values: Float32Array; pixels: RgbPixels }> {
  const { sz, stats } = t;
  const out = new Float32Array(sz * sz * 3);
  await loadTransformed(file, t, rngFor(seed), out, 0, true);
  const data = new Uint8Array(out.length);
  for (let i = 0; i < out.length; i++) {
    const c = i % 3;
    data[i] = Math.max(0, Math.min(255, Math.round((out[i]! * stats.std[c]! + stats.mean[c]!) * 255)));
  }
  return { values: out, pixels: { data, width: sz, height: sz } };
}

/** Grad-CAM tiles from a learner: each image as the model sees it (the validation transform) with the class's heatmap over it. */
export function camTiles(learn: ConvLearner): CamTile | undefined {
  const t = learn.data.tfms?.val;
  if (!t || learn.multiLabel) return undefined;
  return async (file, cls) => {
    const { values, pixels } = await transformedImage(file, t, 0);
    const x = tidy(() =>
      tensor(values, { shape: [1, t.sz, t.sz, 3], device: learn.device })
        .permute(0, 3, 1, 2)
        .contiguous(),
    );
    try {
      const { maps, h, w, layer, coarse } = learn.gradCam(x, [cls]);
      return { pixels: coarse ? pixels : overlayHeatmap(pixels, { data: maps[0]!, w, h }), layer, grid: [h, w], coarse };
    } finally {
      x.dispose();
    }
  };
}

/** The augmentation preview: one photo through the training transform `n` times (fast.ai's plots of aug_tfms). */
export async function augmentationPreview(file: string, t: Transform, { n = 6, seed = 0 }: { n?: number; seed?: number } = {}): Promise<Buffer> {
  const tiles: Tile[] = [];
  for (let i = 0; i < n; i++) tiles.push({ image: await transformedPixels(file, t, seed * 1000 + i), caption: [`augmented #${i + 1}`] });
  return imageGrid(tiles, { cols: Math.min(n, 6), size: Math.min(200, Math.max(120, t.sz)), title: 'Augmentation preview (one training photo, 6 draws)' });
}
