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
