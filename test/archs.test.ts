// Architecture metadata: bodies end where fast.ai cuts them, give the stated
// number of features, split into two layer groups; pretrained loading from a file.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  archOf,
  bodyGroups,
  createPretrained,
  densenet121,
  inception_v3_nsfwjs,
  mobilenet_v2_nsfwjs,
  inception_v3,
  mobilenet_v2,
  noGrad,
  randn,
  resnet18,
  resnet34,
  savePth,
  tidy,
} from '../src/index.js';

test('archOf finds an architecture by name, by constructor, and rejects unknown ones', () => {
  assert.equal(archOf(resnet34).name, 'resnet34');
  assert.equal(archOf('densenet121').bodyFeatures, 1024);
  assert.throws(() => archOf('resnet35'), /unknown architecture 'resnet35'; known: resnet18, resnet34/);
});

for (const [fn, size] of [
  [resnet18, 64],
  [mobilenet_v2, 64],
  [densenet121, 64],
  [inception_v3, 75],
] as const) {
  test(`${archOf(fn).name}: the body gives ${archOf(fn).bodyFeatures} feature maps and shares the model's weights`, () => {
    const arch = archOf(fn);
    const model = arch.create();
    const body = arch.body(model);
    const shape = tidy(() => noGrad(() => body.eval().forward(randn([1, 3, size, size])).shape));
    assert.equal(shape.length, 4);
    assert.equal(shape[1], arch.bodyFeatures);
    const bodyParams = new Set(body.parameters());
    assert.ok(bodyParams.size > 0 && [...bodyParams].every((p) => model.parameters().includes(p)));
    const [early, late] = bodyGroups(arch, body);
    assert.ok(early.length > 0 && late.length > 0, 'the split leaves two non-empty groups');
    model.dispose();
  });
}

for (const name of ['convnext_tiny', 'efficientnet_b0', 'efficientnet_v2_s', 'regnet_y_400mf', 'regnet_x_400mf', 'vit_b_16', 'swin_t']) {
  test(`${name}: the body gives a ${archOf(name).bodyFeatures}-channel map, and its two layer groups hold every body weight the network uses once`, () => {
    const arch = archOf(name);
    const model = arch.create();
    const body = arch.body(model);
    // 64 px: ViT/16 a 4×4 grid of patches (its position embeddings interpolated), Swin a 2×2 map.
    const shape = tidy(() => noGrad(() => body.eval().forward(randn([1, 3, 64, 64])).shape));
    assert.equal(shape.length, 4);
    assert.equal(shape[1], arch.bodyFeatures);
    const [early, late] = bodyGroups(arch, body);
    const e = early.flatMap((m) => m.parameters());
    const l = late.flatMap((m) => m.parameters());
    assert.ok(e.length > 0 && l.length > 0, 'two non-empty groups');
    const grouped = new Set([...e, ...l]);
    assert.equal(grouped.size, e.length + l.length, 'groups do not share parameters');
    // Every body parameter except the unused classifier of the wrapped ViT.
    const classifier = new Set(name.startsWith('vit') ? model.getModule('heads')!.parameters() : []);
    assert.deepEqual(
      body.parameters().filter((p) => !grouped.has(p) && !classifier.has(p)),
      [],
    );
    assert.ok(
      body.parameters().every((p) => model.parameters().includes(p)),
      "the body shares the model's weights",
    );
    model.dispose();
  });
}

for (const [fn, size] of [
  [mobilenet_v2_nsfwjs, 224],
  [inception_v3_nsfwjs, 139],
] as const) {
  test(`${archOf(fn).name}: offline pretrained body, ${archOf(fn).bodyFeatures} features, two layer groups`, async () => {
    const arch = archOf(fn);
    const model = await createPretrained(fn);
    const body = arch.body(model);
    const shape = tidy(() => noGrad(() => body.forward(randn([1, 3, size, size])).shape));
    assert.equal(shape[1], arch.bodyFeatures);
    const [early, late] = bodyGroups(arch, body);
    assert.ok(early.length > 0 && late.length > 0);
    const lateParams = new Set(late.flatMap((m) => m.parameters()));
    assert.ok(
      early.flatMap((m) => m.parameters()).every((p) => !lateParams.has(p)),
      'groups do not share parameters',
    );
    assert.deepEqual(arch.stats, { mean: [0, 0, 0], std: [1, 1, 1] });
    model.dispose();
  });
}

test('resnet bodies follow fast.ai: cut before avgpool/fc, split at layer3', () => {
  const arch = archOf('resnet34');
  const body = arch.body(arch.create());
  const names = [...body.namedChildren()].map(([n]) => n);
  assert.deepEqual(names, ['conv1', 'bn1', 'relu', 'maxpool', 'layer1', 'layer2', 'layer3', 'layer4']);
  assert.equal(names[arch.split as number], 'layer3');
  assert.ok([...body.stateDict().keys()].every((k) => !k.startsWith('fc')));
});

test('createPretrained loads a local torchvision-format file into the architecture', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'fastvision-arch-'));
  try {
    const src = resnet18();
    const path = join(dir, 'r18.pth');
    await savePth(path, src.stateDict());
    const model = await createPretrained('resnet18', path, { progress: false });
    assert.deepEqual(model.stateDict().get('layer4.1.conv2.weight')!.toArray().slice(0, 5), src.stateDict().get('layer4.1.conv2.weight')!.toArray().slice(0, 5));
    assert.equal(model.training, false);
    await assert.rejects(createPretrained('resnet34', path, { progress: false }), /size mismatch|missing keys/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
