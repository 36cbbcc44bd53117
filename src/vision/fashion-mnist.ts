// Fashion-MNIST from Debian's `dataset-fashion-mnist` package (IDX files, gzipped):
// a real labelled image set that installs offline.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';

/** Where Debian installs the dataset. */
export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

/** The ten class names, in label order. */
export const FASHION_MNIST_CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'] as const;

/** Images as bytes (N×28×28, row-major) with their labels. */
export interface RawImageSet {
  images: Uint8Array;
  labels: Uint8Array;
  count: number;
  height: number;
  width: number;
}

/** Parses an IDX file (the MNIST format): big-endian dims after a magic number giving the type and rank. */
export function parseIdx(buf: Uint8Array, what: string): { dims: number[]; data: Uint8Array } {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  if (buf.length < 4 || view.getUint16(0) !== 0 || view.getUint8(2) !== 0x08) {
    throw new Error(`${what}: not an unsigned-byte IDX file`);
  }
  const rank = view.getUint8(3);
  const dims: number[] = [];
  for (let i = 0; i < rank; i++) dims.push(view.getUint32(4 + 4 * i));
  const start = 4 + 4 * rank;
  const n = dims.reduce((a, b) => a * b, 1);
  if (buf.length < start + n) throw new Error(`${what}: truncated (${buf.length - start} of ${n} bytes)`);
  return { dims, data: buf.subarray(start, start + n) };
}

/** Loads the train (60,000) or test (10,000) split, optionally only the first `limit` images. */
export async function loadFashionMnist(split: 'train' | 'test', { dir = FASHION_MNIST_DIR, limit }: { dir?: string; limit?: number } = {}): Promise<RawImageSet> {
  const prefix = split === 'train' ? 'train' : 't10k';
  const read = async (name: string): Promise<Uint8Array> => {
    const path = join(dir, name);
    try {
      return gunzipSync(await readFile(path));
    } catch (e) {
      throw new Error(`cannot read ${path} (${(e as Error).message}); install it with: apt-get install dataset-fashion-mnist`);
    }
  };
  const imgs = parseIdx(await read(`${prefix}-images-idx3-ubyte.gz`), `${prefix}-images`);
  const labels = parseIdx(await read(`${prefix}-labels-idx1-ubyte.gz`), `${prefix}-labels`);
  const [n, h, w] = imgs.dims as [number, number, number];
  const count = Math.min(n, labels.dims[0]!, limit ?? Infinity);
  return { images: imgs.data.subarray(0, count * h * w), labels: labels.data.subarray(0, count), count, height: h, width: w };
}
