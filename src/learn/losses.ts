// Losses of the learner's loop, on what fast.ai's heads output: log-probabilities
// (LogSoftmax head) for single-label models, logits for multi-label ones.
import { F, tidy } from '../torch/index.js';
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
