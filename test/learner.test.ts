// ConvLearner on the offline MobileNetV2 and the fixture's photos at a small size:
// layer groups and freezing, the precompute cache, lrFind restoring the weights,
// save/load, TTA's shape and averaging, fit's epoch table and SGDR snapshots.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import {
  CancelFitError,
  channelsLastConvIsSound,
  getNumThreads,
  libtorchVersion,
  CancelTrainError,
  closeLoaderWorkers,
  ConvLearner,
  ImageClassifierData,
  manualSeed,
  mobilenet_v2_nsfwjs,
  nn,
  oneCycleSchedule,
  tfmsFromModel,
  transformsSideOn,
  type Callback,
  type Tensor,
} from '../src/index.js';
import { photos } from './helpers.js';

let home = '';
let data: ImageClassifierData;
const quiet = { log: null };

before(async () => {
  home = await mkdtemp(join(tmpdir(), 'fastvision-learn-'));
  process.env.FASTVISION_HOME = home;
  const tfms = tfmsFromModel(mobilenet_v2_nsfwjs, 64, { augTfms: transformsSideOn, maxZoom: 1.1 });
  data = await ImageClassifierData.fromPaths(join(photos, 'dogscats'), { tfms, bs: 4 });
});
after(async () => {
  await closeLoaderWorkers();
  await rm(home, { recursive: true, force: true });
});

const snapshot = (m: nn.Module): Map<string, number[]> => new Map([...m.stateDict()].map(([k, t]) => [k, t.toArray()]));

test("fast.ai's head, three layer groups, the body frozen; unfreeze and freezeTo", async () => {
  const learn = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, quiet);
  const head = learn.head as nn.Sequential;
  assert.deepEqual(
    head.children().map((m) => m.constructor.name),
    ['BatchNorm1d', 'Dropout', 'Linear', 'ReLU', 'BatchNorm1d', 'Dropout', 'Linear', 'LogSoftmax'],
  );
  assert.equal((head.at(2) as nn.Linear).inFeatures, 2 * 1280, 'concat pooling doubles the features');
  assert.equal((head.at(6) as nn.Linear).outFeatures, 2);
  assert.equal(learn.layerGroups.length, 3);
  const trainable = (g: number): boolean[] => learn.layerGroups[g]!.flatMap((m) => m.parameters().map((p) => p.requiresGrad));
  assert.ok(trainable(0).every((r) => !r) && trainable(1).every((r) => !r) && trainable(2).every((r) => r));
  learn.freezeTo(1);
  assert.ok(trainable(0).every((r) => !r) && trainable(1).every((r) => r));
  learn.precompute = true;
  learn.unfreeze();
  assert.ok(trainable(0).every((r) => r));
  assert.equal(learn.precompute, false, 'unfreeze turns precompute off');
});

test('precomputed activations are cached, reused, and recomputed for another file list', async () => {
  const learn = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, { ...quiet, precompute: true });
  const hist = await learn.fit(1e-2, 1);
  assert.equal(hist.length, 1);
  const cacheFiles = async (): Promise<string[]> => (await readdir(join(learn.modelsDir, '..', 'tmp'))).sort();
  const files = await cacheFiles();
  assert.equal(files.length, 2, 'train and valid activations');
  const before = (await readdir(join(learn.modelsDir, '..', 'tmp'), { withFileTypes: true })).length;
  const again = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, { ...quiet, precompute: true });
  await again.precomputeActivations();
  assert.equal((await cacheFiles()).length, before, 'a second learner reuses the cache');
  const other = await ImageClassifierData.fromPaths(join(photos, 'dogscats'), { tfms: data.tfms!, bs: 4, valName: null });
  const third = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, other, { ...quiet, precompute: true });
  await third.precomputeActivations();
  assert.equal((await cacheFiles()).length, 2, 'same training files: same cache entry');
  const ds = other.trnDs as { files: string[] };
  ds.files.pop();
  (other.trnDs as { labels: number[] }).labels.pop();
  const fourth = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, other, { ...quiet, precompute: true });
  await fourth.precomputeActivations();
  assert.equal((await cacheFiles()).length, 3, 'a changed file list is computed anew, not served stale');
});

test('lrFind records rising rates and restores the weights', async () => {
  const learn = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, { ...quiet, precompute: true });
  const before = snapshot(learn.model);
  const r = await learn.lrFind({ startLr: 1e-4, endLr: 1 });
  assert.ok(r.lrs.length >= 2);
  assert.ok(r.lrs.every((lr, i) => i === 0 || lr > r.lrs[i - 1]!));
  assert.equal(r.lrs[0], 1e-4);
  assert.deepEqual(snapshot(learn.model), before, 'weights restored');
  assert.ok(r.suggestion().lr > 0);
  const file = join(home, 'lr.png');
  const png = await r.plotPng({ file, mark: r.suggestion().lr });
  assert.deepEqual(readFileSync(file), png);
  assert.equal((await sharp(png).metadata()).format, 'png');
  assert.equal((await sharp(await r.plotLrPng()).metadata()).format, 'png');
  // More iterations than one pass over the data: the finder goes round again.
  const perEpoch = data.trnDl.length;
  const long = await learn.lrFind({ startLr: 1e-5, endLr: 1e-3, numIt: perEpoch * 2 + 3 });
  assert.equal(long.lrs.length, perEpoch * 2 + 3);
  const n = long.lrs.length;
  assert.ok(Math.abs(long.lrs[n - 1]! / (1e-5 * 100 ** ((n - 1) / n)) - 1) < 1e-9, `the rate grows over all numIt iterations: ${long.lrs.at(-1)}`);
  assert.deepEqual(snapshot(learn.model), before, 'weights restored');
  await assert.rejects(learn.lrFind({ numIt: 1 }), /numIt must be an integer of at least 2/);
});

test('fit with SGDR saves a snapshot per cycle; save/load round-trips the weights', async () => {
  const learn = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, { ...quiet, precompute: true });
  const hist = await learn.fit(1e-2, 2, { cycleLen: 1, cycleSaveName: 'snap' });
  assert.equal(hist.length, 2);
  assert.ok(hist.every((h) => Number.isFinite(h.trnLoss) && h.accuracy !== null && h.accuracy >= 0 && h.accuracy <= 1));
  assert.ok(existsSync(join(learn.modelsDir, 'snap_cyc_0.pth')) && existsSync(join(learn.modelsDir, 'snap_cyc_1.pth')));
  const saved = snapshot(learn.model);
  await learn.save('mine');
  await learn.fit(1e-2, 1);
  assert.notDeepEqual(snapshot(learn.model), saved);
  await learn.load('mine');
  assert.deepEqual(snapshot(learn.model), saved);
  await assert.rejects(learn.load('nothing-here'), /no saved model 'nothing-here'/);
});

test('TTA averages probabilities over the original and augmented images', async () => {
  const learn = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, quiet);
  const { probs, y } = await learn.TTA({ nAug: 2 });
  assert.deepEqual(probs.shape, [6, 2]);
  assert.deepEqual(y.shape, [6]);
  const sums = probs.sum(1).toArray();
  assert.ok(
    sums.every((s) => Math.abs(s - 1) < 1e-5),
    'each row is a distribution',
  );
  const plain = (await learn.predict()).exp();
  assert.ok(!probs.allclose(plain), 'augmentation changes the average');
  const zero = await learn.TTA({ nAug: 0 });
  assert.ok(zero.probs.allclose(plain, 1e-5, 1e-6), 'with no augmentation TTA is plain prediction');
});

test('metrics and callbacks: custom metrics are reported, a callback can stop training, bestSaveName keeps the best', async () => {
  const learn = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, { ...quiet, precompute: true });
  const seen: number[] = [];
  const errorRate = { name: 'error_rate', direction: 'min' as const, fn: (lp: Tensor, y: Tensor) => 1 - lp.argmax(1).eq(y).float().mean().item() };
  const hist = await learn.fit(1e-2, 2, {
    metrics: [errorRate],
    bestSaveName: 'best',
    callbacks: [{ afterEpoch: (l) => void seen.push(l.record!.epoch) }],
  });
  assert.deepEqual(seen, [0, 1]);
  assert.ok(hist.every((h) => h.metrics.error_rate! >= 0 && h.metrics.error_rate! <= 1 && h.accuracy === null));
  assert.ok(existsSync(join(learn.modelsDir, 'best.pth')));
  let batches = 0;
  // Ending an epoch's training early still validates it; cancelling the fit then stops.
  const stopAfterTwo = {
    afterBatch: () => {
      if (++batches >= 2) throw new CancelTrainError();
    },
    afterEpoch: () => {
      throw new CancelFitError();
    },
  };
  const stopped = await learn.fit(1e-2, 3, { callbacks: [stopAfterTwo] });
  assert.equal(stopped.length, 1, 'stopped in the first epoch');
  assert.equal(batches, 2);
});

test('an ensemble of cycle snapshots averages their probabilities and leaves the weights as they were', async () => {
  const learn = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, { ...quiet, precompute: true });
  await learn.fit(1e-2, 2, { cycleLen: 1, cycleSaveName: 'ens' });
  const now = snapshot(learn.model);
  const { probs, y } = await learn.predictEnsemble(['ens_cyc_0', 'ens_cyc_1']);
  assert.deepEqual(probs.shape, [6, 2]);
  assert.equal(y.shape[0], 6);
  await learn.load('ens_cyc_0');
  const p0 = (await learn.predict()).exp();
  await learn.load('ens_cyc_1');
  const p1 = (await learn.predict()).exp();
  assert.ok(probs.allclose(p0.add(p1).div(2), 1e-5, 1e-6));
  await learn.load('ens_cyc_1');
  assert.deepEqual(snapshot(learn.model), now);
});

test('oversampling draws every class as often as the largest one', async () => {
  const over = await ImageClassifierData.fromPaths(join(photos, 'dogscats'), { tfms: data.tfms!, bs: 4, oversample: true });
  const idx = over.trnDl.batchIndices(0).flat();
  const labels = (over.trnDs as { labels: number[] }).labels;
  const counts = [0, 0];
  for (const i of idx) counts[labels[i]!]!++;
  assert.deepEqual(counts, [10, 10], '6 cats are drawn 10 times, like the 10 dogs');
  for (let epoch = 0; epoch < 5; epoch++) {
    const drawn = new Map<number, number>();
    for (const i of over.trnDl.batchIndices(epoch).flat()) drawn.set(i, (drawn.get(i) ?? 0) + 1);
    const cats = labels.map((l, i) => (l === 0 ? i : -1)).filter((i) => i >= 0);
    const times = cats.map((i) => drawn.get(i) ?? 0);
    assert.ok(
      times.every((t) => t === 1 || t === 2),
      `epoch ${epoch}: every cat is drawn once or twice (${times.join(', ')})`,
    );
  }
  assert.equal(over.trnDl.length, Math.ceil(20 / 4));
  assert.notDeepEqual(idx, over.trnDl.batchIndices(1).flat());
});

test('frozen batch norm keeps its statistics; setData re-freezes for progressive resizing; xtraCut', async () => {
  const learn = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, quiet);
  const bn = learn.body.getModule('bn_Conv1') as nn.BatchNorm2d;
  const stats = bn.runningMean!.toArray();
  await learn.fit(1e-2, 1);
  assert.deepEqual(bn.runningMean!.toArray(), stats, 'frozen body: running statistics untouched');
  learn.unfreeze();
  await learn.fit(1e-3, 1);
  assert.notDeepEqual(bn.runningMean!.toArray(), stats, 'unfrozen: they update');
  const bigger = data.withTfms(tfmsFromModel(mobilenet_v2_nsfwjs, 96, { augTfms: transformsSideOn }));
  learn.setData(bigger);
  assert.equal(learn.data.sz, 96);
  assert.ok(
    learn.layerGroups[0]!.flatMap((m) => m.parameters()).every((p) => !p.requiresGrad),
    'setData re-freezes',
  );
  await learn.saveCycle('prog', 0);
  await learn.loadCycle('prog', 0);
  const { resnet18 } = await import('../src/index.js');
  const cut = await ConvLearner.pretrained(resnet18, data, { ...quiet, pretrained: false, xtraCut: 1 });
  assert.equal(((cut.head as nn.Sequential).at(2) as nn.Linear).inFeatures, 2 * 256, 'without layer4 the body gives 256 channels');
});

test("fitOneCycle sets each batch's rates and momentum by the one-cycle schedule; fineTune trains the head, then everything at spread rates", async () => {
  const learn = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, { ...quiet, precompute: true, optFunc: 'adamw' });
  const seen: { lrs: number[]; mom: number; beta1: number }[] = [];
  const spy: Callback = { order: 0, beforeStep: (l) => void seen.push({ lrs: l.opt.paramGroups.map((g) => g.lr), mom: l.opt.paramGroups[0]!.momentum, beta1: l.opt.paramGroups[0]!.betas[0] }) };
  await learn.fitOneCycle([1e-4, 1e-3, 1e-2], 2, { callbacks: [spy] });
  const total = seen.length;
  assert.equal(total, 2 * Math.floor(data.trnDs.length / 4));
  const s = oneCycleSchedule(total);
  seen.forEach((b, i) => {
    [1e-4, 1e-3, 1e-2].forEach((m, g) => assert.ok(Math.abs(b.lrs[g]! - m * s.lr(i)) < 1e-15 + 1e-12 * m, `batch ${i} group ${g}`));
    assert.ok(Math.abs(b.beta1 - s.mom(i)) < 1e-12, "AdamW's beta1 follows the momentum schedule");
  });
  assert.ok(Math.abs(seen[0]!.lrs[2]! - 1e-2 / 25) < 1e-12 && Math.abs(seen.at(-1)!.lrs[2]! - 1e-2 / 1e5) < 1e-12);

  const stages: { frozen: boolean; lrs: number[] }[] = [];
  const spy2: Callback = {
    beforeFit: () => void stages.push({ frozen: !learn.layerGroups[0]!.flatMap((m) => m.parameters()).some((p) => p.requiresGrad), lrs: [] }),
    beforeStep: (l) => void stages.at(-1)!.lrs.push(...(stages.at(-1)!.lrs.length === 0 ? l.opt.paramGroups.map((g) => g.lr) : [])),
  };
  const hist = await learn.fineTune(1, 2e-3, { freezeEpochs: 1, callbacks: [spy2] });
  assert.equal(hist.length, 2);
  assert.equal(stages.length, 2);
  assert.equal(stages[0]!.frozen, true);
  assert.equal(stages[1]!.frozen, false);
  // The unfrozen stage: slice(1e-3/100, 1e-3) over three groups, starting at a fifth (div 5).
  const want = [1e-5, 1e-4, 1e-3].map((m) => m * oneCycleSchedule(Math.floor(data.trnDs.length / 4), { pctStart: 0.3, divFactor: 5 }).lr(0));
  stages[1]!.lrs.forEach((lr, g) => assert.ok(Math.abs(lr - want[g]!) < 1e-12 * want[g]! + 1e-18, `group ${g}: ${lr} vs ${want[g]}`));
});

test('save and load take a path as well as a name', async () => {
  const learn = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, { ...quiet, precompute: true });
  const file = join(home, 'elsewhere', 'deeper', 'my-model.pth');
  assert.equal(await learn.save(file), file);
  assert.equal(learn.modelFile('plain'), join(learn.modelsDir, 'plain.pth'));
  const saved = snapshot(learn.model);
  await learn.fit(1e-2, 1);
  assert.notDeepEqual(snapshot(learn.model), saved, 'training changed the weights');
  await learn.load(file);
  assert.deepEqual(snapshot(learn.model), saved);
});

test('channels-last (the default) and NCHW learners predict alike, and train alike up to rounding', async (t) => {
  const tfms = tfmsFromModel(mobilenet_v2_nsfwjs, 64, { augTfms: transformsSideOn, maxZoom: 1.1 });
  const probsOf = async (learn: ConvLearner): Promise<number[]> => {
    const out = await learn.predict();
    const p = out.exp().toArray();
    out.dispose();
    return p;
  };
  const run = async (memoryFormat?: 'contiguous'): Promise<{ learn: ConvLearner; init: Map<string, number[]>; before: number[]; after: number[]; weights: Map<string, number[]> }> => {
    // The same seed for the head's initialization, and each its own data, so that both see
    // the same shuffling and augmentation.
    manualSeed(1);
    const own = await ImageClassifierData.fromPaths(join(photos, 'dogscats'), { tfms, bs: 4 });
    const learn = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, own, { ...quiet, ...(memoryFormat ? { memoryFormat } : {}) });
    const init = snapshot(learn.model);
    const before = await probsOf(learn);
    learn.unfreeze();
    manualSeed(3);
    await learn.fit(1e-3, 1);
    return { learn, init, before, after: await probsOf(learn), weights: snapshot(learn.model) };
  };
  if (!channelsLastConvIsSound()) {
    // This libtorch gets channels-last convolutions wrong here: the default must not use them.
    const dflt = await run();
    assert.equal(dflt.learn.memoryFormat, 'contiguous', 'channels-last is not the default where it computes wrongly');
    t.diagnostic(`this libtorch (${libtorchVersion()}, ${getNumThreads()} threads) computes channels-last 1×1 convolutions wrongly: the learner uses NCHW`);
    return;
  }
  const nhwc = await run();
  const nchw = await run('contiguous');
  assert.equal(nhwc.learn.memoryFormat, 'channelsLast');
  assert.equal(nchw.learn.memoryFormat, 'contiguous');
  const conv = [...nhwc.learn.model.stateDict()].find(([, t]) => t.ndim === 4 && t.shape[2]! > 1)!;
  assert.ok(conv[1].isContiguous('channelsLast') && !conv[1].isContiguous(), `${conv[0]} is laid out channels-last`);
  assert.ok(
    [...nchw.learn.model.stateDict().values()].every((t) => t.isContiguous()),
    'every NCHW tensor is contiguous',
  );
  const worst = (a: number[], b: number[]): number => a.reduce((w, v, i) => Math.max(w, Math.abs(v - b[i]!)), 0);
  // The same weights: the same probabilities, to rounding.
  assert.ok(worst(nhwc.before, nchw.before) <= 1e-5, `before training the probabilities differ by ${worst(nhwc.before, nchw.before)}`);
  // Training amplifies the layouts' different summation orders (batch norm over 4 images),
  // so compare the updates as a whole: both layouts moved the weights the same way, their
  // difference a small part of the update. A layout mix-up would give unrelated updates.
  let diff = 0;
  let update = 0;
  for (const [k, a] of nhwc.weights) {
    const b = nchw.weights.get(k)!;
    const init = nhwc.init.get(k)!;
    a.forEach((v, i) => {
      diff += (v - b[i]!) ** 2;
      update += (b[i]! - init[i]!) ** 2;
    });
  }
  assert.ok(update > 0, 'training changed the weights');
  assert.ok(Math.sqrt(diff / update) <= 0.1, `the two layouts' weights differ by ${Math.sqrt(diff / update).toFixed(3)} of the update`);
  const mean = (a: number[], b: number[]): number => a.reduce((m, v, i) => m + Math.abs(v - b[i]!), 0) / a.length;
  t.diagnostic(
    `weights differ by ${Math.sqrt(diff / update).toFixed(3)} of the update; probabilities by ${mean(nhwc.after, nchw.after).toFixed(4)} on average (training moved them by ${mean(nhwc.after, nhwc.before).toFixed(4)})`,
  );
  assert.ok(mean(nhwc.after, nchw.after) <= 0.25 * mean(nhwc.after, nhwc.before), 'after training the two predict alike, relative to how far training moved the predictions');
});
