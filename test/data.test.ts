// ImageClassifierData on the committed photo fixture (both layouts, read in place) and on small
// folders made here for every kind of bad input; the user's folder is never modified.
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { closeLoaderWorkers, DataError, getCvIdxs, ImageClassifierData, randn, resnet34, tfmsFromModel, transformsSideOn, type Batch } from '../src/index.js';
import { photos } from './helpers.js';

const tfms = tfmsFromModel(resnet34, 32, { augTfms: transformsSideOn, maxZoom: 1.1 });
const dogscats = join(photos, 'dogscats');
const breeds = join(photos, 'breeds');
let scratch = '';

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'fastvision-data-'));
  process.env.FASTVISION_HOME = join(scratch, 'home');
});
after(async () => {
  await closeLoaderWorkers();
  await rm(scratch, { recursive: true, force: true });
});

async function collect(dl: AsyncIterable<Batch>): Promise<{ shapes: number[][]; indices: number[]; labels: number[] }> {
  const shapes: number[][] = [];
  const indices: number[] = [];
  const labels: number[] = [];
  for await (const { x, y, indices: idx } of dl) {
    shapes.push(x.shape);
    indices.push(...idx);
    labels.push(...y.toArray());
    assert.equal(y.dtype, 'int64');
    x.dispose();
    y.dispose();
  }
  return { shapes, indices, labels };
}

async function snapshot(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of (await readdir(d, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else out.push(`${p} ${(await stat(p)).size} ${(await stat(p)).mtimeMs}`);
    }
  };
  await walk(dir);
  return out;
}

test('folder layout: classes, counts, and batches with the right labels', async () => {
  const data = await ImageClassifierData.fromPaths(dogscats, { tfms, bs: 4 });
  assert.deepEqual(data.classes, ['cats', 'dogs']);
  assert.equal(data.c, 2);
  assert.equal(data.trnDs.length, 16);
  assert.equal(data.valDs!.length, 6);
  assert.deepEqual(
    [...data.labelCounts().trn],
    [
      ['cats', 6],
      ['dogs', 10],
    ],
  );
  const { shapes, indices, labels } = await collect(data.valDl!);
  assert.deepEqual(shapes[0], [4, 3, 32, 32]);
  assert.deepEqual(shapes[1], [2, 3, 32, 32]);
  assert.deepEqual(
    indices,
    Array.from({ length: 6 }, (_, i) => i),
    'validation in order',
  );
  const ds = data.valDs as { files: string[] };
  labels.forEach((l, i) => assert.ok(ds.files[indices[i]!]!.includes(`/${data.classes[l]}/`)));
});

test('training batches are shuffled per epoch, reproducibly for a seed; dropLast drops the rest', async () => {
  const a = await ImageClassifierData.fromPaths(dogscats, { tfms, bs: 5, seed: 3 });
  const b = await ImageClassifierData.fromPaths(dogscats, { tfms, bs: 5, seed: 3 });
  const e0 = a.trnDl.batchIndices(0).flat();
  assert.deepEqual(e0, b.trnDl.batchIndices(0).flat());
  assert.notDeepEqual(e0, a.trnDl.batchIndices(1).flat());
  assert.equal(new Set(e0).size, 15, 'three full batches of distinct images');
  assert.ok(e0.every((i) => i >= 0 && i < 16));
  const { shapes } = await collect(a.trnDl);
  assert.deepEqual(
    shapes.map((sh) => sh[0]),
    [5, 5, 5],
    'training drops the last partial batch (16 = 3 × 5 + 1: never a batch of one)',
  );
  const small = await ImageClassifierData.fromPaths(dogscats, { tfms, bs: 32 });
  assert.deepEqual(
    (await collect(small.trnDl)).shapes.map((sh) => sh[0]),
    [16],
    'a training set smaller than a batch is one batch',
  );
  const { DataLoader } = await import('../src/index.js');
  const dl = new DataLoader(a.trnDs, { bs: 5, dropLast: true, shuffle: true, transform: tfms.trn });
  assert.equal(dl.length, 3);
});

test('channels-last batches hold the same values as NCHW ones', async () => {
  const nchw = await ImageClassifierData.fromPaths(dogscats, { tfms, bs: 8 });
  const nhwc = await ImageClassifierData.fromPaths(dogscats, { tfms, bs: 8, channelsLast: true });
  const first = async (d: ImageClassifierData): Promise<Batch> => {
    for await (const b of d.valDl!) return b;
    throw new Error('empty');
  };
  const x1 = (await first(nchw)).x;
  const x2 = (await first(nhwc)).x;
  assert.ok(x2.isContiguous('channelsLast'));
  assert.ok(x1.allclose(x2));
});

test('CSV layout: a seeded 20% validation split, all classes, a test folder', async () => {
  const data = await ImageClassifierData.fromCsv(breeds, 'train', 'labels.csv', { tfms, bs: 64, suffix: '.jpg', testName: 'test' });
  assert.equal(data.c, 4);
  assert.equal(data.trnDs.length + data.valDs!.length, 20);
  assert.equal(data.valDs!.length, Math.floor(0.2 * 20));
  assert.equal(data.testDs!.length, 4);
  const { shapes } = await collect(data.testDl!);
  assert.deepEqual(shapes[0], [4, 3, 32, 32]);
  const all = await ImageClassifierData.fromCsv(breeds, 'train', 'labels.csv', { tfms, suffix: '.jpg', valIdxs: [] });
  assert.equal(all.valDs, null, 'valIdxs [] trains on everything');
  assert.equal(all.trnDs.length, 20);
});

test('getCvIdxs: the requested share, seeded, sorted', () => {
  const a = getCvIdxs(333);
  assert.equal(a.length, 66);
  assert.deepEqual(a, getCvIdxs(333));
  assert.notDeepEqual(a, getCvIdxs(333, { seed: 1 }));
  assert.deepEqual(
    a,
    [...a].sort((x, y) => x - y),
  );
  assert.equal(new Set(a).size, 66);
  assert.equal(getCvIdxs(100, { valPct: 0.1 }).length, 10);
});

test('fromArrays batches rows of precomputed activations', async () => {
  const x = randn([10, 4]);
  const data = ImageClassifierData.fromArrays(scratch, [x, [0, 1, 0, 1, 0, 1, 0, 1, 0, 1]], [x.slice(0, 0, 3), [1, 1, 0]], ['a', 'b'], { bs: 4 });
  const { shapes, labels } = await collect(data.valDl!);
  assert.deepEqual(shapes, [[3, 4]]);
  assert.deepEqual(labels, [1, 1, 0]);
  assert.equal((await collect(data.trnDl)).shapes.length, 2, '10 rows at bs 4: the last partial batch is dropped in training');
});

test('image sizes for the histogram, and resize() caches shrunk copies without touching the photos', async () => {
  const before = await snapshot(dogscats);
  const data = await ImageClassifierData.fromPaths(dogscats, { tfms, bs: 64 });
  const sizes = await data.imageSizes();
  assert.equal(sizes.length, 16);
  assert.ok(sizes.every((s) => s.width > 0 && s.height > 0));
  const small = await data.resize(64);
  const f = (small.trnDs as { files: string[] }).files[0]!;
  assert.ok(f.startsWith(process.env.FASTVISION_HOME!), `copies go under FASTVISION_HOME, not into the data folder (${f})`);
  const m = await sharp(f).metadata();
  assert.equal(Math.min(m.width, m.height), 64);
  assert.equal((await collect(small.valDl!)).indices.length, 6);
  assert.deepEqual(await snapshot(dogscats), before, 'the data folder is unchanged');
});

/** A small folder dataset: {split: {label: [file names]}}; .jpg files are real images. */
async function makeTree(name: string, tree: Record<string, Record<string, string[]>>): Promise<string> {
  const root = join(scratch, name);
  for (const [split, labels] of Object.entries(tree)) {
    for (const [label, files] of Object.entries(labels)) {
      await mkdir(join(root, split, label), { recursive: true });
      for (const f of files) {
        const img = sharp({ create: { width: 40, height: 30, channels: 3, background: { r: f.length * 20, g: 100, b: 50 } } });
        await writeFile(join(root, split, label, f), f.endsWith('.jpg') ? await img.jpeg().toBuffer() : 'not an image');
      }
    }
  }
  return root;
}

test('non-image files are ignored; an unreadable image is skipped with a warning, or an error by option', async () => {
  const root = await makeTree('bad-images', { train: { a: ['1.jpg', '2.jpg', 'notes.txt', '.DS_Store'], b: ['3.jpg', '4.jpg'] }, valid: { a: ['5.jpg'], b: ['6.jpg'] } });
  const good = await sharp({ create: { width: 40, height: 30, channels: 3, background: '#808080' } })
    .jpeg()
    .toBuffer();
  await writeFile(join(root, 'train', 'b', '4.jpg'), good.subarray(0, Math.floor(good.length / 2)));
  const data = await ImageClassifierData.fromPaths(root, { tfms, bs: 8 });
  assert.equal(data.trnDs.length, 4, '.txt and dot-files are not images');
  const warnings: string[] = [];
  const { DataLoader } = await import('../src/index.js');
  const dl = new DataLoader(data.trnDs, { bs: 8, transform: tfms.trn, warn: (m) => warnings.push(m) });
  const { indices } = await collect(dl);
  assert.equal(indices.length, 3);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /skipping unreadable image .*train\/b\/4\.jpg: corrupt JPEG/);
  assert.equal(dl.length, 1);
  const strict = new DataLoader((await ImageClassifierData.fromPaths(root, { tfms })).trnDs, { bs: 8, transform: tfms.trn, onBadImage: 'error' });
  await assert.rejects(collect(strict), /cannot read image .*4\.jpg: corrupt JPEG.*onBadImage: 'error'/);
});

test('folder layout errors name the folder at fault', async () => {
  const empty = await makeTree('empty-class', { train: { a: ['1.jpg'], b: [] }, valid: { a: ['2.jpg'] } });
  await assert.rejects(ImageClassifierData.fromPaths(empty, { tfms }), (e: Error) => e instanceof DataError && e.message.includes(`class folder ${join(empty, 'train', 'b')} holds no images`));
  const noValid = await makeTree('no-valid', { train: { a: ['1.jpg'], b: ['2.jpg'] } });
  await assert.rejects(ImageClassifierData.fromPaths(noValid, { tfms }), /validation folder .*no-valid\/valid is missing; .* holds: train \(set valName, or valName: null/);
  assert.equal((await ImageClassifierData.fromPaths(noValid, { tfms, valName: null })).valDs, null);
  await assert.rejects(ImageClassifierData.fromPaths(noValid, { tfms, trnName: 'training' }), /training folder .*no-valid\/training is missing; .* holds: train/);
  const stray = await makeTree('stray-label', { train: { a: ['1.jpg'], b: ['2.jpg'] }, valid: { a: ['3.jpg'], c: ['4.jpg'] } });
  await assert.rejects(ImageClassifierData.fromPaths(stray, { tfms }), /stray-label\/valid\/c: label 'c' is not among the training labels \(a, b\)/);
  await assert.rejects(ImageClassifierData.fromPaths(join(scratch, 'nowhere'), { tfms }), /data folder .*nowhere does not exist/);
  const oneClass = await makeTree('one-class', { train: { a: ['1.jpg', '2.jpg'] }, valid: { a: ['3.jpg'] } });
  await assert.rejects(ImageClassifierData.fromPaths(oneClass, { tfms }), (e: Error) => e instanceof DataError && /one-class: only one class \('a'\); a classifier needs at least two/.test(e.message));
});

test('CSV errors name the line at fault', async () => {
  const root = await makeTree('csv', { train: { '.': ['x1.jpg', 'x2.jpg', 'x3.jpg'] } });
  await writeFile(join(root, 'ok.csv'), 'id,label\nx1,cat\nx2,dog\nx3,dog\n');
  const ok = await ImageClassifierData.fromCsv(root, 'train', 'ok.csv', { tfms, suffix: '.jpg', valIdxs: [1] });
  assert.deepEqual(ok.classes, ['cat', 'dog']);
  await writeFile(join(root, 'missing.csv'), 'id,label\nx1,cat\n\nx9,dog\n');
  await assert.rejects(ImageClassifierData.fromCsv(root, 'train', 'missing.csv', { tfms, suffix: '.jpg', valIdxs: [] }), /missing\.csv, line 4: image .*x9\.jpg does not exist/);
  await writeFile(join(root, 'columns.csv'), 'id,label\nx1,cat\nx2,dog,extra\n');
  await assert.rejects(ImageClassifierData.fromCsv(root, 'train', 'columns.csv', { tfms, suffix: '.jpg', valIdxs: [] }), /columns\.csv, line 3: expected 2 columns/);
  await writeFile(join(root, 'quote.csv'), 'id,label\nx1,cat\nx2,"dog\nx3,dog\n');
  await assert.rejects(
    ImageClassifierData.fromCsv(root, 'train', 'quote.csv', { tfms, suffix: '.jpg', valIdxs: [] }),
    /quote\.csv, line 3: malformed CSV \(Quote Not Closed/,
    'the line where the quote opens',
  );
  await writeFile(join(root, 'dup.csv'), 'id,label\nx1,cat\nx2,dog\nx1,dog\n');
  await assert.rejects(ImageClassifierData.fromCsv(root, 'train', 'dup.csv', { tfms, suffix: '.jpg', valIdxs: [] }), /dup\.csv, line 4: this image is already labelled 'cat' on line 2, here 'dog'/);
  await writeFile(join(root, 'again.csv'), 'id,label\nx1,cat\nx2,dog\nx3,dog\nx2,dog\n');
  await assert.rejects(ImageClassifierData.fromCsv(root, 'train', 'again.csv', { tfms, suffix: '.jpg', valIdxs: [] }), /again\.csv, line 5: repeats line 3/);
  await writeFile(join(root, 'valonly.csv'), 'id,label\nx1,cat\nx2,dog\nx3,bird\n');
  await assert.rejects(
    ImageClassifierData.fromCsv(root, 'train', 'valonly.csv', { tfms, suffix: '.jpg', valIdxs: [2] }),
    /valonly\.csv, line 4: label 'bird' has no training rows \(1 row\(s\), all held out for validation\)/,
  );
  await assert.rejects(ImageClassifierData.fromCsv(root, 'train', 'nope.csv', { tfms }), /labels file .*nope\.csv does not exist/);
});

test('a script exits when it is done: idle loader threads never keep the process alive', async () => {
  const { spawnSync } = await import('node:child_process');
  const { repoRoot } = await import('./helpers.js');
  const script = `
    import { ImageClassifierData, tfmsFromModel, resnet34 } from ${JSON.stringify(join(repoRoot, 'dist', 'src', 'index.js'))};
    const data = await ImageClassifierData.fromPaths(${JSON.stringify(dogscats)}, { tfms: tfmsFromModel(resnet34, 32), bs: 4, numWorkers: 2 });
    let n = 0;
    for await (const { x, y } of data.trnDl) { n++; x.dispose(); y.dispose(); }
    console.log('batches', n);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, FASTVISION_HOME: join(scratch, 'home') } });
  assert.equal(r.signal, null, 'it exited by itself (no closeLoaderWorkers)');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /batches 4/);
});

test('a loader thread that dies is replaced and its batch decoded again', async () => {
  const { DataLoader, loaderThreads } = await import('../src/index.js');
  const data = await ImageClassifierData.fromPaths(dogscats, { tfms, bs: 4 });
  const dl = new DataLoader(data.valDs!, { bs: 1, transform: tfms.val, numWorkers: 2, prefetch: 4 });
  const seen: number[] = [];
  let killed = 0;
  for await (const { x, y, indices } of dl) {
    if (seen.length === 0) for (const t of loaderThreads()) killed += (await t.terminate(), 1);
    seen.push(...indices);
    x.dispose();
    y.dispose();
  }
  assert.ok(killed >= 2, `${killed} threads killed`);
  assert.deepEqual(seen, [0, 1, 2, 3, 4, 5], 'every image arrived, in order');
  const again = await collect(dl);
  assert.deepEqual(again.indices, [0, 1, 2, 3, 4, 5], 'the next pass runs on new threads');
});
