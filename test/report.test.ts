// The report's parts: interpretation picks, the submission CSV, charts and
// grids as PNGs, the self-contained HTML, argument parsing, and the demo's
// Fashion-MNIST folder tree.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { parseCommandArgs, UsageError, numList, type CommandSpec } from '../src/cli/args.js';
import { DEMO_CLASSES, writeFashionMnistFolders } from '../src/cli/demo.js';
import { submissionCsv } from '../src/learn/submission.js';
import { unfreezePlan } from '../src/learn/unfreeze-plan.js';
import { confusionSpec, lrFinderSpec, renderChart } from '../src/report/charts.js';
import { transformedPixels } from '../src/learn/figures.js';
import { imageGrid } from '../src/report/grids.js';
import { Report } from '../src/report/html.js';
import { confusionMatrix, mostConfidentCorrect, mostIncorrect, mostUncertain, predictedClasses } from '../src/report/interpret.js';
import { archOf, loadFashionMnist, tfmsFromStats, transformsSideOn } from '../src/index.js';
import { photos } from './helpers.js';

let tmp = '';
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'fastvision-report-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

// Five images, three classes.
const probs = [0.7, 0.2, 0.1, /**/ 0.1, 0.8, 0.1, /**/ 0.45, 0.1, 0.45, /**/ 0.05, 0.9, 0.05, /**/ 0.3, 0.35, 0.35];
const y = [0, 1, 2, 0, 2];
const p = { probs, c: 3, y };

test('confusion matrix and the three picks follow the probabilities', () => {
  assert.deepEqual(predictedClasses(p), [0, 1, 0, 1, 1]);
  assert.deepEqual(confusionMatrix(p), [
    [1, 1, 0],
    [0, 1, 0],
    [1, 1, 0],
  ]);
  // Wrong: #3 (p(true)=0.05), #4 (0.35), #2 (0.45) — lowest probability on the truth first.
  assert.deepEqual(
    mostIncorrect(p, 5).map((q) => q.index),
    [3, 4, 2],
  );
  assert.deepEqual(
    mostConfidentCorrect(p, 5).map((q) => [q.index, q.pActual]),
    [
      [1, 0.8],
      [0, 0.7],
    ],
  );
  // Margins: #2 0, #4 0, #0 0.5, #1 0.7, #3 0.85.
  assert.deepEqual(
    mostUncertain(p, 3).map((q) => q.index),
    [2, 4, 0],
  );
});

test('submission CSV: header, ids without extensions, probabilities or labels, quoting', () => {
  const files = ['/x/test/a1.jpg', '/x/test/b2.png'];
  const csv = submissionCsv(files, [0.25, 0.75, 0.9, 0.1], ['cat', 'dog, big']);
  assert.equal(csv, 'id,cat,"dog, big"\na1,0.250000,0.750000\nb2,0.900000,0.100000\n');
  assert.equal(submissionCsv(files, [0.25, 0.75, 0.9, 0.1], ['cat', 'dog'], { labels: true }), 'id,label\na1,dog\nb2,cat\n');
  assert.throws(() => submissionCsv(files, [0.5, 0.5], ['cat', 'dog']), /1 rows of probabilities for 2 images/);
});

test('charts render as PNGs; the chosen rate is marked in red', async () => {
  const pts = Array.from({ length: 40 }, (_, i) => ({ lr: 1e-5 * 1.4 ** i, loss: 2 - Math.sin(i / 12) }));
  const png = await renderChart(lrFinderSpec(pts, 1e-3));
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  assert.ok(info.width > 800 && info.height > 400, `${info.width}×${info.height}`);
  let red = 0;
  for (let i = 0; i < data.length; i += 3) if (data[i]! > 190 && data[i + 1]! < 80 && data[i + 2]! < 80) red++;
  assert.ok(red > 200, `red marker pixels: ${red}`);
  const without = await sharp(await renderChart(lrFinderSpec(pts)))
    .removeAlpha()
    .raw()
    .toBuffer();
  let red2 = 0;
  for (let i = 0; i < without.length; i += 3) if (without[i]! > 190 && without[i + 1]! < 80 && without[i + 2]! < 80) red2++;
  assert.equal(red2, 0, 'no marker without a chosen rate');
  const cm = await sharp(
    await renderChart(
      confusionSpec(
        [
          [3, 1],
          [0, 4],
        ],
        ['cats', 'dogs'],
      ),
    ),
  ).metadata();
  assert.equal(cm.format, 'png');
});

test('image grids place one tile per image; augmentation pixels undo the normalization', async () => {
  const dir = join(photos, 'dogscats', 'train', 'cats');
  const files = readdirSync(dir)
    .sort()
    .slice(0, 5)
    .map((f) => join(dir, f));
  const grid = await imageGrid(
    files.map((f, i) => ({ image: f, caption: [`#${i}`, 'cat'] })),
    { cols: 3, size: 100 },
  );
  const m = await sharp(grid).metadata();
  assert.equal(m.width, 3 * 108 + 8);
  assert.equal(m.height, 2 * (100 + 2 * 15 + 16) + 8);
  const t = tfmsFromStats({ mean: [0.5, 0.4, 0.3], std: [0.2, 0.25, 0.3] }, 48, { augTfms: transformsSideOn }).val;
  const px = await transformedPixels(files[0]!, t, 0);
  const direct = await sharp(files[0]).rotate().resize(48, 48, { fit: 'cover', kernel: 'linear' }).removeAlpha().raw().toBuffer();
  let diff = 0;
  for (let i = 0; i < direct.length; i++) diff += Math.abs(direct[i]! - px.data[i]!);
  assert.ok(diff / direct.length < 12, `mean abs difference from a plain resize: ${diff / direct.length}`);
});

test('the HTML report embeds its pictures, escapes text and keeps PNG files', async () => {
  const r = new Report(join(tmp, 'rep'), 'A <b>title</b>');
  const png = await sharp({ create: { width: 4, height: 4, channels: 3, background: '#ff0000' } })
    .png()
    .toBuffer();
  const file = await r.addPicture('red', 'Red & square', png, 'note');
  r.addTable('T', ['a', 'b'], [['x<y', 0.123456789]]);
  const html = readFileSync(await r.write(), 'utf8');
  assert.ok(existsSync(file) && statSync(file).size === png.length);
  assert.ok(html.includes(`src="data:image/png;base64,${png.toString('base64')}"`));
  assert.ok(html.includes('A &lt;b&gt;title&lt;/b&gt;') && html.includes('Red &amp; square') && html.includes('x&lt;y') && html.includes('0.1235'));
  await assert.rejects(r.addPicture('../escape', 't', png), /picture name/);
});

test('argument parsing names the option at fault', () => {
  const spec: CommandSpec = { name: 'x', summary: '', positionals: ['<path>'], options: { n: { type: 'string', help: '' }, f: { type: 'boolean', help: '' } }, run: async () => {} };
  const a = parseCommandArgs(spec, ['p', '--n', '3,4', '--f']);
  assert.ok(a !== 'help');
  assert.deepEqual(numList(a, 'n', { integer: true }), [3, 4]);
  assert.throws(() => numList({ positionals: [], values: { n: '3,,4' } }, 'n'), /--n: '3,,4' is not a comma-separated list/);
  assert.throws(() => numList({ positionals: [], values: { n: '3.5' } }, 'n', { integer: true }), /--n: '3.5' must be a whole number/);
  assert.throws(
    () => parseCommandArgs(spec, []),
    (e) => e instanceof UsageError && /missing <path>/.test(e.message),
  );
  assert.throws(() => parseCommandArgs(spec, ['p', 'q']), /unexpected argument 'q'/);
  assert.throws(() => parseCommandArgs(spec, ['p', '--n']), /option '--n' needs a value/);
  assert.equal(parseCommandArgs(spec, ['--help']), 'help');
});

test("the demo's Fashion-MNIST folder tree: counts per class, pixels as in the IDX file, written once", async () => {
  const dir = join(tmp, 'fm');
  await writeFashionMnistFolders(dir, { perClass: 3, valPerClass: 1, nTest: 4 });
  assert.deepEqual(readdirSync(join(dir, 'train')).sort(), [...DEMO_CLASSES].sort());
  for (const c of DEMO_CLASSES) {
    assert.equal(readdirSync(join(dir, 'train', c)).length, 3, c);
    assert.equal(readdirSync(join(dir, 'valid', c)).length, 1, c);
  }
  assert.equal(readdirSync(join(dir, 'test')).length, 4);
  const raw = await loadFashionMnist('train', { limit: 100 });
  const first = readdirSync(join(dir, 'train', DEMO_CLASSES[raw.labels[0]!]!)).sort()[0]!;
  assert.equal(first, '00000.png', 'image 0 is filed under its label');
  const data = await sharp(join(dir, 'train', DEMO_CLASSES[raw.labels[0]!]!, first))
    .extractChannel(0)
    .raw()
    .toBuffer();
  assert.deepEqual([...data], [...raw.images.subarray(0, 28 * 28)]);
  const before = statSync(join(dir, 'test', '00000.png')).mtimeMs;
  await writeFashionMnistFolders(dir, { perClass: 3, valPerClass: 1, nTest: 4 });
  assert.equal(statSync(join(dir, 'test', '00000.png')).mtimeMs, before, 'a complete tree is reused');
  assert.ok(!readdirSync(tmp).some((f) => f.includes('.partial')), 'no temporary folder left');
});

test("the recipe's unfreezing: the user's options, else the architecture's measured advice, else the lesson's way", () => {
  const nsfw = archOf('mobilenet_v2_nsfwjs');
  const plain = archOf('resnet34');
  const none = { bnFreeze: undefined, unfreezeLr: undefined, lessonUnfreeze: false };
  assert.deepEqual(unfreezePlan(plain, 0.01, none), { bnFreeze: false, lr: 0.01, note: undefined });
  const advised = unfreezePlan(nsfw, 0.01, none);
  assert.equal(advised.bnFreeze, nsfw.unfreezeAdvice!.bnFreeze);
  const { lrFactor, maxLr } = nsfw.unfreezeAdvice!;
  assert.ok(Math.abs(advised.lr - Math.min(0.01 * lrFactor, maxLr ?? Infinity)) < 1e-15);
  assert.ok(Math.abs(unfreezePlan(nsfw, 0.002, none).lr - 0.002 * lrFactor) < 1e-15, 'below the cap: the factor');
  if (maxLr !== undefined) assert.equal(unfreezePlan(nsfw, 1, none).lr, maxLr, 'above it: the cap');
  assert.match(advised.note!, /--lesson-unfreeze/);
  assert.deepEqual(unfreezePlan(nsfw, 0.01, { ...none, lessonUnfreeze: true }), { bnFreeze: false, lr: 0.01, note: undefined });
  assert.deepEqual(unfreezePlan(nsfw, 0.01, { bnFreeze: true, unfreezeLr: 0.003, lessonUnfreeze: false }), { bnFreeze: true, lr: 0.003, note: undefined });
  const half = unfreezePlan(nsfw, 0.01, { ...none, unfreezeLr: 0.004 });
  assert.deepEqual([half.bnFreeze, half.lr], [true, 0.004], 'an option given by the user wins; advice fills the other');
});
