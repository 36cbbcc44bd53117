// TrivialAugmentWide (Müller & Hutter 2021) and RandAugment (Cubuk et al. 2020) as
// torchvision 0.14 applies them to uint8 image tensors: one (or N) operations drawn
// from a fixed space, each a port of torchvision.transforms.functional_tensor's —
// affine maps sampled nearest with float32 grids as grid_sample computes them, blends
// in float32 truncated to bytes, equalization by the same integer histogram steps.
// Free of libtorch, so that loader workers can run it on the cropped image.

import { roundHalfEven } from './warp.js';

/** An RGB image, row-major, 3 bytes per pixel. */
export interface RgbBytes {
  data: Uint8Array;
  width: number;
  height: number;
}

/** The operations of the two policies. */
export type AutoAugmentOp =
  'Identity' | 'ShearX' | 'ShearY' | 'TranslateX' | 'TranslateY' | 'Rotate' | 'Brightness' | 'Color' | 'Contrast' | 'Sharpness' | 'Posterize' | 'Solarize' | 'AutoContrast' | 'Equalize';

const f32 = Math.fround;

/** torch.round / nearbyint: halves to the even neighbour. */
const rint = roundHalfEven;

/** torch.linspace in float32, as ATen computes it (from both ends toward the middle). */
export function linspace32(start: number, end: number, steps: number): number[] {
  if (steps === 1) return [f32(start)];
  const step = f32(f32(end - start) / (steps - 1));
  const half = Math.floor(steps / 2);
  return Array.from({ length: steps }, (_, i) => (i < half ? f32(start + f32(step * i)) : f32(end - f32(step * (steps - i - 1)))));
}

/** torchvision's _get_inverse_affine_matrix (degrees; center and translation in pixels from the image centre). */
function inverseAffine(center: [number, number], angle: number, translate: [number, number], scale: number, shear: [number, number]): number[] {
  const rot = (angle * Math.PI) / 180;
  const sx = (shear[0] * Math.PI) / 180;
  const sy = (shear[1] * Math.PI) / 180;
  const [cx, cy] = center;
  const [tx, ty] = translate;
  const a = Math.cos(rot - sy) / Math.cos(sy);
  const b = (-Math.cos(rot - sy) * Math.tan(sx)) / Math.cos(sy) - Math.sin(rot);
  const c = Math.sin(rot - sy) / Math.cos(sy);
  const d = (-Math.sin(rot - sy) * Math.tan(sx)) / Math.cos(sy) + Math.cos(rot);
  const m = [d, -b, 0, -c, a, 0].map((x) => x / scale);
  m[2]! += m[0]! * (-cx - tx) + m[1]! * (-cy - ty);
  m[5]! += m[3]! * (-cx - tx) + m[4]! * (-cy - ty);
  m[2]! += cx;
  m[5]! += cy;
  return m;
}

/** F_t.affine with nearest sampling and zero fill: the output grid through `matrix`, in float32 as torch computes it. */
function affine(img: RgbBytes, matrix: number[]): RgbBytes {
  const { width: w, height: h, data } = img;
  const theta = matrix.map(f32);
  // rescaled_theta = thetaᵀ / [w/2, h/2]; each output point (x, y, 1) times it.
  const hw = f32(0.5 * w);
  const hh = f32(0.5 * h);
  const r = [f32(theta[0]! / hw), f32(theta[3]! / hh), f32(theta[1]! / hw), f32(theta[4]! / hh), f32(theta[2]! / hw), f32(theta[5]! / hh)];
  const out = new Uint8Array(data.length);
  for (let oy = 0; oy < h; oy++) {
    const by = f32(-h * 0.5 + 0.5 + oy);
    for (let ox = 0; ox < w; ox++) {
      const bx = f32(-w * 0.5 + 0.5 + ox);
      const gx = f32(f32(f32(bx * r[0]!) + f32(by * r[2]!)) + r[4]!);
      const gy = f32(f32(f32(bx * r[1]!) + f32(by * r[3]!)) + r[5]!);
      // grid_sample, align_corners=False: ((g + 1)·size − 1) / 2, then nearest.
      const ix = rint(f32(f32(f32(gx + 1) * w - 1) / 2));
      const iy = rint(f32(f32(f32(gy + 1) * h - 1) / 2));
      if (ix < 0 || iy < 0 || ix >= w || iy >= h) continue;
      const s = (iy * w + ix) * 3;
      const o = (oy * w + ox) * 3;
      out[o] = data[s]!;
      out[o + 1] = data[s + 1]!;
      out[o + 2] = data[s + 2]!;
    }
  }
  return { data: out, width: w, height: h };
}

/** _blend: (ratio·a + (1 − ratio)·b) in float32, clamped to [0, 255], truncated to a byte; `other(i)` is b at element i. */
function blend(img: RgbBytes, ratio: number, other: (i: number) => number): RgbBytes {
  const r = f32(ratio);
  const q = f32(1 - ratio);
  const out = new Uint8Array(img.data.length);
  for (let i = 0; i < out.length; i++) {
    const v = f32(f32(r * img.data[i]!) + f32(q * other(i)));
    out[i] = Math.trunc(Math.min(255, Math.max(0, v)));
  }
  return { ...img, data: out };
}

/** rgb_to_grayscale for bytes: 0.2989 r + 0.587 g + 0.114 b in float32, truncated. */
function grayscale(img: RgbBytes): Uint8Array {
  const n = img.width * img.height;
  const out = new Uint8Array(n);
  for (let p = 0; p < n; p++) {
    const v = f32(f32(f32(f32(0.2989) * img.data[3 * p]!) + f32(f32(0.587) * img.data[3 * p + 1]!)) + f32(f32(0.114) * img.data[3 * p + 2]!));
    out[p] = Math.trunc(v);
  }
  return out;
}

function sharpness(img: RgbBytes, factor: number): RgbBytes {
  const { width: w, height: h, data } = img;
  if (w <= 2 || h <= 2) return img;
  // The degenerate image: a 3×3 smoothing ([1 1 1; 1 5 1; 1 1 1] / 13) inside, the border as it is.
  const k = f32(1 / 13);
  const k5 = f32(5 / 13);
  const blurred = Uint8Array.from(data);
  for (let y = 1; y < h - 1; y++) {
    for (let x = 1; x < w - 1; x++) {
      for (let c = 0; c < 3; c++) {
        let s = 0;
        for (let dy = -1; dy <= 1; dy++) for (let dx = -1; dx <= 1; dx++) s = f32(s + f32((dx === 0 && dy === 0 ? k5 : k) * data[((y + dy) * w + x + dx) * 3 + c]!));
        blurred[(y * w + x) * 3 + c] = Math.min(255, Math.max(0, rint(s)));
      }
    }
  }
  return blend(img, factor, (i) => blurred[i]!);
}

function autocontrast(img: RgbBytes): RgbBytes {
  const out = new Uint8Array(img.data.length);
  for (let c = 0; c < 3; c++) {
    let lo = 255;
    let hi = 0;
    for (let i = c; i < img.data.length; i += 3) {
      lo = Math.min(lo, img.data[i]!);
      hi = Math.max(hi, img.data[i]!);
    }
    const scale = hi === lo ? 1 : f32(255 / (hi - lo));
    const min = hi === lo ? 0 : lo;
    for (let i = c; i < img.data.length; i += 3) out[i] = Math.trunc(Math.min(255, Math.max(0, f32(f32(img.data[i]! - min) * scale))));
  }
  return { ...img, data: out };
}

function equalize(img: RgbBytes): RgbBytes {
  const out = Uint8Array.from(img.data);
  for (let c = 0; c < 3; c++) {
    const hist = new Array<number>(256).fill(0);
    for (let i = c; i < img.data.length; i += 3) hist[img.data[i]!]!++;
    const nonzero = hist.filter((v) => v !== 0);
    const step = Math.floor(nonzero.slice(0, -1).reduce((a, b) => a + b, 0) / 255);
    if (step === 0) continue;
    const lut = new Array<number>(256);
    let cum = 0;
    for (let v = 0; v < 256; v++) {
      // lut = (cumsum + step // 2) // step, shifted right by one, clamped to [0, 255].
      lut[v] = v === 0 ? 0 : Math.min(255, Math.floor((cum + Math.floor(step / 2)) / step));
      cum += hist[v]!;
    }
    for (let i = c; i < img.data.length; i += 3) out[i] = lut[img.data[i]!]!;
  }
  return { ...img, data: out };
}

/** One operation at a magnitude, as torchvision's autoaugment._apply_op on a uint8 tensor (nearest, fill 0). */
export function applyOp(img: RgbBytes, op: AutoAugmentOp, magnitude: number): RgbBytes {
  const { width: w, height: h } = img;
  // F.affine's centre [0, 0] (the shears): the top-left corner, from the image centre.
  const corner: [number, number] = [-w * 0.5, -h * 0.5];
  const deg = (m: number): number => (Math.atan(m) * 180) / Math.PI;
  switch (op) {
    case 'Identity':
      return img;
    case 'ShearX':
      return affine(img, inverseAffine(corner, 0, [0, 0], 1, [deg(magnitude), 0]));
    case 'ShearY':
      return affine(img, inverseAffine(corner, 0, [0, 0], 1, [0, deg(magnitude)]));
    case 'TranslateX':
      return affine(img, inverseAffine([0, 0], 0, [Math.trunc(magnitude), 0], 1, [0, 0]));
    case 'TranslateY':
      return affine(img, inverseAffine([0, 0], 0, [0, Math.trunc(magnitude)], 1, [0, 0]));
    case 'Rotate':
      return affine(img, inverseAffine([0, 0], -magnitude, [0, 0], 1, [0, 0]));
    case 'Brightness':
      return blend(img, 1 + magnitude, () => 0);
    case 'Color': {
      const g = grayscale(img);
      return blend(img, 1 + magnitude, (i) => g[Math.floor(i / 3)]!);
    }
    case 'Contrast': {
      const g = grayscale(img);
      let sum = 0;
      for (const v of g) sum += v;
      const mean = f32(sum / g.length);
      return blend(img, 1 + magnitude, () => mean);
    }
    case 'Sharpness':
      return sharpness(img, 1 + magnitude);
    case 'Posterize': {
      const mask = (0xff << (8 - Math.trunc(magnitude))) & 0xff;
      return { ...img, data: img.data.map((v) => v & mask) };
    }
    case 'Solarize':
      return { ...img, data: img.data.map((v) => (v >= magnitude ? 255 - v : v)) };
    case 'AutoContrast':
      return autocontrast(img);
    case 'Equalize':
      return equalize(img);
  }
}

/** An operation's magnitudes by bin (none for the magnitude-free ones), and whether a random sign applies. */
export type AugmentationSpace = [AutoAugmentOp, number[] | null, boolean][];

/** TrivialAugmentWide's space for `bins` magnitude bins (torchvision's _augmentation_space). */
export function trivialAugmentSpace(bins = 31): AugmentationSpace {
  return [
    ['Identity', null, false],
    ['ShearX', linspace32(0, 0.99, bins), true],
    ['ShearY', linspace32(0, 0.99, bins), true],
    ['TranslateX', linspace32(0, 32, bins), true],
    ['TranslateY', linspace32(0, 32, bins), true],
    ['Rotate', linspace32(0, 135, bins), true],
    ['Brightness', linspace32(0, 0.99, bins), true],
    ['Color', linspace32(0, 0.99, bins), true],
    ['Contrast', linspace32(0, 0.99, bins), true],
    ['Sharpness', linspace32(0, 0.99, bins), true],
    ['Posterize', Array.from({ length: bins }, (_, i) => 8 - rint(f32(i / f32((bins - 1) / 6)))), false],
    ['Solarize', linspace32(255, 0, bins), false],
    ['AutoContrast', null, false],
    ['Equalize', null, false],
  ];
}

/** RandAugment's space for `bins` bins on an image of w×h (translations scale with it). */
export function randAugmentSpace(bins: number, w: number, h: number): AugmentationSpace {
  return [
    ['Identity', null, false],
    ['ShearX', linspace32(0, 0.3, bins), true],
    ['ShearY', linspace32(0, 0.3, bins), true],
    ['TranslateX', linspace32(0, (150 / 331) * w, bins), true],
    ['TranslateY', linspace32(0, (150 / 331) * h, bins), true],
    ['Rotate', linspace32(0, 30, bins), true],
    ['Brightness', linspace32(0, 0.9, bins), true],
    ['Color', linspace32(0, 0.9, bins), true],
    ['Contrast', linspace32(0, 0.9, bins), true],
    ['Sharpness', linspace32(0, 0.9, bins), true],
    ['Posterize', Array.from({ length: bins }, (_, i) => 8 - rint(f32(i / f32((bins - 1) / 4)))), false],
    ['Solarize', linspace32(255, 0, bins), false],
    ['AutoContrast', null, false],
    ['Equalize', null, false],
  ];
}

/** The policies as data: TrivialAugmentWide, or RandAugment with `n` operations at bin `magnitude`. */
export type AutoAugmentPolicy = { kind: 'trivial'; bins: number } | { kind: 'randaug'; n: number; magnitude: number; bins: number };

/** Applies a policy to an image with the random source `rand`, drawing as torchvision does (operation, then bin, then sign). */
export function autoAugment(img: RgbBytes, policy: AutoAugmentPolicy, rand: () => number): RgbBytes {
  if (policy.kind === 'trivial') {
    const space = trivialAugmentSpace(policy.bins);
    const [op, mags, signed] = space[Math.floor(rand() * space.length)]!;
    let m = mags === null ? 0 : mags[Math.floor(rand() * mags.length)]!;
    if (signed && rand() < 0.5) m = -m;
    return applyOp(img, op, m);
  }
  const space = randAugmentSpace(policy.bins, img.width, img.height);
  let out = img;
  for (let k = 0; k < policy.n; k++) {
    const [op, mags, signed] = space[Math.floor(rand() * space.length)]!;
    let m = mags === null ? 0 : mags[policy.magnitude]!;
    if (signed && rand() < 0.5) m = -m;
    out = applyOp(out, op, m);
  }
  return out;
}
