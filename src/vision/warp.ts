// The geometry and arithmetic of a transform, free of any import so that the
// same code runs in Node (loader workers) and in the browser (the exported web
// page): one affine map from output pixels to stored pixels — scale, rotation,
// dihedral turns, flips, crop and EXIF orientation — sampled bilinearly with
// mirrored borders as fast.ai's warps do, then lighting and normalization.
// Validation (and deployment) uses it on fully decoded pixels, so that a page
// that decodes the same image gets the same input, value for value.

/** Per-channel normalization of the input. */
export interface Normalization {
  mean: [number, number, number];
  std: [number, number, number];
}

/** How the final square is taken from the scaled image. */
export type CropType = 'random' | 'center' | 'none';

/** Decoded pixels, row-major, 3 (RGB) or 4 (RGBA, alpha ignored) bytes per pixel. */
export interface Pixels {
  data: Uint8Array | Uint8ClampedArray;
  width: number;
  height: number;
  /** Bytes per pixel: 3 unless given. */
  channels?: number;
}

/** Decisions a transform makes for one sample (the identity for validation). */
export interface WarpPlan {
  zoom: number;
  angle: number;
  flip: boolean;
  turns: number;
  brightness: number;
  contrast: number;
  cropX: number;
  cropY: number;
}

/** The plan of the validation transform: no zoom, rotation, flip or lighting; a centered crop. */
export const IDENTITY_PLAN: WarpPlan = { zoom: 1, angle: 0, flip: false, turns: 0, brightness: 0, contrast: 1, cropX: 0.5, cropY: 0.5 };

/** A 2-d affine map as [a, b, c, d, e, f]: (x, y) → (a·x + b·y + c, d·x + e·y + f). */
export type Affine = [number, number, number, number, number, number];

/** p ∘ q: apply q first, then p. */
export function compose(p: Affine, q: Affine): Affine {
  return [p[0] * q[0] + p[1] * q[3], p[0] * q[1] + p[1] * q[4], p[0] * q[2] + p[1] * q[5] + p[2], p[3] * q[0] + p[4] * q[3], p[3] * q[1] + p[4] * q[4], p[3] * q[2] + p[4] * q[5] + p[5]];
}

/** Displayed (upright) coordinates → stored coordinates, for an EXIF orientation of a w×h stored image. */
export function orientationMap(o: number, w: number, h: number): Affine {
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

/**
 * The map from output pixels (sz × sz) to stored pixels of an image of
 * storedWidth × storedHeight with an EXIF orientation: the shorter upright side
 * scaled to `target` (or squashed to sz × sz with crop 'none'), rotated, turned,
 * flipped and cropped as `p` says.
 */
export function warpMatrix(p: WarpPlan, crop: CropType, sz: number, target: number, storedWidth: number, storedHeight: number, orientation = 1): Affine {
  const swap = orientation >= 5;
  const W = swap ? storedHeight : storedWidth;
  const H = swap ? storedWidth : storedHeight;
  // The scaled, upright image the crop is taken from: shorter side = target (or sz × sz squashed).
  const fx = crop === 'none' ? sz / W : target / Math.min(W, H);
  const fy = crop === 'none' ? sz / H : fx;
  const Ws = Math.max(sz, Math.round(W * fx));
  const Hs = Math.max(sz, Math.round(H * fy));
  const x0 = crop === 'random' ? Math.floor(p.cropX * (Ws - sz + 1)) : Math.floor((Ws - sz) / 2);
  const y0 = crop === 'random' ? Math.floor(p.cropY * (Hs - sz + 1)) : Math.floor((Hs - sz) / 2);
  const last = sz - 1;
  // Output square → (dihedral turn, flip) → crop → inverse rotation about the scaled centre → unscale → stored pixels.
  const turn: Affine = [
    [1, 0, 0, 0, 1, 0],
    [0, 1, 0, -1, 0, last],
    [-1, 0, last, 0, -1, last],
    [0, -1, last, 1, 0, 0],
  ][p.turns] as Affine;
  const flip: Affine = p.flip ? [-1, 0, last, 0, 1, 0] : [1, 0, 0, 0, 1, 0];
  const cropMap: Affine = [1, 0, x0, 0, 1, y0];
  const rad = (p.angle * Math.PI) / 180;
  const cos = Math.cos(rad);
  const sin = Math.sin(rad);
  const cx = (Ws - 1) / 2;
  const cy = (Hs - 1) / 2;
  const rotate: Affine = [cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy];
  const unscale: Affine = [1 / fx, 0, 0.5 / fx - 0.5, 0, 1 / fy, 0.5 / fy - 0.5];
  let m = compose(flip, turn);
  m = compose(cropMap, m);
  m = compose(rotate, m);
  m = compose(unscale, m);
  return compose(orientationMap(orientation, storedWidth, storedHeight), m);
}

/** The pixels turned upright as an EXIF orientation (1-8) says, as RGB (a permutation: no value changes). */
export function uprightPixels(img: Pixels, orientation: number): Pixels {
  const ch = img.channels ?? 3;
  if (orientation <= 1 || orientation > 8) return img;
  const swap = orientation >= 5;
  const W = swap ? img.height : img.width;
  const H = swap ? img.width : img.height;
  const m = orientationMap(orientation, img.width, img.height);
  const out = new Uint8Array(W * H * 3);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const sx = m[0] * x + m[1] * y + m[2];
      const sy = m[3] * x + m[4] * y + m[5];
      const i = (sy * img.width + sx) * ch;
      const o = (y * W + x) * 3;
      out[o] = img.data[i]!;
      out[o + 1] = img.data[i + 1]!;
      out[o + 2] = img.data[i + 2]!;
    }
  }
  return { data: out, width: W, height: H, channels: 3 };
}

/**
 * Shrinks an image by 8, 4 or 2 — the largest factor that keeps both sides at
 * least `target` — averaging each block of pixels (a block at the right or bottom
 * edge averages the pixels it has), as a JPEG decoder's DCT scaling does in
 * spirit. Bilinear sampling of a photo many times larger than the output would
 * alias; this prefilter, in exact integer arithmetic, is the same everywhere.
 * Returns RGB pixels (the input itself when no factor fits).
 */
export function shrinkForTarget(img: Pixels, target: number): Pixels {
  const ch = img.channels ?? 3;
  let k = 1;
  for (const f of [8, 4, 2]) {
    if (Math.ceil(img.width / f) >= target && Math.ceil(img.height / f) >= target) {
      k = f;
      break;
    }
  }
  if (k === 1) return img;
  const w = Math.ceil(img.width / k);
  const h = Math.ceil(img.height / k);
  const out = new Uint8Array(w * h * 3);
  const src = img.data;
  for (let by = 0; by < h; by++) {
    const y1 = Math.min(img.height, (by + 1) * k);
    for (let bx = 0; bx < w; bx++) {
      const x1 = Math.min(img.width, (bx + 1) * k);
      let r = 0;
      let g = 0;
      let b = 0;
      for (let y = by * k; y < y1; y++) {
        for (let x = bx * k, i = (y * img.width + x) * ch; x < x1; x++, i += ch) {
          r += src[i]!;
          g += src[i + 1]!;
          b += src[i + 2]!;
        }
      }
      const n = (y1 - by * k) * (x1 - bx * k);
      const o = (by * w + bx) * 3;
      out[o] = Math.floor((r + (n >> 1)) / n);
      out[o + 1] = Math.floor((g + (n >> 1)) / n);
      out[o + 2] = Math.floor((b + (n >> 1)) / n);
    }
  }
  return { data: out, width: w, height: h, channels: 3 };
}

/**
 * fastvision's validation input from fully decoded, upright pixels: shrunk by
 * `shrinkForTarget`, the shorter side resized to `sz` (bilinear), the center
 * sz × sz crop, normalized; sz × sz × 3 values written into `out` (channels-first
 * unless `nhwc`). What `predict` feeds a model, and what the exported web page
 * computes in the browser.
 */
export function validationInput(img: Pixels, sz: number, stats: Normalization, out: Float32Array = new Float32Array(sz * sz * 3), offset = 0, nhwc = false): Float32Array {
  const small = shrinkForTarget(img, sz);
  warp(small, warpMatrix(IDENTITY_PLAN, 'center', sz, sz, small.width, small.height, 1), IDENTITY_PLAN, sz, stats, out, offset, nhwc);
  return out;
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
export function warp(img: Pixels, m: Affine, p: WarpPlan, sz: number, stats: Normalization, out: Float32Array, offset: number, nhwc: boolean): void {
  const src = img.data;
  const w = img.width;
  const ch = img.channels ?? 3;
  const h = img.height;
  const plane = sz * sz;
  // Lighting as fast.ai: (x - mean) * contrast + mean + brightness, clipped to [0, 1],
  // with the mean of the whole image (fast.ai lights before cropping).
  let mu = 0;
  const lit = p.brightness !== 0 || p.contrast !== 1;
  if (lit) {
    let sum = 0;
    const n = img.width * img.height;
    for (let i = 0; i < n; i++) sum += src[i * ch]! + src[i * ch + 1]! + src[i * ch + 2]!;
    mu = sum / (n * 3 * 255);
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
      const i00 = (ya * w + xa) * ch;
      const i01 = (ya * w + xb) * ch;
      const i10 = (yb * w + xa) * ch;
      const i11 = (yb * w + xb) * ch;
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
