// Losses of the learner's loop, on what fast.ai's heads output: log-probabilities
// (LogSoftmax head) for single-label models, logits for multi-label ones.
import { F, tensor, tidy } from '../torch/index.js';
import type { LossFn } from './loop.js';

/** Cross entropy on logits (PyTorch's nn.CrossEntropyLoss): the generic Learner's default loss. */
export const crossEntropyLoss: LossFn = (out, y, reduction = 'mean') => F.crossEntropy(out, y, { reduction });

/** Negative log-likelihood of log-probabilities: cross entropy for the LogSoftmax head. */
export const nllLoss: LossFn = (out, y, reduction = 'mean') => F.nllLoss(out, y, { reduction });

/**
 * Label-smoothing cross entropy (fastai's LabelSmoothingCrossEntropy, PyTorch's
 * cross_entropy with label_smoothing): (1 − eps)·NLL + eps · mean over classes of
 * −log p. Takes logits or log-probabilities alike (log-softmax of log-probabilities
 * is themselves).
 */
export function labelSmoothingCrossEntropy(eps = 0.1): LossFn {
  if (!(eps >= 0 && eps < 1)) throw new RangeError(`label smoothing must be in [0, 1), got ${eps}`);
  return (out, y, reduction = 'mean') => F.crossEntropy(out, y, { labelSmoothing: eps, reduction });
}

/** Binary cross entropy on logits with multi-hot float targets (the multi-label loss); per image, the mean over its tags. */
export const bceWithLogits: LossFn = (out, y, reduction = 'mean') =>
  reduction === 'mean' ? F.binaryCrossEntropyWithLogits(out, y) : tidy(() => F.binaryCrossEntropyWithLogits(out, y, { reduction: 'none' }).mean(1));

/**
 * Class weights by inverse frequency ("balanced"): w_c = n / (C · n_c) for n labelled
 * items in C classes, n_c of class c, so that every class weighs as much in total and the
 * weights average 1 over the items. A class with no item gets weight 0 (it never appears as a target).
 */
export function inverseFrequencyWeights(labels: readonly number[], numClasses: number): number[] {
  const counts = new Array<number>(numClasses).fill(0);
  let n = 0;
  for (const l of labels) {
    if (l < 0) continue;
    if (!Number.isInteger(l) || l >= numClasses) throw new RangeError(`class weights: label ${l} is outside 0…${numClasses - 1}`);
    counts[l]!++;
    n++;
  }
  return counts.map((c) => (c === 0 ? 0 : n / (numClasses * c)));
}

/**
 * Weighted negative log-likelihood of log-probabilities (PyTorch's NLLLoss with
 * `weight`): each item's loss times its class's weight; the mean divides by the sum of
 * the targets' weights, as PyTorch does.
 */
export function weightedNllLoss(weights: readonly number[]): LossFn {
  if (weights.length === 0 || weights.some((w) => !(w >= 0) || !Number.isFinite(w))) throw new RangeError(`class weights must be finite and non-negative, got [${weights.join(', ')}]`);
  return (out, y, reduction = 'mean') =>
    tidy(() => {
      if (out.shape[1] !== weights.length) throw new RangeError(`class weights: ${weights.length} weights for ${out.shape[1]} classes`);
      return F.nllLoss(out, y, { weight: tensor(Float32Array.from(weights)).to(out.dtype).toDevice(out.device), reduction });
    });
}
