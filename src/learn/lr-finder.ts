// The learning-rate finder: a callback that grows the rate batch by batch on
// the ordinary training loop, records the smoothed loss, stops when it runs
// away and puts the weights back; and the rules that suggest a rate from the
// curve (fastai v2's valley, slide, minimum and steep; the lesson's rule).
import { renderChart, lrFinderSpec, scheduleSpec } from '../report/charts.js';
import { writeFileAtomic } from '../util/files.js';
import { CancelFitError, CancelValidateError, type Callback, type Loop } from './loop.js';
import { lrFinderMultiplier } from './schedule.js';
import { disposeState, snapshotState, type StateSnapshot } from './state.js';

/** The suggestion rules: fastai v2's four, and the lesson's "a tenth of the minimum". */
export type SuggestionRule = 'valley' | 'slide' | 'minimum' | 'steep' | 'lesson';
export const SUGGESTION_RULES: SuggestionRule[] = ['valley', 'slide', 'minimum', 'steep', 'lesson'];

/** A suggested rate, the rule that gave it, and the point of the curve it marks. */
export interface Suggestion {
  lr: number;
  rule: string;
  point: { lr: number; loss: number };
}

/** What the learning-rate finder recorded. */
export class LrFinderResult {
  constructor(
    /** The rate (of the last layer group) at each iteration. */
    readonly lrs: number[],
    /** The smoothed loss at each iteration. */
    readonly losses: number[],
    /** The iterations asked for (fastai trims the curve by a tenth of it). */
    readonly numIt = lrs.length,
  ) {}

  /** Loss against rate, without the first 10 and last 5 points (fast.ai's plot), as data. */
  plot(nSkip = 10, nSkipEnd = 5): { lr: number; loss: number }[] {
    return this.lrs.map((lr, i) => ({ lr, loss: this.losses[i]! })).slice(nSkip, Math.max(nSkip, this.lrs.length - nSkipEnd));
  }

  /** The rate at each iteration, as data. */
  plotLr(): { iteration: number; lr: number }[] {
    return this.lrs.map((lr, i) => ({ iteration: i, lr }));
  }

  /** `plot()` as a PNG (log-scale rate axis), with `mark` (e.g. the chosen rate) drawn; written to `file` when given. */
  async plotPng({ file, mark, nSkip = 10, nSkipEnd = 5 }: { file?: string; mark?: number; nSkip?: number; nSkipEnd?: number } = {}): Promise<Buffer> {
    const pts = this.plot(nSkip, nSkipEnd);
    const png = await renderChart(lrFinderSpec(pts.length > 1 ? pts : this.lrs.map((lr, i) => ({ lr, loss: this.losses[i]! })), mark));
    if (file) await writeFileAtomic(file, png);
    return png;
  }

  /** `plotLr()` as a PNG; written to `file` when given. */
  async plotLrPng({ file }: { file?: string } = {}): Promise<Buffer> {
    const png = await renderChart(scheduleSpec(this.plotLr().map((p) => ({ ...p, stage: 'learning-rate finder' }))));
    if (file) await writeFileAtomic(file, png);
    return png;
  }

  /**
   * The curve fastai v2's rules look at: without the first numIt/10 and last 5
   * points, cut at the first NaN loss.
   */
  trimmed(): { lrs: number[]; losses: number[] } {
    const from = Math.floor(this.numIt / 10);
    let lrs = this.lrs.slice(from, Math.max(from, this.lrs.length - 5));
    let losses = this.losses.slice(from, Math.max(from, this.losses.length - 5));
    const nan = losses.findIndex((l) => Number.isNaN(l));
    if (nan >= 0) {
      lrs = lrs.slice(0, nan);
      losses = losses.slice(0, nan);
    }
    if (lrs.length === 0) {
      // Too short a run to trim: use what there is.
      const ok = this.losses.map((l, i) => [this.lrs[i]!, l] as const).filter(([, l]) => !Number.isNaN(l));
      lrs = ok.map(([r]) => r);
      losses = ok.map(([, l]) => l);
    }
    return { lrs, losses };
  }

  /** A suggested rate by `rule` (default 'valley', fastai v2's default). */
  suggestion(rule: SuggestionRule = 'valley'): Suggestion {
    if (rule === 'lesson') return lessonRule(this);
    const { lrs, losses } = this.trimmed();
    if (lrs.length === 0) throw new Error('the learning-rate finder recorded no finite loss: no rate to suggest');
    switch (rule) {
      case 'valley':
        return valley(lrs, losses);
      case 'slide':
        return slide(lrs, losses);
      case 'minimum':
        return minimum(lrs, losses);
      case 'steep':
        return steep(lrs, losses);
      default:
        throw new Error(`unknown suggestion rule '${String(rule)}' (${SUGGESTION_RULES.join(', ')})`);
    }
  }

  /** Every rule's suggestion. */
  suggestions(): Record<SuggestionRule, Suggestion> {
    return Object.fromEntries(SUGGESTION_RULES.map((r) => [r, this.suggestion(r)])) as Record<SuggestionRule, Suggestion>;
  }
}

/** The lesson's rule: a tenth of the rate with the lowest smoothed loss, on fast.ai's plot (10 and 5 points skipped). */
function lessonRule(r: LrFinderResult): Suggestion {
  const pts = r.plot();
  const use = pts.length > 0 ? pts : r.lrs.map((lr, i) => ({ lr, loss: r.losses[i]! }));
  let best = use[0]!;
  for (const p of use) if (p.loss < best.loss) best = p;
  return { lr: best.lr / 10, rule: `lesson: a tenth of the rate with the lowest loss (${best.lr.toExponential(2)})`, point: best };
}

/** The loss of the recorded rate closest to `lr`. */
function lossNear(lrs: number[], losses: number[], lr: number): number {
  let k = 0;
  for (let i = 1; i < lrs.length; i++) if (Math.abs(lrs[i]! - lr) < Math.abs(lrs[k]! - lr)) k = i;
  return losses[k]!;
}

/**
 * fastai's valley: the longest stretch over which the loss keeps falling (the
 * longest decreasing subsequence ending at each point); the rate roughly half-way
 * into it (start + ⌊len/3⌋ + ⌊len/6⌋).
 */
export function valley(lrs: number[], losses: number[]): Suggestion {
  const n = losses.length;
  const lds = new Array<number>(n).fill(1);
  let maxStart = 0;
  let maxEnd = 0;
  for (let i = 1; i < n; i++) {
    for (let j = 0; j < i; j++) {
      if (losses[i]! < losses[j]! && lds[i]! < lds[j]! + 1) lds[i] = lds[j]! + 1;
      if (lds[maxEnd]! < lds[i]!) {
        maxEnd = i;
        maxStart = maxEnd - lds[maxEnd]!;
      }
    }
  }
  const sections = (maxEnd - maxStart) / 3;
  let idx = maxStart + Math.trunc(sections) + Math.trunc(sections / 2);
  // fastai indexes with Python, where -1 (a curve that never falls) is the last point.
  if (idx < 0) idx += n;
  return { lr: lrs[idx]!, rule: 'valley: part-way down the longest stretch of falling loss', point: { lr: lrs[idx]!, loss: losses[idx]! } };
}

/** numpy.gradient: central differences inside, one-sided at the ends (unit spacing). */
function gradient(v: number[]): number[] {
  const n = v.length;
  if (n < 2) return v.map(() => 0);
  return v.map((_, i) => (i === 0 ? v[1]! - v[0]! : i === n - 1 ? v[n - 1]! - v[n - 2]! : (v[i + 1]! - v[i - 1]!) / 2));
}

/**
 * fastai's slide: walking left from the end in windows of `lrDiff` points, the
 * first rate where the loss's slope at both window ends agrees within `thresh`.
 */
export function slide(lrs: number[], losses: number[], { lrDiff = 15, thresh = 0.005, adjustValue = 1 }: { lrDiff?: number; thresh?: number; adjustValue?: number } = {}): Suggestion {
  const n = losses.length;
  const g = gradient(losses);
  const at = (k: number): number => (k < 0 ? n + k : k); // Python's negative indices
  let r = -1;
  let l = r - lrDiff;
  // Python's lrs[l] with l < -n raises; a curve shorter than the window starts at its first point.
  let localMin = lrs[Math.max(0, at(l))]!;
  while (l >= -n && Math.abs(g[at(r)]! - g[at(l)]!) > thresh) {
    localMin = lrs[at(l)]!;
    r -= 1;
    l -= 1;
  }
  const lr = localMin * adjustValue;
  return { lr, rule: 'slide: where the slope of the loss settles, walking back from the end', point: { lr, loss: interpLogLoss(lrs, losses, lr) } };
}

/** numpy.interp of the loss at log10(lr) over log10(lrs). */
function interpLogLoss(lrs: number[], losses: number[], lr: number): number {
  const x = Math.log10(lr);
  const xs = lrs.map(Math.log10);
  if (x <= xs[0]!) return losses[0]!;
  if (x >= xs[xs.length - 1]!) return losses[losses.length - 1]!;
  for (let i = 1; i < xs.length; i++) {
    if (x <= xs[i]!) return losses[i - 1]! + ((losses[i]! - losses[i - 1]!) * (x - xs[i - 1]!)) / (xs[i]! - xs[i - 1]!);
  }
  return losses[losses.length - 1]!;
}

/** fastai's minimum: a tenth of the rate with the lowest loss (on fastai's trimmed curve). */
export function minimum(lrs: number[], losses: number[]): Suggestion {
  let k = 0;
  for (let i = 1; i < losses.length; i++) if (losses[i]! < losses[k]!) k = i;
  return { lr: lrs[k]! / 10, rule: `minimum: a tenth of the rate with the lowest loss (${lrs[k]!.toExponential(2)})`, point: { lr: lrs[k]!, loss: lossNear(lrs, losses, lrs[k]!) } };
}

/** fastai's steep: the rate where the loss falls fastest against log(rate). */
export function steep(lrs: number[], losses: number[]): Suggestion {
  let k = 0;
  let best = Infinity;
  for (let i = 0; i + 1 < losses.length; i++) {
    const g = (losses[i + 1]! - losses[i]!) / (Math.log(lrs[i + 1]!) - Math.log(lrs[i]!));
    if (g < best) {
      best = g;
      k = i;
    }
  }
  return { lr: lrs[k]!, rule: 'steep: where the loss falls fastest', point: { lr: lrs[k]!, loss: lossNear(lrs, losses, lrs[k]!) } };
}

/** Options of the finder. */
export interface LrFinderOptions {
  /** The first rate, one for all layer groups or one per group (default 1e-5). */
  startLr?: number[];
  /** The last group's final rate (default 10). */
  endLr?: number;
  linear?: boolean;
  /** Mini-batches to run (default one pass). */
  numIt: number;
}

/**
 * The finder as a callback: before each batch the rates grow from startLr (per
 * group) towards endLr; after it the smoothed loss is recorded; the fit is
 * cancelled when that loss exceeds 4× its best (or is NaN) or after numIt
 * batches; validation is skipped; the weights are put back at the end.
 */
export class LRFinder implements Callback {
  readonly order = -30;
  readonly lrs: number[] = [];
  readonly losses: number[] = [];
  private best = Infinity;
  private saved: StateSnapshot | null = null;
  private readonly starts: number[];
  constructor(private readonly o: LrFinderOptions & { startLr: number[] }) {
    this.starts = o.startLr;
  }

  beforeFit(loop: Loop): void {
    this.saved = snapshotState(loop.model);
  }

  beforeBatch(loop: Loop): void {
    const last = this.starts.length - 1;
    const mult = lrFinderMultiplier(loop.iteration, this.o.numIt, this.starts[last]!, this.o.endLr ?? 10, this.o.linear ?? false);
    loop.opt.paramGroups.forEach((g, i) => (g.lr = this.starts[i]! * mult));
  }

  afterBatch(loop: Loop): void {
    const s = loop.smoothedLoss;
    const lrs = loop.opt.paramGroups;
    this.lrs.push(lrs[lrs.length - 1]!.lr);
    this.losses.push(s);
    if (Number.isNaN(s) || s > 4 * this.best || loop.iteration >= this.o.numIt) throw new CancelFitError();
    if (s < this.best && loop.iteration > 10) this.best = s;
  }

  beforeValidate(): void {
    throw new CancelValidateError();
  }

  afterFit(loop: Loop): void {
    if (!this.saved) return;
    loop.model.loadStateDict(this.saved);
    disposeState(this.saved);
    this.saved = null;
  }

  /** What was recorded. */
  result(): LrFinderResult {
    return new LrFinderResult(this.lrs, this.losses, this.o.numIt);
  }
}
