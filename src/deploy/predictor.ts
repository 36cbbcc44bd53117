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
  /**
   * The probabilities for one image's decoded upright RGB bytes (height × width × 3), through
   * the exported graph that preprocesses them itself; present only when there is one.
   */
  runPixels?(pixels: Uint8Array, height: number, width: number): Promise<Float32Array>;
  close(): Promise<void>;
}

/** The saved model on libtorch, on `device` ('cpu' or 'cuda:N'; the file is read on the CPU and moved there). */
export async function libtorchPredictor(saved: SavedModel, device = 'cpu'): Promise<Predictor> {
  const net = (await loadSavedNetwork(saved)).to(device);
  const size = saved.info.size;
  return {
    runtime: 'libtorch',
    metadata: deployMetadata(saved.info, { opset: OPSET, foldedBatchNorm: false }),
    run: async (input, n) => {
      const x = tensor(input, { shape: [n, 3, size, size], device });
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
  Tensor: new (type: 'float32' | 'uint8', data: Float32Array | Uint8Array, dims: number[]) => unknown;
}
interface OrtSession {
  run(feeds: Record<string, unknown>): Promise<Record<string, { data: unknown }>>;
  release(): Promise<void>;
}

/**
 * An exported model on onnxruntime-node (which must be installed: `npm install onnxruntime-node`).
 * With `withPreprocessing` (model-preprocess.onnx), images go through that graph, so the
 * preprocessing is the exported one; `onnx` (model.onnx) then may be null.
 */
export async function onnxPredictor(
  onnx: Uint8Array | null,
  metadata: DeployMetadata,
  { threads = cpus().length, withPreprocessing = null }: { threads?: number; withPreprocessing?: Uint8Array | null } = {},
): Promise<Predictor> {
  let ort: OrtModule;
  try {
    ort = ((await import('onnxruntime-node')) as unknown as { default: OrtModule }).default;
  } catch (e) {
    throw new Error(`--runtime onnx needs onnxruntime-node (npm install onnxruntime-node): ${(e as Error).message.split('\n')[0]}`);
  }
  if (onnx === null && withPreprocessing === null) throw new Error('onnxPredictor: no ONNX model given');
  const options = { intraOpNumThreads: threads, interOpNumThreads: 1 };
  const session = onnx === null ? null : await ort.InferenceSession.create(onnx, options);
  const pixelSession = withPreprocessing === null ? null : await ort.InferenceSession.create(withPreprocessing, options);
  const size = metadata.input.size;
  return {
    runtime: 'onnx',
    metadata,
    run: async (input, n) => {
      if (session === null) throw new Error('this exported model takes decoded pixels only (model-preprocess.onnx)');
      const out = await session.run({ image: new ort.Tensor('float32', input, [n, 3, size, size]) });
      return Float32Array.from(out.probabilities!.data as Float32Array);
    },
    ...(pixelSession === null
      ? {}
      : {
          runPixels: async (pixels: Uint8Array, height: number, width: number) => {
            const out = await pixelSession.run({ pixels: new ort.Tensor('uint8', pixels, [1, height, width, 3]) });
            return Float32Array.from(out.probabilities!.data as Float32Array);
          },
        }),
    close: async () => {
      await session?.release();
      await pixelSession?.release();
    },
  };
}
