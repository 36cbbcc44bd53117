// A data-loader worker thread (a piscina task): decodes and transforms the images
// of one batch into a Float32Array it hands back without copying. Imports no libtorch.
import { move, transferableSymbol, valueSymbol } from 'piscina';
import { BadImageError, decodeUpright, loadTransformed, rngFor, type Transform } from './augment.js';

/** A batch request from the loader. */
export interface BatchRequest {
  id: number;
  /** Image files, or the bytes of images (an upload). */
  files: (string | Uint8Array)[];
  seeds: [number, number, number][];
  transform: Transform;
  nhwc: boolean;
  /** The pixel limit of the thread that asked (workers have their own module state). */
  maxPixels: number;
  /** Decode only: the reply holds the one image's upright RGB bytes and its size, untransformed. */
  pixelsOnly?: boolean;
}

/** The worker's answer: the batch values, and per image an error message or null. */
export interface BatchReply {
  id: number;
  buffer: ArrayBuffer;
  errors: (string | null)[];
  /** With pixelsOnly: the image's width and height. */
  size?: [number, number];
}

/** Decodes and transforms a batch (also used on the main thread when numWorkers is 0). */
export async function processBatch(req: BatchRequest): Promise<BatchReply> {
  if (req.pixelsOnly === true) {
    const file = req.files[0]!;
    try {
      const img = await decodeUpright(typeof file === 'string' ? file : Buffer.from(file.buffer, file.byteOffset, file.byteLength), req.maxPixels);
      const bytes = img.data.byteOffset === 0 && img.data.byteLength === img.data.buffer.byteLength ? img.data : img.data.slice();
      return { id: req.id, buffer: bytes.buffer as ArrayBuffer, errors: [null], size: [img.width, img.height] };
    } catch (e) {
      return { id: req.id, buffer: new ArrayBuffer(0), errors: [e instanceof BadImageError ? e.reason : (e as Error).message] };
    }
  }
  const per = req.transform.sz * req.transform.sz * 3;
  const out = new Float32Array(req.files.length * per);
  const errors = await Promise.all(
    req.files.map(async (file, i) => {
      try {
        const input = typeof file === 'string' ? file : Buffer.from(file.buffer, file.byteOffset, file.byteLength);
        await loadTransformed(input, req.transform, rngFor(...req.seeds[i]!), out, i * per, req.nhwc, req.maxPixels);
        return null;
      } catch (e) {
        return e instanceof BadImageError ? e.reason : (e as Error).message;
      }
    }),
  );
  return { id: req.id, buffer: out.buffer, errors };
}

/** A reply whose buffer moves to the main thread instead of being copied (piscina's transferable protocol). */
class MovedReply {
  constructor(private readonly reply: BatchReply) {}
  get [transferableSymbol](): ArrayBuffer[] {
    return [this.reply.buffer];
  }
  get [valueSymbol](): BatchReply {
    return this.reply;
  }
}

/** The pool's task: one batch, decoded on a worker thread. */
export default async function task(req: BatchRequest): Promise<MovedReply> {
  return move(new MovedReply(await processBatch(req))) as unknown as MovedReply;
}
