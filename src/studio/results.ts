// The studio's Results screen from a run's `validation.json`: the confusion matrix,
// per-class accuracy, and the lesson's three groups of photos (most incorrect, most
// uncertain, most confident correct). The file is checked before it is trusted.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { VALIDATION_PREDICTIONS, type ValidationPredictions } from '../learn/recipe.js';
import { confusionMatrix, mostConfidentCorrect, mostIncorrect, mostUncertain, predictedClasses, type Predictions } from '../report/interpret.js';
import { InputError } from '../util/errors.js';
import { readRegularFileSync } from '../util/read-files.js';

/** A validation photo in a group: its key, actual and predicted class, and the probability of the prediction. */
export interface ResultPhoto {
  file: string;
  actual: number;
  predicted: number;
  probability: number;
}

/** What `/api/results` answers. */
export interface StudioResults {
  classes: string[];
  confusion: number[][];
  /** Per class: validation photos and the share predicted right. */
  perClass: { label: string; n: number; accuracy: number | null }[];
  accuracy: number;
  /** Every validation photo, in order (the confusion matrix's cells filter these). */
  photos: ResultPhoto[];
  groups: { incorrect: ResultPhoto[]; uncertain: ResultPhoto[]; confident: ResultPhoto[] };
}

/** validation.json larger than this is not read. */
const MAX_BYTES = 256 * 2 ** 20;

/** The results of the run in `out`, or null when it has none yet. A malformed file is an error naming it. */
export function readResults(out: string, k = 12): StudioResults | null {
  const file = join(out, VALIDATION_PREDICTIONS);
  if (!existsSync(file)) return null;
  let v: ValidationPredictions;
  try {
    v = JSON.parse(readRegularFileSync(file, MAX_BYTES).toString('utf8')) as ValidationPredictions;
  } catch (e) {
    throw new InputError(`${file} cannot be read: ${(e as Error).message}`);
  }
  if (typeof v !== 'object' || v === null) throw new InputError(`${file} is not a validation.json that fastvision wrote`);
  const c = Array.isArray(v.classes) ? v.classes.length : 0;
  const n = Array.isArray(v.files) ? v.files.length : -1;
  const ok =
    c >= 2 &&
    v.classes.every((x) => typeof x === 'string') &&
    n >= 0 &&
    v.files.every((f) => typeof f === 'string') &&
    Array.isArray(v.y) &&
    v.y.length === n &&
    v.y.every((y) => Number.isInteger(y) && y >= 0 && y < c) &&
    Array.isArray(v.probs) &&
    v.probs.length === n * c &&
    v.probs.every((p) => typeof p === 'number' && Number.isFinite(p));
  if (!ok) throw new InputError(`${file} is not a validation.json that fastvision wrote`);
  const p: Predictions = { probs: Float32Array.from(v.probs), c, y: v.y };
  const pred = predictedClasses(p);
  const photo = (i: number): ResultPhoto => ({ file: v.files[i]!, actual: v.y[i]!, predicted: pred[i]!, probability: v.probs[i * c + pred[i]!]! });
  const confusion = confusionMatrix(p);
  return {
    classes: v.classes,
    confusion,
    perClass: v.classes.map((label, a) => {
      const row = confusion[a]!;
      const total = row.reduce((s, x) => s + x, 0);
      return { label, n: total, accuracy: total === 0 ? null : row[a]! / total };
    }),
    accuracy: n === 0 ? 0 : pred.filter((x, i) => x === v.y[i]).length / n,
    photos: v.files.map((_, i) => photo(i)),
    groups: {
      incorrect: mostIncorrect(p, k).map((pk) => photo(pk.index)),
      uncertain: mostUncertain(p, k).map((pk) => photo(pk.index)),
      confident: mostConfidentCorrect(p, k).map((pk) => photo(pk.index)),
    },
  };
}
