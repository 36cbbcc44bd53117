// A long training loop holds its memory flat: every intermediate is freed,
// nothing accumulates in native memory or in live handles.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { F, liveTensorCount, manualSeed, nativeHeapStats, nn, optim, randint, randn, tidy } from '../src/index.js';
import { collector } from './helpers.js';

test('a long training loop keeps the native heap and live tensors flat, and RSS flat once warm', (t) => {
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
  const MiB = 2 ** 20;
  const WINDOW = 30;
  type Sample = { rss: number; inUse: number };
  // Each sample follows a full collection. On libtorch 2.6 RSS rose by ~25 MiB every 30 steps,
  // with malloc's bytes in use flat, until V8's first full collection (after 150 to over 600
  // steps, later under load), and not at all when a collection ran every window: memory that
  // garbage holds, which V8 schedules, not memory the loop keeps.
  const gc = collector();
  const sample = (): Sample => {
    gc();
    return { rss: process.memoryUsage().rss, inUse: nativeHeapStats().inUse };
  };
  const samples: Sample[] = [sample()];
  const runWindow = (): void => {
    for (let i = 0; i < WINDOW; i++) step();
    samples.push(sample());
  };
  const show = (): string => samples.map((s) => `${(s.rss / MiB).toFixed(0)}/${s.inUse < 0 ? '?' : (s.inUse / MiB).toFixed(0)}`).join(', ');
  const first = step();
  // Warm-up: the first windows may still touch fresh pages of the heap glibc keeps. That growth
  // levels off; a leak's does not. Wait until three windows in a row add under 4 MiB of RSS, for
  // at most 20 windows (600 steps).
  let calm = 0;
  while (calm < 3 && samples.length <= 20) {
    runWindow();
    calm = samples.at(-1)!.rss - samples.at(-2)!.rss < 4 * MiB ? calm + 1 : 0;
  }
  assert.ok(calm >= 3, `RSS kept growing for ${(samples.length - 1) * WINDOW} steps (RSS/heap in use, MiB: ${show()})`);
  // Then five windows measured from the plateau.
  const from = samples.length - 1;
  for (let w = 0; w < 5; w++) runWindow();
  const last = step();
  assert.equal(liveTensorCount(), handles, 'no tensor handle outlives its step');
  const rssGrowth = samples.at(-1)!.rss - samples[from]!.rss;
  // One step's activations are ~4 MB: a leak of one per step adds 600 MB over these 150 steps.
  assert.ok(rssGrowth < 16 * MiB, `RSS grew by ${(rssGrowth / MiB).toFixed(1)} MiB over 150 steps after warm-up (RSS/heap in use, MiB: ${show()})`);
  // The heap's bytes in use count what was allocated and not freed, warm-up or not: flat from the start.
  if (samples[0]!.inUse >= 0) {
    const inUseGrowth = samples.at(-1)!.inUse - samples[0]!.inUse;
    assert.ok(inUseGrowth < 16 * MiB, `the native heap's bytes in use grew by ${(inUseGrowth / MiB).toFixed(1)} MiB over ${(samples.length - 1) * WINDOW} steps (RSS/heap in use, MiB: ${show()})`);
  }
  t.diagnostic(`RSS/heap in use, MiB, every ${WINDOW} steps: ${show()}`);
  assert.ok(last < first, `the loss went down (${first} → ${last})`);
});
