// Stateless neural-network operations (torch.nn.functional): the layers in nn/
// hold parameters and call these.
import { callOp, callTensorOp } from './ops.js';
import { beforeConvolution } from './onednn-padding.js';
import { reductionCode, Tensor, type Reduction } from './tensor.js';
import type { Handle } from './native.js';
import type { Pair } from './pair.js';

/** 2-d convolution. */
export function conv2d(
  input: Tensor,
  weight: Tensor,
  bias: Tensor | null = null,
  { stride = 1, padding = 0, dilation = 1, groups = 1 }: { stride?: Pair; padding?: Pair; dilation?: Pair; groups?: number } = {},
): Tensor {
  beforeConvolution(weight, groups);
  return new Tensor(callTensorOp('aten::conv2d', [input.handle, weight.handle, bias?.handle ?? null, stride, padding, dilation, groups]));
}

/** y = x Wᵀ + b */
export function linear(input: Tensor, weight: Tensor, bias: Tensor | null = null): Tensor {
  return new Tensor(callTensorOp('aten::linear', [input.handle, weight.handle, bias?.handle ?? null]));
}

/** Batch normalization; in training mode it updates the running statistics in place. */
export function batchNorm(
  input: Tensor,
  runningMean: Tensor | null,
  runningVar: Tensor | null,
  { weight = null, bias = null, training = false, momentum = 0.1, eps = 1e-5 }: { weight?: Tensor | null; bias?: Tensor | null; training?: boolean; momentum?: number; eps?: number } = {},
): Tensor {
  return new Tensor(
    callTensorOp('aten::batch_norm', [input.handle, weight?.handle ?? null, bias?.handle ?? null, runningMean?.handle ?? null, runningVar?.handle ?? null, training, momentum, eps, true]),
  );
}

/** Zeroes elements with probability p in training mode, scaling the rest by 1/(1-p). */
export function dropout(input: Tensor, p = 0.5, training = true): Tensor {
  return new Tensor(callTensorOp('aten::dropout', [input.handle, p, training]));
}

/** 2-d max pooling. */
export function maxPool2d(
  input: Tensor,
  kernelSize: Pair,
  { stride, padding = 0, dilation = 1, ceilMode = false }: { stride?: Pair; padding?: Pair; dilation?: Pair; ceilMode?: boolean } = {},
): Tensor {
  return new Tensor(callTensorOp('aten::max_pool2d', [input.handle, kernelSize, stride ?? kernelSize, padding, dilation, ceilMode]));
}

/** 2-d average pooling. */
export function avgPool2d(
  input: Tensor,
  kernelSize: Pair,
  { stride, padding = 0, ceilMode = false, countIncludePad = true }: { stride?: Pair; padding?: Pair; ceilMode?: boolean; countIncludePad?: boolean } = {},
): Tensor {
  return new Tensor(callTensorOp('aten::avg_pool2d', [input.handle, kernelSize, stride ?? kernelSize, padding, ceilMode, countIncludePad, null]));
}

/** Average pooling to a fixed output size, whatever the input size. */
export function adaptiveAvgPool2d(input: Tensor, outputSize: Pair): Tensor {
  return new Tensor(callTensorOp('aten::adaptive_avg_pool2d', [input.handle, outputSize]));
}

/** Max pooling to a fixed output size, whatever the input size. */
export function adaptiveMaxPool2d(input: Tensor, outputSize: Pair): Tensor {
  const [values, indices] = callOp('aten::adaptive_max_pool2d', [input.handle, outputSize]) as Handle[];
  new Tensor(indices!).dispose();
  return new Tensor(values!);
}

/** Pads the last dimensions with a constant; `pad` lists (before, after) pairs from the last dimension backwards, as in PyTorch. */
export function pad(input: Tensor, padding: number[], value = 0): Tensor {
  return new Tensor(callTensorOp('aten::constant_pad_nd', [input.handle, padding, value]));
}

/** Clamps to [minVal, maxVal] (ReLU6 is hardtanh(0, 6)). */
export function hardtanh(input: Tensor, minVal = -1, maxVal = 1): Tensor {
  return new Tensor(callTensorOp('aten::hardtanh', [input.handle, minVal, maxVal]));
}

/** Cross entropy between logits (N×C) and class indices (N, int64). */
export function crossEntropy(
  input: Tensor,
  target: Tensor,
  { weight = null, reduction = 'mean', ignoreIndex = -100, labelSmoothing = 0 }: { weight?: Tensor | null; reduction?: Reduction; ignoreIndex?: number; labelSmoothing?: number } = {},
): Tensor {
  return new Tensor(callTensorOp('aten::cross_entropy_loss', [input.handle, target.handle, weight?.handle ?? null, reductionCode(reduction), ignoreIndex, labelSmoothing]));
}

/** Negative log-likelihood of log-probabilities (N×C) at class indices (N, int64). */
export function nllLoss(
  input: Tensor,
  target: Tensor,
  { weight = null, reduction = 'mean', ignoreIndex = -100 }: { weight?: Tensor | null; reduction?: Reduction; ignoreIndex?: number } = {},
): Tensor {
  return new Tensor(callTensorOp('aten::nll_loss_nd', [input.handle, target.handle, weight?.handle ?? null, reductionCode(reduction), ignoreIndex]));
}

/** Binary cross entropy on logits, numerically stable. */
export function binaryCrossEntropyWithLogits(
  input: Tensor,
  target: Tensor,
  { weight = null, posWeight = null, reduction = 'mean' }: { weight?: Tensor | null; posWeight?: Tensor | null; reduction?: Reduction } = {},
): Tensor {
  return new Tensor(callTensorOp('aten::binary_cross_entropy_with_logits', [input.handle, target.handle, weight?.handle ?? null, posWeight?.handle ?? null, reductionCode(reduction)]));
}

/** Layer normalization over the last dimensions (`normalizedShape`), with optional affine weight and bias. */
export function layerNorm(input: Tensor, normalizedShape: number[], weight: Tensor | null = null, bias: Tensor | null = null, eps = 1e-5): Tensor {
  return new Tensor(callTensorOp('aten::layer_norm', [input.handle, normalizedShape, weight?.handle ?? null, bias?.handle ?? null, eps, true]));
}

/** The Gaussian error linear unit, x·Φ(x) ('none'), or its tanh approximation ('tanh'). */
export function gelu(input: Tensor, approximate: 'none' | 'tanh' = 'none'): Tensor {
  return new Tensor(callTensorOp('aten::gelu', [input.handle, approximate]));
}

/** x·σ(x) (swish). */
export function silu(input: Tensor): Tensor {
  return new Tensor(callTensorOp('aten::silu', [input.handle]));
}

/** Rolls elements along dimensions, wrapping around (torch.roll). */
export function roll(input: Tensor, shifts: number[], dims: number[]): Tensor {
  return new Tensor(callTensorOp('aten::roll', [input.handle, shifts, dims]));
}

/** Bicubic resampling of (N, C, H, W) to `size` (torch.nn.functional.interpolate, mode 'bicubic'). */
export function interpolateBicubic(input: Tensor, size: [number, number], alignCorners: boolean): Tensor {
  return new Tensor(callTensorOp('aten::upsample_bicubic2d', [input.handle, size, alignCorners, null, null]));
}

/**
 * Scaled dot-product attention, softmax(q kᵀ / √d + bias) v, over the last two
 * dimensions; `bias` (optional) is added to the scores before the softmax.
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor | null = null, dropoutP = 0, training = false): Tensor {
  const d = q.shape[q.ndim - 1]!;
  const kt = k.transpose(-2, -1);
  const scores = q.matmul(kt).mul_(1 / Math.sqrt(d));
  kt.dispose();
  if (bias !== null) scores.add_(bias);
  const probs = scores.softmax(-1);
  scores.dispose();
  const dropped = dropoutP > 0 && training ? dropout(probs, dropoutP, true) : probs;
  if (dropped !== probs) probs.dispose();
  const out = dropped.matmul(v);
  dropped.dispose();
  return out;
}
