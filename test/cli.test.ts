// The `fastvision` command end to end on copies of the photo fixture (both
// layouts) at 32 pixels: train with its artifacts (model, valid PNGs, report,
// JSON summary, submission), then predict, submit, interpret, sizes, lr-find
// and fit on the saved model, and one-line errors with non-zero exit codes.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { main } from '../src/cli/main.js';
import { photos, repoRoot } from './helpers.js';
import { readModel, learnerFor } from '../src/cli/model-file.js';
import { addInterpretation, camTiles } from '../src/learn/figures.js';
import { predictedFiles } from '../src/learn/recipe.js';
import { Report } from '../src/report/html.js';
import { FilesDataset } from '../src/vision/dataset.js';
import { archOf } from '../src/vision/models/archs.js';
import { ImageClassifierData, tfmsFromModel } from '../src/index.js';

const bin = join(repoRoot, 'dist', 'src', 'cli', 'bin.js');
let tmp = '';
let folderData = '';
let csvData = '';
const TINY = ['--recipe', 'lesson', '--size', '32', '--bs', '4', '--cycles', '1', '--unfreeze-cycles', '1', '--tta-aug', '1', '--workers', '1'];

function cli(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: tmp, encoding: 'utf8', env: { ...process.env, FASTVISION_HOME: join(tmp, 'home'), FASTVISION_QUIET: '1' }, timeout: 300_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function ok(r: { code: number; stdout: string; stderr: string }, what: string): string {
  assert.equal(r.code, 0, `${what} failed (${r.code}):\n${r.stderr}\n${r.stdout}`);
  return r.stdout;
}

async function assertPng(file: string): Promise<void> {
  const buf = readFileSync(file);
  assert.deepEqual([...buf.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], `${file} is a PNG`);
  const m = await sharp(buf).metadata();
  assert.equal(m.format, 'png');
  assert.ok((m.width ?? 0) >= 100 && (m.height ?? 0) >= 60, `${file}: ${m.width}×${m.height}`);
  const { channels } = await sharp(buf).stats();
  assert.ok(
    channels.some((c) => c.max - c.min > 50),
    `${file} is not blank`,
  );
}

const parseCsv = (text: string): string[][] =>
  text
    .trim()
    .split('\n')
    .map((l) => l.split(','));

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'fastvision-cli-'));
  // Folder layout: 6 training and 3 validation photos per class, 4 test photos.
  folderData = join(tmp, 'dogscats');
  for (const [split, n] of [
    ['train', 6],
    ['valid', 3],
  ] as const) {
    for (const label of ['cats', 'dogs']) {
      const src = join(photos, 'dogscats', split, label);
      mkdirSync(join(folderData, split, label), { recursive: true });
      for (const f of readdirSync(src).sort().slice(0, n)) copyFileSync(join(src, f), join(folderData, split, label, f));
    }
  }
  mkdirSync(join(folderData, 'test'));
  const testSrc = join(photos, 'dogscats', 'test');
  for (const f of readdirSync(testSrc).sort()) copyFileSync(join(testSrc, f), join(folderData, 'test', f));
  // CSV layout: three breeds, five photos each, ids without the suffix.
  csvData = join(tmp, 'breeds');
  mkdirSync(join(csvData, 'train'), { recursive: true });
  mkdirSync(join(csvData, 'test'));
  const rows = readFileSync(join(photos, 'breeds', 'labels.csv'), 'utf8')
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => l.split(','));
  const breeds = [...new Set(rows.map((r) => r[1]!))].sort().slice(0, 3);
  const picked = breeds.flatMap((b) => rows.filter((r) => r[1] === b).slice(0, 5));
  for (const [id] of picked) copyFileSync(join(photos, 'breeds', 'train', `${id}.jpg`), join(csvData, 'train', `${id}.jpg`));
  writeFileSync(join(csvData, 'labels.csv'), `id,breed\n${picked.map((r) => r.join(',')).join('\n')}\n`);
  for (const f of readdirSync(join(photos, 'breeds', 'test'))
    .sort()
    .slice(0, 3))
    copyFileSync(join(photos, 'breeds', 'test', f), join(csvData, 'test', f));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

test('train (folder layout) leaves the model, valid pictures, the report, the JSON summary and a submission', async () => {
  const out = join(tmp, 'run-folder');
  const stdout = ok(cli('train', folderData, ...TINY, '--test', 'test', '--unfreeze-lr', '0.002', '--group-div', '4', '--bn-freeze', '--out', out, '--json', join(tmp, 'run.json')), 'train');
  assert.match(stdout, /# learning-rate finder/);
  assert.match(stdout, /epoch\s+trn_loss\s+val_loss\s+accuracy/);
  assert.match(stdout, /with TTA/);
  const summary = JSON.parse(readFileSync(join(tmp, 'run.json'), 'utf8')) as {
    data: { classes: string[]; counts: { trn: Record<string, number> }; test: number };
    stages: { name: string; lrs: number[]; history: { trnLoss: number; accuracy: number }[] }[];
    settings: { bnFreeze: boolean; groupDiv: number };
    final: { accuracy: number; valLoss: number };
    tta: { accuracy: number; loss: number };
    lr: { chosen: number; finder: unknown[] };
    confusion: number[][];
    artifacts: { model: string; modelInfo: string; report: string; pictures: string[]; submission: string };
  };
  assert.deepEqual(summary.data.classes, ['cats', 'dogs']);
  assert.deepEqual(summary.data.counts.trn, { cats: 6, dogs: 6 });
  assert.equal(summary.data.test, 4);
  assert.deepEqual(
    summary.stages.map((s) => [s.name, s.history.length]),
    [
      ['head on precomputed activations', 1],
      ['head with augmentation', 1],
      ['unfrozen, differential rates', 1],
    ],
  );
  const unfrozen = summary.stages[2]!.lrs;
  assert.deepEqual(
    unfrozen.map((l) => Number(l.toPrecision(6))),
    [0.000125, 0.0005, 0.002],
    'unfrozen rates: --unfreeze-lr divided by --group-div per group',
  );
  assert.equal(summary.stages[0]!.lrs[0], summary.lr.chosen);
  assert.deepEqual([summary.settings.bnFreeze, summary.settings.groupDiv], [true, 4]);
  assert.ok(summary.final.accuracy >= 0 && summary.final.accuracy <= 1 && Number.isFinite(summary.final.valLoss));
  assert.ok(summary.tta.accuracy >= 0 && summary.tta.accuracy <= 1 && Number.isFinite(summary.tta.loss));
  assert.ok(summary.lr.chosen > 0 && summary.lr.finder.length > 0);
  assert.equal(
    summary.confusion.flat().reduce((a, b) => a + b, 0),
    6,
    'the confusion matrix counts every validation photo',
  );
  for (const f of [summary.artifacts.model, summary.artifacts.modelInfo, summary.artifacts.report, summary.artifacts.submission]) assert.ok(existsSync(f), f);
  const names = summary.artifacts.pictures.map((p) => p.split('/').pop());
  for (const n of [
    'label-counts.png',
    'image-sizes.png',
    'augmentation-preview.png',
    'lr-finder.png',
    'lr-schedule.png',
    'losses.png',
    'confusion-matrix.png',
    'most-correct.png',
    'most-uncertain.png',
  ])
    assert.ok(names.includes(n), `${n} in ${names.join(', ')}`);
  for (const p of summary.artifacts.pictures) await assertPng(p);
  const html = readFileSync(summary.artifacts.report, 'utf8');
  assert.equal((html.match(/<img /g) ?? []).length, summary.artifacts.pictures.length, 'every picture is in the report');
  assert.ok(!/src="http/.test(html), 'the report is self-contained');
  const sub = parseCsv(readFileSync(summary.artifacts.submission, 'utf8'));
  assert.deepEqual(sub[0], ['id', 'cats', 'dogs']);
  assert.deepEqual(
    sub.slice(1).map((r) => `${r[0]}.jpg`),
    readdirSync(join(folderData, 'test')).sort(),
  );
  for (const r of sub.slice(1)) assert.ok(Math.abs(Number(r[1]) + Number(r[2]) - 1) < 1e-3, `probabilities sum to 1: ${r.join(',')}`);
});

test('predict, submit, interpret on the saved model', async () => {
  const model = join(tmp, 'run-folder');
  const testDir = join(folderData, 'test');
  const rows = JSON.parse(ok(cli('predict', model, testDir, join(folderData, 'valid', 'cats'), '--json', '--top', '2'), 'predict')) as { file: string; top: { label: string; p: number }[] }[];
  assert.equal(rows.length, 7);
  for (const r of rows) {
    assert.deepEqual(r.top.map((t) => t.label).sort(), ['cats', 'dogs']);
    assert.ok(r.top[0]!.p >= r.top[1]!.p);
  }
  const table = ok(cli('predict', join(model, 'model.pth'), join(testDir, readdirSync(testDir).sort()[0]!)), 'predict one file');
  assert.match(table, /\t(cats|dogs) \d\.\d{4}\t(cats|dogs) \d\.\d{4}\n$/);

  const labels = join(tmp, 'labels.csv');
  ok(cli('submit', model, testDir, '--out', labels, '--labels', '--tta-aug', '1'), 'submit --labels');
  const sub = parseCsv(readFileSync(labels, 'utf8'));
  assert.deepEqual(sub[0], ['id', 'label']);
  assert.equal(sub.length, 5);
  for (const r of sub.slice(1)) assert.ok(['cats', 'dogs'].includes(r[1]!));

  const out = join(tmp, 'interp');
  const text = ok(cli('interpret', model, folderData, '--out', out), 'interpret');
  assert.match(text, /accuracy \d\.\d{4} on 6 validation images/);
  assert.ok(existsSync(join(out, 'interpret.html')));
  await assertPng(join(out, 'pictures', 'confusion-matrix.png'));

  // The most-incorrect grid gets a row of Grad-CAM heatmaps under each row of pictures.
  const saved = await readModel(model);
  const data = await ImageClassifierData.fromPaths(folderData, { tfms: tfmsFromModel(archOf(saved.info.arch), saved.info.size), bs: 4, numWorkers: 1 });
  const learn = await learnerFor(saved, data);
  const files = predictedFiles(data.valDs as FilesDataset);
  const y = (data.valDs as FilesDataset).labels;
  // Every image predicted wrong with certainty: all six are "most incorrect".
  const probs = Float32Array.from(y.flatMap((l) => (l === 0 ? [0.01, 0.99] : [0.99, 0.01])));
  const report = new Report(join(tmp, 'cam'), 'cam');
  await addInterpretation(report, { probs, c: 2, y }, files, data.classes, { cam: camTiles(learn) });
  const grid = join(tmp, 'cam', 'pictures', 'most-incorrect.png');
  const meta = await sharp(grid).metadata();
  // Title 30 px; cells of 180 px with three caption lines (241 px): two rows of pictures, two of heatmaps.
  assert.equal(meta.height, 30 + 4 * 241 + 8);
  const { data: px, info } = await sharp(grid).raw().toBuffer({ resolveWithObject: true });
  const saturation = (row: number): number => {
    let s = 0;
    const y0 = 30 + 8 + row * 241;
    for (let yy = y0; yy < y0 + 180; yy += 3) {
      for (let xx = 8; xx < 8 + 180; xx += 3) {
        const i = (yy * info.width + xx) * info.channels;
        s += Math.max(px[i]!, px[i + 1]!, px[i + 2]!) - Math.min(px[i]!, px[i + 1]!, px[i + 2]!);
      }
    }
    return s;
  };
  assert.ok(saturation(1) > 0, 'the heatmap row is coloured');
  assert.notEqual(saturation(1), saturation(0), 'and differs from the picture above it');
});

test('train on the CSV layout with --suffix, then lr-find, fit --from and sizes', async () => {
  const out = join(tmp, 'run-csv');
  // An unfrozen stage at an absurd rate diverges: the guard stops it and puts back the weights it started
  // from, and the recipe keeps the best snapshot point of the stages that ended well.
  const text = ok(
    cli('train', csvData, '--csv', 'labels.csv', '--suffix', '.jpg', '--val-pct', '0.34', ...TINY, '--unfreeze-lr', '10', '--test', 'test', '--out', out, '--json', join(tmp, 'csv.json')),
    'train --csv',
  );
  assert.match(text, /training diverged in epoch 0 \(validation loss .* ran away .*\); the weights are those of the start of this fit/);
  assert.match(text, /warning: training stopped early .* the model saved is the last good one/);
  const run = JSON.parse(readFileSync(join(tmp, 'csv.json'), 'utf8')) as {
    final: { stage: string; epoch: number; valLoss: number };
    stages: { name: string; history: { valLoss: number }[] }[];
    tta: { loss: number };
    diverged: { stage: string };
  };
  assert.equal(run.diverged.stage, 'unfrozen, differential rates');
  assert.ok(
    run.stages.every((st) => st.history.every((h) => Number.isFinite(h.valLoss) && h.valLoss < 100)),
    'no diverged epoch is in the history',
  );
  // One epoch per stage here, so every epoch is a snapshot point.
  const losses = run.stages.flatMap((st) => st.history.map((h) => h.valLoss));
  assert.ok(run.final.stage.startsWith('head ') && run.final.epoch === 0, `${run.final.stage} ${run.final.epoch}`);
  assert.equal(run.final.valLoss, Math.min(...losses.filter((v) => v !== null && Number.isFinite(v))));
  assert.ok(Number.isFinite(run.tta.loss), 'TTA runs on the kept weights');
  const info = JSON.parse(readFileSync(join(out, 'model.json'), 'utf8')) as { classes: string[]; size: number; arch: string };
  assert.equal(info.classes.length, 3);
  assert.equal(info.size, 32);
  const sub = parseCsv(readFileSync(join(out, 'submission.csv'), 'utf8'));
  assert.deepEqual(sub[0], ['id', ...info.classes]);
  assert.equal(sub.length, 4);

  const lr = ok(cli('lr-find', csvData, '--csv', 'labels.csv', '--suffix', '.jpg', '--size', '32', '--bs', '4', '--out', join(tmp, 'lr')), 'lr-find');
  assert.match(lr, /suggested rate \d\.\d\de-\d+ \(valley: /);
  assert.match(lr, /every rule: valley \S+, slide \S+, minimum \S+, steep \S+, lesson \S+/);
  await assertPng(join(tmp, 'lr', 'pictures', 'lr-finder.png'));

  const fitOut = join(tmp, 'fit');
  const fit = ok(
    cli(
      'fit',
      csvData,
      '--csv',
      'labels.csv',
      '--suffix',
      '.jpg',
      '--from',
      out,
      '--lr',
      '0.0001,0.001,0.01',
      '--cycles',
      '2',
      '--cycle-len',
      '1',
      '--unfreeze',
      '--save-cycles',
      '--bs',
      '4',
      '--out',
      fitOut,
    ),
    'fit',
  );
  assert.match(fit, /^1\s+\d/m, 'two epochs in the table');
  for (const f of ['model.pth', 'model.json', 'model_cyc_0.pth', 'model_cyc_1.pth', 'fit.html']) assert.ok(existsSync(join(fitOut, f)), f);
  assert.equal((JSON.parse(readFileSync(join(fitOut, 'model.json'), 'utf8')) as { size: number }).size, 32, 'fit keeps the saved model size');

  const sizes = ok(cli('sizes', folderData, '--out', join(tmp, 'sizes')), 'sizes');
  assert.match(sizes, /cats\s+6\s+3/);
  assert.match(sizes, /image sizes: width \d+–\d+/);
  await assertPng(join(tmp, 'sizes', 'pictures', 'image-sizes.png'));
});

/** Runs the CLI in this process (no libtorch start-up per call), capturing what it prints. */
async function cliInProcess(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const { log, error } = console;
  console.log = (...a: unknown[]) => void out.push(a.join(' '));
  console.error = (...a: unknown[]) => void err.push(a.join(' '));
  try {
    const code = await main(args);
    return { code, stdout: out.join('\n'), stderr: err.join('\n') };
  } finally {
    console.log = log;
    console.error = error;
  }
}

test('train --recipe fine-tune: the head on precomputed activations for --freeze-epochs, then everything for --epochs', async () => {
  const out = join(tmp, 'run-fine-tune');
  const json = join(tmp, 'fine-tune.json');
  const text = ok(
    cli('train', folderData, '--recipe', 'fine-tune', '--size', '32', '--bs', '4', '--freeze-epochs', '3', '--epochs', '2', '--tta-aug', '1', '--workers', '1', '--out', out, '--json', json),
    'train --recipe fine-tune',
  );
  assert.match(text, /suggested .* \(valley: /);
  const s = JSON.parse(readFileSync(json, 'utf8')) as {
    settings: { recipe: string; suggest: string };
    lr: { chosen: number };
    stages: { name: string; lrs: number[]; history: unknown[] }[];
    tta: { accuracy: number };
  };
  assert.equal(s.settings.recipe, 'fine-tune');
  assert.equal(s.settings.suggest, 'valley');
  assert.deepEqual(
    s.stages.map((st) => [st.name, st.history.length]),
    [
      ['fine-tune: head on precomputed activations, one cycle', 3],
      ['fine-tune: unfrozen, one cycle', 2],
    ],
  );
  // The default architecture's advice: the head unfrozen at a fifth of the rate, at most 1e-3, the body 10× and 100× slower.
  const u = Math.min(s.lr.chosen / 5, 1e-3);
  s.stages[1]!.lrs.forEach((x, i) => assert.ok(Math.abs(x - u / [100, 10, 1][i]!) < 1e-12, `group ${i}: ${x} vs ${u / [100, 10, 1][i]!}`));
  assert.deepEqual(s.stages[0]!.lrs, [s.lr.chosen]);
  assert.match(text, /batch-norm statistics kept/);
  assert.ok(s.tta.accuracy >= 0 && s.tta.accuracy <= 1);
  assert.ok(existsSync(join(out, 'model.pth')));
  const bad = cli('train', folderData, '--recipe', 'sgdr');
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--recipe: .*fine-tune, lesson/);
});

test('wrong calls: one line on stderr, non-zero exit', async () => {
  const cases: [string[], RegExp][] = [
    [['train', join(tmp, 'nope')], /^fastvision train: no such folder: .*nope$/],
    [['train', folderData, '--bogus'], /unknown option '--bogus'/],
    [['train', folderData, '--size', 'big'], /--size: 'big' is not a number/],
    [['train', folderData, '--sizes', '224,128'], /--sizes: 224,128 must grow/],
    [['train', folderData, '--aug', 'sideways'], /--aug: 'sideways' is not one of side-on, top-down, trivial, randaug, none/],
    [['train', folderData, '--arch', 'resnet9'], /--arch: unknown architecture 'resnet9'/],
    [['train', csvData, '--csv', 'missing.csv'], /--csv: no file missing.csv/],
    [['predict', join(tmp, 'nope.pth'), folderData], /no such model: .*nope\.pth/],
    [['predict', join(csvData, 'labels.csv'), folderData], /expected a model folder, a \.pth file or its \.json/],
    [['submit', join(tmp, 'run-folder')], /missing <test folder>/],
    [['fit', folderData, '--lr', '0.1,0.2'], /--lr: give one value or three/],
    [['frobnicate'], /unknown command 'frobnicate'/],
  ];
  for (const [args, re] of cases) {
    const r = await cliInProcess(...args);
    assert.ok(r.code !== 0, `${args.join(' ')} exits non-zero`);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `${args.join(' ')}: one line, got:\n${r.stderr}`);
    assert.match(lines[0]!, re);
  }
  // A model description that is not JSON, and weights that do not fit the description.
  const broken = join(tmp, 'broken');
  mkdirSync(broken);
  writeFileSync(join(broken, 'model.pth'), 'not a zip');
  writeFileSync(join(broken, 'model.json'), '{"format": "fastvision-model", ');
  assert.match((await cliInProcess('predict', broken, join(folderData, 'test'))).stderr, /model\.json: not valid JSON/);
  writeFileSync(join(broken, 'model.json'), JSON.stringify({ format: 'fastvision-model', version: 1, arch: 'mobilenet_v2_nsfwjs', classes: ['a', 'b'], size: 32, xtraFc: [512], ps: [0.25, 0.5] }));
  const r = cli('predict', broken, join(folderData, 'test'));
  assert.equal(r.code, 2);
  assert.match(r.stderr.trim(), /^fastvision predict: .*model\.pth: cannot load into mobilenet_v2_nsfwjs/);
  for (const c of ['train', 'lr-find', 'fit', 'predict', 'submit', 'interpret', 'sizes', 'export', 'serve', 'doctor', 'setup', 'demo']) {
    const h = await cliInProcess(c, '--help');
    assert.equal(h.code, 0);
    assert.match(h.stdout, new RegExp(`^usage: fastvision ${c} `));
  }
});
