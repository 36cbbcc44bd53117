// The training loop and its callbacks: event order and cancellation, the
// trackers (SaveModelCallback, EarlyStoppingCallback, bestSaveName with an error
// rate), gradient accumulation, the CSV log, MixUp and CutMix, the one-cycle
// schedule against PyTorch's OneCycleLR, label smoothing against PyTorch, and the
// learning-rate finder's suggestion rules against their definitions.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  CancelBatchError,
  CancelFitError,
  CSVLogger,
  CutMix,
  EarlyStoppingCallback,
  GradientAccumulation,
  ImageClassifierData,
  labelSmoothingCrossEntropy,
  LrFinderResult,
  Loop,
  manualSeed,
  minimum,
  MixUp,
  nn,
  noGrad,
  oneCycleSchedule,
  optim,
  randn,
  SaveModelCallback,
  slide,
  steep,
  tensor,
  tidy,
  valley,
  type Callback,
  type Metric,
  type Tensor,
} from '../src/index.js';
import { fixturesDir } from './helpers.js';

let home: string;
before(async () => {
  home = await mkdtemp(join(tmpdir(), 'fastvision-loop-'));
});
after(async () => {
  await rm(home, { recursive: true, force: true });
});

/** Two separable classes of 8-feature points: class = sign of the first feature. */
function arrays(n: number, seed: number): { x: Tensor; y: number[] } {
  manualSeed(seed);
  const x = randn([n, 8]);
  const first = x.toArray().filter((_, i) => i % 8 === 0);
  return { x, y: first.map((v) => (v > 0 ? 1 : 0)) };
}

function arrayData(bs: number, { nTrn = 32, nVal = 16 } = {}): ImageClassifierData {
  const t = arrays(nTrn, 1);
  const v = arrays(nVal, 2);
  return ImageClassifierData.fromArrays(home, [t.x, t.y], [v.x, v.y], ['a', 'b'], { bs, seed: 3 });
}

function linearNet(seed = 7): nn.Sequential {
  manualSeed(seed);
  return new nn.Sequential(new nn.Linear(8, 2), new nn.LogSoftmax(1));
}

function weightsOf(m: nn.Module): number[][] {
  return [...m.stateDict().values()].map((t) => t.toArray());
}

function loopOn(
  data: ImageClassifierData,
  net: nn.Module,
  nEpochs: number,
  callbacks: Callback[],
  extra: { metrics?: Metric[]; opt?: optim.Optimizer; saveModel?: (n: string) => Promise<string> } = {},
): Loop {
  return new Loop({ net, opt: extra.opt ?? new optim.SGD(net.parameters(), { lr: 0.1 }), trn: data.trnDl, val: data.valDl, nEpochs, metrics: extra.metrics, callbacks, saveModel: extra.saveModel });
}

/** A metric that reports the given values epoch after epoch (what a tracker sees is then known). */
function scripted(name: string, values: number[], direction: 'min' | 'max'): Metric {
  let k = 0;
  return { name, direction, fn: () => values[k++]! };
}

test('the loop calls the events in order, and cancelling a batch skips its step', async () => {
  const data = arrayData(8);
  const events: string[] = [];
  const names = [
    'beforeFit',
    'beforeEpoch',
    'beforeTrain',
    'beforeBatch',
    'afterPred',
    'afterLoss',
    'beforeStep',
    'afterStep',
    'afterBatch',
    'afterTrain',
    'beforeValidate',
    'afterValidate',
    'afterEpoch',
    'afterFit',
  ] as const;
  const recorder: Callback = Object.fromEntries(names.map((n) => [n, () => void events.push(n)]));
  const net = linearNet();
  const loop = loopOn(data, net, 1, [recorder]);
  const hist = await loop.run();
  assert.equal(hist.length, 1);
  const perBatch = ['beforeBatch', 'afterPred', 'afterLoss', 'beforeStep', 'afterStep', 'afterBatch'];
  assert.deepEqual(events, ['beforeFit', 'beforeEpoch', 'beforeTrain', ...perBatch, ...perBatch, ...perBatch, ...perBatch, 'afterTrain', 'beforeValidate', 'afterValidate', 'afterEpoch', 'afterFit']);
  assert.equal(loop.iteration, 4);
  assert.ok(hist[0]!.valLoss! > 0 && Number.isFinite(hist[0]!.trnLoss));

  const frozen = linearNet();
  const before = weightsOf(frozen);
  const skipping: Callback = {
    beforeBatch: () => {
      throw new CancelBatchError();
    },
  };
  await loopOn(data, frozen, 2, [skipping]).run();
  assert.deepEqual(weightsOf(frozen), before, 'no batch stepped');
});

test('cancelling the fit runs afterCancelFit and afterFit and keeps the rows so far', async () => {
  const data = arrayData(8);
  const seen: string[] = [];
  const stopper: Callback = {
    afterEpoch: (l: Loop) => {
      if (l.epoch === 1) throw new CancelFitError();
    },
    afterCancelFit: () => void seen.push('cancel'),
    afterFit: () => void seen.push('fit'),
  };
  const hist = await loopOn(data, linearNet(), 5, [stopper]).run();
  assert.equal(hist.length, 2);
  assert.deepEqual(seen, ['cancel', 'fit']);
});

test('bestSaveName-style saving with an error rate keeps the epoch with the lowest error, not the highest', async () => {
  const data = arrayData(8);
  const net = linearNet();
  const saved = new Map<string, number[][]>();
  const byEpoch: number[][][] = [];
  const keep: Callback = { afterEpoch: (l) => void byEpoch.push(weightsOf(l.net)) };
  const cb = new SaveModelCallback({ monitor: 'error_rate', fname: 'best', restoreBest: false });
  const loop = loopOn(data, net, 3, [cb, keep], {
    metrics: [scripted('error_rate', [0.5, 0.2, 0.4], 'min')],
    saveModel: async (name) => {
      saved.set(`${name}@${saved.size}`, weightsOf(net));
      return name;
    },
  });
  await loop.run();
  // Saved after epoch 0 (first value) and epoch 1 (0.2 < 0.5), not after epoch 2 (0.4).
  assert.deepEqual([...saved.keys()], ['best@0', 'best@1']);
  assert.deepEqual(saved.get('best@1'), byEpoch[1]);
  assert.equal(cb.bestValue, 0.2);
});

test('ConvLearner-free SaveModelCallback restores the best weights at the end; everyEpoch saves each epoch', async () => {
  const data = arrayData(8);
  const net = linearNet();
  const byEpoch: number[][][] = [];
  const names: string[] = [];
  const keep: Callback = { afterEpoch: (l) => void byEpoch.push(weightsOf(l.net)) };
  await loopOn(data, net, 3, [new SaveModelCallback({ monitor: 'acc', fname: 'm' }), keep], {
    metrics: [scripted('acc', [0.6, 0.9, 0.7], 'max')],
    saveModel: async (n) => (names.push(n), n),
  }).run();
  assert.deepEqual(names, ['m', 'm']);
  assert.deepEqual(weightsOf(net), byEpoch[1], 'the weights of the best epoch are back');
  const every: string[] = [];
  await loopOn(data, linearNet(), 3, [new SaveModelCallback({ everyEpoch: true, fname: 'e' })], { saveModel: async (n) => (every.push(n), n) }).run();
  assert.deepEqual(every, ['e_0', 'e_1', 'e_2']);
  await assert.rejects(loopOn(data, linearNet(), 1, [new SaveModelCallback({ monitor: 'nope' })]).run(), /monitor 'nope' is not among trn_loss, val_loss/);
});

test("EarlyStoppingCallback stops after `patience` epochs without improvement, in the metric's direction", async () => {
  const data = arrayData(8);
  const lines: string[] = [];
  const loop = new Loop({
    net: linearNet(),
    opt: new optim.SGD(linearNet().parameters(), { lr: 0.1 }),
    trn: data.trnDl,
    val: data.valDl,
    nEpochs: 10,
    metrics: [scripted('error_rate', [0.5, 0.4, 0.45, 0.46, 0.1], 'min')],
    callbacks: [new EarlyStoppingCallback({ monitor: 'error_rate', patience: 2 })],
    log: (l) => lines.push(l),
  });
  const hist = await loop.run();
  assert.equal(hist.length, 4, 'epochs 2 and 3 did not improve on 0.4');
  assert.match(lines.join('\n'), /No improvement since epoch 1: early stopping/);
  // Accuracy goes up: the same values as accuracy never improve after epoch 0.
  const up = await loopOn(data, linearNet(), 10, [new EarlyStoppingCallback({ monitor: 'accuracy', patience: 1 })], { metrics: [scripted('accuracy', [0.5, 0.4, 0.45], 'max')] }).run();
  assert.equal(up.length, 2);
});

test('GradientAccumulation over 8 images with batches of 4 gives the weights of batches of 8', async () => {
  const big = arrayData(8);
  const small = arrayData(4);
  // The same seeded permutation orders both loaders, so batch k of 8 is batches 2k and 2k+1 of 4.
  assert.deepEqual(big.trnDl.batchIndices(0).flat(), small.trnDl.batchIndices(0).flat());
  const a = linearNet();
  const b = linearNet();
  await loopOn(big, a, 2, [], { opt: new optim.SGD(a.parameters(), { lr: 0.5, momentum: 0.9 }) }).run();
  const acc = new GradientAccumulation(8);
  const loop = loopOn(small, b, 2, [acc], { opt: new optim.SGD(b.parameters(), { lr: 0.5, momentum: 0.9 }) });
  await loop.run();
  const wa = weightsOf(a).flat();
  const wb = weightsOf(b).flat();
  for (let i = 0; i < wa.length; i++) assert.ok(Math.abs(wa[i]! - wb[i]!) < 1e-5, `weight ${i}: ${wa[i]} vs ${wb[i]}`);
  assert.notDeepEqual(weightsOf(a), weightsOf(linearNet()), 'training moved the weights');
});

test('CSVLogger writes the epoch table as CSV after every epoch', async () => {
  const data = arrayData(8);
  const file = join(home, 'history.csv');
  const acc: Metric = { name: 'accuracy', fn: (lp, y) => tidy(() => lp.argmax(1).eq(y).float().mean().item()) };
  const hist = await loopOn(data, linearNet(), 3, [new CSVLogger(file)], { metrics: [acc] }).run();
  const lines = readFileSync(file, 'utf8').trim().split('\n');
  assert.equal(lines[0], 'epoch,trn_loss,val_loss,accuracy,seconds');
  assert.equal(lines.length, 4);
  lines.slice(1).forEach((l, i) => {
    const [epoch, trn, val, a, secs] = l.split(',').map(Number);
    assert.equal(epoch, i);
    assert.equal(trn, hist[i]!.trnLoss);
    assert.equal(val, hist[i]!.valLoss);
    assert.equal(a, hist[i]!.metrics.accuracy);
    assert.ok(secs! >= 0);
  });
  await loopOn(data, linearNet(), 1, [new CSVLogger(file, true)], { metrics: [acc] }).run();
  assert.equal((await readFile(file, 'utf8')).trim().split('\n').length, 5, 'appended');
});

test('MixUp blends each image with its partner and the losses in the same proportion', async () => {
  const data = arrayData(8);
  const mix = new MixUp(0.4);
  const original = new Map<number, number[]>();
  const seen: { x: number[]; pred: Tensor; y: number[]; loss: number }[] = [];
  const xs = data.trnDs as unknown as { x: Tensor };
  const rows = xs.x.toArray();
  const spy: Callback = {
    order: 0,
    afterLoss: (l) => {
      if (seen.length === 0) seen.push({ x: l.x!.toArray(), pred: noGrad(() => l.pred!.detach().clone()), y: l.y!.toArray(), loss: l.lossValue });
    },
  };
  const first = data.trnDl.batchIndices(0)[0]!;
  first.forEach((idx, i) => original.set(i, rows.slice(idx * 8, idx * 8 + 8)));
  manualSeed(11);
  await loopOn(data, linearNet(), 1, [mix, spy]).run();
  // The spy saw the first batch; MixUp's figures are the last batch's, so replay the first with the same seed.
  manualSeed(11);
  const replay = new MixUp(0.4);
  const capture: Callback = { order: 0, afterLoss: () => Promise.reject(new CancelFitError()) };
  await loopOn(data, linearNet(), 1, [replay, capture]).run();
  const { lam, partners } = replay;
  assert.equal(lam.length, 8);
  assert.ok(
    lam.every((l) => l >= 0.5 && l <= 1),
    'each image stays mostly itself',
  );
  const s = seen[0]!;
  for (let i = 0; i < 8; i++) {
    for (let f = 0; f < 8; f++) {
      const want = lam[i]! * original.get(i)![f]! + (1 - lam[i]!) * original.get(partners[i]!)![f]!;
      assert.ok(Math.abs(s.x[i * 8 + f]! - want) < 1e-5, `image ${i} feature ${f}`);
    }
  }
  const lp = s.pred.toArray();
  let want = 0;
  for (let i = 0; i < 8; i++) want += lam[i]! * -lp[i * 2 + s.y[i]!]! + (1 - lam[i]!) * -lp[i * 2 + s.y[partners[i]!]!]!;
  assert.ok(Math.abs(s.loss - want / 8) < 1e-5, `loss ${s.loss} vs ${want / 8}`);
});

test('CutMix pastes a rectangle of the partner image and weighs the losses by the area kept', async () => {
  manualSeed(5);
  const x = randn([6, 3, 16, 16]);
  const data = ImageClassifierData.fromArrays(home, [x, [0, 1, 0, 1, 0, 1]], null, ['a', 'b'], { bs: 6 });
  const orig = x.toArray();
  let mixed: number[] = [];
  let idx: number[] = [];
  const net = new nn.Sequential(new nn.Flatten(), new nn.Linear(768, 2), new nn.LogSoftmax(1));
  const cut = new CutMix(1);
  const spy: Callback = {
    afterLoss: (l) => {
      mixed = l.x!.toArray();
      throw new CancelFitError();
    },
  };
  const seenIdx: Callback = { order: -100, beforeBatch: () => void (idx = data.trnDl.batchIndices(0)[0]!) };
  await loopOn(data, net, 1, [seenIdx, cut, spy]).run();
  const [x1, y1, x2, y2] = cut.box;
  assert.ok(x2 >= x1 && y2 >= y1);
  assert.ok(Math.abs(cut.lam[0]! - (1 - ((x2 - x1) * (y2 - y1)) / 256)) < 1e-12);
  const at = (arr: number[], n: number, c: number, h: number, w: number): number => arr[((n * 3 + c) * 16 + h) * 16 + w]!;
  for (let i = 0; i < 6; i++) {
    const own = idx[i]!;
    const partner = idx[cut.partners[i]!]!;
    for (const [h, w] of [
      [0, 0],
      [15, 15],
      [y1, x1],
      [Math.max(y1, y2 - 1), Math.max(x1, x2 - 1)],
      [8, 3],
    ] as [number, number][]) {
      const inside = h >= y1 && h < y2 && w >= x1 && w < x2;
      assert.equal(at(mixed, i, 1, h, w), at(orig, inside ? partner : own, 1, h, w), `image ${i} at ${h},${w} (${inside ? 'inside' : 'outside'})`);
    }
  }
});

interface OneCycleCase {
  total: number;
  lrMax: number[];
  pctStart: number;
  divFactor: number;
  finalDiv: number;
  moms: [number, number, number];
  lrs: number[][];
  momenta: number[];
}
const fixture = JSON.parse(readFileSync(join(fixturesDir, 'schedule', 'onecycle.json'), 'utf8')) as {
  oneCycle: OneCycleCase[];
  labelSmoothing: { logits: number[][]; target: number[]; loss: Record<string, number> };
};

test("the one-cycle schedule is PyTorch's OneCycleLR step for step (rates per group and momentum)", () => {
  for (const c of fixture.oneCycle) {
    const s = oneCycleSchedule(c.total, { pctStart: c.pctStart, divFactor: c.divFactor, finalDiv: c.finalDiv, moms: c.moms });
    for (let i = 0; i < c.total; i++) {
      c.lrMax.forEach((m, g) => {
        const want = c.lrs[i]![g]!;
        assert.ok(Math.abs(m * s.lr(i) - want) <= 1e-12 + 1e-9 * want, `pct ${c.pctStart}, step ${i}, group ${g}: ${m * s.lr(i)} vs ${want}`);
      });
      assert.ok(Math.abs(s.mom(i) - c.momenta[i]!) < 1e-12, `momentum at step ${i}`);
    }
    // It starts at lrMax / divFactor and ends at lrMax / finalDiv.
    assert.ok(Math.abs(s.lr(0) - 1 / c.divFactor) < 1e-12 && Math.abs(s.lr(c.total - 1) - 1 / c.finalDiv) < 1e-12);
  }
});

test("label-smoothing cross entropy equals PyTorch's and its definition", () => {
  const { logits, target, loss } = fixture.labelSmoothing;
  const x = tensor(logits);
  const logp = x.logSoftmax(1);
  const y = tensor(BigInt64Array.from(target.map(BigInt)));
  for (const [eps, want] of Object.entries(loss)) {
    const e = Number(eps);
    const got = tidy(() => labelSmoothingCrossEntropy(e)(x, y).item());
    const fromLogProbs = tidy(() => labelSmoothingCrossEntropy(e)(logp, y).item());
    assert.ok(Math.abs(got - want) < 1e-6, `eps ${e}: ${got} vs PyTorch ${want}`);
    assert.ok(Math.abs(fromLogProbs - want) < 1e-6, 'the same on log-probabilities (the head outputs)');
    // (1 − eps)·NLL + eps·mean over classes of −log p
    const lp = logp.toArray();
    let def = 0;
    target.forEach((t, i) => {
      const row = lp.slice(i * 5, i * 5 + 5);
      def += (1 - e) * -row[t]! + (e * -row.reduce((a, b) => a + b, 0)) / 5;
    });
    assert.ok(Math.abs(def / target.length - want) < 1e-6);
  }
});

test("the finder's suggestion rules follow fastai's definitions", () => {
  const lrs = Array.from({ length: 10 }, (_, i) => 10 ** (-5 + i / 2));
  // Longest falling stretch: indices 0,1,3,4,5,6,7 (seven points) → start 0, idx 0 + ⌊7/3⌋ + ⌊7/6⌋ = 3.
  const losses = [3, 2.9, 3.1, 2.8, 2.5, 2.0, 1.5, 1.0, 1.2, 2.0];
  assert.equal(valley(lrs, losses).lr, lrs[3]);
  // Steepest fall against log(lr) (even spacing): 2.5→2.0, 2.0→1.5 and 1.5→1.0 fall by 0.5 each; the first, at index 4, wins.
  assert.equal(steep(lrs, losses).lr, lrs[4]);
  assert.equal(minimum(lrs, losses).lr, lrs[7]! / 10);
  // slide: flat up to index 29, then rising; walking back in windows of 15 stops once both ends are flat.
  const n = 50;
  const lr50 = Array.from({ length: n }, (_, i) => 1e-6 * 1.3 ** i);
  const l50 = Array.from({ length: n }, (_, i) => (i <= 29 ? 1 : 1 + 0.1 * (i - 29) ** 2));
  assert.equal(slide(lr50, l50).lr, lr50[14]);
  // A straight line has the same slope everywhere: the first window already agrees.
  assert.equal(
    slide(
      lr50,
      lr50.map((_, i) => 2 - i * 0.01),
    ).lr,
    lr50[n - 16],
  );
  // Through LrFinderResult: the first numIt/10 points and the last 5 are left out, NaNs cut the curve.
  const curveLrs = Array.from({ length: 100 }, (_, i) => 1e-6 * 1.2 ** i);
  const curve = curveLrs.map((_, i) => (i < 10 ? 0 : i >= 60 ? Number.NaN : 5 - i * 0.05));
  const r = new LrFinderResult(curveLrs, curve, 100);
  assert.deepEqual(r.trimmed().lrs, curveLrs.slice(10, 60));
  assert.equal(r.suggestion('minimum').lr, curveLrs[59]! / 10, 'the zeros before numIt/10 are ignored');
  assert.equal(r.suggestion('lesson').lr, curveLrs[59]! / 10);
  // With numIt 300 fastai's rules skip 30 points; the lesson's rule still skips 10.
  const dip = curveLrs.map((_, i) => (i === 20 ? 0 : 3));
  assert.equal(new LrFinderResult(curveLrs, dip, 300).suggestion('minimum').lr, curveLrs[30]! / 10);
  assert.equal(new LrFinderResult(curveLrs, dip, 300).suggestion('lesson').lr, curveLrs[20]! / 10);
  assert.deepEqual(Object.keys(r.suggestions()).sort(), ['lesson', 'minimum', 'slide', 'steep', 'valley']);
});
