// Charts as PNG: Vega-Lite specs compiled to Vega, rendered to SVG without a
// browser, rasterized by sharp (librsvg). One function per picture the report shows.
import sharp from 'sharp';
import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';
import { shown } from '../util/shown.js';

const CONFIG = { background: 'white', font: 'DejaVu Sans', view: { stroke: null }, axis: { labelFontSize: 11, titleFontSize: 12 }, title: { fontSize: 14 } };

/** Every string in a spec with control characters written as escapes (they are not allowed in the SVG's XML). */
function escapedStrings<T>(v: T): T {
  if (typeof v === 'string') return shown(v) as T;
  if (Array.isArray(v)) return v.map(escapedStrings) as T;
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, escapedStrings(x)])) as T;
  return v;
}

/** Renders a Vega-Lite spec to a PNG (2× scale, white background); labels are shown escaped. */
export async function renderChart(spec: TopLevelSpec): Promise<Buffer> {
  const full = { ...escapedStrings(spec), config: { ...CONFIG, ...(spec.config ?? {}) } } as TopLevelSpec;
  const view = new vega.View(vega.parse(compile(full).spec), { renderer: 'none' });
  try {
    const svg = await view.toSVG(2);
    return await sharp(Buffer.from(svg)).png().toBuffer();
  } finally {
    view.finalize();
  }
}

/** The learning-rate finder's loss against rate (log scale), with the chosen rate marked. */
export function lrFinderSpec(points: { lr: number; loss: number }[], chosen?: number): TopLevelSpec {
  const layers: object[] = [
    {
      mark: { type: 'line', strokeWidth: 2 },
      encoding: {
        x: { field: 'lr', type: 'quantitative', scale: { type: 'log' }, title: 'learning rate (log scale)' },
        y: { field: 'loss', type: 'quantitative', scale: { zero: false }, title: 'smoothed training loss' },
      },
    },
  ];
  if (chosen !== undefined) {
    layers.push(
      {
        data: { values: [{ lr: chosen, label: `chosen ${chosen.toExponential(1)}` }] },
        mark: { type: 'rule', color: '#d62728', strokeDash: [6, 4], strokeWidth: 2 },
        encoding: { x: { field: 'lr', type: 'quantitative' } },
      },
      {
        data: { values: [{ lr: chosen, label: `chosen ${chosen.toExponential(1)}` }] },
        mark: { type: 'text', color: '#d62728', align: 'left', dx: 5, dy: -5, baseline: 'top', y: 0 },
        encoding: { x: { field: 'lr', type: 'quantitative' }, text: { field: 'label' } },
      },
    );
  }
  return { width: 520, height: 300, title: 'Learning-rate finder', data: { values: points }, layer: layers } as TopLevelSpec;
}

/** The learning rate at each iteration of training (one line per stage). */
export function scheduleSpec(points: { iteration: number; lr: number; stage: string }[]): TopLevelSpec {
  return {
    width: 520,
    height: 260,
    title: 'Learning-rate schedule (last layer group)',
    data: { values: points },
    mark: { type: 'line', strokeWidth: 1.5 },
    encoding: {
      x: { field: 'iteration', type: 'quantitative', title: 'iteration' },
      y: { field: 'lr', type: 'quantitative', title: 'learning rate' },
      color: { field: 'stage', type: 'nominal', sort: null, title: 'stage', legend: { labelLimit: 320, orient: 'bottom', direction: 'vertical' } },
    },
  };
}

/** Training loss per iteration (smoothed) and validation loss per epoch, across stages. */
export function lossSpec(iterations: { iteration: number; loss: number }[], epochs: { iteration: number; loss: number; kind: string }[]): TopLevelSpec {
  const rows = [...iterations.map((p) => ({ ...p, kind: 'training (smoothed, per iteration)' })), ...epochs];
  return {
    width: 520,
    height: 280,
    title: 'Training and validation loss',
    data: { values: rows },
    layer: [
      { transform: [{ filter: "datum.kind == 'training (smoothed, per iteration)'" }], mark: { type: 'line', strokeWidth: 1.5 }, encoding: enc() },
      { transform: [{ filter: "datum.kind != 'training (smoothed, per iteration)'" }], mark: { type: 'line', point: true, strokeWidth: 2 }, encoding: enc() },
    ],
  };
  function enc(): object {
    return {
      x: { field: 'iteration', type: 'quantitative', title: 'iteration' },
      y: { field: 'loss', type: 'quantitative', title: 'loss' },
      // Below the plot with no label limit: inside it, the legend was cut ("training (smoothed, per iterati…").
      color: {
        field: 'kind',
        type: 'nominal',
        title: null,
        legend: { orient: 'bottom', direction: 'horizontal', labelLimit: 0 },
        scale: { domain: ['training (smoothed, per iteration)', 'validation (per epoch)'] },
      },
    };
  }
}

/** The confusion matrix as a heat map with counts, actual classes down, predicted across. */
export function confusionSpec(matrix: number[][], classes: string[]): TopLevelSpec {
  const cells = matrix.flatMap((row, a) => row.map((n, p) => ({ actual: classes[a]!, predicted: classes[p]!, n })));
  const side = Math.max(160, Math.min(640, classes.length * 34));
  return {
    width: side,
    height: side,
    title: 'Confusion matrix (validation set)',
    data: { values: cells },
    encoding: {
      x: { field: 'predicted', type: 'nominal', sort: classes, title: 'predicted', axis: { labelAngle: -45, labelLimit: 140 } },
      y: { field: 'actual', type: 'nominal', sort: classes, title: 'actual', axis: { labelLimit: 140 } },
    },
    layer: [
      { mark: 'rect', encoding: { color: { field: 'n', type: 'quantitative', scale: { scheme: 'blues' }, title: 'images' } } },
      {
        mark: { type: 'text', fontSize: classes.length > 20 ? 8 : 12 },
        encoding: {
          text: { field: 'n', type: 'quantitative' },
          color: { condition: { test: `datum.n > ${Math.max(1, Math.max(...matrix.flat()) / 2)}`, value: 'white' }, value: 'black' },
        },
      },
    ],
  };
}

/** Histograms of image widths and heights (what decides `--size` and whether to `resize`). */
export function sizeHistogramSpec(sizes: { width: number; height: number }[]): TopLevelSpec {
  const rows = sizes.flatMap((s) => [
    { side: 'width', px: s.width },
    { side: 'height', px: s.height },
  ]);
  return {
    title: `Image sizes (${sizes.length} training images)`,
    data: { values: rows },
    mark: 'bar',
    width: 250,
    height: 200,
    encoding: {
      column: { field: 'side', type: 'nominal', title: null, sort: ['width', 'height'] },
      // A handful of distinct sizes (e.g. a dataset of one size) reads better as one bar each than as bins.
      x:
        new Set(rows.map((r) => r.px)).size <= 12
          ? { field: 'px', type: 'ordinal', title: 'pixels', axis: { labelAngle: 0 } }
          : { field: 'px', type: 'quantitative', bin: { maxbins: 20 }, title: 'pixels' },
      y: { aggregate: 'count', type: 'quantitative', title: 'images' },
      color: { field: 'side', type: 'nominal', legend: null },
    },
  };
}

/** Images per class, training and validation side by side. */
export function labelCountsSpec(counts: { label: string; split: string; n: number }[]): TopLevelSpec {
  const labels = [...new Set(counts.map((c) => c.label))];
  return {
    title: 'Images per class',
    data: { values: counts },
    mark: 'bar',
    width: Math.max(200, Math.min(1000, labels.length * 26)),
    height: 220,
    encoding: {
      x: { field: 'label', type: 'nominal', sort: labels, title: 'class', axis: { labelAngle: -45, labelLimit: 140 } },
      y: { field: 'n', type: 'quantitative', title: 'images' },
      xOffset: { field: 'split', type: 'nominal', sort: ['train', 'valid'] },
      color: { field: 'split', type: 'nominal', title: null, sort: ['train', 'valid'] },
    },
  };
}
