// Reading Keras models saved in TensorFlow.js' layers format (model.json + weight
// shards), as the nsfwjs package bundles them: topology, and weights decoded from
// their uint8/uint16 quantization to float32.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { vendoredFile } from '../../util/package-files.js';

/** One Keras layer of a functional model's config. */
export interface KerasLayer {
  class_name: string;
  name?: string;
  config: Record<string, unknown> & { name: string };
  inbound_nodes: [string, number, number, Record<string, unknown>][][];
}

/** A weight entry of the manifest. */
export interface ManifestWeight {
  name: string;
  shape: number[];
  dtype: 'float32' | 'int32';
  quantization?: { min?: number; scale?: number; dtype: 'uint8' | 'uint16' | 'float16' };
}

/** The model.json of tfjs' layers format. */
export interface TfjsModelJson {
  modelTopology: { model_config: { class_name: string; config: { name: string; layers: KerasLayer[]; input_layers: [string, number, number][]; output_layers: [string, number, number][] } } };
  weightsManifest: { paths: string[]; weights: ManifestWeight[] }[];
}

/** Decoded weights by Keras name (`Conv1/kernel`), with their Keras shapes. */
export type KerasWeights = Map<string, { shape: number[]; data: Float32Array }>;

function float16ToFloat32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return s * 2 ** -14 * (f / 1024);
  if (e === 31) return f ? Number.NaN : s * Infinity;
  return s * 2 ** (e - 15) * (1 + f / 1024);
}

/** Decodes the concatenated weight bytes according to the manifest. */
export function decodeWeights(manifest: ManifestWeight[], bytes: Uint8Array, what: string): KerasWeights {
  const out: KerasWeights = new Map();
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  for (const w of manifest) {
    const n = w.shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    const q = w.quantization;
    const need = n * (q === undefined ? 4 : q.dtype === 'uint8' ? 1 : 2);
    if (pos + need > bytes.length) throw new Error(`${what}: weight data ends before ${w.name}`);
    if (q === undefined) {
      if (w.dtype !== 'float32') throw new Error(`${what}: ${w.name} has unsupported dtype ${w.dtype}`);
      for (let i = 0; i < n; i++) data[i] = view.getFloat32(pos + 4 * i, true);
    } else if (q.dtype === 'float16') {
      for (let i = 0; i < n; i++) data[i] = float16ToFloat32(view.getUint16(pos + 2 * i, true));
    } else {
      const min = q.min ?? 0;
      const scale = q.scale ?? 1;
      for (let i = 0; i < n; i++) data[i] = (q.dtype === 'uint8' ? bytes[pos + i]! : view.getUint16(pos + 2 * i, true)) * scale + min;
    }
    pos += need;
    out.set(w.name, { shape: w.shape, data });
  }
  if (pos !== bytes.length) throw new Error(`${what}: ${bytes.length - pos} bytes of weight data left over`);
  return out;
}

/** The nsfwjs models this package carries a copy of (scripts/vendor.mjs); the others need nsfwjs installed. */
const VENDORED_MODELS = new Set(['mobilenet_v2']);

/**
 * The folder of one of nsfwjs' bundled models: fastvision's own copy when it carries one, else
 * the nsfwjs package's `dist/models/<model>`.
 */
export function nsfwjsModelDir(model: string): string {
  if (VENDORED_MODELS.has(model)) {
    const vendored = vendoredFile('nsfwjs', `dist/models/${model}/model.min.js`);
    if (vendored) return dirname(vendored);
  }
  const require = createRequire(import.meta.url);
  let entry: string;
  try {
    entry = require.resolve('nsfwjs');
  } catch {
    throw new Error(
      `the ${model} weights come from the nsfwjs package, which is not installed: npm install nsfwjs --legacy-peer-deps (without the flag npm also installs TF.js, 270 MB that fastvision does not use)`,
    );
  }
  let dir = dirname(entry);
  while (!existsSync(join(dir, 'package.json')) || !existsSync(join(dir, 'dist', 'models'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`cannot find nsfwjs' dist/models next to ${entry}`);
    dir = up;
  }
  return join(dir, 'dist', 'models', model);
}

/**
 * Loads one of nsfwjs' bundled models: `model.min.js` returns the model.json object
 * and each `group1-shard*.min.js` a base64 string, joined in the manifest's order.
 */
export function loadNsfwjsModel(model: 'mobilenet_v2' | 'mobilenet_v2_mid' | 'inception_v3'): { json: TfjsModelJson; weights: KerasWeights } {
  const dir = nsfwjsModelDir(model);
  const require = createRequire(import.meta.url);
  const json = require(join(dir, 'model.min.js')) as TfjsModelJson;
  const manifest = json.weightsManifest.flatMap((g) => g.weights);
  const paths = json.weightsManifest.flatMap((g) => g.paths);
  const parts = paths.map((p) => Buffer.from(require(join(dir, `${p}.min.js`)) as string, 'base64'));
  return { json, weights: decodeWeights(manifest, Buffer.concat(parts), `nsfwjs ${model}`) };
}
