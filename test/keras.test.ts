// The Keras converter: the nsfwjs MobileNetV2 and InceptionV3, converted, compute
// what TensorFlow.js computes with the original models, on real photos.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { test } from 'node:test';
import * as tf from '@tensorflow/tfjs';
import { decodeWeights, inception_v3_nsfwjs, loadNsfwjsModel, manualSeed, mobilenet_v2_nsfwjs, noGrad, nsfwjsModelDir, randn, samePadding, tensor, tidy, type Tensor } from '../src/index.js';
import { assertClose, photos as photoFixture, photoNHWC } from './helpers.js';

const require = createRequire(import.meta.url);
const photos = ['dogscats/valid/cats/Bengal_167.jpg', 'dogscats/valid/dogs/beagle_171.jpg'].map((p) => join(photoFixture, p));

/**
 * The original model in TF.js. With `upTo`, the topology is cut after that layer
 * (and its weights kept accordingly) with a free input size, for fully
 * convolutional sub-models.
 */
async function tfjsModel(which: 'mobilenet_v2' | 'inception_v3', upTo?: string): Promise<tf.LayersModel> {
  const { json: original } = loadNsfwjsModel(which);
  const json = structuredClone(original);
  const dir = nsfwjsModelDir(which);
  const bytes = Buffer.concat(json.weightsManifest.flatMap((g) => g.paths).map((p) => Buffer.from(require(join(dir, `${p}.min.js`)) as string, 'base64')));
  let specs = json.weightsManifest.flatMap((g) => g.weights);
  let data: Buffer = bytes;
  if (upTo !== undefined) {
    const cfg = json.modelTopology.model_config.config;
    const end = cfg.layers.findIndex((l) => l.config.name === upTo);
    cfg.layers = cfg.layers.slice(0, end + 1);
    cfg.layers[0]!.config.batch_input_shape = [null, null, null, 3];
    cfg.output_layers = [[upTo, 0, 0]];
    const kept = new Set(cfg.layers.map((l) => l.config.name));
    const parts: Buffer[] = [];
    let pos = 0;
    const keptSpecs: typeof specs = [];
    for (const w of specs) {
      const n = w.shape.reduce((a, b) => a * b, 1) * (w.quantization ? (w.quantization.dtype === 'uint8' ? 1 : 2) : 4);
      if (kept.has(w.name.split('/')[0]!)) {
        keptSpecs.push(w);
        parts.push(bytes.subarray(pos, pos + n));
      }
      pos += n;
    }
    specs = keptSpecs;
    data = Buffer.concat(parts);
  }
  await tf.setBackend('cpu');
  return tf.loadLayersModel(
    tf.io.fromMemory({
      modelTopology: json.modelTopology as unknown as tf.io.ModelJSON['modelTopology'],
      weightSpecs: specs,
      weightData: data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength),
    }),
  );
}

function nchw(data: Float32Array, n: number, size: number): Tensor {
  return tidy(() =>
    tensor(data, { shape: [n, size, size, 3] })
      .permute(0, 3, 1, 2)
      .contiguous(),
  );
}

async function batch(size: number): Promise<Float32Array> {
  const parts = await Promise.all(photos.map((p) => photoNHWC(p, size)));
  const out = new Float32Array(parts.length * size * size * 3);
  parts.forEach((p, i) => out.set(p, i * p.length));
  return out;
}

test('quantized weights decode as q * scale + min; a size mismatch is an error', () => {
  const w = decodeWeights([{ name: 'a/kernel', shape: [3], dtype: 'float32', quantization: { dtype: 'uint8', min: -1, scale: 0.5 } }], Uint8Array.of(0, 2, 4), 't');
  assert.deepEqual([...w.get('a/kernel')!.data], [-1, 0, 1]);
  assert.throws(() => decodeWeights([{ name: 'a/kernel', shape: [2], dtype: 'float32' }], Uint8Array.of(0, 0, 0), 't'), /ends before a\/kernel/);
});

test("TensorFlow's 'same' padding puts the extra pixel after", () => {
  assert.deepEqual(samePadding(224, 3, 2), [0, 1]);
  assert.deepEqual(samePadding(225, 3, 2), [1, 1]);
  assert.deepEqual(samePadding(35, 3, 1), [1, 1]);
  assert.deepEqual(samePadding(8, 1, 1), [0, 0]);
});

test('nsfwjs MobileNetV2 converted offline gives TF.js outputs on photos (1e-4 relative)', async () => {
  const model = mobilenet_v2_nsfwjs().eval();
  const data = await batch(224);
  const ours = noGrad(() => model.forward(nchw(data, 2, 224)));
  const ref = await tfjsModel('mobilenet_v2');
  const theirs = ref.predict(tf.tensor4d(data, [2, 224, 224, 3])) as tf.Tensor;
  const expected = tensor(Float32Array.from(await theirs.data()), { shape: theirs.shape });
  assertClose(ours, expected, { rtol: 1e-4, atol: 1e-6, what: 'nsfwjs MobileNetV2 probabilities' });
  model.dispose();
});

test('nsfwjs InceptionV3 body converted offline gives TF.js feature maps on photos', async () => {
  const full = inception_v3_nsfwjs().eval();
  const body = full.cut('mixed10');
  const data = await batch(139);
  const ours = noGrad(() => body.forward(nchw(data, 2, 139)));
  const ref = await tfjsModel('inception_v3', 'mixed10');
  const theirs = ref.predict(tf.tensor4d(data, [2, 139, 139, 3])) as tf.Tensor;
  const nhwc = Float32Array.from(await theirs.data());
  const expected = tidy(() => tensor(nhwc, { shape: theirs.shape }).permute(0, 3, 1, 2).contiguous());
  const scale = expected.abs().max().item();
  assertClose(ours, expected, { rtol: 1e-4, atol: 1e-4 * scale, what: 'InceptionV3 mixed10 features' });
  full.dispose();
});

test('cutting a Keras model shares its weights and keeps Keras layer names', () => {
  const full = mobilenet_v2_nsfwjs();
  const body = full.cut('block_10_project_BN');
  const keys = [...body.stateDict().keys()];
  assert.ok(keys.includes('Conv1.weight') && keys.includes('block_10_project_BN.running_var'));
  assert.ok(!keys.some((k) => k.startsWith('block_11') || k.startsWith('Conv_1')));
  assert.equal(body.stateDict().get('Conv1.weight'), full.stateDict().get('Conv1.weight'));
  const [early, late] = full.splitAt('block_11_expand');
  assert.ok(early.length > 0 && late.length > 0);
  assert.throws(() => full.cut('nope'), /no layer 'nope'/);
  full.dispose();
});

test("gradients through the converted body agree with finite differences (conv, depthwise, batch norm, 'same' padding)", () => {
  manualSeed(0);
  const body = mobilenet_v2_nsfwjs().cut('Conv_1').eval();
  const x = randn([2, 3, 48, 48]).mul(0.2).add(0.5);
  const loss = (): number => noGrad(() => tidy(() => body.forward(x).pow(2).mean().item()));
  const params = new Map(body.namedParameters());
  for (const p of params.values()) p.requiresGrad = true;
  tidy(() => body.forward(x).pow(2).mean()).backward();
  for (const name of ['block_1_depthwise.weight', 'block_13_depthwise.weight', 'block_14_project.weight', 'block_14_project_BN.bias', 'Conv_1.weight']) {
    const p = params.get(name)!;
    const g = p.grad!.dataSync() as Float32Array;
    const w = p.dataSync() as Float32Array;
    let j = 0;
    for (let i = 0; i < g.length; i++) if (Math.abs(g[i]!) > Math.abs(g[j]!)) j = i;
    const h = Math.max(1e-3, Math.abs(w[j]!) * 1e-2);
    const at = (v: number): number => {
      const arr = Float32Array.from(w);
      arr[j] = v;
      noGrad(() => tidy(() => p.copy_(tensor(arr, { shape: p.shape }))));
      return loss();
    };
    const numeric = (at(w[j]! + h) - at(w[j]! - h)) / (2 * h);
    at(w[j]!);
    // Central differences in float32 across ReLU6 kinks: a few percent.
    assert.ok(Math.abs(numeric - g[j]!) <= 0.05 * Math.abs(g[j]!) + 1e-5, `${name}: analytic ${g[j]} vs numeric ${numeric}`);
  }
});
