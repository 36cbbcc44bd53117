// fastvision's ONNX export against PyTorch's own: the same resnet18 classifier
// (fast.ai's head), written by torch.onnx.export in scripts/make_onnx_fixtures.py
// (committed without its weights) and by fastvision, given the same seeded weights,
// computes the same probabilities in onnxruntime — and both equal libtorch's.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import ort from 'onnxruntime-node';
import { exportOnnx } from '../src/deploy/onnx-export.js';
import { withInitializersFrom } from '../src/deploy/export-model.js';
import { buildClassifier } from '../src/learn/head.js';
import { manualSeed, noGrad, randn } from '../src/index.js';
import { fixturesDir, seededWeights } from './helpers.js';

test("fastvision's ONNX and PyTorch's torch.onnx.export of the same network give the same probabilities", async () => {
  const { model } = await buildClassifier('resnet18', 3, { pretrained: false });
  seededWeights(model);
  model.eval();
  manualSeed(123);
  const x = randn([2, 3, 64, 64]);
  const libtorch = noGrad(() => model.forward(x).exp()).toArray();
  const theirs = withInitializersFrom(readFileSync(join(fixturesDir, 'onnx', 'resnet18_pytorch.onnx')), model.stateDict());
  assert.equal(theirs.filled, 112, "every one of PyTorch's initializers named after a state-dict entry");
  const ours = exportOnnx(model, { inputShape: [3, 64, 64] });
  const feeds = { image: new ort.Tensor('float32', x.dataSync() as Float32Array, [2, 3, 64, 64]) };
  const results: number[][] = [];
  for (const bytes of [theirs.bytes, ours.bytes]) {
    const session = await ort.InferenceSession.create(bytes);
    results.push(Array.from((await session.run(feeds)).probabilities!.data as Float32Array));
    await session.release();
  }
  const [pytorch, fastvision] = results as [number[], number[]];
  for (let i = 0; i < libtorch.length; i++) {
    assert.ok(Math.abs(pytorch[i]! - libtorch[i]!) < 1e-5, `PyTorch's file vs libtorch at ${i}: ${pytorch[i]} vs ${libtorch[i]}`);
    assert.ok(Math.abs(fastvision[i]! - pytorch[i]!) < 1e-5, `fastvision's file vs PyTorch's at ${i}: ${fastvision[i]} vs ${pytorch[i]}`);
  }
  assert.ok(Math.max(...libtorch) - Math.min(...libtorch) > 0.05, 'the probabilities say something');
});
