// A long training loop holds its memory flat: every intermediate is freed,
// nothing accumulates in native memory or in live handles.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { F, liveTensorCount, manualSeed, nn, optim, randint, randn, tidy } from '../src/index.js';

test('300 training steps of a small convnet keep RSS and live tensors flat', () => {
  manualSeed(0);
  const model = new nn.Sequential(
    new nn.Conv2d(3, 16, 3, { padding: 1, bias: false }),
    new nn.BatchNorm2d(16),
    new nn.ReLU(),
    new nn.MaxPool2d(2),
    new nn.Conv2d(16, 32, 3, { padding: 1, bias: false }),
    new nn.BatchNorm2d(32),
    new nn.ReLU(),
    new nn.AdaptiveConcatPool2d(),
    new nn.Flatten(),
    new nn.Dropout(0.25),
    new nn.Linear(64, 10),
  );
  const opt = new optim.SGD(model.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 1e-4 });
  const x = randn([16, 3, 32, 32]);
  const y = randint(0, 10, [16]);
  const step = (): number => {
    opt.zeroGrad();
    const loss = tidy(() => {
      const l = F.crossEntropy(model.forward(x), y);
      l.backward();
      return l.item();
    });
    opt.step();
    return loss;
  };
  for (let i = 0; i < 30; i++) step();
  const handles = liveTensorCount();
  const rss: number[] = [];
  let first = 0;
  let last = 0;
  for (let i = 0; i < 300; i++) {
    const l = step();
    if (i === 0) first = l;
    last = l;
    if (i % 30 === 29) rss.push(process.memoryUsage().rss);
  }
  assert.equal(liveTensorCount(), handles, 'no tensor handle outlives its step');
  const growth = rss[rss.length - 1]! - rss[0]!;
  // One step's activations are ~4 MB; a leak of even one per step would add >1 GB over 300 steps.
  assert.ok(growth < 32 * 2 ** 20, `RSS grew by ${(growth / 2 ** 20).toFixed(1)} MiB over 270 steps: ${rss.map((r) => (r / 2 ** 20).toFixed(0)).join(', ')}`);
  assert.ok(last < first, `the loss went down (${first} → ${last})`);
});
