// bench/preprocess: what it costs to run model-preprocess.onnx (decoded pixels in;
// Pillow's resize, crop and normalization inside the graph, by MatMul in doubles)
// against preparing the input in JavaScript (validationInput) and running model.onnx,
// both in onnxruntime-node, for photos of 0.3, 2 and 12 megapixels and a 224-pixel
// MobileNetV2 with fast.ai's head. Alternating rounds in one run.
// Last line: `RESULT preprocess_graph_time_ratio_vs_js_1080p <graph ms ÷ (JS resize + model.onnx) ms, 1920×1080>`.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ort from 'onnxruntime-node';
import { exportSavedModel } from '../src/deploy/export-model.js';
import { buildClassifier } from '../src/learn/head.js';
import { readSavedModel, saveNetwork } from '../src/learn/saved-model.js';
import { getNumThreads, manualSeed } from '../src/index.js';
import { validationInput } from '../src/vision/warp.js';
import { arg, median, table } from './common.js';

const ROUNDS = Number(arg('rounds', '3'));
const SIZE = 224;
const SHAPES: [number, number][] = [
  [640, 480],
  [1920, 1080],
  [4000, 3000],
];

const dir = mkdtempSync(join(tmpdir(), 'fastvision-bench-preprocess-'));
try {
  manualSeed(0);
  const { model, headSpec } = await buildClassifier('mobilenet_v2', 10, { pretrained: false });
  await saveNetwork(dir, model, {
    format: 'fastvision-model',
    version: 1,
    arch: 'mobilenet_v2',
    classes: Array.from({ length: 10 }, (_, i) => `c${i}`),
    size: SIZE,
    xtraFc: headSpec!.xtraFc,
    ps: headSpec!.ps,
  });
  const exported = await exportSavedModel(await readSavedModel(dir));
  const threads = getNumThreads();
  const options = { intraOpNumThreads: threads, interOpNumThreads: 1 };
  const graph = await ort.InferenceSession.create(exported.withPreprocessing!, options);
  const plain = await ort.InferenceSession.create(exported.onnx, options);
  const stats = { mean: exported.metadata.input.mean, std: exported.metadata.input.std };
  const rows: string[][] = [];
  let ratio1080 = 0;
  for (const [w, h] of SHAPES) {
    const pixels = new Uint8Array(w * h * 3).map((_, i) => (Math.imul(i + 1, 2654435761) >>> 24) & 255);
    const inGraph: number[] = [];
    const inJs: number[] = [];
    for (let r = 0; r < ROUNDS + 1; r++) {
      let t = performance.now();
      await graph.run({ pixels: new ort.Tensor('uint8', pixels, [1, h, w, 3]) });
      const g = performance.now() - t;
      t = performance.now();
      const x = validationInput({ data: pixels, width: w, height: h }, SIZE, stats);
      await plain.run({ image: new ort.Tensor('float32', x, [1, 3, SIZE, SIZE]) });
      const j = performance.now() - t;
      // The first round warms both sessions up.
      if (r > 0) {
        inGraph.push(g);
        inJs.push(j);
      }
    }
    const ratio = median(inGraph) / median(inJs);
    if (w === 1920) ratio1080 = ratio;
    rows.push([`${w}×${h}`, `${median(inGraph).toFixed(0)} ms`, `${median(inJs).toFixed(0)} ms`, ratio.toFixed(2)]);
  }
  console.log(`onnxruntime-node, ${threads} threads, mobilenet_v2 at ${SIZE}, median of ${ROUNDS} rounds`);
  console.log(table(['photo', 'model-preprocess.onnx', 'validationInput (JS) + model.onnx', 'ratio'], rows));
  console.log(`RESULT preprocess_graph_time_ratio_vs_js_1080p ${ratio1080.toFixed(3)}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
