// What the server runs a batch through: the saved network on libtorch, or the
// exported ONNX file on onnxruntime-node (for machines without libtorch; the
// package is loaded only then).
import { cpus } from 'node:os';
import { loadSavedNetwork, type SavedModel } from '../learn/saved-model.js';
import { noGrad, tensor, tidy } from '../torch/index.js';
import { deployMetadata, type DeployMetadata } from './metadata.js';
import { OPSET } from './onnx-proto.js';

/** Runs batches of preprocessed images (n × 3 × size × size) to probabilities (n × classes). */
export interface Predictor {
  readonly runtime: 'libtorch' | 'onnx';
  readonly metadata: DeployMetadata;
  run(input: Float32Array, n: number): Promise<Float32Array>;
  close(): Promise<void>;
}

/** The saved model on libtorch. */
export async function libtorchPredictor(saved: SavedModel): Promise<Predictor> {
  const net = await loadSavedNetwork(saved);
  const size = saved.info.size;
  return {
    runtime: 'libtorch',
    metadata: deployMetadata(saved.info, { opset: OPSET, foldedBatchNorm: false }),
    run: async (input, n) => {
      const x = tensor(input, { shape: [n, 3, size, size] });
      try {
        const p = noGrad(() => tidy(() => (saved.info.multiLabel ? net.forward(x).sigmoid() : net.forward(x).exp())));
        const out = p.dataSync() as Float32Array;
        p.dispose();
        return out;
      } finally {
        x.dispose();
      }
    },
    close: async () => {
      for (const t of net.stateDict().values()) t.dispose();
    },
  };
}

interface OrtModule {
  InferenceSession: { create(bytes: Uint8Array, options?: Record<string, unknown>): Promise<OrtSession> };
  Tensor: new (type: 'float32', data: Float32Array, dims: number[]) => unknown;
}
interface OrtSession {
  run(feeds: Record<string, unknown>): Promise<Record<string, { data: unknown }>>;
  release(): Promise<void>;
}

/** An exported model on onnxruntime-node (which must be installed: `npm install onnxruntime-node`). */
export async function onnxPredictor(onnx: Uint8Array, metadata: DeployMetadata, { threads = cpus().length }: { threads?: number } = {}): Promise<Predictor> {
  let ort: OrtModule;
  try {
    ort = ((await import('onnxruntime-node')) as unknown as { default: OrtModule }).default;
  } catch (e) {
    throw new Error(`--runtime onnx needs onnxruntime-node (npm install onnxruntime-node): ${(e as Error).message.split('\n')[0]}`);
  }
  const session = await ort.InferenceSession.create(onnx, { intraOpNumThreads: threads, interOpNumThreads: 1 });
  const size = metadata.input.size;
  return {
    runtime: 'onnx',
    metadata,
    run: async (input, n) => {
      const out = await session.run({ image: new ort.Tensor('float32', input, [n, 3, size, size]) });
      return Float32Array.from(out.probabilities!.data as Float32Array);
    },
    close: () => session.release(),
  };
}
