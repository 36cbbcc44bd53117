// A data-loader worker thread: decodes and transforms the images of one batch
// into a Float32Array it hands back without copying. Imports no libtorch.
import { parentPort } from 'node:worker_threads';
import { BadImageError, loadTransformed, rngFor, type Transform } from './augment.js';

/** A batch request from the loader. */
export interface BatchRequest {
  id: number;
  files: string[];
  seeds: [number, number, number][];
  transform: Transform;
  nhwc: boolean;
}

/** The worker's answer: the batch values, and per image an error message or null. */
export interface BatchReply {
  id: number;
  buffer: ArrayBuffer;
  errors: (string | null)[];
}

/** Decodes and transforms a batch (also used on the main thread when numWorkers is 0). */
export async function processBatch(req: BatchRequest): Promise<BatchReply> {
  const per = req.transform.sz * req.transform.sz * 3;
  const out = new Float32Array(req.files.length * per);
  const errors = await Promise.all(
    req.files.map(async (file, i) => {
      try {
        await loadTransformed(file, req.transform, rngFor(...req.seeds[i]!), out, i * per, req.nhwc);
        return null;
      } catch (e) {
        return e instanceof BadImageError ? e.reason : (e as Error).message;
      }
    }),
  );
  return { id: req.id, buffer: out.buffer, errors };
}

if (parentPort !== null) {
  const port = parentPort;
  port.on('message', (req: BatchRequest) => {
    processBatch(req).then(
      (reply) => port.postMessage(reply, [reply.buffer]),
      (e: Error) => port.postMessage({ id: req.id, buffer: new ArrayBuffer(0), errors: req.files.map(() => e.message) } satisfies BatchReply),
    );
  });
}
