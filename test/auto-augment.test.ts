// TrivialAugmentWide's and RandAugment's operations against torchvision 0.14's on the same
// uint8 image (scripts/make_autoaugment_fixtures.py): the pixel operations exactly, the
// geometric ones (nearest sampling on float32 grids) all but a handful of boundary pixels;
// the magnitude tables exactly; and the policies' draws.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { applyOp, autoAugment, randAugmentSpace, trivialAugmentSpace, type AutoAugmentOp, type RgbBytes } from '../src/vision/auto-augment.js';
import { loadTransformed, mobilenet_v2_nsfwjs, randomFlip, rngFor, tfmsFromModel, trivialAugmentWide } from '../src/index.js';
import { fixture, fixturesDir, photos, tensorAt } from './helpers.js';

const dir = join(fixturesDir, 'autoaugment');
const meta = JSON.parse(readFileSync(join(dir, 'cases.json'), 'utf8')) as {
  cases: [AutoAugmentOp, number][];
  trivial: [string, number[] | null, boolean][];
  randaug: [string, number[] | null, boolean][];
};

/** A CHW uint8 tensor's values as an HWC image. */
function hwc(chw: number[], h: number, w: number): RgbBytes {
  const data = new Uint8Array(h * w * 3);
  for (let c = 0; c < 3; c++) for (let p = 0; p < h * w; p++) data[p * 3 + c] = chw[c * h * w + p]!;
  return { data, width: w, height: h };
}

test("every operation gives torchvision's result on the same image", async () => {
  const fx = await fixture('autoaugment/ops.pth');
  const input = tensorAt(fx, 'input');
  const [, h, w] = input.shape as [number, number, number];
  const img = hwc(input.toArray(), h, w);
  const geometric = new Set(['ShearX', 'ShearY', 'TranslateX', 'TranslateY', 'Rotate']);
  meta.cases.forEach(([op, m], i) => {
    const want = hwc(tensorAt(fx, String(i)).toArray(), h, w).data;
    const got = applyOp(img, op, m).data;
    let differ = 0;
    let worst = 0;
    for (let k = 0; k < want.length; k++) {
      const d = Math.abs(want[k]! - got[k]!);
      if (d > 0) differ++;
      worst = Math.max(worst, d);
    }
    if (geometric.has(op)) assert.ok(differ <= 0.005 * want.length, `${op} ${m}: ${differ} of ${want.length} values differ`);
    else assert.equal(differ, 0, `${op} ${m}: ${differ} values differ (at most by ${worst})`);
  });
});

test("the magnitude tables are torchvision's", () => {
  const close = (a: number[] | null, b: number[] | null): boolean =>
    a === null ? b === null : b !== null && a.length === b.length && a.every((v, i) => Math.abs(v - b[i]!) <= 1e-6 * Math.max(1, Math.abs(v)));
  for (const [mine, theirs] of [
    [trivialAugmentSpace(31), meta.trivial],
    [randAugmentSpace(31, 48, 40), meta.randaug],
  ] as const) {
    assert.deepEqual(
      mine.map(([op, , s]) => [op, s]),
      theirs.map(([op, , s]) => [op, s]),
    );
    mine.forEach(([op, mags], i) => assert.ok(close(mags, theirs[i]![1]), `${op}: ${JSON.stringify(mags)} vs ${JSON.stringify(theirs[i]![1])}`));
  }
});

test('TrivialAugmentWide draws an operation, then a bin, then a sign; RandAugment applies n operations at its one bin', () => {
  const img: RgbBytes = { data: Uint8Array.from({ length: 16 * 12 * 3 }, (_, i) => (i * 37) % 251), width: 16, height: 12 };
  const scripted =
    (...xs: number[]): (() => number) =>
    () => {
      const x = xs.shift();
      if (x === undefined) throw new Error('drew more than scripted');
      return x;
    };
  const space = trivialAugmentSpace(31);
  // Operation 5 of 14 (Rotate), bin 20 of 31, negative.
  const got = autoAugment(img, { kind: 'trivial', bins: 31 }, scripted(5.5 / 14, 20.5 / 31, 0.2));
  assert.deepEqual(got.data, applyOp(img, 'Rotate', -space[5]![1]![20]!).data);
  // A magnitude-free operation draws no bin and no sign.
  assert.deepEqual(autoAugment(img, { kind: 'trivial', bins: 31 }, scripted(13.5 / 14)).data, applyOp(img, 'Equalize', 0).data);
  const rspace = randAugmentSpace(31, 16, 12);
  const two = autoAugment(img, { kind: 'randaug', n: 2, magnitude: 9, bins: 31 }, scripted(1.5 / 14, 0.7, 6.5 / 14, 0.1));
  assert.deepEqual(two.data, applyOp(applyOp(img, 'ShearX', rspace[1]![1]![9]!), 'Brightness', -rspace[6]![1]![9]!).data);
});

test("--aug trivial in a loader: the same crop as without it, then one of the policy's operations, then normalization", async () => {
  const file = join(photos, 'dogscats', 'valid', 'cats', 'Bengal_167.jpg');
  const plain = tfmsFromModel(mobilenet_v2_nsfwjs, 32, { augTfms: [randomFlip()] }).trn;
  const withPolicy = { ...plain, augs: [randomFlip(), trivialAugmentWide()] };
  const seen = new Set<string>();
  for (let s = 0; s < 40; s++) {
    const a = new Float32Array(3 * 32 * 32);
    const b = new Float32Array(3 * 32 * 32);
    await loadTransformed(file, plain, rngFor(s), a, 0);
    await loadTransformed(file, withPolicy, rngFor(s), b, 0);
    // The crop and flip are drawn first and alike; the policy changes the picture or leaves it (within the byte rounding).
    const diff = a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
    seen.add(diff < 0.02 ? 'same' : 'changed');
    assert.ok(b.every(Number.isFinite));
  }
  assert.deepEqual([...seen].sort(), ['changed', 'same']);
});
