// Unreadable images never stop training: a zero-byte or text ".jpg", a truncated
// JPEG, a symbolic-link loop, a JPEG that declares 30000×30000 pixels. Each is
// skipped with a warning naming it, labels stay with their own images, and the
// pixel limit is checked from the header before anything is decoded.
import assert from 'node:assert/strict';
import { cpSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import {
  closeLoaderWorkers,
  ConvLearner,
  decodeJpeg,
  ImageClassifierData,
  loadTransformed,
  manualSeed,
  maxImagePixels,
  mobilenet_v2_nsfwjs,
  rngFor,
  setMaxImagePixels,
  tfmsFromModel,
  transformsSideOn,
} from '../src/index.js';
import { photos } from './helpers.js';

let scratch = '';
let root = '';
const tfms = tfmsFromModel(mobilenet_v2_nsfwjs, 32, { augTfms: transformsSideOn, maxZoom: 1.1 });

/** A JPEG of a few hundred bytes whose header declares width × height. */
export async function jpegDeclaring(width: number, height: number): Promise<Buffer> {
  const b = Buffer.from(
    await sharp({ create: { width: 16, height: 16, channels: 3, background: '#808080' } })
      .jpeg()
      .toBuffer(),
  );
  for (let i = 0; i + 9 < b.length; i++) {
    if (b[i] === 0xff && (b[i + 1] === 0xc0 || b[i + 1] === 0xc2)) {
      b.writeUInt16BE(height, i + 5);
      b.writeUInt16BE(width, i + 7);
      return b;
    }
  }
  throw new Error('no SOF marker');
}

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'fastvision-bad-'));
  process.env.FASTVISION_HOME = join(scratch, 'home');
  root = join(scratch, 'dogscats');
  cpSync(join(photos, 'dogscats'), root, { recursive: true });
  writeFileSync(join(root, 'train', 'cats', 'empty.jpg'), '');
  writeFileSync(join(root, 'train', 'dogs', 'notes.jpg'), 'this is not a photo\n');
  const good = readFileSync(join(root, 'train', 'dogs', 'chihuahua_106.jpg'));
  writeFileSync(join(root, 'train', 'dogs', 'truncated.jpg'), good.subarray(0, good.length >> 1));
  writeFileSync(join(root, 'valid', 'cats', 'truncated.jpg'), good.subarray(0, good.length >> 1));
  writeFileSync(join(root, 'valid', 'dogs', 'huge.jpg'), await jpegDeclaring(30000, 30000));
  symlinkSync('loop-b.jpg', join(root, 'train', 'cats', 'loop-a.jpg'));
  symlinkSync('loop-a.jpg', join(root, 'train', 'cats', 'loop-b.jpg'));
  symlinkSync('nowhere.jpg', join(root, 'train', 'cats', 'dangling.jpg'));
});
after(async () => {
  await closeLoaderWorkers();
  await rm(scratch, { recursive: true, force: true });
});

test('a symbolic-link loop or a dangling link is skipped with a warning, not an error', async () => {
  const { scanFolders } = await import('../src/index.js');
  const warnings: string[] = [];
  const { trn } = scanFolders(root, 'train', 'valid', (m) => warnings.push(m));
  assert.ok(!trn.files.some((f) => /loop|dangling/.test(f)));
  assert.equal(warnings.filter((w) => /loop-[ab]\.jpg: a symbolic link loop/.test(w)).length, 2, warnings.join('\n'));
  assert.ok(warnings.some((w) => /dangling\.jpg: a dangling symbolic link/.test(w)));
});

test('the size histogram skips unreadable images, naming each, and the loaders then skip them too', async () => {
  const data = await ImageClassifierData.fromPaths(root, { tfms, bs: 4 });
  const warnings: string[] = [];
  const sizes = await data.imageSizes(data.trnDs, (m) => warnings.push(m));
  assert.equal(sizes.length, 17, '16 photos and the truncated JPEG (its header is intact)');
  assert.ok(warnings.some((w) => /empty\.jpg/.test(w)) && warnings.some((w) => /notes\.jpg/.test(w)), warnings.join('\n'));
  assert.equal(data.trnDl.length, Math.floor(17 / 4), 'the two unreadable ones are no longer counted');
});

test('precompute drops an unreadable image together with its label (train and valid)', async () => {
  const data = await ImageClassifierData.fromPaths(root, { tfms, bs: 4 });
  // Seeded, at a rate that cannot run away: this is about which rows are dropped, not about
  // training (at 1e-2 and an unseeded head, the validation loss of these 6 images once
  // passed the guard's 10 in a full run on libtorch 2.6, and never in 11 runs alone).
  manualSeed(0);
  const learn = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, { precompute: true, log: null });
  const hist = await learn.fit(1e-3, 1);
  assert.equal(hist.length, 1);
  assert.ok(Number.isFinite(hist[0]!.valLoss!));
  const val = data.valDs as { files: string[]; labels: number[]; bad: Set<number> };
  assert.deepEqual([...val.bad].map((i) => val.files[i]!.split('/').slice(-2).join('/')).sort(), ['cats/truncated.jpg', 'dogs/huge.jpg']);
  // The predictions line up with the readable validation images' labels.
  const { y } = await learn.predictWithTargets();
  assert.deepEqual(
    y.toArray(),
    val.labels.filter((_, i) => !val.bad.has(i)),
  );
  const trn = data.trnDs as { bad: Set<number> };
  assert.equal(trn.bad.size, 3, 'empty, text and truncated files');
});

test('one pixel limit for every decoder, checked from the header before decoding', async () => {
  const bomb = await jpegDeclaring(30000, 30000);
  assert.ok(bomb.length < 1000);
  const t0 = performance.now();
  const before = process.resourceUsage().maxRSS;
  assert.throws(() => decodeJpeg(bomb, 32, 32), /declares 30000×30000 = 900,000,000 pixels, over the limit of 178,956,970/);
  await assert.rejects(loadTransformed(bomb, tfms.val, rngFor(0), new Float32Array(32 * 32 * 3), 0), /over the limit/);
  assert.ok(performance.now() - t0 < 2000 && process.resourceUsage().maxRSS - before < 100_000, 'refused without decoding');
  // The same limit for sharp's formats, and it can be raised or lowered.
  const png = await sharp({ create: { width: 40, height: 30, channels: 3, background: '#808080' } })
    .png()
    .toBuffer();
  const jpg = await sharp(png).jpeg().toBuffer();
  const out = new Float32Array(32 * 32 * 3);
  const saved = maxImagePixels();
  try {
    setMaxImagePixels(1000);
    await assert.rejects(loadTransformed(png, tfms.val, rngFor(0), out, 0), /declares 40×30 = 1,200 pixels, over the limit of 1,000/);
    await assert.rejects(loadTransformed(jpg, tfms.val, rngFor(0), out, 0), /declares 40×30 = 1,200 pixels, over the limit of 1,000/);
    setMaxImagePixels(1200);
    await loadTransformed(png, tfms.val, rngFor(0), out, 0);
    assert.throws(() => setMaxImagePixels(0), /positive whole number/);
  } finally {
    setMaxImagePixels(saved);
  }
});
