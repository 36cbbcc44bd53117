// The ONNX export against a real runtime: for every architecture with fast.ai's
// head, onnxruntime-node on the exported file gives what `fastvision predict`
// gives on the same photos (within 1e-4, same top-1), with batch norms folded or
// not; the file carries its metadata; a module without a rule is a clear error.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import ort from 'onnxruntime-node';
import { exportOnnx, OnnxExportError } from '../src/deploy/onnx-export.js';
import { exportSavedModel, onnxMetadata, writeExport } from '../src/deploy/export-model.js';
import { ModelProto } from '../src/deploy/onnx-proto.js';
import { buildClassifier } from '../src/learn/head.js';
import { readSavedModel, saveNetwork } from '../src/learn/saved-model.js';
import { archOf, loadTransformed, nn, noGrad, rngFor, tfmsFromModel, type Tensor } from '../src/index.js';
import { photos, predictInProcess, seededWeights } from './helpers.js';

let tmp = '';
const images = [...readdirSync(join(photos, 'dogscats', 'test')).map((f) => join(photos, 'dogscats', 'test', f)), join(photos, 'dogscats', 'valid', 'cats', 'Bengal_167.jpg')];

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'fastvision-onnx-'));
  process.env.FASTVISION_HOME = join(tmp, 'home');
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** The ONNX model's probabilities for the photos, fed fastvision's validation input. */
async function runOnnx(bytes: Uint8Array, archName: string, size: number, files: string[]): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(bytes);
  const per = 3 * size * size;
  const input = new Float32Array(files.length * per);
  const val = tfmsFromModel(archOf(archName), size).val;
  for (const [i, f] of files.entries()) await loadTransformed(f, val, rngFor(0), input, i * per);
  const out = await session.run({ image: new ort.Tensor('float32', input, [files.length, 3, size, size]) });
  await session.release();
  return out.probabilities!.data as Float32Array;
}

const ARCHS: [string, number][] = [
  ['resnet18', 64],
  ['resnet34', 64],
  ['resnet50', 64],
  ['resnet101', 64],
  ['resnet152', 64],
  ['resnext50_32x4d', 64],
  ['resnext101_32x8d', 64],
  ['wide_resnet50_2', 64],
  ['vgg16_bn', 64],
  ['densenet121', 64],
  ['mobilenet_v2', 64],
  ['inception_v3', 96],
  ['mobilenet_v2_nsfwjs', 64],
  ['inception_v3_nsfwjs', 96],
  ['convnext_tiny', 64],
  ['efficientnet_b0', 64],
  ['efficientnet_v2_s', 64],
  ['regnet_y_400mf', 64],
  ['regnet_x_400mf', 64],
  // ViT at 64 px: a 4×4 grid (position embeddings interpolated); Swin: windows padded and shifted.
  ['vit_b_16', 64],
  ['swin_t', 64],
];
const CLASSES = ['cats', 'dogs', 'birds'];

for (const [name, size] of ARCHS) {
  test(`${name}: onnxruntime-node on the exported file gives fastvision predict's probabilities`, async () => {
    const offline = name.endsWith('_nsfwjs');
    const { model, headSpec } = await buildClassifier(name, CLASSES.length, { pretrained: offline });
    // torchvision bodies get the seeded weights of the PyTorch fixtures (no download here); the
    // converted Keras bodies keep their own. Either way the head is seeded too.
    if (offline) seededWeights(model.getModule('head') as nn.Module);
    else seededWeights(model);
    // EfficientNetV2-S's 40 blocks grow seeded activations to ~1e6: halving its batch norms' scales
    // keeps them near 1. (The NaN probabilities once seen here on libtorch 2.6 were oneDNN's stale
    // channel padding, not this: test/onednn-padding.test.ts.)
    if (name === 'efficientnet_v2_s') noGrad(() => model.modules().forEach((m) => m instanceof nn.BatchNorm2d && m.weight?.mul_(0.5)));
    const dir = join(tmp, name);
    await saveNetwork(dir, model, { format: 'fastvision-model', version: 1, arch: name, classes: CLASSES, size, xtraFc: headSpec!.xtraFc, ps: headSpec!.ps });
    for (const t of model.stateDict().values()) t.dispose();
    const expected = await predictInProcess(dir, images);
    const exported = await exportSavedModel(await readSavedModel(dir), { preprocess: false });
    assert.equal(exported.withPreprocessing, null);
    const probs = await runOnnx(exported.onnx, name, size, images);
    let worst = 0;
    let spread = 0;
    for (const [i, f] of images.entries()) {
      const want = CLASSES.map((c) => expected.get(f)!.get(c)!);
      const got = CLASSES.map((_, k) => probs[i * CLASSES.length + k]!);
      for (let k = 0; k < CLASSES.length; k++) worst = Math.max(worst, Math.abs(got[k]! - want[k]!));
      spread = Math.max(spread, Math.max(...want) - Math.min(...want));
      assert.equal(got.indexOf(Math.max(...got)), want.indexOf(Math.max(...want)), `${name}: same top-1 for ${f}`);
    }
    assert.ok(worst <= 1e-4, `${name}: max abs difference ${worst}`);
    assert.ok(spread > 0.05, `${name}: the probabilities say something (spread ${spread})`);
  });
}

test('batch norms folded or kept, any batch size: the same outputs; the file says what it is', async () => {
  const { model, headSpec } = await buildClassifier('resnet18', 2, { pretrained: false });
  seededWeights(model);
  model.eval();
  const { randn, noGrad } = await import('../src/index.js');
  const x = randn([3, 3, 64, 64]);
  const ref = noGrad(() => model.forward(x).exp()).toArray();
  const runs: number[][] = [];
  for (const foldBatchNorm of [true, false]) {
    const { bytes, foldedBatchNorms } = exportOnnx(model, { inputShape: [3, 64, 64], foldBatchNorm });
    assert.equal(foldedBatchNorms, foldBatchNorm ? 20 : 0);
    const session = await ort.InferenceSession.create(bytes);
    assert.deepEqual([session.inputNames, session.outputNames], [['image'], ['probabilities']]);
    for (const n of [3, 1]) {
      const out = await session.run({ image: new ort.Tensor('float32', x.slice(0, 0, n).contiguous().dataSync() as Float32Array, [n, 3, 64, 64]) });
      assert.deepEqual(out.probabilities!.dims, [n, 2], 'a dynamic batch');
      if (n === 3) runs.push(Array.from(out.probabilities!.data as Float32Array));
    }
  }
  for (const r of runs) r.forEach((p, i) => assert.ok(Math.abs(p - ref[i]!) < 1e-5, `${p} vs ${ref[i]}`));
  // Metadata: in the file and beside it.
  const dir = join(tmp, 'meta');
  await saveNetwork(dir, model, { format: 'fastvision-model', version: 1, arch: 'resnet18', classes: ['cat', 'dog'], size: 64, xtraFc: headSpec!.xtraFc, ps: headSpec!.ps });
  const exported = await exportSavedModel(await readSavedModel(dir));
  const files = await writeExport(dir, exported);
  const decoded = ModelProto.toObject(ModelProto.decode(readFileSync(files.onnx)), { longs: Number }) as {
    ir_version: number;
    opset_import: { version: number }[];
    metadata_props: { key: string; value: string }[];
  };
  assert.equal(decoded.ir_version, 8);
  assert.equal(decoded.opset_import[0]!.version, 17);
  const props = new Map(decoded.metadata_props.map((p) => [p.key, p.value]));
  assert.deepEqual(JSON.parse(props.get('labels')!), ['cat', 'dog']);
  assert.equal(props.get('input_size'), '64');
  assert.deepEqual(JSON.parse(props.get('mean')!), [0.485, 0.456, 0.406]);
  assert.deepEqual(JSON.parse(props.get('std')!), [0.229, 0.224, 0.225]);
  assert.equal(props.get('arch'), 'resnet18');
  assert.equal(props.get('crop'), 'center');
  assert.match(props.get('fastvision_version')!, /^\d+\.\d+\.\d+/);
  const beside = JSON.parse(readFileSync(files.metadata, 'utf8')) as unknown;
  assert.deepEqual(beside, onnxMetadata(readFileSync(files.onnx)), 'metadata.json holds the same facts as metadata_props');
  x.dispose();
});

test('a module without an export rule is an error naming it', () => {
  class Mystery extends nn.Module {
    forward(x: Tensor): Tensor {
      return x;
    }
  }
  const net = nn.Sequential.named([['body', new nn.Sequential(new nn.Conv2d(3, 4, 3), new Mystery())]]);
  assert.throws(
    () => exportOnnx(net, { inputShape: [3, 16, 16] }),
    (e: unknown) => e instanceof OnnxExportError && /no rule for Mystery \(at body\.1\)/.test((e as Error).message),
  );
});
