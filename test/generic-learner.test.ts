// The generic Learner (fastai v2's Learner(dls, model, loss_func, opt_func, splitter, cbs)): a
// model written with nn trains on arrays through the same fits as ConvLearner, with layer groups
// from a splitter, an optimizer factory, and the learner's weight decay.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { crossEntropyLoss, ImageClassifierData, Learner, manualSeed, nn, noGrad, optim, randn, tensor, tidy, type Tensor } from '../src/index.js';

/** Two classes a small network can tell apart: the sign of the mean of an 8×8 image, plus noise. */
function separable(n: number, seed: number): [Tensor, number[]] {
  manualSeed(seed);
  const labels = Array.from({ length: n }, (_, i) => i % 2);
  const shift = tensor(Float32Array.from(labels.flatMap((l) => new Array<number>(64).fill(l === 1 ? 0.6 : -0.6))), { shape: [n, 1, 8, 8] });
  const x = tidy(() => randn([n, 1, 8, 8]).add(shift));
  shift.dispose();
  return [x, labels];
}

function data(): ImageClassifierData {
  return ImageClassifierData.fromArrays('generic-learner-test', separable(128, 1), separable(64, 2), ['minus', 'plus'], { bs: 16, device: 'cpu' });
}

function smallNet(): nn.Sequential {
  return new nn.Sequential(new nn.Conv2d(1, 8, 3, { padding: 1 }), new nn.BatchNorm2d(8), new nn.ReLU(), new nn.AdaptiveAvgPool2d(1), new nn.Flatten(), new nn.Linear(8, 2));
}

const quiet = { log: null, device: 'cpu' };

test('a model written with nn trains through fitOneCycle: the loss falls and validation accuracy rises well above chance', async () => {
  manualSeed(0);
  const learn = new Learner(data(), smallNet(), { ...quiet, lossFunc: crossEntropyLoss, optFunc: 'adamw' });
  const rows = await learn.fitOneCycle(1e-2, 4);
  assert.equal(rows.length, 4);
  assert.ok(rows.at(-1)!.trnLoss < rows[0]!.trnLoss, `training loss ${rows[0]!.trnLoss} → ${rows.at(-1)!.trnLoss}`);
  const acc = rows.at(-1)!.metrics.accuracy!;
  assert.ok(acc >= 0.85, `validation accuracy ${acc}`);
  const { out, y } = await learn.getPreds();
  assert.deepEqual(out.shape, [64, 2]);
  assert.deepEqual(y.shape, [64]);
  out.dispose();
  y.dispose();
});

test('a splitter makes layer groups: freeze() trains only the last, with its own rate, through the optimizer factory', async () => {
  manualSeed(0);
  const model = smallNet();
  const groupsSeen: { lr: number; weightDecay: number }[][] = [];
  const learn = new Learner(data(), model, {
    ...quiet,
    splitter: (m) => [[(m as nn.Sequential).at(0), (m as nn.Sequential).at(1)], [(m as nn.Sequential).at(5)]],
    optFunc: (groups, { lr }) => {
      groupsSeen.push(groups.map((g) => ({ lr: g.lr!, weightDecay: g.weightDecay! })));
      return new optim.SGD(groups, { lr, momentum: 0.9 });
    },
    wd: 1e-3,
  });
  assert.equal(learn.layerGroups.length, 2);
  learn.freeze();
  const before = noGrad(() => model.stateDict());
  const copy = new Map([...before].map(([k, t]) => [k, t.clone()]));
  await learn.fit([1e-3, 1e-2], 1);
  assert.deepEqual(groupsSeen, [
    [
      { lr: 1e-3, weightDecay: 1e-3 },
      { lr: 1e-2, weightDecay: 1e-3 },
    ],
  ]);
  const after = model.stateDict();
  const same = (a: Tensor, b: Tensor): boolean => a.allclose(b, 0, 0);
  const changed = (k: string): boolean => !same(copy.get(k)!, after.get(k)!);
  assert.equal(changed('0.weight'), false, 'the frozen first group kept its convolution');
  assert.equal(changed('1.weight'), false, "and its batch norm's affine weights");
  assert.equal(changed('1.running_mean'), false, "a frozen group's batch norm keeps its statistics");
  assert.equal(changed('5.weight'), true, 'the last group trained');
  learn.unfreeze();
  learn.bnFreeze(true);
  await learn.fit(1e-3, 1, { wd: 0 });
  assert.deepEqual(groupsSeen[1], [
    { lr: 1e-3, weightDecay: 0 },
    { lr: 1e-3, weightDecay: 0 },
  ]);
  const third = model.stateDict();
  assert.ok(!same(copy.get('0.weight')!, third.get('0.weight')!), 'unfrozen, the first group trains');
  assert.ok(same(copy.get('1.running_mean')!, third.get('1.running_mean')!), 'bnFreeze keeps the statistics of every group but the last');
  for (const t of [...copy.values(), ...before.values()]) t.dispose();
});

test("fastai's slice(a, b) spreads rates over the groups; a learner of one group takes b", () => {
  const d = data();
  assert.deepEqual(new Learner(d, smallNet(), quiet).rates([1e-4, 1e-2]), [1e-2]);
  const three = new Learner(d, smallNet(), { ...quiet, splitter: (m) => [[(m as nn.Sequential).at(0)], [(m as nn.Sequential).at(1)], [(m as nn.Sequential).at(5)]] });
  const r = three.rates([1e-4, 1e-2]);
  assert.ok(
    [1e-4, 1e-3, 1e-2].every((v, i) => Math.abs(r[i]! - v) < 1e-15),
    r.join(', '),
  );
});

test('bad options are named', () => {
  const d = data();
  assert.throws(() => new Learner(d, smallNet(), { ...quiet, splitter: () => [[]] }), /splitter: every layer group needs at least one module/);
  assert.throws(() => new Learner(d, smallNet(), { ...quiet, optFunc: 'lamb' as 'sgd' }), /optFunc must be 'sgd', 'adam', 'adamw' or a function, got 'lamb'/);
});
