// Transforms do what each must: a flip flips, a center crop is centered, dihedral
// turns turn, normalization uses the architecture's statistics, EXIF orientation
// is applied, and every format decodes to RGB.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import sharp from 'sharp';
import { archOf, loadTransformed, mobilenet_v2_nsfwjs, randomDihedral, randomFlip, resnet34, rngFor, tfmsFromModel, transformsSideOn, transformsTopDown, type Transform } from '../src/index.js';

/** A w×h RGB image whose red channel encodes the column and green the row. */
async function gradient(w: number, h: number, format: 'png' | 'jpeg' = 'png'): Promise<Buffer> {
  const raw = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      raw[(y * w + x) * 3] = Math.round((255 * x) / (w - 1));
      raw[(y * w + x) * 3 + 1] = Math.round((255 * y) / (h - 1));
      raw[(y * w + x) * 3 + 2] = 128;
    }
  }
  const img = sharp(raw, { raw: { width: w, height: h, channels: 3 } });
  return format === 'png' ? img.png().toBuffer() : img.jpeg({ quality: 100 }).toBuffer();
}

const UNIT: Transform['stats'] = { mean: [0, 0, 0], std: [1, 1, 1] };

async function apply(img: Buffer, t: Partial<Transform>, rand: () => number = () => 0.5): Promise<Float32Array> {
  const full: Transform = { sz: 16, maxZoom: 1, augs: [], crop: 'center', stats: UNIT, ...t };
  const out = new Float32Array(full.sz * full.sz * 3);
  await loadTransformed(img, full, rand, out, 0);
  return out;
}

/** Channel c at (x, y) of a CHW output of side sz. */
const at = (o: Float32Array, sz: number, c: number, x: number, y: number): number => o[c * sz * sz + y * sz + x]!;

test('a center crop takes the middle of the scaled image', async () => {
  // 64×32 scaled to 32×16 → the middle 16×16 spans scaled columns 8..23, i.e. about 25%..75% of the width.
  const o = await apply(await gradient(64, 32), { sz: 16 });
  const left = at(o, 16, 0, 0, 8);
  const right = at(o, 16, 0, 15, 8);
  assert.ok(Math.abs(left - 0.25) < 0.04, `left edge red ${left}`);
  assert.ok(Math.abs(right - 0.75) < 0.04, `right edge red ${right}`);
  assert.ok(Math.abs(left + right - 1) < 0.03, 'symmetric about the centre');
  assert.ok(at(o, 16, 1, 8, 0) < 0.05 && at(o, 16, 1, 8, 15) > 0.95, 'full height kept');
});

test('a flip mirrors the crop left to right', async () => {
  const img = await gradient(40, 40);
  const plain = await apply(img, {});
  // rand 0.1: the flip (drawn after zoom and the crop position) happens.
  const flipped = await apply(img, { augs: [randomFlip()] }, () => 0.1);
  for (let y = 0; y < 16; y += 5) for (let x = 0; x < 16; x++) assert.ok(Math.abs(at(flipped, 16, 0, x, y) - at(plain, 16, 0, 15 - x, y)) < 1e-6);
  const kept = await apply(img, { augs: [randomFlip()] }, () => 0.9);
  assert.deepEqual(kept, plain, 'no flip when the draw says so');
});

test('dihedral turns rotate the square by multiples of 90°', async () => {
  const img = await gradient(40, 40);
  const plain = await apply(img, {});
  // Draws: zoom, cropX, cropY, turns = floor(0.3 * 4) = 1, flip = (0.3 < 0.5) → then undo the flip by comparing mirrored.
  const seq = [0, 0.5, 0.5, 0.3, 0.9];
  let i = 0;
  const turned = await apply(img, { augs: [randomDihedral()] }, () => seq[i++]!);
  // One turn: output (ox, oy) reads input (oy, 15 - ox).
  for (let oy = 0; oy < 16; oy += 3) for (let ox = 0; ox < 16; ox += 3) for (const c of [0, 1]) assert.ok(Math.abs(at(turned, 16, c, ox, oy) - at(plain, 16, c, oy, 15 - ox)) < 1e-6);
});

test('normalization uses the architecture statistics', async () => {
  const grey = await sharp({ create: { width: 20, height: 20, channels: 3, background: { r: 128, g: 128, b: 128 } } })
    .png()
    .toBuffer();
  const t = tfmsFromModel(resnet34, 8).val;
  const o = await apply(grey, t);
  const { mean, std } = archOf(resnet34).stats;
  for (let c = 0; c < 3; c++) assert.ok(Math.abs(at(o, 8, c, 3, 3) - (128 / 255 - mean[c]!) / std[c]!) < 1e-5);
  const unit = await apply(grey, tfmsFromModel(mobilenet_v2_nsfwjs, 8).val);
  assert.ok(Math.abs(at(unit, 8, 0, 3, 3) - 128 / 255) < 1e-6, 'nsfwjs backbones take [0, 1]');
});

test('EXIF orientation is applied before anything else (as sharp does)', async () => {
  const src = await gradient(48, 32, 'jpeg');
  for (const orientation of [3, 6, 8]) {
    const tagged = await sharp(src).withMetadata({ orientation }).jpeg({ quality: 100 }).toBuffer();
    const upright = await sharp(tagged).rotate().png().toBuffer();
    const a = await apply(tagged, { sz: 16 });
    const b = await apply(upright, { sz: 16 });
    let worst = 0;
    for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i]! - b[i]!));
    assert.ok(worst < 0.05, `orientation ${orientation}: max difference ${worst}`);
  }
});

test('every format decodes to RGB: grey and CMYK JPEG, PNG with alpha, WebP, first frame of a GIF', async () => {
  const rgba = await sharp({ create: { width: 24, height: 24, channels: 4, background: { r: 255, g: 0, b: 0, alpha: 0.5 } } })
    .png()
    .toBuffer();
  const grey = await sharp(await gradient(24, 24))
    .greyscale()
    .jpeg()
    .toBuffer();
  const cmyk = await sharp(await gradient(24, 24))
    .toColourspace('cmyk')
    .jpeg()
    .toBuffer();
  const webp = await sharp(await gradient(24, 24))
    .webp()
    .toBuffer();
  const gif = await sharp(await gradient(24, 24))
    .gif()
    .toBuffer();
  for (const [name, img] of Object.entries({ rgba, grey, cmyk, webp, gif })) {
    const o = await apply(img, { sz: 8 });
    assert.ok(
      o.every((v) => Number.isFinite(v) && v >= 0 && v <= 1),
      `${name} gives values in [0, 1]`,
    );
  }
  const g = await apply(grey, { sz: 8 });
  assert.ok(Math.abs(at(g, 8, 0, 4, 4) - at(g, 8, 2, 4, 4)) < 1e-6, 'grey becomes equal channels');
});

test('augmentations are random but reproducible per seed; the fast.ai presets are as documented', async () => {
  const img = await gradient(60, 50, 'jpeg');
  const t: Partial<Transform> = { sz: 16, maxZoom: 1.2, augs: transformsSideOn, crop: 'random' };
  const a = await apply(img, t, rngFor(1, 0, 5));
  const b = await apply(img, t, rngFor(1, 0, 5));
  const c = await apply(img, t, rngFor(1, 1, 5));
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  assert.deepEqual(
    transformsSideOn.map((x) => x.kind),
    ['rotate', 'lighting', 'flip'],
  );
  assert.deepEqual(
    transformsTopDown.map((x) => x.kind),
    ['rotate', 'lighting', 'dihedral'],
  );
  const tf = tfmsFromModel(resnet34, 224, { augTfms: transformsSideOn, maxZoom: 1.1 });
  assert.equal(tf.trn.crop, 'random');
  assert.equal(tf.val.crop, 'center');
  assert.deepEqual(tf.val.augs, []);
  assert.throws(() => tfmsFromModel(resnet34, 224, { maxZoom: 0.5 }), /maxZoom must be at least 1/);
});
