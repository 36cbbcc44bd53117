// Prediction beyond one pass: probabilities averaged over several passes — TTA's
// augmented copies, a snapshot ensemble's weights — with one averager, and
// running code under other weights with the model's own put back after.
import { tidy, type nn, type Tensor } from '../torch/index.js';
import { disposeState, snapshotState } from './state.js';

/** Probabilities and the targets they belong to. */
export interface Probabilities {
  probs: Tensor;
  y: Tensor;
}

/**
 * The mean of `n` passes' probabilities (same rows in the same order); the
 * targets are the first pass's. Each pass's tensors are freed as it is added.
 */
export async function averageProbabilities(n: number, pass: (k: number) => Promise<Probabilities>): Promise<Probabilities> {
  if (!(Number.isInteger(n) && n >= 1)) throw new RangeError(`averageProbabilities: need at least one pass, got ${n}`);
  let sum: Tensor | null = null;
  let y: Tensor | null = null;
  try {
    for (let k = 0; k < n; k++) {
      const r = await pass(k);
      if (y === null) y = r.y;
      else r.y.dispose();
      if (sum === null) sum = r.probs;
      else {
        const prev: Tensor = sum;
        sum = tidy(() => prev.add(r.probs));
        prev.dispose();
        r.probs.dispose();
      }
    }
    const probs = sum!.div(n);
    return { probs, y: y! };
  } catch (e) {
    y?.dispose();
    throw e;
  } finally {
    sum?.dispose();
  }
}

/** Runs `fn` (which may load other weights into `model`), then puts `model`'s own weights back, also when it fails. */
export async function keepingWeights<T>(model: nn.Module, fn: () => Promise<T>): Promise<T> {
  const current = snapshotState(model);
  try {
    return await fn();
  } finally {
    model.loadStateDict(current);
    disposeState(current);
  }
}
