// The schedules against fast.ai v0.7's formulas: rates at given iterations for
// cycleLen / cycleMult combinations, the warm-up, cycle ends, the finder.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { constantSchedule, lrFinderMultiplier, sgdrSchedule, SmoothedLoss } from '../src/index.js';

const close = (a: number, b: number): void => assert.ok(Math.abs(a - b) <= 1e-12 * Math.max(1, Math.abs(b)), `${a} ≠ ${b}`);

test('SGDR, cycleLen 1, 3 cycles of 100 batches: warm-up, cosine, restarts', () => {
  const s = sgdrSchedule(3, 100, 1);
  assert.equal(s.multipliers.length, 300);
  assert.equal(s.epochs, 3);
  assert.deepEqual(s.cycleEnds, [100, 200, 300]);
  close(s.multipliers[0]!, 0.01); // warm-up: the first nb/20 = 5 iterations at lr/100
  close(s.multipliers[4]!, 0.01);
  close(s.multipliers[5]!, 0.5 * (1 + Math.cos(Math.PI * 0.05)));
  close(s.multipliers[50]!, 0.5);
  close(s.multipliers[99]!, 0.5 * (1 + Math.cos(Math.PI * 0.99)));
  close(s.multipliers[100]!, 1); // restart at the full rate, no warm-up after the first cycle
  close(s.multipliers[150]!, 0.5);
});

test('SGDR with cycleMult 2: cycles of 1, 2, 4 epochs (7 in all)', () => {
  const s = sgdrSchedule(3, 10, 1, 2);
  assert.equal(s.epochs, 7);
  assert.deepEqual(s.cycleEnds, [10, 30, 70]);
  close(s.multipliers[10]!, 1);
  close(s.multipliers[20]!, 0.5); // the middle of the 20-iteration second cycle
  close(s.multipliers[50]!, 0.5); // the middle of the 40-iteration third cycle
  close(s.multipliers[69]!, 0.5 * (1 + Math.cos((Math.PI * 39) / 40)));
});

test('SGDR with cycleLen 2 and cycleMult 2: 2 + 4 epochs; the warm-up spans nb/20 of the first cycle', () => {
  const s = sgdrSchedule(2, 20, 2, 2);
  assert.equal(s.epochs, 6);
  assert.deepEqual(s.cycleEnds, [40, 120]);
  close(s.multipliers[1]!, 0.01);
  close(s.multipliers[2]!, 0.5 * (1 + Math.cos((Math.PI * 2) / 40)));
  close(s.multipliers[80]!, 0.5);
  assert.throws(() => sgdrSchedule(0, 10, 1), /positive integer/);
  assert.throws(() => sgdrSchedule(1, 10, 1, 0.5), /cycleMult must be at least 1/);
});

test('a constant schedule and the finder growth', () => {
  assert.deepEqual(constantSchedule(2, 3).multipliers, [1, 1, 1, 1, 1, 1]);
  close(lrFinderMultiplier(0, 100, 1e-5, 10), 1);
  close(lrFinderMultiplier(100, 100, 1e-5, 10), 1e6);
  close(lrFinderMultiplier(50, 100, 1e-5, 10), 1e3);
  close(lrFinderMultiplier(50, 100, 1e-5, 10, true), 1 + (1e6 - 1) / 2);
});

test('loss smoothing is a debiased exponential average', () => {
  const s = new SmoothedLoss(0.98);
  close(s.add(2), 2);
  close(s.add(4), (0.98 * 0.02 * 2 + 0.02 * 4) / (1 - 0.98 ** 2));
});
