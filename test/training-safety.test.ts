// Training never hands back a broken model: the last partial batch is dropped
// (a batch of one gave batch norm NaN statistics), a loss that turns NaN or runs
// away stops the fit and puts back the last good weights, a fit continues from its
// checkpoint exactly as it would have gone on, the precompute cache is never
// served stale, and a batch size that cannot fit in memory is refused up front.
import assert from 'node:assert/strict';
import { cpSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  CACHE_ENTRIES,
  ConvLearner,
  ImageClassifierData,
  mobilenet_v2_nsfwjs,
  nn,
  noGrad,
  pruneCache,
  tfmsFromModel,
  TrainingDivergedError,
  transformsSideOn,
  type FitState,
  type Tensor,
} from '../src/index.js';
import { BatchTooLargeError, checkBatchFits, trainingStepBytes } from '../src/learn/memory.js';
import { photos } from './helpers.js';

let scratch = '';
let root = '';
const tfms = tfmsFromModel(mobilenet_v2_nsfwjs, 32, { augTfms: transformsSideOn, maxZoom: 1.1 });
const quiet = { log: null };
const weights = (m: nn.Module): Map<string, number[]> => new Map([...m.stateDict()].map(([k, t]) => [k, t.toArray()]));

before(async () => {
  scratch = await mkdtemp(join(tmpdir(), 'fastvision-safety-'));
  process.env.FASTVISION_HOME = join(scratch, 'home');
  root = join(scratch, 'dogscats');
  cpSync(join(photos, 'dogscats'), root, { recursive: true });
  // 17 training photos: at bs 16 the last batch would be a batch of one.
  cpSync(join(root, 'train', 'cats', readdirSync(join(root, 'train', 'cats'))[0]!), join(root, 'train', 'cats', 'copy.jpg'));
});
after(async () => {
  await rm(scratch, { recursive: true, force: true });
});

test('17 images at bs 16: no batch of one, so batch norm keeps finite statistics', async () => {
  const data = await ImageClassifierData.fromPaths(root, { tfms, bs: 16 });
  for (const precompute of [true, false]) {
    const learn = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, { ...quiet, precompute });
    await learn.fit(1e-3, 1);
    const bn = (learn.head as nn.Sequential).at(0) as nn.BatchNorm1d;
    assert.ok(bn.runningVar!.allFinite() && bn.runningMean!.allFinite(), `precompute ${precompute}: head batch norm statistics are finite`);
    assert.ok([...learn.model.stateDict().values()].every((t) => t.allFinite()));
  }
});

test('a diverging fit stops, puts back the weights it started from, and says so', async () => {
  const data = await ImageClassifierData.fromPaths(root, { tfms, bs: 4 });
  const learn = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, { ...quiet, precompute: true });
  const before = weights(learn.model);
  await assert.rejects(
    learn.fit(100, 2),
    (e: unknown) => e instanceof TrainingDivergedError && e.restoredTo === 'the start of this fit' && e.epoch === 0 && /training diverged in epoch 0 \(.*(NaN|ran away|Infinity)/.test(e.message),
  );
  assert.deepEqual(weights(learn.model), before);
});

test('divergence in a later epoch puts back the end of the last good epoch', async () => {
  const data = await ImageClassifierData.fromPaths(root, { tfms, bs: 4 });
  const learn = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, { ...quiet, precompute: true });
  let afterEpoch0: Map<string, number[]> | null = null;
  const linear = (learn.head as nn.Sequential).at(6) as nn.Linear;
  let sabotaged = false;
  const err = await learn
    .fit(1e-2, 3, {
      callbacks: [
        { afterEpoch: (l) => void (l.record!.epoch === 0 && (afterEpoch0 = weights(learn.model))) },
        {
          afterBatch: () => {
            // In epoch 1, the weights go bad (as a too-high rate would make them).
            if (afterEpoch0 !== null && !sabotaged) {
              noGrad(() => linear.weight.mul_(Number.NaN));
              sabotaged = true;
            }
          },
        },
      ],
    })
    .catch((e: unknown) => e);
  assert.ok(err instanceof TrainingDivergedError, String(err));
  assert.equal(err.restoredTo, 'the end of epoch 0');
  assert.equal(err.history.length, 1);
  assert.deepEqual(weights(learn.model), afterEpoch0);
});

test('an epoch table without a validation set shows no NaN', async () => {
  const data = await ImageClassifierData.fromPaths(root, { tfms, bs: 4, valName: null });
  const lines: string[] = [];
  const learn = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, { log: (l) => lines.push(l), precompute: true });
  await learn.fit(1e-2, 1);
  const row = lines.find((l) => /^0\s/.test(l))!;
  assert.ok(row !== undefined && !/NaN/.test(row), row);
});

test('a fit resumed from its checkpoint ends exactly as the uninterrupted fit', async () => {
  const data = await ImageClassifierData.fromPaths(root, { tfms, bs: 4 });
  const run = async (resumeAt?: { state: FitState; model: Map<string, Tensor> }): Promise<{ learn: ConvLearner; states: { state: FitState; model: Map<string, Tensor> }[] }> => {
    const { manualSeed } = await import('../src/index.js');
    manualSeed(7);
    const learn = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, quiet);
    learn.unfreeze();
    const states: { state: FitState; model: Map<string, Tensor> }[] = [];
    if (resumeAt) learn.model.loadStateDict(resumeAt.model);
    await learn.fit(1e-3, 2, {
      cycleLen: 1,
      resume: resumeAt?.state,
      onCheckpoint: (s) => {
        // Kept as they would be on disk: copies.
        states.push({
          state: {
            ...s,
            rng: s.rng.clone(),
            optimizer: {
              paramGroups: s.optimizer.paramGroups,
              state: new Map([...s.optimizer.state].map(([i, st]) => [i, Object.fromEntries(Object.entries(st).map(([k, v]) => [k, typeof v === 'number' ? v : v.clone()]))])),
            },
          },
          model: new Map([...learn.model.stateDict()].map(([k, t]) => [k, t.clone()])),
        });
      },
    });
    return { learn, states };
  };
  const whole = await run();
  assert.equal(whole.states.length, 2);
  assert.deepEqual(whole.states[0]!.state.history.length, 1);
  // A new learner from the first epoch's checkpoint (a later process would load it from disk).
  const resumed = await run(whole.states[0]);
  assert.deepEqual(weights(resumed.learn.model), weights(whole.learn.model), 'the same weights, bit for bit');
  assert.deepEqual(resumed.states.at(-1)!.state.history, whole.states.at(-1)!.state.history);
});

test('the precompute cache is keyed on the weights and each file, recomputes a corrupt entry, and is pruned', async () => {
  const dir = join(scratch, 'cache-data');
  cpSync(join(photos, 'dogscats'), dir, { recursive: true });
  const data = await ImageClassifierData.fromPaths(dir, { tfms, bs: 4, testName: 'test' });
  const cacheDir = data.cacheDir('tmp');
  const entries = (): string[] =>
    readdirSync(cacheDir)
      .filter((f) => f.startsWith('act_'))
      .sort();
  const first = async (learn: ConvLearner): Promise<number[]> => {
    await learn.precomputeActivations();
    const { x } = (learn as unknown as { precomputed: { trn: { x: Tensor } } }).precomputed.trn;
    return x.slice(0, 0, 1).toArray();
  };
  const a = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, { ...quiet, precompute: true });
  const actA = await first(a);
  assert.equal(entries().length, 2, 'training and validation activations; none for the test set, which nothing uses');
  // Other body weights: their own activations.
  const b = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, { ...quiet, precompute: true });
  noGrad(() => b.body.parameters()[0]!.mul_(1.5));
  const actB = await first(b);
  assert.equal(entries().length, 4);
  assert.notDeepEqual(actB, actA);
  // A replaced photo with the same name: recomputed, not served stale.
  const trnFiles = (data.trnDs as { files: string[] }).files;
  const other = readFileSync(trnFiles[trnFiles.length - 1]!);
  writeFileSync(trnFiles[0]!, other);
  utimesSync(trnFiles[0]!, new Date(), new Date(Date.now() + 5000));
  const c = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, { ...quiet, precompute: true });
  const actC = await first(c);
  assert.equal(entries().length, 5, 'a new training entry');
  assert.notDeepEqual(actC, actA);
  // A corrupt entry: a warning, then computed again.
  const warnings: string[] = [];
  const warn = console.warn;
  console.warn = (m: string) => void warnings.push(m);
  try {
    for (const f of entries()) writeFileSync(join(cacheDir, f), 'garbage');
    const d = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, { ...quiet, precompute: true });
    assert.deepEqual(await first(d), actC);
  } finally {
    console.warn = warn;
  }
  assert.ok(
    warnings.some((w) => /activation cache .* cannot be read .*computing it again/.test(w)),
    warnings.join('\n'),
  );
  // Pruning keeps the most recently used entries.
  for (let i = 0; i < CACHE_ENTRIES + 3; i++) writeFileSync(join(cacheDir, `act_extra${i}.pth`), 'x');
  const removed = pruneCache(cacheDir, CACHE_ENTRIES);
  assert.equal(entries().length, CACHE_ENTRIES);
  assert.equal(removed.length, 5 + 3);
});

test('a batch size that cannot fit in memory is refused before training, with one that fits', async () => {
  const data = await ImageClassifierData.fromPaths(root, { tfms, bs: 4 });
  const learn = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, quiet);
  const { perImage, fixed } = trainingStepBytes(learn.model, 224, 1, true);
  assert.ok(perImage > 50e6 && perImage < 500e6, `mobilenet_v2 at 224 px keeps ~80M activation bytes per image (${perImage})`);
  const saved = process.env.FASTVISION_MEMORY_LIMIT;
  process.env.FASTVISION_MEMORY_LIMIT = String(Math.round((fixed + 40 * perImage) / 0.9));
  try {
    assert.throws(
      () => checkBatchFits(learn.model, { arch: 'mobilenet_v2_nsfwjs', size: 224, bs: 256, unfrozen: true }),
      (e: unknown) => e instanceof BatchTooLargeError && e.suggestedBs === 32 && /batch size 256 at 224 px needs about .* GiB .* available: try --bs 32/.test(e.message),
    );
    checkBatchFits(learn.model, { arch: 'mobilenet_v2_nsfwjs', size: 224, bs: 32, unfrozen: true });
    checkBatchFits(learn.model, { arch: 'mobilenet_v2_nsfwjs', size: 224, bs: 256, unfrozen: false });
  } finally {
    if (saved === undefined) delete process.env.FASTVISION_MEMORY_LIMIT;
    else process.env.FASTVISION_MEMORY_LIMIT = saved;
  }
});
