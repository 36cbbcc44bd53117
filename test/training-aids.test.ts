// The training aids of timm's and torchvision's recipes, against their definitions:
// ModelEMA (an exponential moving average of the weights, validated and kept if asked)
// class weights in the loss (inverse frequency, PyTorch's weighted NLL) and random erasing.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  crossEntropyLoss,
  erasingRect,
  ImageClassifierData,
  loadTransformed,
  randomErasing,
  rngFor,
  inverseFrequencyWeights,
  Learner,
  ModelEMA,
  manualSeed,
  mobilenet_v2_nsfwjs,
  nn,
  randn,
  tensor,
  tfmsFromModel,
  tidy,
  visionLearner,
  weightedNllLoss,
  type Callback,
  type Tensor,
} from '../src/index.js';
import { photos, repoRoot } from './helpers.js';

function arrays(n: number, seed: number): [Tensor, number[]] {
  manualSeed(seed);
  return [randn([n, 1, 4, 4]), Array.from({ length: n }, (_, i) => i % 2)];
}
const net = (): nn.Sequential => new nn.Sequential(new nn.Flatten(), new nn.Linear(16, 8), new nn.BatchNorm1d(8), new nn.ReLU(), new nn.Linear(8, 2));
const flat = (m: nn.Module): Map<string, number[]> => new Map([...m.stateDict()].filter(([, t]) => t.dtype === 'float32').map(([k, t]) => [k, t.toArray()]));

test('ModelEMA keeps ema ← d·ema + (1−d)·w after every step, from the starting weights, with timm’s warm-up', async () => {
  for (const warmup of [false, true]) {
    manualSeed(0);
    const data = ImageClassifierData.fromArrays('ema', arrays(48, 1), arrays(16, 2), ['a', 'b'], { bs: 8, device: 'cpu' });
    const model = net();
    const learn = new Learner(data, model, { log: null, device: 'cpu', lossFunc: crossEntropyLoss, optFunc: 'sgd' });
    const ema = new ModelEMA({ decay: 0.9, warmup });
    const seen: Map<string, number[]>[] = [flat(model)];
    const spy: Callback = { order: 10, afterStep: (l) => void seen.push(flat(l.net)) };
    await learn.fit(0.1, 2, { cbs: [ema, spy] });
    assert.equal(ema.steps, 12);
    const expected = new Map([...seen[0]!].map(([k, v]) => [k, [...v]]));
    seen.slice(1).forEach((w, t) => {
      const d = warmup ? Math.min(0.9, (1 + t) / (10 + t)) : 0.9;
      for (const [k, v] of expected) v.forEach((e, i) => (v[i] = d * e + (1 - d) * w.get(k)![i]!));
    });
    for (const [k, v] of expected) {
      const got = ema.average!.get(k)!.toArray();
      got.forEach((g, i) => assert.ok(Math.abs(g - v[i]!) < 1e-5, `${k}[${i}] (warm-up ${warmup}): ${g} vs ${v[i]}`));
    }
    // Without `replace`, the model keeps its raw weights.
    assert.deepEqual(flat(model), seen.at(-1));
    ema.dispose();
  }
});

test('ModelEMA with validate reports the averaged weights’ validation loss and puts the raw ones back; with replace it leaves the average', async () => {
  manualSeed(0);
  const data = ImageClassifierData.fromArrays('ema-validate', arrays(48, 1), arrays(16, 2), ['a', 'b'], { bs: 8, device: 'cpu' });
  const model = net();
  const learn = new Learner(data, model, { log: null, device: 'cpu', lossFunc: crossEntropyLoss, optFunc: 'sgd' });
  const ema = new ModelEMA({ decay: 0.8, validate: true });
  let raw: Map<string, number[]> = new Map();
  const spy: Callback = { order: 10, afterStep: (l) => void (raw = flat(l.net)) };
  const [row] = await learn.fit(0.1, 1, { cbs: [ema, spy] });
  assert.deepEqual(flat(model), raw, 'the raw weights are back after validation');
  // The same validation with the average loaded by hand.
  const averaged = net();
  averaged.loadStateDict(ema.average!);
  averaged.eval();
  const [vx, vy] = arrays(16, 2);
  const valLoss = tidy(() => crossEntropyLoss(averaged.forward(vx), tensor(BigInt64Array.from(vy.map(BigInt)))).item());
  assert.ok(Math.abs(row!.valLoss! - valLoss) < 1e-5, `validated ${row!.valLoss} vs the average's ${valLoss}`);
  const replaced = new ModelEMA({ decay: 0.8, replace: true });
  await learn.fit(0.1, 1, { cbs: [replaced] });
  assert.deepEqual(flat(model), new Map([...replaced.average!].filter(([, t]) => t.dtype === 'float32').map(([k, t]) => [k, t.toArray()])));
  ema.dispose();
  replaced.dispose();
});

test('inverse-frequency class weights and the weighted NLL follow their definitions', () => {
  assert.deepEqual(inverseFrequencyWeights([0, 0, 0, 1, -1], 3), [4 / 9, 4 / 3, 0]);
  assert.throws(() => inverseFrequencyWeights([3], 3), /label 3 is outside/);
  const w = [0.5, 2, 1];
  manualSeed(4);
  tidy(() => {
    const out = randn([5, 3]).logSoftmax(1);
    const y = [0, 1, 2, 1, 0];
    const logp = out.toArray();
    const terms = y.map((c, i) => -logp[i * 3 + c]! * w[c]!);
    const mean = terms.reduce((a, b) => a + b, 0) / y.reduce((a, c) => a + w[c]!, 0);
    const yt = tensor(BigInt64Array.from(y.map(BigInt)));
    const loss = weightedNllLoss(w);
    assert.ok(Math.abs(loss(out, yt).item() - mean) < 1e-6);
    loss(out, yt, 'none')
      .toArray()
      .forEach((v, i) => assert.ok(Math.abs(v - terms[i]!) < 1e-6));
  });
  assert.throws(() => weightedNllLoss([1, Number.NaN]), /finite and non-negative/);
});

test("a vision learner weighs its loss by the training set's class frequencies with classWeights 'auto', and refuses a wrong count", async () => {
  const data = await ImageClassifierData.fromPaths(join(photos, 'dogscats'), { tfms: tfmsFromModel(mobilenet_v2_nsfwjs, 32), bs: 4, numWorkers: 1 });
  const learn = await visionLearner(data, mobilenet_v2_nsfwjs, { log: null, precompute: true, classWeights: 'auto' });
  const want = inverseFrequencyWeights(data.trnDs.labels, 2);
  tidy(() => {
    const out = randn([4, 2]).logSoftmax(1);
    const y = tensor(BigInt64Array.of(0n, 1n, 1n, 0n));
    assert.ok(Math.abs(learn.lossFunc(out, y).item() - weightedNllLoss(want)(out, y).item()) < 1e-7);
  });
  const [row] = await learn.fit(1e-3, 1);
  assert.ok(Number.isFinite(row!.valLoss!));
  await assert.rejects(visionLearner(data, mobilenet_v2_nsfwjs, { log: null, classWeights: [1, 2, 3] }), /3 given for 2 classes/);
});

test('train --class-weights that is neither auto nor numbers is an error naming the option, before any work', () => {
  const bin = join(repoRoot, 'dist', 'src', 'cli', 'bin.js');
  const bad = spawnSync(process.execPath, [bin, 'train', join(photos, 'dogscats'), '--class-weights', 'lots', '--out', '/nonexistent/x'], { encoding: 'utf8' });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--class-weights: 'lots' is neither auto nor a list/);
});

test("random erasing follows torchvision's RandomErasing: a rectangle of the normalized output set to 0, of the asked area and aspect, with probability p", async () => {
  const a = randomErasing(1, { scale: [0.02, 0.33], ratio: [0.3, 3.3] });
  const rand = rngFor(7);
  let none = 0;
  for (let i = 0; i < 2000; i++) {
    const r = erasingRect(a, 64, rand);
    if (r === null) {
      none++;
      continue;
    }
    assert.ok(r.h < 64 && r.w < 64 && r.x >= 0 && r.y >= 0 && r.x + r.w <= 64 && r.y + r.h <= 64, JSON.stringify(r));
    const share = (r.w * r.h) / 4096;
    assert.ok(share >= 0.015 && share <= 0.36, `area share ${share}`);
    assert.ok(r.h / r.w >= 0.25 && r.h / r.w <= 4, `aspect ${r.h / r.w}`);
  }
  assert.ok(none < 20, `${none} of 2000 draws found no rectangle`);
  let hits = 0;
  const half = randomErasing(0.3);
  const r2 = rngFor(8);
  for (let i = 0; i < 4000; i++) if (erasingRect(half, 64, r2) !== null) hits++;
  assert.ok(Math.abs(hits / 4000 - 0.3) < 0.03, `erased ${hits / 4000} of the time, asked 0.3`);
  assert.throws(() => randomErasing(1.5), /probability/);

  // On a photo: the same warp, then exactly one rectangle at 0, the rest untouched.
  const file = join(photos, 'dogscats', 'valid', 'cats', 'Bengal_167.jpg');
  const base = tfmsFromModel(mobilenet_v2_nsfwjs, 32, { augTfms: [] }).trn;
  const withErasing = { ...base, augs: [randomErasing(1)] };
  for (const nhwc of [false, true]) {
    const plain = new Float32Array(3 * 32 * 32);
    const erased = new Float32Array(3 * 32 * 32);
    await loadTransformed(file, base, rngFor(3, 1), plain, 0, nhwc);
    await loadTransformed(file, withErasing, rngFor(3, 1), erased, 0, nhwc);
    const changed = [...erased.keys()].filter((i) => erased[i] !== plain[i]);
    assert.ok(changed.length > 0 && changed.every((i) => erased[i] === 0), 'only zeros written');
    const pix = new Set(changed.map((i) => (nhwc ? Math.floor(i / 3) : i % 1024)));
    const xs = [...pix].map((p) => p % 32);
    const ys = [...pix].map((p) => Math.floor(p / 32));
    const w = Math.max(...xs) - Math.min(...xs) + 1;
    const h = Math.max(...ys) - Math.min(...ys) + 1;
    assert.ok(pix.size <= w * h && pix.size >= w * h * 0.9, `a rectangle (${pix.size} pixels in a ${w}×${h} box)`);
  }
});
