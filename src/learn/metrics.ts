// Metrics computed on the validation set after each epoch. Each carries its
// direction, so that whatever keeps "the best" epoch (SaveModelCallback,
// EarlyStoppingCallback, bestSaveName) knows whether higher or lower is better.
import { tidy, type Tensor } from '../torch/index.js';

/**
 * A metric: the model's outputs on the whole validation set (log-probabilities
 * for single-label models, logits for multi-label ones) and the targets in, a
 * number out; `direction` says which way is better (default 'max').
 */
export interface Metric {
  name: string;
  fn: (out: Tensor, y: Tensor) => number;
  direction?: 'max' | 'min';
}

/** Accuracy: the share of argmax predictions equal to the target. */
export const accuracy: Metric = { name: 'accuracy', direction: 'max', fn: (lp, y) => tidy(() => lp.argmax(1).eq(y).float().mean().item()) };

/** Error rate: 1 − accuracy (lower is better). */
export const errorRate: Metric = { name: 'error_rate', direction: 'min', fn: (lp, y) => tidy(() => lp.argmax(1).ne(y).float().mean().item()) };

/**
 * Multi-label accuracy at a threshold (fastai's accuracy_multi): the share of
 * (image, tag) pairs where sigmoid(logit) > thresh agrees with the target.
 */
export function accuracyThresh(thresh = 0.5): Metric {
  return { name: 'accuracy_thresh', direction: 'max', fn: (logits, y) => tidy(() => logits.sigmoid().gt(thresh).float().eq(y).float().mean().item()) };
}

/**
 * F-beta of thresholded multi-label predictions, averaged over images (the
 * planet competition's F2 with beta 2; sklearn's `fbeta_score(average='samples')`).
 * An image with neither a true nor a predicted tag scores 1 (sklearn's zero_division=1).
 */
export function fbeta(beta = 2, thresh = 0.2): Metric {
  return { name: `f${beta}`, direction: 'max', fn: (logits, y) => fbetaScore(logits.sigmoid().dataSync() as Float32Array, y.dataSync() as Float32Array, y.shape[1] ?? 1, beta, thresh) };
}

/** F-beta averaged over rows of `probs` and multi-hot `targets` (row-major, `c` columns), predictions `probs > thresh`. */
export function fbetaScore(probs: ArrayLike<number>, targets: ArrayLike<number>, c: number, beta: number, thresh: number): number {
  const n = c === 0 ? 0 : probs.length / c;
  if (n === 0) return Number.NaN;
  const b2 = beta * beta;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    let tp = 0;
    let fp = 0;
    let fn = 0;
    for (let j = 0; j < c; j++) {
      const p = probs[i * c + j]! > thresh;
      const t = targets[i * c + j]! > 0.5;
      if (p && t) tp++;
      else if (p) fp++;
      else if (t) fn++;
    }
    const denom = (1 + b2) * tp + b2 * fn + fp;
    sum += denom === 0 ? 1 : ((1 + b2) * tp) / denom;
  }
  return sum / n;
}

/** Which way a monitored quantity improves: losses go down, metrics as they say. */
export function monitorDirection(monitor: string, metrics: Metric[]): 'min' | 'max' {
  if (monitor === 'trn_loss' || monitor === 'val_loss') return 'min';
  const m = metrics.find((x) => x.name === monitor);
  if (!m) throw new Error(`monitor '${monitor}' is not among trn_loss, val_loss${metrics.map((x) => `, ${x.name}`).join('')}`);
  return m.direction ?? 'max';
}

/**
 * The threshold (0.05, 0.06, … 0.95) that gives the best F-beta on validation
 * probabilities and multi-hot targets (the planet lesson's opt_th); among equal
 * scores, the lowest threshold. Returns it with its score.
 */
export function bestThreshold(probs: ArrayLike<number>, targets: ArrayLike<number>, c: number, beta = 2): { threshold: number; score: number } {
  let best = { threshold: 0.5, score: -1 };
  for (let k = 5; k <= 95; k++) {
    const t = k / 100;
    const score = fbetaScore(probs, targets, c, beta, t);
    if (score > best.score) best = { threshold: t, score };
  }
  return best;
}
