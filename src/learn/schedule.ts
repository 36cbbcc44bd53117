// Learning-rate schedules, iteration by iteration, as fast.ai v0.7 computes them:
// SGDR (cosine annealing with warm restarts, cycleLen, cycleMult, the warm-up at
// lr/100), a constant rate, and the learning-rate finder's growth.

/** The rate multiplier at each iteration of a fit, and where cycles end. */
export interface Schedule {
  /** Multiplier of the base rates for each iteration (mini-batch), in order. */
  multipliers: number[];
  /** Iteration counts at which a cycle ends (exclusive ends; for snapshots). */
  cycleEnds: number[];
  /** Epochs the schedule spans. */
  epochs: number;
}

/**
 * fast.ai's CosAnneal: in each cycle of `nb = cycleLen × batchesPerEpoch`
 * iterations the rate follows lr/2·(1 + cos(π·i/nb)); every cycle is `cycleMult`
 * times longer than the one before; during the first nb/20 iterations of the
 * first cycle the rate is lr/100 (a warm-up).
 */
export function sgdrSchedule(nCycle: number, batchesPerEpoch: number, cycleLen: number, cycleMult = 1): Schedule {
  if (!(Number.isInteger(nCycle) && nCycle >= 1)) throw new RangeError(`the number of cycles must be a positive integer, got ${nCycle}`);
  if (!(cycleLen > 0)) throw new RangeError(`cycleLen must be positive, got ${cycleLen}`);
  if (!(cycleMult >= 1)) throw new RangeError(`cycleMult must be at least 1, got ${cycleMult}`);
  const multipliers: number[] = [];
  const cycleEnds: number[] = [];
  let nb = cycleLen * batchesPerEpoch;
  const warmup = nb / 20;
  let epochs = 0;
  for (let c = 0; c < nCycle; c++) {
    const len = Math.round(nb);
    for (let i = 0; i < len; i++) {
      const global = multipliers.length;
      multipliers.push(global < warmup ? 1 / 100 : 0.5 * (1 + Math.cos((Math.PI * i) / nb)));
    }
    cycleEnds.push(multipliers.length);
    epochs += nb / batchesPerEpoch;
    nb *= cycleMult;
  }
  return { multipliers, cycleEnds, epochs: Math.round(epochs) };
}

/** A constant rate for `epochs` epochs. */
export function constantSchedule(epochs: number, batchesPerEpoch: number): Schedule {
  const n = epochs * batchesPerEpoch;
  return { multipliers: new Array<number>(n).fill(1), cycleEnds: [], epochs };
}

/**
 * The learning-rate finder's rates for iteration i of `nb`: from startLr growing
 * exponentially (or linearly) to endLr over the run.
 */
export function lrFinderMultiplier(i: number, nb: number, startLr: number, endLr: number, linear = false): number {
  const ratio = endLr / startLr;
  return linear ? 1 + ((ratio - 1) * i) / nb : ratio ** (i / nb);
}

/** fast.ai's loss smoothing: an exponential moving average with bias correction. */
export class SmoothedLoss {
  private avg = 0;
  private n = 0;
  constructor(readonly beta = 0.98) {}

  /** Adds a loss; returns the smoothed value. */
  add(loss: number): number {
    this.n++;
    this.avg = this.beta * this.avg + (1 - this.beta) * loss;
    return this.value;
  }

  get value(): number {
    return this.n === 0 ? Number.NaN : this.avg / (1 - this.beta ** this.n);
  }

  /** The running state, for checkpoints. */
  state(): { avg: number; n: number } {
    return { avg: this.avg, n: this.n };
  }

  /** Continues from a state `state()` returned. */
  restore({ avg, n }: { avg: number; n: number }): void {
    this.avg = avg;
    this.n = n;
  }
}

/** Options of the one-cycle policy (fastai v2's names and defaults). */
export interface OneCycleOptions {
  /** Share of the iterations spent warming up (default 0.25). */
  pctStart?: number;
  /** The rate starts at lrMax / divFactor (default 25). */
  divFactor?: number;
  /** The rate ends at lrMax / finalDiv (default 1e5). */
  finalDiv?: number;
  /** Momentum at the start, at the peak rate, and at the end (default [0.95, 0.85, 0.95]). */
  moms?: [number, number, number];
}

/**
 * The one-cycle policy over `total` iterations: the rate rises from lrMax/divFactor
 * to lrMax along a cosine for the first pctStart of the run, then anneals along a
 * cosine to lrMax/finalDiv, while momentum moves the opposite way. Computed step
 * for step as PyTorch's OneCycleLR (anneal_strategy 'cos', two phases; the warm-up
 * ends at step pctStart·total − 1), which a fixture pins; fastai v2's schedule
 * places that boundary at pctStart·total, less than one step away.
 * Returns the rate multiplier of lrMax and the momentum at iteration i.
 */
export function oneCycleSchedule(
  total: number,
  { pctStart = 0.25, divFactor = 25, finalDiv = 1e5, moms = [0.95, 0.85, 0.95] }: OneCycleOptions = {},
): { lr: (i: number) => number; mom: (i: number) => number } {
  if (!(Number.isInteger(total) && total >= 1)) throw new RangeError(`one cycle: the number of iterations must be a positive integer, got ${total}`);
  if (!(pctStart > 0 && pctStart < 1)) throw new RangeError(`pctStart must be between 0 and 1, got ${pctStart}`);
  if (!(divFactor > 0) || !(finalDiv > 0)) throw new RangeError(`divFactor and finalDiv must be positive, got ${divFactor} and ${finalDiv}`);
  const cos = (start: number, end: number, pct: number): number => end + ((start - end) / 2) * (Math.cos(Math.PI * pct) + 1);
  const warmEnd = pctStart * total - 1;
  const lastStep = total - 1;
  const phase = (i: number): { k: 0 | 1; pct: number } => {
    const step = Math.min(i, lastStep);
    if (step <= warmEnd) return { k: 0, pct: warmEnd > 0 ? step / warmEnd : 1 };
    const span = lastStep - warmEnd;
    return { k: 1, pct: span > 0 ? (step - warmEnd) / span : 1 };
  };
  return {
    lr: (i) => {
      const { k, pct } = phase(i);
      return k === 0 ? cos(1 / divFactor, 1, pct) : cos(1, 1 / finalDiv, pct);
    },
    mom: (i) => {
      const { k, pct } = phase(i);
      return k === 0 ? cos(moms[0], moms[1], pct) : cos(moms[1], moms[2], pct);
    },
  };
}
