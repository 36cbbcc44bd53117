// Applying a transform to one image: decoding (libjpeg-turbo, sharp), the random
// decisions of the augmentations drawn from a seeded source, then the warp of
// warp.ts (crop, lighting, normalization). Free of libtorch, so that loader
// workers can import it.
import sharp from 'sharp';
import { decodeBmp, isBmp } from './bmp.js';
import { maxImagePixels, overLimitMessage } from './image-limits.js';
import { decodeJpeg, exifOrientation, isJpeg, type RgbImage } from './jpeg.js';
import {
  resizeAntialiased,
  roundHalfEven,
  shorterSideSize,
  uprightPixels,
  validationInput,
  warp,
  warpMatrix,
  type Affine,
  type CropType,
  type Normalization,
  type Pixels,
  type WarpPlan,
} from './warp.js';
import { autoAugment } from './auto-augment.js';
import { readRegularFile } from '../util/read-files.js';
import { InputError } from '../util/errors.js';

export type { CropType, Normalization } from './warp.js';

/** One augmentation, as data. */
export type Augmentation =
  | { kind: 'rotate'; degrees: number; probability: number }
  | { kind: 'lighting'; brightness: number; contrast: number }
  | { kind: 'flip' }
  | { kind: 'dihedral' }
  | { kind: 'erasing'; probability: number; scale: [number, number]; ratio: [number, number] }
  | { kind: 'trivial'; bins: number }
  | { kind: 'randaug'; n: number; magnitude: number; bins: number };

/** A full transform pipeline for one split (training or validation). */
export interface Transform {
  /** Output side, in pixels. */
  sz: number;
  /** The shorter side is scaled to sz × a random zoom in [1, maxZoom] (1: no zoom). */
  maxZoom: number;
  augs: Augmentation[];
  crop: CropType;
  stats: Normalization;
  /**
   * Decode at full resolution (no shrinking in the DCT domain, no pre-resize):
   * slower on big photos but portable — validation and prediction use it, so
   * that a browser decoding the same file computes the same input.
   */
  exact?: boolean;
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

/** The decisions a transform makes for one sample, drawn up front from its random source. */
function plan(t: Transform, rand: () => number): WarpPlan {
  const p: WarpPlan = { zoom: 1 + (t.maxZoom - 1) * rand(), angle: 0, flip: false, turns: 0, brightness: 0, contrast: 1, cropX: rand(), cropY: rand() };
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
    } else if (a.kind === 'erasing' || a.kind === 'trivial' || a.kind === 'randaug') {
      continue; // drawn after the warp, on the cropped image (autoAugment) and the normalized one (erasingRect), as torchvision does
    } else {
      p.turns = Math.floor(rand() * 4);
      p.flip = rand() < 0.5;
    }
  }
  return p;
}

/** torchvision's RandomErasing, as data. */
export type ErasingAugmentation = Extract<Augmentation, { kind: 'erasing' }>;

/** A rectangle of the output, in pixels. */
export interface Rect {
  x: number;
  y: number;
  w: number;
  h: number;
}

/**
 * torchvision's RandomErasing.get_params on an sz×sz output: with probability p, up to 10
 * tries of an area share in `scale` and an aspect ratio log-uniform in `ratio`, sides rounded
 * half to even, kept if it fits, placed uniformly; null when nothing is erased.
 */
export function erasingRect(a: ErasingAugmentation, sz: number, rand: () => number): Rect | null {
  if (!(rand() < a.probability)) return null;
  const area = sz * sz;
  const [lo, hi] = [Math.log(a.ratio[0]), Math.log(a.ratio[1])];
  for (let attempt = 0; attempt < 10; attempt++) {
    const erase = area * (a.scale[0] + (a.scale[1] - a.scale[0]) * rand());
    const aspect = Math.exp(lo + (hi - lo) * rand());
    const h = roundHalfEven(Math.sqrt(erase * aspect));
    const w = roundHalfEven(Math.sqrt(erase / aspect));
    if (!(h < sz && w < sz)) continue;
    return { y: Math.floor(rand() * (sz - h + 1)), x: Math.floor(rand() * (sz - w + 1)), w, h };
  }
  return null;
}

/** Sets a rectangle of an sz×sz×3 normalized output to 0 (torchvision's value=0 after Normalize: the mean colour). */
export function erase(out: Float32Array, offset: number, sz: number, r: Rect, nhwc: boolean): void {
  for (let y = r.y; y < r.y + r.h; y++) {
    for (let x = r.x; x < r.x + r.w; x++) {
      if (nhwc) out.fill(0, offset + (y * sz + x) * 3, offset + (y * sz + x) * 3 + 3);
      else for (let c = 0; c < 3; c++) out[offset + c * sz * sz + y * sz + x] = 0;
    }
  }
}

/** An image that could not be read: names the file and why. */
export class BadImageError extends InputError {
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`cannot read image ${file}: ${reason}`);
  }
}

/** Decodes to RGB: shrunk towards `target` when allowed (training), at full resolution when `exact`. */
async function decode(file: string | Buffer, target: number, maxPixels: number, exact: boolean): Promise<{ img: RgbImage; orientation: number }> {
  const bytes = typeof file === 'string' ? await readRegularFile(file) : file;
  if (bytes.length === 0) throw new Error('empty file');
  if (isJpeg(bytes)) {
    // A minimum side beyond any image: no shrinking at all.
    const min = exact ? 2 ** 30 : target;
    const img = decodeJpeg(bytes, min, min, maxPixels);
    if (img !== null) return { img, orientation: exifOrientation(bytes) };
  }
  if (isBmp(bytes)) return { img: decodeBmp(bytes, maxPixels), orientation: 1 };
  // Other formats, CMYK JPEGs: sharp (orientation applied, first frame, RGB), big ones shrunk first.
  // sharp checks the same pixel limit from the header.
  const meta = await sharp(bytes, { pages: 1, limitInputPixels: false }).metadata();
  if (meta.width !== undefined && meta.height !== undefined && meta.width * meta.height > maxPixels) throw new Error(overLimitMessage(meta.width, meta.height, maxPixels));
  let pipeline = sharp(bytes, { failOn: 'error', pages: 1, limitInputPixels: maxPixels }).rotate();
  if (!exact) pipeline = pipeline.resize(target, target, { fit: 'outside', withoutEnlargement: true });
  const r = await pipeline.removeAlpha().toColourspace('srgb').raw().toBuffer({ resolveWithObject: true });
  if (r.info.channels !== 3) throw new Error(`decoded to ${r.info.channels} channels`);
  return { img: { data: r.data, width: r.info.width, height: r.info.height }, orientation: 1 };
}

/**
 * Decodes an image as training reads it (shrunk towards `side` where the format allows,
 * which still reads every byte of it): throws a BadImageError naming the file and the
 * reason when it cannot be read whole (a truncated JPEG, a broken PNG, a bomb).
 */
export async function checkImage(file: string, side = 64, maxPixels = maxImagePixels()): Promise<void> {
  try {
    await decode(file, side, maxPixels, false);
  } catch (e) {
    throw new BadImageError(file, (e as Error).message);
  }
}

/**
 * The fully decoded pixels of an image, turned upright (EXIF orientation), RGB: what
 * the validation transform starts from, and what the exported graph with preprocessing
 * takes as its input. Throws a BadImageError naming the file.
 */
export async function decodeUpright(file: string | Buffer, maxPixels = maxImagePixels()): Promise<RgbImage> {
  try {
    const { img, orientation } = await decode(file, 0, maxPixels, true);
    const up = uprightPixels(img, orientation);
    return { data: up.data as Uint8Array, width: up.width, height: up.height };
  } catch (e) {
    throw new BadImageError(typeof file === 'string' ? file : 'image buffer', (e as Error).message);
  }
}

/**
 * Reads an image file and applies a transform: any format (JPEGs through
 * libjpeg-turbo, shrinking in the DCT domain; others through sharp, first frame
 * of animations), grey/CMYK/alpha to RGB, EXIF orientation. Validation (`exact`)
 * is exactly torchvision's Resize + CenterCrop (Pillow's antialiased resize); training
 * scales, rotates, flips and crops as one affine resampling of the shrunk decode
 * (bilinear, mirrored borders, as fast.ai's warps), then lighting and normalization. Writes sz×sz×3 values into
 * `out` at `offset`, channels-first (or channels-last when `nhwc`). An image that
 * declares more than `maxPixels` pixels is refused from its header.
 */
export async function loadTransformed(file: string | Buffer, t: Transform, rand: () => number, out: Float32Array, offset: number, nhwc = false, maxPixels = maxImagePixels()): Promise<void> {
  const p = plan(t, rand);
  const { sz } = t;
  const target = t.crop === 'none' ? sz : Math.max(sz, Math.round(sz * p.zoom));
  let decoded: { img: RgbImage; orientation: number };
  try {
    decoded = await decode(file, target, maxPixels, t.exact === true);
  } catch (e) {
    throw new BadImageError(typeof file === 'string' ? file : 'image buffer', (e as Error).message);
  }
  if (t.exact === true) {
    const upright = uprightPixels(decoded.img, decoded.orientation);
    if (t.crop === 'center' && t.augs.length === 0 && t.maxZoom === 1) {
      // Validation and prediction: torchvision's Resize + CenterCrop, reproducible anywhere.
      validationInput(upright, sz, t.stats, out, offset, nhwc);
      return;
    }
    // Anything else exact: the same antialiased resize, then the warp at 1:1.
    const size = t.crop === 'none' ? { width: sz, height: sz } : shorterSideSize(upright.width, upright.height, target);
    const img = resizeAntialiased(upright, size.width, size.height);
    finish(t, img, warpMatrix(p, t.crop, sz, target, img.width, img.height, 1), p, rand, out, offset, nhwc);
    return;
  }
  // Training: decoded already shrunk to within 2× of the target (in the DCT domain, or by
  // sharp), then one bilinear warp does the rest of the scaling with the rotation, flips
  // and crop. An antialiased resize first, as validation's, made the pipeline 1.37× slower
  // (bench:data 1.015 of torchvision's time against 0.742) for a filter difference within 2×.
  const { img, orientation } = decoded;
  finish(t, img, warpMatrix(p, t.crop, sz, target, img.width, img.height, orientation), p, rand, out, offset, nhwc);
}

// Normalization that leaves byte values as they are: the warp then gives 0…255.
const BYTES: Normalization = { mean: [0, 0, 0], std: [1 / 255, 1 / 255, 1 / 255] };

/**
 * The warp into `out`, normalized; with TrivialAugmentWide or RandAugment, the warp gives
 * the cropped image in bytes first (as torchvision's policies see it after the crop), the
 * policy runs on it, and then it is normalized. Random erasing comes last.
 */
function finish(t: Transform, img: Pixels, m: Affine, p: WarpPlan, rand: () => number, out: Float32Array, offset: number, nhwc: boolean): void {
  const { sz } = t;
  const policy = t.augs.find((a): a is Extract<Augmentation, { kind: 'trivial' | 'randaug' }> => a.kind === 'trivial' || a.kind === 'randaug');
  if (policy === undefined) warp(img, m, p, sz, t.stats, out, offset, nhwc);
  else {
    const bytes = new Float32Array(sz * sz * 3);
    warp(img, m, p, sz, BYTES, bytes, 0, true);
    const cropped = { data: Uint8Array.from(bytes, (v) => Math.min(255, Math.max(0, Math.round(v)))), width: sz, height: sz };
    const augmented = autoAugment(cropped, policy, rand).data;
    const plane = sz * sz;
    for (let c = 0; c < 3; c++) {
      const mean = t.stats.mean[c]!;
      const inv = 1 / t.stats.std[c]!;
      for (let q = 0; q < plane; q++) out[offset + (nhwc ? q * 3 + c : c * plane + q)] = (augmented[q * 3 + c]! / 255 - mean) * inv;
    }
  }
  eraseAsPlanned(t, rand, out, offset, nhwc);
}

/** Applies the transform's random erasings, if any, to the normalized output. */
function eraseAsPlanned(t: Transform, rand: () => number, out: Float32Array, offset: number, nhwc: boolean): void {
  for (const a of t.augs) {
    if (a.kind !== 'erasing') continue;
    const r = erasingRect(a, t.sz, rand);
    if (r !== null) erase(out, offset, t.sz, r, nhwc);
  }
}
