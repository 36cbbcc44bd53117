// The exported graph with the preprocessing inside (model-preprocess.onnx): it takes the
// decoded pixels of a photo of any size and gives fastvision predict's probabilities,
// in onnxruntime-node and in the onnx package's ReferenceEvaluator (Python, in the
// Debian 13 root; Debian 12's onnx 1.12 has none), and its resize is Pillow's, value
// for value. One preprocessing, in one place.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, writeFileSync, mkdirSync, existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import ort from 'onnxruntime-node';
import { exportSavedModel } from '../src/deploy/export-model.js';
import { OnnxGraph } from '../src/deploy/onnx-graph.js';
import { addPreprocessing } from '../src/deploy/onnx-preprocess.js';
import { readSavedModel } from '../src/learn/saved-model.js';
import { decodeUpright } from '../src/vision/augment.js';
import { validationInput, type Pixels } from '../src/vision/warp.js';
import { photos, predictInProcess, repoRoot, saveSeededModel } from './helpers.js';

const PYTHON = process.env.FASTVISION_TEST_PYTHON ?? '/usr/bin/python3';
const bin = join(repoRoot, 'dist', 'src', 'cli', 'bin.js');
const CLASSES = ['cats', 'dogs', 'other'];
const stats = { mean: [0.485, 0.456, 0.406] as [number, number, number], std: [0.229, 0.224, 0.225] as [number, number, number] };
const files = ['train/cats', 'train/dogs', 'valid/cats', 'valid/dogs', 'test'].flatMap((d) => readdirSync(join(photos, 'dogscats', d)).map((f) => join(photos, 'dogscats', d, f)));
let tmp = '';
let modelDir = '';
let graph: Uint8Array;
const expected = new Map<string, Map<string, number>>();

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'fastvision-onnx-pre-'));
  process.env.FASTVISION_HOME = join(tmp, 'home');
  modelDir = join(tmp, 'model');
  await saveSeededModel(modelDir, CLASSES, 64);
  for (const [f, p] of await predictInProcess(modelDir, files)) expected.set(f, p);
  graph = (await exportSavedModel(await readSavedModel(modelDir))).withPreprocessing!;
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** The preprocessing alone as a model: uint8 pixels in, the normalized input out. */
async function preprocessingOnly(size: number): Promise<{ session: ort.InferenceSession; output: string }> {
  const g = new OnnxGraph();
  const { input, output } = addPreprocessing(g, size, stats);
  return { session: await ort.InferenceSession.create(g.encode({ input, output, metadata: {} })), output: output.name };
}

async function pixelsOf(file: string): Promise<Pixels> {
  const img = await decodeUpright(file);
  return { data: img.data, width: img.width, height: img.height, channels: 3 };
}

test('the graph’s preprocessing equals validationInput value for value: downscaled, upscaled, odd shapes', async () => {
  const samples: Pixels[] = [await pixelsOf(files[0]!), await pixelsOf(files.at(-1)!)];
  // Extreme and tiny shapes, with pixels from a seeded pattern.
  for (const [w, h] of [
    [2, 7],
    [300, 17],
    [1, 1],
    [97, 211],
  ] as [number, number][]) {
    const data = new Uint8Array(w * h * 3).map((_, i) => (Math.imul(i + 1, 2654435761) >>> 24) & 255);
    samples.push({ data, width: w, height: h, channels: 3 });
  }
  for (const size of [32, 64, 224]) {
    const { session, output } = await preprocessingOnly(size);
    for (const img of samples) {
      const want = validationInput(img, size, stats);
      const out = await session.run({ pixels: new ort.Tensor('uint8', img.data as Uint8Array, [1, img.height, img.width, 3]) });
      const got = out[output]!.data as Float32Array;
      assert.deepEqual(out[output]!.dims, [1, 3, size, size]);
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
      assert.ok(worst < 1e-5, `${img.width}×${img.height} at ${size}: ${worst}`);
    }
  }
});

test('onnxruntime-node on model-preprocess.onnx with decoded pixels: fastvision predict’s top class on every fixture photo, probabilities within 1e-3', async () => {
  const session = await ort.InferenceSession.create(graph);
  assert.deepEqual([session.inputNames, session.outputNames], [['pixels'], ['probabilities']]);
  let worst = 0;
  for (const f of files) {
    const img = await pixelsOf(f);
    const out = await session.run({ pixels: new ort.Tensor('uint8', img.data as Uint8Array, [1, img.height, img.width, 3]) });
    const got = Array.from(out.probabilities!.data as Float32Array);
    const want = CLASSES.map((c) => expected.get(f)!.get(c)!);
    assert.equal(got.indexOf(Math.max(...got)), want.indexOf(Math.max(...want)), f);
    for (let k = 0; k < CLASSES.length; k++) worst = Math.max(worst, Math.abs(got[k]! - want[k]!));
  }
  console.log(`${files.length} photos, largest difference ${worst.toExponential(2)}`);
  assert.ok(worst <= 1e-3, String(worst));
});

/** The onnx package's version under this machine's Python when it has ReferenceEvaluator (onnx >= 1.13), else null. */
function referenceOnnx(): string | null {
  const r = spawnSync(PYTHON, ['-c', 'import onnx, onnx.reference, numpy; print(onnx.__version__)'], { encoding: 'utf8', timeout: 120_000 });
  return r.status === 0 ? r.stdout.trim() : null;
}
const onnxVersion = referenceOnnx();
const mustRun = process.env.FASTVISION_IN_TORCH2_ROOT === '1';

test(
  'the onnx package’s ReferenceEvaluator (Python) agrees: same top class, within 1e-3',
  { skip: onnxVersion === null && !mustRun ? `${PYTHON} has no onnx with ReferenceEvaluator (onnx >= 1.13: the Debian 13 root runs this, npm run test:torch2)` : false },
  async () => {
    assert.ok(onnxVersion !== null, `${PYTHON} must have onnx >= 1.13 with numpy here`);
    const dir = join(tmp, 'cases');
    mkdirSync(dir);
    writeFileSync(join(dir, 'model.onnx'), graph);
    // ReferenceEvaluator is numpy, slow on convolutions: a sample of the photos.
    const picks = files.filter((_, i) => i % 6 === 0);
    const cases = [];
    for (const [i, f] of picks.entries()) {
      const img = await pixelsOf(f);
      writeFileSync(join(dir, `${i}.raw`), img.data);
      cases.push({ pixels: `${i}.raw`, height: img.height, width: img.width, probabilities: CLASSES.map((c) => expected.get(f)!.get(c)!) });
    }
    writeFileSync(join(dir, 'cases.json'), JSON.stringify(cases));
    const r = spawnSync(PYTHON, [join(repoRoot, 'scripts', 'check_onnx_preprocess.py'), join(dir, 'model.onnx'), dir], { encoding: 'utf8', timeout: 600_000 });
    assert.equal(r.status, 0, r.stderr);
    const result = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { onnx: string; cases: number; sameTop: number; worst: number };
    console.log(`onnx ${result.onnx}: ${result.sameTop} of ${result.cases} same top class, largest difference ${result.worst.toExponential(2)}`);
    assert.equal(result.cases, picks.length);
    assert.equal(result.sameTop, picks.length);
    assert.ok(result.worst <= 1e-3, String(result.worst));
  },
);

test('fastvision export writes model-preprocess.onnx and says so in metadata.json; --no-preprocess leaves it out', () => {
  const out = join(tmp, 'export');
  const r = spawnSync(process.execPath, [bin, 'export', modelDir, '--out', out], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /model-preprocess\.onnx \(takes uint8 pixels \[1,H,W,3\]/);
  const meta = JSON.parse(readFileSync(join(out, 'metadata.json'), 'utf8')) as {
    version: number;
    withPreprocessing: { file: string; input: { name: string } } | null;
    preprocessing: { torchvision: string };
  };
  assert.equal(meta.version, 2);
  assert.deepEqual([meta.withPreprocessing?.file, meta.withPreprocessing?.input.name], ['model-preprocess.onnx', 'pixels']);
  assert.match(meta.preprocessing.torchvision, /^Compose\(\[Resize\(64\), CenterCrop\(64\), ToTensor\(\), Normalize\(mean=\[[\d.,]+\], std=\[[\d.,]+\]\)\]\)$/);
  assert.ok(existsSync(join(out, 'model-preprocess.onnx')));
  const bare = join(tmp, 'export-bare');
  const r2 = spawnSync(process.execPath, [bin, 'export', modelDir, '--out', bare, '--no-preprocess'], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r2.status, 0, r2.stderr);
  assert.equal(existsSync(join(bare, 'model-preprocess.onnx')), false);
  assert.equal((JSON.parse(readFileSync(join(bare, 'metadata.json'), 'utf8')) as { withPreprocessing: unknown }).withPreprocessing, null);
});
