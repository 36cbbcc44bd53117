// Grad-CAM on images whose answer is known: a small convnet learns to tell a
// plus from a ring placed in one random quadrant of a noisy picture; its
// heatmap for the true class must light up that quadrant.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { gradCam, ImageClassifierData, Loop, manualSeed, nn, noGrad, optim, randn, tensor, type Tensor } from '../src/index.js';
import { buildClassifier } from '../src/learn/head.js';
import { KerasModel } from '../src/vision/keras/convert.js';
import { overlayHeatmap, quadrantMeans } from '../src/report/heatmap.js';

const S = 32;

/** A seeded generator (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * n pictures: noise everywhere and one shape — a plus, a ring, a cross or a
 * dot (classes 0–3) — at a random spot of a random quadrant. With four shapes
 * each class needs evidence of its own (with two, one class could be learnt as
 * "not the other", and its map would be empty).
 */
function pictures(n: number, seed: number): { x: Tensor; y: number[]; quadrant: number[] } {
  const r = rng(seed);
  const data = new Float32Array(n * 3 * S * S);
  const y: number[] = [];
  const quadrant: number[] = [];
  for (let i = 0; i < n; i++) {
    const cls = i % 4;
    const q = Math.floor(r() * 4);
    y.push(cls);
    quadrant.push(q);
    for (let k = 0; k < 3 * S * S; k++) data[i * 3 * S * S + k] = (r() - 0.5) * 0.6;
    const cx = (q % 2) * 16 + 4 + Math.floor(r() * 8);
    const cy = Math.floor(q / 2) * 16 + 4 + Math.floor(r() * 8);
    for (let dy = -2; dy <= 2; dy++) {
      for (let dx = -2; dx <= 2; dx++) {
        const ring = Math.max(Math.abs(dx), Math.abs(dy)) === 2;
        const on = [dx === 0 || dy === 0, ring, Math.abs(dx) === Math.abs(dy), Math.abs(dx) <= 1 && Math.abs(dy) <= 1][cls]!;
        if (!on) continue;
        for (let c = 0; c < 3; c++) data[((i * 3 + c) * S + cy + dy) * S + cx + dx] = 2;
      }
    }
  }
  return { x: tensor(data, { shape: [n, 3, S, S] }), y, quadrant };
}

test('Grad-CAM lights up the quadrant that holds the shape deciding the class', async () => {
  manualSeed(0);
  const body = new nn.Sequential(
    new nn.Conv2d(3, 16, 3, { padding: 1 }),
    new nn.ReLU(),
    new nn.MaxPool2d(2),
    new nn.Conv2d(16, 32, 3, { padding: 1 }),
    new nn.ReLU(),
    new nn.MaxPool2d(2),
    new nn.Conv2d(32, 32, 3, { padding: 1 }),
    new nn.ReLU(),
  );
  const pool = new nn.Sequential(new nn.AdaptiveConcatPool2d(), new nn.Flatten());
  const head = new nn.Sequential(new nn.Linear(64, 4), new nn.LogSoftmax(1));
  const model = new nn.Sequential(body, pool, head);
  const home = await mkdtemp(join(tmpdir(), 'fastvision-gradcam-'));
  try {
    const trn = pictures(320, 1);
    const val = pictures(40, 2);
    const data = ImageClassifierData.fromArrays(home, [trn.x, trn.y], [val.x, val.y], ['plus', 'ring', 'cross', 'dot'], { bs: 32 });
    const acc = { name: 'accuracy', fn: (lp: Tensor, t: Tensor) => lp.argmax(1).eq(t).float().mean().item() };
    const hist = await new Loop({ net: model, opt: new optim.Adam(model.parameters(), { lr: 3e-3 }), trn: data.trnDl, val: data.valDl, nEpochs: 8, metrics: [acc] }).run();
    const accuracy = hist.at(-1)!.metrics.accuracy!;
    assert.ok(accuracy >= 0.95, `the convnet learned the task (validation accuracy ${accuracy})`);

    const test = pictures(24, 3);
    const before = [...model.stateDict().values()].map((t) => t.toArray());
    const cams = gradCam({ body, pool, head }, test.x, test.y);
    assert.equal(cams.maps.length, 24);
    assert.deepEqual([cams.h, cams.w], [8, 8]);
    let hits = 0;
    cams.maps.forEach((m, i) => {
      assert.ok(m.every((v) => v >= 0 && v <= 1) && Math.max(...m) === 1, `normalized to [0, 1]: max ${Math.max(...m)} min ${Math.min(...m)} (${hist.at(-1)!.metrics.accuracy})`);
      const means = quadrantMeans({ data: m, w: 8, h: 8 });
      if (means.indexOf(Math.max(...means)) === test.quadrant[i]) hits++;
    });
    assert.ok(hits >= 22, `the hottest quadrant is the object's in ${hits} of 24 pictures`);
    assert.deepEqual(
      [...model.stateDict().values()].map((t) => t.toArray()),
      before,
      'weights untouched',
    );
    assert.ok(
      model.parameters().every((p) => p.grad === null && p.requiresGrad),
      'no gradient left on the weights, and they still train',
    );

    // The overlay keeps the picture's size and is hottest (reddest) where the map is.
    const pixels = { data: new Uint8Array(S * S * 3).fill(128), width: S, height: S };
    const over = overlayHeatmap(pixels, { data: cams.maps[0]!, w: 8, h: 8 });
    assert.equal(over.data.length, S * S * 3);
    const q = test.quadrant[0]!;
    const red = (x0: number, y0: number): number => {
      let s = 0;
      for (let yy = y0; yy < y0 + 16; yy++) for (let xx = x0; xx < x0 + 16; xx++) s += over.data[(yy * S + xx) * 3]! - over.data[(yy * S + xx) * 3 + 2]!;
      return s;
    };
    const reds = [red(0, 0), red(16, 0), red(0, 16), red(16, 16)];
    assert.equal(reds.indexOf(Math.max(...reds)), q);
  } finally {
    await rm(home, { recursive: true, force: true });
  }
});

test('Grad-CAM looks at the deepest earlier layer of at least 7×7 when the body ends coarser, and says when none is', () => {
  manualSeed(3);
  const body = nn.Sequential.named([
    ['conv1', new nn.Conv2d(3, 8, 3, { padding: 1 })],
    ['relu1', new nn.ReLU()],
    ['pool1', new nn.MaxPool2d(2)],
    ['conv2', new nn.Conv2d(8, 8, 3, { padding: 1 })],
    ['relu2', new nn.ReLU()],
    ['pool2', new nn.MaxPool2d(2)],
    ['pool3', new nn.MaxPool2d(2)],
  ]);
  const pool = new nn.Sequential(new nn.AdaptiveConcatPool2d(), new nn.Flatten());
  const head = new nn.Sequential(new nn.Linear(16, 3), new nn.LogSoftmax(1));
  const x = randn([2, 3, 32, 32]);
  // 32 px: the body ends at 4×4; pool2's maps (8×8) are the deepest of at least 7×7.
  const cams = gradCam({ body, pool, head }, x, [0, 2]);
  assert.deepEqual([cams.layer, cams.h, cams.w, cams.coarse], ['pool2', 8, 8, false]);
  for (const m of cams.maps) {
    assert.equal(Math.min(...m), 0, 'each map is stretched to its own range');
    assert.equal(Math.max(...m), 1);
  }
  // The same maps by hand: the body cut after pool2, the rest run with the pooling.
  const prefix = nn.Sequential.named([...body.namedChildren()].slice(0, 6));
  const rest = new nn.Sequential(body.getModule('pool3')!, pool);
  const byHand = gradCam({ body: prefix, pool: rest, head }, x, [0, 2]);
  assert.equal(byHand.layer, 'body');
  byHand.maps.forEach((m, i) => m.forEach((v, k) => assert.ok(Math.abs(v - cams.maps[i]![k]!) < 1e-5)));
  // 6 px: no layer reaches 7×7; the body's own maps come back, marked too coarse.
  const shallow = nn.Sequential.named([...body.namedChildren()].slice(0, 3));
  const tiny = gradCam({ body: shallow, pool, head: new nn.Sequential(new nn.Linear(16, 3), new nn.LogSoftmax(1)) }, randn([1, 3, 6, 6]), [1]);
  assert.deepEqual([tiny.layer, tiny.h, tiny.coarse], ['body', 3, true]);
  // Large enough: the body's output, as before.
  const big = gradCam({ body, pool, head }, randn([1, 3, 64, 64]), [1]);
  assert.deepEqual([big.layer, big.h, big.coarse], ['body', 8, false]);
});

test('a Keras body cut at any of its cut points gives the same output as a whole; Grad-CAM of MobileNetV2 at 32 px uses an earlier layer', async () => {
  const { model } = await buildClassifier('mobilenet_v2_nsfwjs', 2, { pretrained: true });
  const body = model.getModule('body') as KerasModel;
  const x = randn([1, 3, 64, 64]);
  const whole = noGrad(() => body.eval().forward(x));
  const points = body.cutPoints();
  assert.ok(points.length >= 10, `${points.length} cut points`);
  for (const name of [points[2]!, points[Math.floor(points.length / 2)]!, points.at(-1)!]) {
    const y = noGrad(() => body.suffixFrom(name).forward(body.cut(name).forward(x)));
    assert.ok(y.sub(whole).abs().max().item() < 1e-5, name);
  }
  assert.throws(() => body.suffixFrom('block_2_project_BN'), /cannot be cut after/);
  const cams = gradCam({ body, pool: model.getModule('pool')!, head: model.getModule('head')! }, randn([1, 3, 32, 32]), [1]);
  // The deepest 8×8 map, block_3_expand_relu, not block_3_pad after it (9×9: a border of padding that the photo does not have).
  assert.deepEqual([cams.layer, cams.h, cams.w, cams.coarse], ['block_3_expand_relu', 8, 8, false]);
});
