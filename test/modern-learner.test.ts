// Today's backbones in the learner: small ViT and Swin networks (the published ones'
// classes) train with fast.ai's head, freeze and unfreeze by their layer groups
// (ViT's class token and position embeddings with the first group), predict, and give
// Grad-CAM maps of their grid; a published RegNet trains from a .pth through the CLI.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ImageClassifierData, manualSeed, nn, randn, regnet_y_400mf, saveStateDictFile, tfmsFromModel, tidy, visionLearner, type Arch } from '../src/index.js';
import { SwinTransformer, VisionTransformer, ViTBody, vitBodyGroups } from '../src/vision/models/index.js';
import { IMAGENET_STATS } from '../src/vision/models/archs.js';
import { Permute } from '../src/vision/models/blocks.js';
import { photos, repoRoot } from './helpers.js';

let tmp: string;
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'fastvision-modern-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

const quiet = { log: null } as const;
const tinyVit = (): VisionTransformer => new VisionTransformer({ imageSize: 32, patchSize: 8, numLayers: 2, numHeads: 2, hiddenDim: 16, mlpDim: 32, numClasses: 10 });
const TINY_ARCHS: Arch[] = [
  {
    name: 'vit_tiny_test',
    create: tinyVit,
    body: (m) => new ViTBody(m as VisionTransformer),
    groups: (b) => vitBodyGroups(b, 1),
    bodyFeatures: 16,
    split: 1,
    stats: IMAGENET_STATS,
    size: 32,
  },
  {
    name: 'swin_tiny_test',
    create: () => new SwinTransformer({ embedDim: 16, depths: [2, 2], numHeads: [2, 4], windowSize: [4, 4], numClasses: 10 }),
    body: (m) => {
      const s = m as SwinTransformer;
      return nn.Sequential.named([...s.features.namedChildren(), ['norm', s.norm], ['permute', new Permute([0, 3, 1, 2])]]);
    },
    bodyFeatures: 32,
    split: 2,
    stats: IMAGENET_STATS,
    size: 32,
  },
];

for (const arch of TINY_ARCHS) {
  test(`${arch.name}: fine-tunes with fast.ai's head by its layer groups, predicts, and gives Grad-CAM maps of its grid`, async () => {
    manualSeed(0);
    const data = await ImageClassifierData.fromPaths(join(photos, 'dogscats'), { tfms: tfmsFromModel(arch, 32), bs: 4, numWorkers: 1 });
    const learn = await visionLearner(data, arch, { ...quiet, pretrained: false });
    const early = learn.layerGroups[0]!.flatMap((m) => m.parameters());
    const before = early.map((p) => p.toArray());
    await learn.fitOneCycle(1e-3, 1);
    assert.deepEqual(
      early.map((p) => p.toArray()),
      before,
      'frozen: the first group is untouched',
    );
    learn.unfreeze();
    const hist = await learn.fitOneCycle(1e-3, 1);
    assert.ok(Number.isFinite(hist[0]!.valLoss), 'a finite validation loss');
    assert.ok(
      early.some((p, i) => p.toArray().some((v, j) => v !== before[i]![j])),
      'unfrozen: the first group trains',
    );
    const cats = join(photos, 'dogscats', 'valid', 'cats');
    const pred = await learn.predict(join(cats, readdirSync(cats)[0]!));
    assert.equal(pred.probs.length, 2);
    assert.ok(Math.abs(pred.probs.reduce((a, b) => a + b, 0) - 1) < 1e-5);
    const cams = tidy(() => learn.gradCam(randn([2, 3, 32, 32])));
    assert.equal(cams.maps.length, 2);
    // 32 px: ViT/8 a 4×4 grid of patches; Swin (patch 4, one merge) a 4×4 map.
    assert.equal(cams.h * cams.w, 16);
    learn.model.dispose();
  });
}

test('train --arch regnet_y_400mf --weights file.pth fine-tunes a published architecture from local weights', async () => {
  const weights = join(tmp, 'regnet.pth');
  const m = regnet_y_400mf();
  await saveStateDictFile(weights, m.stateDict());
  m.dispose();
  const out = join(tmp, 'out');
  const r = spawnSync(
    process.execPath,
    [
      join(repoRoot, 'dist', 'src', 'cli', 'bin.js'),
      'train',
      join(photos, 'dogscats'),
      '--arch',
      'regnet_y_400mf',
      '--weights',
      weights,
      '--size',
      '32',
      '--bs',
      '4',
      '--epochs',
      '1',
      '--tta-aug',
      '1',
      '--workers',
      '1',
      '--out',
      out,
      '--json',
      join(tmp, 'run.json'),
    ],
    { encoding: 'utf8', env: { ...process.env, FASTVISION_HOME: join(tmp, 'home'), FASTVISION_QUIET: '1' }, timeout: 600_000 },
  );
  assert.equal(r.status, 0, r.stderr);
  const run = JSON.parse(await readFile(join(tmp, 'run.json'), 'utf8')) as { tta: { accuracy: number; loss: number } };
  assert.ok(Number.isFinite(run.tta.loss));
  // The saved model names its architecture and predicts.
  const p = spawnSync(process.execPath, [join(repoRoot, 'dist', 'src', 'cli', 'bin.js'), 'predict', join(out, 'model.pth'), join(photos, 'dogscats', 'test'), '--json'], {
    encoding: 'utf8',
    env: { ...process.env, FASTVISION_HOME: join(tmp, 'home') },
  });
  assert.equal(p.status, 0, p.stderr);
  assert.match(p.stdout, /"(cats|dogs)"/);
});
