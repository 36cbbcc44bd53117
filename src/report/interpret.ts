// Reading predictions: the confusion matrix and fast.ai's image selections
// (most incorrect, most confident correct, most uncertain), from plain arrays.

/** Class probabilities, one row per image, with the true labels. */
export interface Predictions {
  /** Row-major, `n × c`. */
  probs: Float32Array | number[];
  c: number;
  y: number[];
}

/** The predicted class of each image (argmax; the first on ties). */
export function predictedClasses({ probs, c, y }: Predictions): number[] {
  return y.map((_, i) => {
    let best = 0;
    for (let k = 1; k < c; k++) if (probs[i * c + k]! > probs[i * c + best]!) best = k;
    return best;
  });
}

/** counts[actual][predicted]. */
export function confusionMatrix(p: Predictions): number[][] {
  const m = Array.from({ length: p.c }, () => new Array<number>(p.c).fill(0));
  predictedClasses(p).forEach((pred, i) => {
    const a = p.y[i]!;
    if (a >= 0 && a < p.c) m[a]![pred]!++;
  });
  return m;
}

/** One image picked for a grid: its index, true and predicted class, and their probabilities. */
export interface Pick {
  index: number;
  actual: number;
  predicted: number;
  /** Probability given to the true class. */
  pActual: number;
  /** Probability given to the predicted class. */
  pPredicted: number;
}

function picks(p: Predictions): Pick[] {
  const pred = predictedClasses(p);
  return p.y.map((a, i) => ({ index: i, actual: a, predicted: pred[i]!, pActual: Number(p.probs[i * p.c + a]), pPredicted: Number(p.probs[i * p.c + pred[i]!]) }));
}

/** Wrong predictions, most confident first (lowest probability on the true class). */
export function mostIncorrect(p: Predictions, k: number): Pick[] {
  return picks(p)
    .filter((q) => q.predicted !== q.actual)
    .sort((a, b) => a.pActual - b.pActual || a.index - b.index)
    .slice(0, k);
}

/** Right predictions, most confident first. */
export function mostConfidentCorrect(p: Predictions, k: number): Pick[] {
  return picks(p)
    .filter((q) => q.predicted === q.actual)
    .sort((a, b) => b.pActual - a.pActual || a.index - b.index)
    .slice(0, k);
}

/**
 * The least certain predictions: the smallest margin between the two most
 * probable classes (for two classes, probabilities closest to 0.5, as the lesson).
 */
export function mostUncertain(p: Predictions, k: number): (Pick & { margin: number })[] {
  return picks(p)
    .map((q) => {
      const row = Array.from({ length: p.c }, (_, j) => Number(p.probs[q.index * p.c + j]));
      row.sort((a, b) => b - a);
      return { ...q, margin: row[0]! - (row[1] ?? 0) };
    })
    .sort((a, b) => a.margin - b.margin || a.index - b.index)
    .slice(0, k);
}
