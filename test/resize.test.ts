// The validation transform is one that other people's code reproduces: Pillow's
// antialiased bilinear resize of the shorter side, then the center crop, as
// torchvision's Resize + CenterCrop compute it on a PIL image (bit for bit) and on a
// uint8 tensor with antialias=True (within a pixel value). Fixtures by
// scripts/make_resize_fixtures.py.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import sharp from 'sharp';
import { loadTransformed, rngFor } from '../src/vision/augment.js';
import { resizeAntialiased, roundHalfEven, shorterSideSize, validationInput, type Pixels } from '../src/vision/warp.js';
import { fixturesDir, photos } from './helpers.js';

const dir = join(fixturesDir, 'resize');
interface Entry {
  photo: string;
  decoded: string;
  sizes: Record<string, { pil: string; torchvision: string }>;
}
const index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8')) as { photos: Entry[] };
const stats = { mean: [0.485, 0.456, 0.406] as [number, number, number], std: [0.229, 0.224, 0.225] as [number, number, number] };

async function png(name: string): Promise<Pixels> {
  const r = await sharp(join(dir, name)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(r.data), width: r.info.width, height: r.info.height, channels: 3 };
}

/** Normalized values back to bytes (exact: each byte maps to one float). */
function bytesOf(values: Float32Array, sz: number): Uint8Array {
  const out = new Uint8Array(sz * sz * 3);
  const plane = sz * sz;
  for (let c = 0; c < 3; c++) for (let i = 0; i < plane; i++) out[i * 3 + c] = Math.round((values[c * plane + i]! * stats.std[c]! + stats.mean[c]!) * 255);
  return out;
}

function maxDiff(a: Uint8Array, b: Uint8Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

test('the size rules are torchvision’s: shorter side to S, the longer truncated; crop offsets rounded half to even', () => {
  assert.deepEqual(shorterSideSize(160, 121, 100), { width: 132, height: 100 });
  assert.deepEqual(shorterSideSize(121, 160, 100), { width: 100, height: 132 });
  assert.deepEqual(shorterSideSize(100, 100, 64), { width: 64, height: 64 });
  assert.deepEqual([0.5, 1.5, 2.5, -0.5, 3].map(roundHalfEven), [0, 2, 2, -0, 3]);
});

test('validation pixels equal Pillow’s (via torchvision transforms on a PIL image) bit for bit, and torchvision’s uint8 tensor resize within a pixel value', async () => {
  let worstTv = 0;
  for (const e of index.photos) {
    const decoded = await png(e.decoded);
    for (const [s, refs] of Object.entries(e.sizes)) {
      const sz = Number(s);
      const mine = bytesOf(validationInput(decoded, sz, stats), sz);
      const pil = await png(refs.pil);
      assert.equal(maxDiff(mine, pil.data as Uint8Array), 0, `${e.photo} at ${sz}: differs from Pillow`);
      const tv = await png(refs.torchvision);
      const d = maxDiff(mine, tv.data as Uint8Array);
      worstTv = Math.max(worstTv, d);
      assert.ok(d <= 1, `${e.photo} at ${sz}: ${d} values from torchvision's tensor resize`);
    }
  }
  console.log(`largest difference to torchvision's uint8 tensor resize: ${worstTv}`);
});

test('from the JPEG file: fastvision’s decoder and transform give what Pillow and torchvision give from the same file, within a pixel value', async () => {
  let worst = 0;
  for (const e of index.photos) {
    for (const [s, refs] of Object.entries(e.sizes)) {
      const sz = Number(s);
      const out = new Float32Array(sz * sz * 3);
      await loadTransformed(join(photos, 'dogscats', e.photo), { sz, maxZoom: 1, augs: [], crop: 'center', stats, exact: true }, rngFor(0), out, 0);
      const d = maxDiff(bytesOf(out, sz), (await png(refs.pil)).data as Uint8Array);
      worst = Math.max(worst, d);
    }
  }
  console.log(`largest difference, file to input, against Pillow: ${worst}`);
  assert.ok(worst <= 1, `${worst}`);
});

test('the resize itself: identity at the same size, a flat image stays flat, and an upscale keeps the corners', () => {
  const flat: Pixels = { data: new Uint8Array(37 * 23 * 3).fill(200), width: 37, height: 23 };
  for (const [w, h] of [
    [10, 7],
    [80, 50],
    [37, 23],
    [5, 60],
  ] as const) {
    const r = resizeAntialiased(flat, w, h);
    assert.ok(
      r.data.every((v) => v === 200),
      `${w}×${h}`,
    );
  }
  const ramp: Pixels = { data: Uint8Array.from({ length: 4 * 3 * 3 }, (_, i) => (Math.floor(i / 3) % 4) * 60), width: 4, height: 3 };
  assert.deepEqual(resizeAntialiased(ramp, 4, 3).data, ramp.data);
});
