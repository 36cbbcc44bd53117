// Applying a transform to one image: decoding with sharp (libvips), the random
// decisions of the augmentations drawn from a seeded source, crop, lighting and
// normalization. Free of libtorch, so that loader workers can import it.
import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { maxImagePixels, overLimitMessage } from './image-limits.js';
import { decodeJpeg, exifOrientation, isJpeg, type RgbImage } from './jpeg.js';

/** Per-channel normalization of the input. */
export interface Normalization {
  mean: [number, number, number];
  std: [number, number, number];
}

/** One augmentation, as data. */
export type Augmentation =
  | { kind: 'rotate'; degrees: number; probability: number }
  | { kind: 'lighting'; brightness: number; contrast: number }
  | { kind: 'flip' }
  | { kind: 'dihedral' };

/** How the final square is taken from the scaled image. */
export type CropType = 'random' | 'center' | 'none';

/** A full transform pipeline for one split (training or validation). */
export interface Transform {
  /** Output side, in pixels. */
  sz: number;
  /** The shorter side is scaled to sz × a random zoom in [1, maxZoom] (1: no zoom). */
  maxZoom: number;
  augs: Augmentation[];
  crop: CropType;
  stats: Normalization;
}

/** A seeded random source (mulberry32), so augmentations are reproducible per sample. */
export function rngFor(...seeds: number[]): () => number {
  let a = 0x9e3779b9;
  for (const s of seeds) a = Math.imul(a ^ (s >>> 0), 0x85ebca6b) ^ (a >>> 13);
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Decisions a transform makes for one sample, drawn up front from its random source. */
interface Plan {
  zoom: number;
  angle: number;
  flip: boolean;
  turns: number;
  brightness: number;
  contrast: number;
  cropX: number;
  cropY: number;
}

function plan(t: Transform, rand: () => number): Plan {
  const p: Plan = { zoom: 1 + (t.maxZoom - 1) * rand(), angle: 0, flip: false, turns: 0, brightness: 0, contrast: 1, cropX: rand(), cropY: rand() };
  for (const a of t.augs) {
    if (a.kind === 'rotate') {
      const r = rand();
      const deg = (rand() * 2 - 1) * a.degrees;
      if (r < a.probability) p.angle = deg;
    } else if (a.kind === 'lighting') {
      p.brightness = (rand() * 2 - 1) * a.brightness;
      const c = (rand() * 2 - 1) * a.contrast;
      // fast.ai: contrast factors are symmetric in log space around 1.
      p.contrast = c < 0 ? -1 / (c - 1) : c + 1;
    } else if (a.kind === 'flip') {
      p.flip = rand() < 0.5;
    } else {
      p.turns = Math.floor(rand() * 4);
      p.flip = rand() < 0.5;
    }
  }
  return p;
}

/** An image that could not be read: names the file and why. */
export class BadImageError extends Error {
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`cannot read image ${file}: ${reason}`);
  }
}

/** A 2-d affine map as [a, b, c, d, e, f]: (x, y) → (a·x + b·y + c, d·x + e·y + f). */
type Affine = [number, number, number, number, number, number];

/** p ∘ q: apply q first, then p. */
function compose(p: Affine, q: Affine): Affine {
  return [p[0] * q[0] + p[1] * q[3], p[0] * q[1] + p[1] * q[4], p[0] * q[2] + p[1] * q[5] + p[2], p[3] * q[0] + p[4] * q[3], p[3] * q[1] + p[4] * q[4], p[3] * q[2] + p[4] * q[5] + p[5]];
}

/** Displayed (upright) coordinates → stored coordinates, for an EXIF orientation of a w×h stored image. */
function orientationMap(o: number, w: number, h: number): Affine {
  switch (o) {
    case 2:
      return [-1, 0, w - 1, 0, 1, 0];
    case 3:
      return [-1, 0, w - 1, 0, -1, h - 1];
    case 4:
      return [1, 0, 0, 0, -1, h - 1];
    case 5:
      return [0, 1, 0, 1, 0, 0];
    case 6:
      return [0, 1, 0, -1, 0, h - 1];
    case 7:
      return [0, -1, w - 1, -1, 0, h - 1];
    case 8:
      return [0, -1, w - 1, 1, 0, 0];
    default:
      return [1, 0, 0, 0, 1, 0];
  }
}

async function decode(file: string | Buffer, target: number, maxPixels: number): Promise<{ img: RgbImage; orientation: number }> {
  const bytes = typeof file === 'string' ? await readFile(file) : file;
  if (bytes.length === 0) throw new Error('empty file');
  if (isJpeg(bytes)) {
    const img = decodeJpeg(bytes, target, target, maxPixels);
    if (img !== null) return { img, orientation: exifOrientation(bytes) };
  }
  // Other formats, CMYK JPEGs: sharp (orientation applied, first frame, RGB), big ones shrunk first.
  // sharp checks the same pixel limit from the header.
  const meta = await sharp(bytes, { pages: 1, limitInputPixels: false }).metadata();
  if (meta.width !== undefined && meta.height !== undefined && meta.width * meta.height > maxPixels) throw new Error(overLimitMessage(meta.width, meta.height, maxPixels));
  const r = await sharp(bytes, { failOn: 'error', pages: 1, limitInputPixels: maxPixels })
    .rotate()
    .resize(target, target, { fit: 'outside', withoutEnlargement: true })
    .removeAlpha()
    .toColourspace('srgb')
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (r.info.channels !== 3) throw new Error(`decoded to ${r.info.channels} channels`);
  return { img: { data: r.data, width: r.info.width, height: r.info.height }, orientation: 1 };
}

/**
 * Reads an image file and applies a transform: any format (JPEGs through
 * libjpeg-turbo, shrinking in the DCT domain; others through sharp, first frame
 * of animations), grey/CMYK/alpha to RGB, EXIF orientation, then scale,
 * rotation, flips and crop as one affine resampling (bilinear, mirrored borders,
 * as fast.ai's warps), lighting and normalization. Writes sz×sz×3 values into
 * `out` at `offset`, channels-first (or channels-last when `nhwc`). An image that
 * declares more than `maxPixels` pixels is refused from its header.
 */
export async function loadTransformed(file: string | Buffer, t: Transform, rand: () => number, out: Float32Array, offset: number, nhwc = false, maxPixels = maxImagePixels()): Promise<void> {
  const p = plan(t, rand);
  const { sz } = t;
  const target = t.crop === 'none' ? sz : Math.max(sz, Math.round(sz * p.zoom));
  let decoded: { img: RgbImage; orientation: number };
  try {
    decoded = await decode(file, target, maxPixels);
  } catch (e) {
    throw new BadImageError(typeof file === 'string' ? file : 'image buffer', (e as Error).message);
  }
  const { img, orientation } = decoded;
  const swap = orientation >= 5;
  const W = swap ? img.height : img.width;
  const H = swap ? img.width : img.height;
  // The scaled, upright image the crop is taken from: shorter side = target (or sz × sz squashed).
  const fx = t.crop === 'none' ? sz / W : target / Math.min(W, H);
  const fy = t.crop === 'none' ? sz / H : fx;
  const Ws = Math.max(sz, Math.round(W * fx));
  const Hs = Math.max(sz, Math.round(H * fy));
  const x0 = t.crop === 'random' ? Math.floor(p.cropX * (Ws - sz + 1)) : Math.floor((Ws - sz) / 2);
  const y0 = t.crop === 'random' ? Math.floor(p.cropY * (Hs - sz + 1)) : Math.floor((Hs - sz) / 2);
  const last = sz - 1;
  // Output square → (dihedral turn, flip) → crop → inverse rotation about the scaled centre → unscale → stored pixels.
  const turn: Affine = [
    [1, 0, 0, 0, 1, 0],
    [0, 1, 0, -1, 0, last],
    [-1, 0, last, 0, -1, last],
    [0, -1, last, 1, 0, 0],
  ][p.turns] as Affine;
  const flip: Affine = p.flip ? [-1, 0, last, 0, 1, 0] : [1, 0, 0, 0, 1, 0];
  const crop: Affine = [1, 0, x0, 0, 1, y0];
  const rad = (p.angle * Math.PI) / 180;
  const cos = Math.cos(rad);
  const sin = Math.sin(rad);
  const cx = (Ws - 1) / 2;
  const cy = (Hs - 1) / 2;
  const rotate: Affine = [cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy];
  const unscale: Affine = [1 / fx, 0, 0.5 / fx - 0.5, 0, 1 / fy, 0.5 / fy - 0.5];
  let m = compose(flip, turn);
  m = compose(crop, m);
  m = compose(rotate, m);
  m = compose(unscale, m);
  m = compose(orientationMap(orientation, img.width, img.height), m);
  warp(img, m, p, sz, t.stats, out, offset, nhwc);
}

function reflect(i: number, n: number): number {
  if (n === 1) return 0;
  const period = 2 * n - 2;
  let r = i % period;
  if (r < 0) r += period;
  return r < n ? r : period - r;
}

/**
 * Fills the sz×sz output by bilinear sampling of the stored image at m(ox, oy),
 * mirrored at the borders. Lighting and normalization go through a per-channel
 * table of the 256 byte values.
 */
function warp(img: RgbImage, m: Affine, p: Plan, sz: number, stats: Normalization, out: Float32Array, offset: number, nhwc: boolean): void {
  const src = img.data;
  const w = img.width;
  const h = img.height;
  const plane = sz * sz;
  // Lighting as fast.ai: (x - mean) * contrast + mean + brightness, clipped to [0, 1],
  // with the mean of the whole image (fast.ai lights before cropping).
  let mu = 0;
  const lit = p.brightness !== 0 || p.contrast !== 1;
  if (lit) {
    let sum = 0;
    for (let i = 0; i < src.length; i++) sum += src[i]!;
    mu = sum / (src.length * 255);
  }
  const lut = [new Float32Array(256), new Float32Array(256), new Float32Array(256)];
  for (let c = 0; c < 3; c++) {
    const mean = stats.mean[c]!;
    const inv = 1 / stats.std[c]!;
    for (let v = 0; v < 256; v++) {
      let x = v / 255;
      if (lit) x = Math.min(1, Math.max(0, (x - mu) * p.contrast + mu + p.brightness));
      lut[c]![v] = (x - mean) * inv;
    }
  }
  const [l0, l1, l2] = lut as [Float32Array, Float32Array, Float32Array];
  const [a, b, c, d, e, f] = m;
  for (let oy = 0; oy < sz; oy++) {
    let u = b * oy + c;
    let v = e * oy + f;
    for (let ox = 0; ox < sz; ox++, u += a, v += d) {
      const fx = Math.floor(u);
      const fy = Math.floor(v);
      const ax = u - fx;
      const ay = v - fy;
      let xa = fx;
      let xb = fx + 1;
      let ya = fy;
      let yb = fy + 1;
      if (fx < 0 || fy < 0 || xb >= w || yb >= h) {
        xa = reflect(xa, w);
        xb = reflect(xb, w);
        ya = reflect(ya, h);
        yb = reflect(yb, h);
      }
      const i00 = (ya * w + xa) * 3;
      const i01 = (ya * w + xb) * 3;
      const i10 = (yb * w + xa) * 3;
      const i11 = (yb * w + xb) * 3;
      const w11 = ax * ay;
      const w01 = ax - w11;
      const w10 = ay - w11;
      const w00 = 1 - ax - ay + w11;
      const r = (src[i00]! * w00 + src[i01]! * w01 + src[i10]! * w10 + src[i11]! * w11 + 0.5) | 0;
      const g = (src[i00 + 1]! * w00 + src[i01 + 1]! * w01 + src[i10 + 1]! * w10 + src[i11 + 1]! * w11 + 0.5) | 0;
      const bl = (src[i00 + 2]! * w00 + src[i01 + 2]! * w01 + src[i10 + 2]! * w10 + src[i11 + 2]! * w11 + 0.5) | 0;
      const i = oy * sz + ox;
      if (nhwc) {
        out[offset + i * 3] = l0[r]!;
        out[offset + i * 3 + 1] = l1[g]!;
        out[offset + i * 3 + 2] = l2[bl]!;
      } else {
        out[offset + i] = l0[r]!;
        out[offset + plane + i] = l1[g]!;
        out[offset + 2 * plane + i] = l2[bl]!;
      }
    }
  }
}
