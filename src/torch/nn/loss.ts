// Loss functions as objects, for code that passes "the loss" around (the learner does).
import * as F from '../functional.js';
import type { Reduction, Tensor } from '../tensor.js';

/** A criterion: a scalar (or per-sample) loss from predictions and targets. */
export interface Loss {
  forward(input: Tensor, target: Tensor): Tensor;
}

/** Cross entropy on logits with int64 class targets (softmax + NLL in one). */
export class CrossEntropyLoss implements Loss {
  constructor(readonly options: { weight?: Tensor | null; reduction?: Reduction; ignoreIndex?: number; labelSmoothing?: number } = {}) {}
  forward(input: Tensor, target: Tensor): Tensor {
    return F.crossEntropy(input, target, this.options);
  }
}

/** Negative log-likelihood on log-probabilities (the partner of LogSoftmax). */
export class NLLLoss implements Loss {
  constructor(readonly options: { weight?: Tensor | null; reduction?: Reduction; ignoreIndex?: number } = {}) {}
  forward(input: Tensor, target: Tensor): Tensor {
    return F.nllLoss(input, target, this.options);
  }
}

/** Binary cross entropy on logits with float targets in [0, 1] (multi-label). */
export class BCEWithLogitsLoss implements Loss {
  constructor(readonly options: { weight?: Tensor | null; posWeight?: Tensor | null; reduction?: Reduction } = {}) {}
  forward(input: Tensor, target: Tensor): Tensor {
    return F.binaryCrossEntropyWithLogits(input, target, this.options);
  }
}
