// The preprocessing as ONNX nodes, so that an exported model takes the pixels any
// decoder gives (uint8 RGB, [1, H, W, 3], any H and W) and needs nothing else:
// torchvision's Resize(S) on a PIL image (the shorter side to S, the longer truncated;
// Pillow's antialiased bilinear, the width first, each pass rounded to bytes), then
// CenterCrop(S) (offsets rounded half to even, as ONNX's Round and Python's round),
// ToTensor and Normalize: what `validationInput` in src/vision/warp.ts computes.
//
// ONNX's own Resize (opset 18, antialias=1, exclude_outside=1) computes the same filter,
// but onnxruntime's version lands up to half a value away from Pillow before rounding
// (6% of pixels one value off, probabilities 2e-3 apart). So each pass builds Pillow's
// weights as a matrix (triangle filter widened by the reduction, renormalized at the
// borders, quantized to 22 bits as Pillow does) and applies it with MatMul in doubles:
// a byte times a 22-bit weight is exact there, so each sum is Pillow's integer sum and
// rounds the same way (in floats, values a few units below .5 rounded up).
import type { Normalization } from '../vision/warp.js';
import { DataType } from './onnx-proto.js';
import type { OnnxGraph, TypedValue, Value } from './onnx-graph.js';

/** Pillow's fixed-point precision for 8-bit images. */
const PRECISION = 2 ** 22;

/**
 * The [outSize, inSize] matrix (doubles) of Pillow's resampling weights from `inSize`
 * samples to `outSize`, both int64 scalars of shape [1].
 */
function weightMatrix(g: OnnxGraph, inSize: string, outSize: string, name: string): string {
  const d = (v: string): string => g.node('Cast', [v], { to: DataType.DOUBLE }, `${name}.double`);
  const scalar = (k: string, v: number): string => g.node('Cast', [g.floats(`${name}.${k}`, [], Float32Array.of(v))], { to: DataType.DOUBLE }, `${name}.${k}.d`);
  const half = scalar('half', 0.5);
  const inD = d(inSize);
  const outD = d(outSize);
  const scale = g.node('Div', [inD, outD], {}, `${name}.scale`);
  // The triangle widens by the reduction factor (antialiasing); upsampling keeps it at 1.
  const filterscale = g.node('Max', [scale, scalar('one', 1)], {}, `${name}.filterscale`);
  const range = (n: string, k: string): string => g.node('Range', [scalar(`${k}.start`, 0), g.node('Squeeze', [n], {}, `${name}.${k}.n`), scalar(`${k}.step`, 1)], {}, `${name}.${k}`);
  const centers = g.node('Mul', [g.node('Add', [range(outD, 'out'), half], {}, `${name}.out.mid`), scale], {}, `${name}.centers`);
  const samples = g.node('Add', [range(inD, 'in'), half], {}, `${name}.in.mid`);
  const dist = g.node(
    'Abs',
    [
      g.node(
        'Sub',
        [g.node('Unsqueeze', [samples, g.ints(`${name}.axis0`, [0])], {}, `${name}.row`), g.node('Unsqueeze', [centers, g.ints(`${name}.axis1`, [1])], {}, `${name}.col`)],
        {},
        `${name}.offset`,
      ),
    ],
    {},
    `${name}.dist`,
  );
  const tri = g.node('Relu', [g.node('Sub', [scalar('one.b', 1), g.node('Div', [dist, filterscale], {}, `${name}.t`)], {}, `${name}.tri.raw`)], {}, `${name}.tri`);
  // Renormalized over the samples that exist, then rounded to Pillow's 22-bit weights.
  const normalized = g.node('Div', [tri, g.node('ReduceSum', [tri, g.ints(`${name}.sum.axes`, [1])], { keepdims: 1 }, `${name}.sum`)], {}, `${name}.normalized`);
  const fixed = g.node('Floor', [g.node('Add', [g.node('Mul', [normalized, scalar('precision', PRECISION)], {}, `${name}.scaled`), half], {}, `${name}.rounding`)], {}, `${name}.fixed`);
  return g.node('Div', [fixed, scalar('precision.b', PRECISION)], {}, `${name}.weights`);
}

/** Adds the nodes from a uint8 [1, H, W, 3] input named `inputName` to the normalized [1, 3, size, size] input of a classifier. */
export function addPreprocessing(g: OnnxGraph, size: number, stats: Normalization, inputName = 'pixels'): { input: TypedValue; output: Value } {
  const input: TypedValue = { name: g.unique(inputName), elemType: DataType.UINT8, dims: [1, 'height', 'width', 3] };
  const scalar = (name: string, v: number): string => g.floats(name, [], Float32Array.of(v));
  const x = g.node('Transpose', [g.node('Cast', [input.name], { to: DataType.DOUBLE }, 'pre.double')], { perm: [0, 3, 1, 2] }, 'pre.nchw');
  const shape = g.node('Shape', [x], {}, 'pre.shape');
  const dim = (k: number, name: string): string => g.node('Slice', [shape, g.ints(`${name}.start`, [k]), g.ints(`${name}.end`, [k + 1])], {}, name);
  const h = dim(2, 'pre.h');
  const w = dim(3, 'pre.w');
  // New sizes as Python computes int(S · X / min(H, W)), in doubles.
  const hw = g.node('Cast', [g.node('Concat', [h, w], { axis: 0 }, 'pre.hw')], { to: DataType.DOUBLE }, 'pre.hw.double');
  const short = g.node('ReduceMin', [hw], { keepdims: 1 }, 'pre.short');
  const sizeD = g.node('Cast', [g.ints('pre.size', [size])], { to: DataType.DOUBLE }, 'pre.size.double');
  const newHw = g.node('Cast', [g.node('Floor', [g.node('Div', [g.node('Mul', [hw, sizeD], {}, 'pre.mul'), short], {}, 'pre.div')], {}, 'pre.floor')], { to: DataType.INT64 }, 'pre.newhw');
  const newH = g.node('Slice', [newHw, g.ints('pre.nh.start', [0]), g.ints('pre.nh.end', [1])], {}, 'pre.newh');
  const newW = g.node('Slice', [newHw, g.ints('pre.nw.start', [1]), g.ints('pre.nw.end', [2])], {}, 'pre.neww');
  // Each pass ends as Pillow's does: floor(v + 0.5), clipped to a byte.
  const double = (name: string, v: number): string => g.node('Cast', [scalar(name, v)], { to: DataType.DOUBLE }, `${name}.d`);
  const toBytes = (v: string, name: string): string =>
    g.node(
      'Clip',
      [g.node('Floor', [g.node('Add', [v, double(`${name}.half`, 0.5)], {}, `${name}.plus`)], {}, `${name}.floor`), double(`${name}.zero`, 0), double(`${name}.max`, 255)],
      {},
      `${name}.bytes`,
    );
  const across = g.node('Transpose', [weightMatrix(g, w, newW, 'pre.wx')], { perm: [1, 0] }, 'pre.wx.t');
  const wide = toBytes(g.node('MatMul', [x, across], {}, 'pre.resize.w'), 'pre.resize.w');
  const resized = g.node('Cast', [toBytes(g.node('MatMul', [weightMatrix(g, h, newH, 'pre.wy'), wide], {}, 'pre.resize.h'), 'pre.resize.h')], { to: DataType.FLOAT }, 'pre.resized');
  // Crop offsets: round((X' − S) / 2), halves to even.
  const offsets = g.node(
    'Cast',
    [
      g.node(
        'Round',
        [g.node('Div', [g.node('Sub', [g.node('Cast', [newHw], { to: DataType.FLOAT }, 'pre.newhw.f'), scalar('pre.s', size)], {}, 'pre.excess'), scalar('pre.two', 2)], {}, 'pre.half')],
        {},
        'pre.offset.f',
      ),
    ],
    { to: DataType.INT64 },
    'pre.offset',
  );
  const ends = g.node('Add', [offsets, g.ints('pre.span', [size, size])], {}, 'pre.ends');
  const cropped = g.node('Slice', [resized, offsets, ends, g.ints('pre.axes', [2, 3])], {}, 'pre.crop');
  const unit = g.node('Div', [cropped, scalar('pre.255', 255)], {}, 'pre.unit');
  const mean = g.floats('pre.mean', [1, 3, 1, 1], Float32Array.from(stats.mean));
  const std = g.floats('pre.std', [1, 3, 1, 1], Float32Array.from(stats.std));
  const normalized = g.node('Div', [g.node('Sub', [unit, mean], {}, 'pre.center'), std], {}, 'pre.normalized');
  return { input, output: { name: normalized, shape: [3, size, size] } };
}
