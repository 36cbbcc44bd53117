// Multi-label classification, planet-style, on real photos: each pet is tagged
// with its species and its breed ("cat Abyssinian"). The CSV is detected as
// multi-label, targets are multi-hot, the head ends in logits for binary cross
// entropy, F2 is computed as defined, the threshold is chosen on validation,
// and `train`, `predict`, `submit` and `export` deal in tags.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import ort from 'onnxruntime-node';
import { bestThreshold, closeLoaderWorkers, ConvLearner, fbetaScore, ImageClassifierData, mobilenet_v2_nsfwjs, nn, tfmsFromModel, transformsTopDown } from '../src/index.js';
import { scanCsv } from '../src/vision/dataset.js';
import { photos, repoRoot } from './helpers.js';

const bin = join(repoRoot, 'dist', 'src', 'cli', 'bin.js');
let tmp: string;
let data: string;
const species = (breed: string): string => (/^[A-Z]/.test(breed) ? 'cat' : 'dog'); // the pets dataset capitalizes cat breeds

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'fastvision-multilabel-'));
  process.env.FASTVISION_HOME = join(tmp, 'home');
  data = join(tmp, 'pets');
  mkdirSync(join(data, 'train'), { recursive: true });
  mkdirSync(join(data, 'test'), { recursive: true });
  const rows = readFileSync(join(photos, 'breeds', 'labels.csv'), 'utf8')
    .trim()
    .split('\n')
    .slice(1)
    .map((l) => l.split(','));
  writeFileSync(join(data, 'tags.csv'), `image_name,tags\n${rows.map(([id, breed]) => `${id},${species(breed!)} ${breed}`).join('\n')}\n`);
  for (const [id] of rows) copyFileSync(join(photos, 'breeds', 'train', `${id}.jpg`), join(data, 'train', `${id}.jpg`));
  for (const f of readdirSync(join(photos, 'breeds', 'test')).slice(0, 3)) copyFileSync(join(photos, 'breeds', 'test', f), join(data, 'test', f));
});
after(async () => {
  await closeLoaderWorkers();
  await rm(tmp, { recursive: true, force: true });
});

test('a CSV of space-separated tags is read as multi-label, with multi-hot targets', async () => {
  const scan = scanCsv(data, 'train', 'tags.csv', { valIdxs: [0, 5, 10, 15], suffix: '.jpg' });
  assert.equal(scan.multiLabel, true);
  assert.deepEqual(scan.classes, ['Abyssinian', 'Russian_Blue', 'cat', 'dog', 'english_cocker_spaniel', 'newfoundland']);
  assert.equal(scan.trn.tags!.length, 16);
  for (const tags of [...scan.trn.tags!, ...scan.val!.tags!]) {
    assert.equal(tags.length, 2);
    const names = tags.map((t) => scan.classes[t]!);
    assert.ok(names.includes(species(names.find((n) => n !== 'cat' && n !== 'dog')!)), names.join(' '));
  }
  // Insisting on single labels reads each label whole, spaces and all.
  const whole = scanCsv(data, 'train', 'tags.csv', { valIdxs: [], suffix: '.jpg', multiLabel: false });
  assert.equal(whole.multiLabel, false);
  assert.deepEqual(whole.classes, ['cat Abyssinian', 'cat Russian_Blue', 'dog english_cocker_spaniel', 'dog newfoundland']);
  const d = await ImageClassifierData.fromCsv(data, 'train', 'tags.csv', {
    suffix: '.jpg',
    valIdxs: [0, 5, 10, 15],
    tfms: tfmsFromModel(mobilenet_v2_nsfwjs, 32, { augTfms: transformsTopDown }),
    bs: 4,
    numWorkers: 1,
  });
  assert.equal(d.multiLabel, true);
  const batch = await d.valDl![Symbol.asyncIterator]().next();
  assert.ok(batch.done !== true, 'the validation loader gives a batch');
  const { y, indices } = batch.value;
  assert.deepEqual(y.shape, [4, 6]);
  const hot = y.toArray();
  indices.forEach((item: number, r: number) => {
    const want = new Array<number>(6).fill(0);
    for (const t of (d.valDs as { tags: number[][] }).tags[item]!) want[t] = 1;
    assert.deepEqual(hot.slice(r * 6, r * 6 + 6), want);
  });
  batch.value.x.dispose();
  y.dispose();
});

test('F2 and the threshold search follow their definitions', () => {
  // Two images, three tags. Image 0: true {0,1}, predicted at 0.5 {0,2} → tp 1, fp 1, fn 1 → F2 = 5/(5+4+1) = 0.5.
  // Image 1: true {2}, predicted {2} → 1.
  const probs = [0.9, 0.3, 0.6, 0.1, 0.2, 0.8];
  const targets = [1, 1, 0, 0, 0, 1];
  assert.equal(fbetaScore(probs, targets, 3, 2, 0.5), 0.75);
  // At 0.25 image 0 gets all three tags: tp 2, fp 1 → F2 = 10/11.
  assert.ok(Math.abs(fbetaScore(probs, targets, 3, 2, 0.25) - (10 / 11 + 1) / 2) < 1e-12);
  const best = bestThreshold(probs, targets, 3);
  assert.equal(best.score, (10 / 11 + 1) / 2);
  assert.ok(best.threshold >= 0.2 && best.threshold < 0.3, `threshold ${best.threshold}`);
});

test('a multi-label learner: logits head, binary cross entropy, accuracy and F2 at 0.2, sigmoid probabilities', async () => {
  const d = await ImageClassifierData.fromCsv(data, 'train', 'tags.csv', { suffix: '.jpg', valIdxs: [0, 5, 10, 15], tfms: tfmsFromModel(mobilenet_v2_nsfwjs, 32), bs: 4, numWorkers: 1 });
  const learn = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, d, { precompute: true, log: null });
  assert.equal(learn.multiLabel, true);
  const head = learn.head as nn.Sequential;
  assert.ok(head.at(head.length - 1) instanceof nn.Linear, 'no LogSoftmax at the end');
  const hist = await learn.fit(1e-2, 2);
  const last = hist.at(-1)!;
  assert.deepEqual(Object.keys(last.metrics), ['accuracy_thresh', 'f2']);
  // The validation loss is the binary cross entropy of sigmoid(logits) against the tags.
  learn.precompute = false;
  const { logProbs: logits, y } = await learn.predictWithTargets();
  const p = learn.probabilities(logits).toArray();
  const t = y.toArray();
  let bce = 0;
  p.forEach((q, i) => (bce -= t[i]! * Math.log(q) + (1 - t[i]!) * Math.log(1 - q)));
  assert.ok(Math.abs(bce / p.length - last.valLoss!) < 1e-4, `BCE ${bce / p.length} vs the table's ${last.valLoss}`);
  assert.ok(Math.abs(fbetaScore(p, t, 6, 2, 0.2) - last.metrics.f2!) < 1e-6);
  const agree = p.filter((q, i) => q > 0.2 === t[i]! > 0.5).length / p.length;
  assert.ok(Math.abs(agree - last.metrics.accuracy_thresh!) < 1e-6);
  assert.ok(p.every((q) => q > 0 && q < 1));
  const rowSums = Array.from({ length: p.length / 6 }, (_, i) => p.slice(i * 6, i * 6 + 6).reduce((a, b) => a + b, 0));
  assert.ok(
    rowSums.some((s) => Math.abs(s - 1) > 0.05),
    'independent sigmoids, not a softmax',
  );
});

function cli(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: tmp, encoding: 'utf8', env: { ...process.env, FASTVISION_HOME: join(tmp, 'home'), FASTVISION_QUIET: '1' }, timeout: 300_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

test('fastvision train on a tags CSV trains a multi-label model; predict, submit and export give tags', async () => {
  const out = join(tmp, 'out');
  const run = cli(
    'train',
    data,
    '--csv',
    'tags.csv',
    '--suffix',
    '.jpg',
    '--test',
    'test',
    '--size',
    '32',
    '--bs',
    '4',
    '--freeze-epochs',
    '1',
    '--epochs',
    '1',
    '--tta-aug',
    '1',
    '--workers',
    '1',
    '--val-pct',
    '0.25',
    '--out',
    out,
    '--json',
    join(tmp, 'run.json'),
  );
  assert.equal(run.code, 0, run.stderr + run.stdout);
  assert.match(run.stdout, /validation F2 .* with TTA .* at the best threshold/);
  const summary = JSON.parse(readFileSync(join(tmp, 'run.json'), 'utf8')) as {
    multiLabel: boolean;
    tta: { f2: number; threshold: number };
    data: { classes: string[] };
    settings: Record<string, unknown>;
  };
  assert.equal(summary.multiLabel, true);
  assert.ok(summary.tta.threshold >= 0.05 && summary.tta.threshold <= 0.95 && summary.tta.f2 >= 0 && summary.tta.f2 <= 1);
  const info = JSON.parse(readFileSync(join(out, 'model.json'), 'utf8')) as { multiLabel: boolean; threshold: number };
  assert.equal(info.multiLabel, true);
  assert.equal(info.threshold, summary.tta.threshold);
  const report = readFileSync(join(out, 'report.html'), 'utf8');
  assert.match(report, /Tags on the validation set/);
  // The submission is planet's id,tags, each tag one of the classes.
  const sub = readFileSync(join(out, 'submission.csv'), 'utf8').trim().split('\n');
  assert.equal(sub[0], 'id,tags');
  assert.equal(sub.length, 4);
  for (const line of sub.slice(1)) for (const tag of line.split(',')[1]!.split(' ').filter(Boolean)) assert.ok(summary.data.classes.includes(tag), tag);
  // predict --json: the tags are exactly those above the model's threshold.
  const pred = cli('predict', out, join(data, 'test'), '--json', '--top', '6');
  assert.equal(pred.code, 0, pred.stderr);
  const rows = JSON.parse(pred.stdout) as { file: string; tags: string[]; top: { label: string; p: number }[] }[];
  assert.equal(rows.length, 3);
  for (const r of rows)
    assert.deepEqual(
      r.tags,
      r.top.filter((x) => x.p > info.threshold).map((x) => x.label),
    );
  // The ONNX export ends in a sigmoid: onnxruntime gives predict's probabilities.
  const exp = cli('export', out, '--out', join(tmp, 'onnx'));
  assert.equal(exp.code, 0, exp.stderr);
  const meta = JSON.parse(readFileSync(join(tmp, 'onnx', 'metadata.json'), 'utf8')) as { output: { activation: string; threshold: number } };
  assert.deepEqual(meta.output.activation, 'sigmoid');
  assert.equal(meta.output.threshold, info.threshold);
  const session = await ort.InferenceSession.create(join(tmp, 'onnx', 'model.onnx'));
  const input = new ort.Tensor('float32', new Float32Array(3 * 32 * 32).fill(0.1), [1, 3, 32, 32]);
  const probs = (await session.run({ image: input })).probabilities!.data as Float32Array;
  assert.equal(probs.length, 6);
  assert.ok([...probs].every((q) => q > 0 && q < 1) && Math.abs([...probs].reduce((a, b) => a + b, 0) - 1) > 1e-3, 'sigmoids');
});
