// The training recipe in the library: its stages as data (recipeStages), fastai v2's fine_tune
// schedule of Learner.fineTune, the fine-tune recipe's precomputed head, and trainRecipe run from
// the API as `fastvision train` runs it.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import {
  archOf,
  closeLoaderWorkers,
  fineTuneSchedule,
  ImageClassifierData,
  Learner,
  loadLearner,
  manualSeed,
  mobilenet_v2_nsfwjs,
  nn,
  optim,
  randn,
  recipeStages,
  RECIPE_DEFAULTS,
  tfmsFromModel,
  trainRecipe,
} from '../src/index.js';
import { photos } from './helpers.js';

const tmp = await mkdtemp(join(tmpdir(), 'fastvision-recipe-'));
after(async () => {
  await closeLoaderWorkers();
  await rm(tmp, { recursive: true, force: true });
});

const close = (a: number[], b: number[]): boolean => a.length === b.length && a.every((v, i) => Math.abs(v - b[i]!) <= 1e-12 * Math.abs(b[i]!));

test("the lesson's stages: head on activations, head with augmentation, unfrozen at [u/K², u/K, u] as the architecture advises, then again at each later size", () => {
  const settings = { ...RECIPE_DEFAULTS, recipe: 'lesson' as const, sizes: [64, 128] };
  const plain = recipeStages(settings, 1e-2, archOf('resnet34'));
  assert.deepEqual(
    plain.map((s) => [s.name, s.size, s.train, s.precompute]),
    [
      ['head on precomputed activations', 64, 'head', true],
      ['head with augmentation', 64, 'head', false],
      ['unfrozen, differential rates', 64, 'all', false],
      ['size 128: head with augmentation', 128, 'head', false],
      ['size 128: unfrozen, differential rates', 128, 'all', false],
    ],
  );
  assert.ok(close(plain[2]!.lrs, [1e-4, 1e-3, 1e-2]), `lrs ${plain[2]!.lrs.join(', ')}`);
  assert.deepEqual([plain[2]!.cycleLen, plain[2]!.cycleMult, plain[2]!.nCycle, plain[2]!.bnFreeze], [1, 2, 3, false]);
  // The offline MobileNetV2's measured advice: batch-norm statistics kept, the head at lr/5 (at most 1e-3).
  const advised = recipeStages(settings, 1e-2, archOf('mobilenet_v2_nsfwjs'));
  assert.equal(advised[2]!.bnFreeze, true);
  assert.ok(close(advised[2]!.lrs, [1e-5, 1e-4, 1e-3]), `lrs ${advised[2]!.lrs.join(', ')}`);
  assert.match(advised[2]!.note ?? '', /./, 'the advice is said');
  const lesson = recipeStages({ ...settings, lessonUnfreeze: true }, 1e-2, archOf('mobilenet_v2_nsfwjs'));
  assert.equal(lesson[2]!.bnFreeze, false);
});

test("the fine-tune recipe's stages: the head on precomputed activations, then everything at [u/100, u/10, u] as the architecture advises, at each size", () => {
  const settings = { ...RECIPE_DEFAULTS, recipe: 'fine-tune' as const, sizes: [64, 96], epochs: 3, freezeEpochs: 2 };
  const stages = recipeStages(settings, 4e-3, archOf('resnet34'));
  assert.deepEqual(
    stages.map((s) => [s.name, s.size, s.train, s.nCycle, s.precompute, s.bnFreeze ?? null]),
    [
      ['fine-tune: head on precomputed activations, one cycle', 64, 'head', 2, true, null],
      ['fine-tune: unfrozen, one cycle', 64, 'all', 3, false, false],
      ['size 96: fine-tune: head on precomputed activations, one cycle', 96, 'head', 2, true, null],
      ['size 96: fine-tune: unfrozen, one cycle', 96, 'all', 3, false, false],
    ],
  );
  assert.deepEqual(stages[0]!.lrs, [4e-3]);
  assert.deepEqual(stages[0]!.oneCycle, { pctStart: 0.25, divFactor: 25 });
  // Without advice, fastai's: half the rate, the first group 100× slower.
  assert.ok(close(stages[1]!.lrs, [2e-5, 2e-4, 2e-3]), `unfrozen at [lr/200, lr/20, lr/2]: ${stages[1]!.lrs.join(', ')}`);
  assert.deepEqual(stages[1]!.oneCycle, { pctStart: 0.3, divFactor: 5 });
  // The offline MobileNetV2's advice: statistics kept, a fifth of the rate, at most 1e-3; said once.
  const advised = recipeStages(settings, 4e-3, archOf('mobilenet_v2_nsfwjs'));
  assert.equal(advised[1]!.bnFreeze, true);
  assert.ok(close(advised[1]!.lrs, [8e-6, 8e-5, 8e-4]), `advised: ${advised[1]!.lrs.join(', ')}`);
  assert.match(advised[1]!.note ?? '', /batch-norm statistics kept/);
  assert.equal(advised[3]!.note, undefined);
  const lesson = recipeStages({ ...settings, lessonUnfreeze: true }, 4e-3, archOf('mobilenet_v2_nsfwjs'));
  assert.equal(lesson[1]!.bnFreeze, false);
  assert.ok(close(lesson[1]!.lrs, [2e-5, 2e-4, 2e-3]));
  const given = recipeStages({ ...settings, unfreezeLr: 1e-4, freezeEpochs: 0 }, 4e-3, archOf('mobilenet_v2_nsfwjs'));
  assert.deepEqual(
    given.map((s) => s.train),
    ['all', 'all'],
    '--freeze-epochs 0: no head stage',
  );
  assert.ok(close(given[0]!.lrs, [1e-6, 1e-5, 1e-4]));
  assert.throws(() => recipeStages({ ...settings, sizes: [] }, 1e-3, archOf('resnet34')), /at least one size/);
});

test("Learner.fineTune fits fineTuneSchedule's stages: the rates each optimizer is made with", async () => {
  manualSeed(0);
  const x = randn([32, 3, 8, 8]);
  const labels = Array.from({ length: 32 }, (_, i) => i % 2);
  const data = ImageClassifierData.fromArrays('recipe-test', [x, labels], [x, labels], ['a', 'b'], { bs: 16, device: 'cpu' });
  const model = new nn.Sequential(new nn.Conv2d(3, 4, 3), new nn.ReLU(), new nn.AdaptiveAvgPool2d(1), new nn.Flatten(), new nn.Linear(4, 2));
  const made: number[][] = [];
  const learn = new Learner(data, model, {
    log: null,
    device: 'cpu',
    splitter: (m) => [[(m as nn.Sequential).at(0)], [(m as nn.Sequential).at(1)], [(m as nn.Sequential).at(4)]],
    optFunc: (groups, { lr }) => {
      made.push(groups.map((g) => g.lr!));
      return new optim.AdamW(groups, { lr });
    },
  });
  await learn.fineTune(1, 1e-3, { freezeEpochs: 1 });
  const [head, all] = fineTuneSchedule(3, 1, 1e-3, { freezeEpochs: 1 });
  assert.equal(made.length, 2);
  assert.ok(close(made[0]!, head.lrs) && close(made[1]!, all.lrs), `optimizers made at ${JSON.stringify(made)}`);
  x.dispose();
});

test('trainRecipe runs from the API with the defaults filled in, and writes a model that loadLearner reads', async () => {
  manualSeed(0);
  const data = await ImageClassifierData.fromPaths(join(photos, 'dogscats'), { tfms: tfmsFromModel(mobilenet_v2_nsfwjs, 32), bs: 4, numWorkers: 1 });
  const out = join(tmp, 'api-run');
  const lines: string[] = [];
  const summary = await trainRecipe(data, 'mobilenet_v2_nsfwjs', { out, epochs: 1, ttaAug: 1, device: 'cpu' }, undefined, (l) => lines.push(l));
  assert.equal(summary.settings.recipe, 'fine-tune');
  assert.deepEqual(
    summary.stages.map((s) => s.name),
    ['fine-tune: head on precomputed activations, one cycle', 'fine-tune: unfrozen, one cycle'],
  );
  assert.ok(existsSync(summary.artifacts.model) && existsSync(summary.artifacts.report));
  const report = readFileSync(summary.artifacts.report, 'utf8');
  assert.match(report, /learning-rate finder|Learning-rate finder/i);
  assert.match(report, /TTA accuracy/);
  assert.ok(lines.some((l) => /learning-rate finder/.test(l)));
  const back = await loadLearner(summary.artifacts.model, { device: 'cpu' });
  assert.deepEqual(back.data.classes, ['cats', 'dogs']);
  await assert.rejects(
    trainRecipe(data, 'mobilenet_v2_nsfwjs', { out: join(tmp, 'two-sizes'), sizes: [32, 48] }, undefined, () => {}),
    /progressive resizing \(sizes 32, 48\) needs the data at each size: pass dataAt/,
  );
});
