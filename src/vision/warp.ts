// The geometry and arithmetic of a transform, free of any import so that the
// same code runs in Node (loader workers) and in the browser (the exported web
// page): one affine map from output pixels to stored pixels — scale, rotation,
// dihedral turns, flips, crop and EXIF orientation — sampled bilinearly with
// mirrored borders as fast.ai's warps do, then lighting and normalization.
// Validation (and deployment) resizes fully decoded pixels as Pillow, torchvision
// and ONNX's Resize do (antialiased bilinear), so other people's code can reproduce
// the input a model was trained and validated on.

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

/** Fixed-point precision of the resize's weights, as Pillow's 8-bit resampler (32 - 8 - 2 bits). */
const PRECISION_BITS = 22;

/**
 * Pillow's triangle-filter weights for resampling `inSize` samples to `outSize`:
 * per output sample, the first input index, the count, and the weights in fixed point.
 * The filter widens by the reduction factor (antialiasing), and near the borders the
 * weights are renormalized over the samples that exist.
 */
function resampleWeights(inSize: number, outSize: number): { first: Int32Array; count: Int32Array; weights: Int32Array; ksize: number } {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1);
  const support = filterscale; // the triangle's support is 1, widened by filterscale
  const ksize = Math.ceil(support) * 2 + 1;
  const first = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * ksize);
  const w = new Float64Array(ksize);
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    // C's (int) cast truncates toward zero.
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let total = 0;
    for (let x = 0; x < xmax; x++) {
      const t = Math.abs((x + xmin - center + 0.5) / filterscale);
      w[x] = t < 1 ? 1 - t : 0;
      total += w[x]!;
    }
    for (let x = 0; x < xmax; x++) {
      const k = total !== 0 ? w[x]! / total : w[x]!;
      weights[xx * ksize + x] = Math.trunc(k < 0 ? -0.5 + k * (1 << PRECISION_BITS) : 0.5 + k * (1 << PRECISION_BITS));
    }
    first[xx] = xmin;
    count[xx] = xmax;
  }
  return { first, count, weights, ksize };
}

/** A fixed-point sum back to a byte, clipped. */
function clip8(v: number): number {
  if (v >= 256 * (1 << PRECISION_BITS)) return 255;
  if (v <= 0) return 0;
  return Math.floor(v / (1 << PRECISION_BITS));
}

/**
 * Resizes RGB(A) pixels to `width` × `height` RGB with an antialiased bilinear (triangle)
 * filter, exactly as Pillow's `Image.resize(size, Image.BILINEAR)`: separable, the
 * horizontal pass first, each pass in 22-bit fixed point rounded to bytes. torchvision's
 * `Resize(antialias=True)` and ONNX's `Resize` (linear, `antialias=1`) compute the same
 * filter in floating point, so they agree within a pixel value.
 * @example
 * const small = resizeAntialiased(upright, 85, 64); // a 340×256 photo to 85×64
 */
export function resizeAntialiased(img: Pixels, width: number, height: number): Pixels {
  const ch = img.channels ?? 3;
  const src = img.data;
  const h = resampleWeights(img.width, width);
  const v = resampleWeights(img.height, height);
  // Only the input rows the vertical pass reads are resized horizontally.
  const yFirst = v.first[0]!;
  const yLast = v.first[height - 1]! + v.count[height - 1]!;
  const rows = yLast - yFirst;
  const half = 1 << (PRECISION_BITS - 1);
  const tmp = new Uint8Array(width * rows * 3);
  if (width !== img.width) {
    for (let y = 0; y < rows; y++) {
      const rowIn = (y + yFirst) * img.width;
      for (let xx = 0; xx < width; xx++) {
        const x0 = h.first[xx]!;
        const n = h.count[xx]!;
        const k = xx * h.ksize;
        let r = half;
        let g = half;
        let b = half;
        for (let x = 0; x < n; x++) {
          const wgt = h.weights[k + x]!;
          const i = (rowIn + x0 + x) * ch;
          r += src[i]! * wgt;
          g += src[i + 1]! * wgt;
          b += src[i + 2]! * wgt;
        }
        const o = (y * width + xx) * 3;
        tmp[o] = clip8(r);
        tmp[o + 1] = clip8(g);
        tmp[o + 2] = clip8(b);
      }
    }
  } else {
    for (let y = 0; y < rows; y++) {
      for (let x = 0; x < width; x++) {
        const i = ((y + yFirst) * img.width + x) * ch;
        const o = (y * width + x) * 3;
        tmp[o] = src[i]!;
        tmp[o + 1] = src[i + 1]!;
        tmp[o + 2] = src[i + 2]!;
      }
    }
  }
  if (height === img.height) return { data: tmp, width, height, channels: 3 };
  const out = new Uint8Array(width * height * 3);
  for (let yy = 0; yy < height; yy++) {
    const y0 = v.first[yy]! - yFirst;
    const n = v.count[yy]!;
    const k = yy * v.ksize;
    for (let x = 0; x < width; x++) {
      let r = half;
      let g = half;
      let b = half;
      for (let y = 0; y < n; y++) {
        const wgt = v.weights[k + y]!;
        const i = ((y0 + y) * width + x) * 3;
        r += tmp[i]! * wgt;
        g += tmp[i + 1]! * wgt;
        b += tmp[i + 2]! * wgt;
      }
      const o = (yy * width + x) * 3;
      out[o] = clip8(r);
      out[o + 1] = clip8(g);
      out[o + 2] = clip8(b);
    }
  }
  return { data: out, width, height, channels: 3 };
}

/**
 * The size torchvision's `Resize(size)` gives an image: the shorter side `size`, the
 * longer one scaled and truncated (`int(size * long / short)`).
 */
export function shorterSideSize(width: number, height: number, size: number): { width: number; height: number } {
  if (width <= height) return { width: size, height: Math.trunc((size * height) / width) };
  return { width: Math.trunc((size * width) / height), height: size };
}

/** Python's round(): halves go to the even neighbour (torchvision's center crop uses it). */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * fastvision's validation input from fully decoded, upright pixels — what
 * `transforms.Compose([Resize(sz), CenterCrop(sz), ToTensor(), Normalize(mean, std)])`
 * computes on a PIL image: the shorter side resized to `sz` by `resizeAntialiased`,
 * the center sz × sz crop (offsets rounded half to even), scaled to [0, 1] and
 * normalized; sz × sz × 3 values written into `out` (channels-first unless `nhwc`).
 * What `predict` and `serve` feed a model; the exported preprocessing graph computes it too.
 */
export function validationInput(img: Pixels, sz: number, stats: Normalization, out: Float32Array = new Float32Array(sz * sz * 3), offset = 0, nhwc = false): Float32Array {
  const size = shorterSideSize(img.width, img.height, sz);
  const small = resizeAntialiased(img, size.width, size.height);
  const top = roundHalfEven((size.height - sz) / 2);
  const left = roundHalfEven((size.width - sz) / 2);
  const lut = [0, 1, 2].map((c) => Float32Array.from({ length: 256 }, (_, v) => (v / 255 - stats.mean[c]!) / stats.std[c]!));
  const plane = sz * sz;
  const px = small.data;
  for (let y = 0; y < sz; y++) {
    for (let x = 0; x < sz; x++) {
      const i = ((y + top) * size.width + x + left) * 3;
      const o = y * sz + x;
      for (let c = 0; c < 3; c++) out[offset + (nhwc ? o * 3 + c : c * plane + o)] = lut[c]![px[i + c]!]!;
    }
  }
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
