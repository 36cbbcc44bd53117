// Kaggle submissions: one row per test image, its id then one probability per
// class (or the predicted label).
import { basename, extname } from 'node:path';
import { writeFileAtomic } from '../util/files.js';

const quoteField = (s: string): string => (/[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);

/** A field a spreadsheet would take for a formula (OWASP's CSV injection list). */
const FORMULA_START = /^[=+\-@\t\r]/;

/** Whether a submission field would run as a formula when the file is opened in a spreadsheet. */
export function looksLikeFormula(field: string): boolean {
  return FORMULA_START.test(field);
}

/** The field as a spreadsheet shows it as text: a leading `'` before what would start a formula. */
export function spreadsheetSafe(field: string): string {
  return looksLikeFormula(field) ? `'${field}` : field;
}

/** The id Kaggle expects for an image: its file name without the extension. */
export function imageId(file: string): string {
  return basename(file, extname(file));
}

/** The tags of a row of probabilities above `threshold`, most probable first. */
export function tagsOf(row: ArrayLike<number>, classes: string[], threshold: number): string[] {
  return classes
    .map((t, k) => ({ t, p: Number(row[k]) }))
    .filter((x) => x.p > threshold)
    .sort((a, b) => b.p - a.p)
    .map((x) => x.t);
}

/** How a submission is written. */
export interface SubmissionOptions {
  /** One column with the predicted label instead of probabilities. */
  labels?: boolean;
  /** Multi-label: the tags above this threshold, space-separated (planet's `id,tags`). */
  tags?: number;
  /**
   * Prefix `'` to ids and labels that a spreadsheet would run as formulas (`=`, `+`, `-`,
   * `@`). Off by default: Kaggle compares ids and labels exactly, so they are written raw.
   */
  spreadsheetSafe?: boolean;
}

/**
 * The submission as CSV text: `id` then one column per class, `id,label` with
 * `labels`, or (multi-label, planet-style) `id,tags` with the space-separated tags
 * above the `tags` threshold.
 */
export function submissionCsv(files: string[], probs: ArrayLike<number>, classes: string[], { labels = false, tags, spreadsheetSafe: safe = false }: SubmissionOptions = {}): string {
  const quote = (s: string): string => quoteField(safe ? spreadsheetSafe(s) : s);
  const c = classes.length;
  if (probs.length !== files.length * c) throw new Error(`submission: ${probs.length / c} rows of probabilities for ${files.length} images`);
  const lines = [tags !== undefined ? 'id,tags' : labels ? 'id,label' : ['id', ...classes.map(quote)].join(',')];
  files.forEach((f, i) => {
    const row = Array.from({ length: c }, (_, k) => Number(probs[i * c + k]));
    if (tags !== undefined) {
      lines.push(`${quote(imageId(f))},${quote(tagsOf(row, classes, tags).join(' '))}`);
    } else if (labels) {
      let best = 0;
      for (let k = 1; k < c; k++) if (row[k]! > row[best]!) best = k;
      lines.push(`${quote(imageId(f))},${quote(classes[best]!)}`);
    } else {
      lines.push([quote(imageId(f)), ...row.map((p) => p.toPrecision(6))].join(','));
    }
  });
  return `${lines.join('\n')}\n`;
}

/** Writes the submission CSV atomically. */
export async function writeSubmission(path: string, files: string[], probs: ArrayLike<number>, classes: string[], options: SubmissionOptions = {}): Promise<void> {
  await writeFileAtomic(path, submissionCsv(files, probs, classes, options));
}
