// The per-image latency part of bench/serve, in its own process: a saved model
// through libtorch and through onnxruntime-node (batch norms folded and kept), at
// batch 1 and 32; with --pytorch-onnx FILE, PyTorch's torch.onnx.export of the
// resnet18 classifier against fastvision's export of it. Prints one JSON line:
// { "<runtime>/<batch>": ms per image, ... }.
import { readFileSync } from 'node:fs';
import ort from 'onnxruntime-node';
import { withInitializersFrom } from '../src/deploy/export-model.js';
import { exportOnnx } from '../src/deploy/onnx-export.js';
import { buildClassifier } from '../src/learn/head.js';
import { loadSavedNetwork, readSavedModel } from '../src/learn/saved-model.js';
import { noGrad, randn, tidy } from '../src/index.js';
import { arg } from './common.js';

const model = arg('model', '');
const REPS = Number(arg('reps', '3'));

async function main(): Promise<void> {
  const saved = await readSavedModel(model);
  const net = await loadSavedNetwork(saved);
  const size = saved.info.size;
  const out: Record<string, number> = {};
  const time = async (key: string, n: number, run: () => Promise<void> | void): Promise<void> => {
    await run();
    const t0 = performance.now();
    for (let i = 0; i < REPS; i++) await run();
    out[key] = (performance.now() - t0) / REPS / n;
  };
  for (const n of [1, 32]) {
    const x = randn([n, 3, size, size]);
    await time(`libtorch/${n}`, n, () => void noGrad(() => tidy(() => net.forward(x).exp())).dispose());
    for (const fold of [true, false]) {
      const session = await ort.InferenceSession.create(exportOnnx(net, { inputShape: [3, size, size], foldBatchNorm: fold }).bytes, { intraOpNumThreads: 2, interOpNumThreads: 1 });
      const feeds = { image: new ort.Tensor('float32', x.dataSync() as Float32Array, [n, 3, size, size]) };
      await time(`onnx${fold ? '' : ' (batch norm kept)'}/${n}`, n, async () => void (await session.run(feeds)));
      await session.release();
    }
    x.dispose();
  }
  if (arg('pytorch-onnx', '') !== '') {
    // PyTorch's own export of the resnet18 classifier (the test fixture, filled with this network's weights) against ours.
    const { model: r18 } = await buildClassifier('resnet18', 3, { pretrained: false });
    r18.eval();
    const theirs = withInitializersFrom(readFileSync(arg('pytorch-onnx', '')), r18.stateDict()).bytes;
    // The fixture's input is 64 × 64 (only its batch is dynamic).
    const px = 64;
    const ours = exportOnnx(r18, { inputShape: [3, px, px] }).bytes;
    for (const n of [1, 32]) {
      const x = randn([n, 3, px, px]);
      for (const [name, bytes] of [
        ['resnet18, PyTorch torch.onnx.export', theirs],
        ['resnet18, fastvision export', ours],
      ] as const) {
        const session = await ort.InferenceSession.create(bytes, { intraOpNumThreads: 2, interOpNumThreads: 1 });
        const feeds = { image: new ort.Tensor('float32', x.dataSync() as Float32Array, [n, 3, px, px]) };
        await time(`${name} (64 px)/${n}`, n, async () => void (await session.run(feeds)));
        await session.release();
      }
      x.dispose();
    }
  }
  console.log(JSON.stringify(out));
}

await main();
