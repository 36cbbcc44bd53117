// `fastvision interpret` (a saved model's mistakes on the validation set) and
// `fastvision sizes` (what the data looks like before training).
import { DEVICE_OPTIONS, deviceArg } from './device-args.js';
import { basename, join, resolve } from 'node:path';
import { addDataSection, addInterpretation, addTagTable, camTiles } from '../learn/figures.js';
import { fbetaScore } from '../learn/metrics.js';
import { Report } from '../report/html.js';
import { FilesDataset } from '../vision/dataset.js';
import { archOf } from '../vision/models/archs.js';
import { flag, num, str, UsageError, type CommandSpec } from './args.js';
import { dataPath, LAYOUT_OPTIONS, loadData, MODEL_OPTIONS } from './data-args.js';
import { ENSEMBLE, learnerFor, probabilitiesOf, readModel, snapshotsOf } from './model-file.js';
import { withOutput } from '../util/outputs.js';
import { predictedFiles } from '../learn/recipe.js';
import { shown } from '../util/shown.js';

const OUT = { type: 'string', arg: 'DIR', help: 'where the pictures and report go', default: './fastvision-out/<folder name>' } as const;

export const interpretCommand: CommandSpec = {
  name: 'interpret',
  summary:
    "Looks at a saved model's predictions on the validation set: confusion matrix and grids of the most incorrect (with Grad-CAM heatmaps), most confident correct and most uncertain images; per-tag figures for a multi-label model.",
  positionals: ['<model>', '<path>'],
  options: {
    ...DEVICE_OPTIONS,
    ...LAYOUT_OPTIONS,
    bs: MODEL_OPTIONS.bs!,
    aug: MODEL_OPTIONS.aug!,
    tta: { type: 'boolean', help: 'use test-time augmentation (as train does)' },
    'tta-aug': { type: 'string', arg: 'N', help: 'with --tta: augmented copies', default: '4', value: { kind: 'number', min: 0, max: 64, integer: true } },
    ensemble: ENSEMBLE,
    out: OUT,
  },
  async run(args) {
    const saved = await readModel(args.positionals[0]!);
    const path = dataPath(args.positionals[1]);
    const out = resolve(str(args, 'out', join('fastvision-out', basename(path))));
    const data = await loadData(path, args, archOf(saved.info.arch), saved.info.size);
    if (data.classes.join('\n') !== saved.info.classes.join('\n')) {
      throw new UsageError(`${path}: its classes (${data.classes.map((c) => shown(c)).join(', ')}) are not the model's (${saved.info.classes.map((c) => shown(c)).join(', ')})`);
    }
    const valDs = data.valDs;
    if (!(valDs instanceof FilesDataset) || valDs.length === 0) throw new UsageError(`${path}: no validation images to interpret`);
    await withOutput(out, async () => {
      const learn = await learnerFor(saved, data, { device: deviceArg(args) });
      const { probs, y } = await probabilitiesOf(learn, {
        tta: flag(args, 'tta'),
        nAug: num(args, 'tta-aug', 4),
        isTest: false,
        ensemble: flag(args, 'ensemble') ? snapshotsOf(saved) : undefined,
      });
      const report = new Report(out, `fastvision interpret: ${basename(path)}`);
      if (learn.multiLabel) {
        const threshold = saved.info.threshold ?? 0.5;
        addTagTable(report, probs, y, data.classes, threshold);
        console.log(`F2 ${fbetaScore(probs, y, data.c, 2, threshold).toFixed(4)} at the model's threshold ${threshold} on ${y.length / data.c} validation images`);
        console.log(`report: ${await report.write('interpret.html')}`);
        return;
      }
      const { confusion } = await addInterpretation(report, { probs, c: data.c, y }, predictedFiles(valDs), data.classes, { cam: camTiles(learn) });
      const correct = confusion.reduce((s, row, i) => s + row[i]!, 0);
      console.log(`accuracy ${(correct / y.length).toFixed(4)} on ${y.length} validation images`);
      console.log('confusion matrix (rows: actual, columns: predicted):');
      const names = data.classes.map((c) => shown(c));
      const w = Math.max(...names.map((c) => c.length), 6);
      console.log(`${''.padEnd(w)} ${names.map((c) => c.slice(0, 8).padStart(8)).join(' ')}`);
      confusion.forEach((row, i) => console.log(`${names[i]!.padEnd(w)} ${row.map((n) => String(n).padStart(8)).join(' ')}`));
      console.log(`report: ${await report.write('interpret.html')}`);
    });
  },
};

export const sizesCommand: CommandSpec = {
  name: 'sizes',
  summary: 'Shows the data before training: images per class and a histogram of image sizes.',
  positionals: ['<path>'],
  options: { ...LAYOUT_OPTIONS, out: OUT },
  async run(args) {
    const path = dataPath(args.positionals[0]);
    const out = resolve(str(args, 'out', join('fastvision-out', basename(path))));
    const data = await loadData(path, { ...args, values: { ...args.values, aug: 'none' } }, archOf('mobilenet_v2_nsfwjs'), 64);
    await withOutput(out, async () => {
      const report = new Report(out, `fastvision sizes: ${basename(path)}`);
      const counts = await addDataSection(report, data);
      console.log(`${'class'.padEnd(24)} ${'train'.padStart(7)} ${counts.val ? 'valid'.padStart(7) : ''}`);
      for (const c of data.classes) console.log(`${shown(c).padEnd(24)} ${String(counts.trn[c] ?? 0).padStart(7)} ${counts.val ? String(counts.val[c] ?? 0).padStart(7) : ''}`);
      const { sizes } = counts;
      if (sizes) {
        const ws = sizes.map((s) => s.width).sort((a, b) => a - b);
        const hs = sizes.map((s) => s.height).sort((a, b) => a - b);
        const med = (a: number[]): number => a[Math.floor(a.length / 2)] ?? 0;
        console.log(`image sizes: width ${ws[0]}–${ws[ws.length - 1]} (median ${med(ws)}), height ${hs[0]}–${hs[hs.length - 1]} (median ${med(hs)}) px`);
      }
      console.log(`report: ${await report.write('sizes.html')}`);
    });
  },
};
