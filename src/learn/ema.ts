// An exponential moving average of the weights (timm's ModelEmaV2, torchvision's
// recipe's ExponentialMovingAverage): after every optimizer step each floating-point
// entry of the state dict moves toward the trained one, ema ← decay·ema + (1−decay)·w,
// and other entries (counters) are copied. The average can be what is validated, and
// what is kept at the end (then saved and exported in place of the raw weights).
import { noGrad } from '../torch/index.js';
import type { Callback, Loop } from './loop.js';
import { disposeState, restoreSnapshot, snapshotState, updateSnapshot, type StateSnapshot } from './state.js';

/** Options of ModelEMA. */
export interface ModelEMAOptions {
  /** Weight of the average per step (default 0.999: a horizon of about 1000 steps). */
  decay?: number;
  /** Ramp the decay up as timm does, min(decay, (1 + t)/(10 + t)) at step t, so early steps count. */
  warmup?: boolean;
  /** Validate with the averaged weights (the raw ones are put back after). */
  validate?: boolean;
  /** At the end of the fit, leave the averaged weights in the model (saved and exported from there). */
  replace?: boolean;
}

/** A callback keeping an exponential moving average of what trains (`loop.net`). */
export class ModelEMA implements Callback {
  readonly order = 5;
  readonly name = 'ema';
  readonly decay: number;
  readonly warmup: boolean;
  readonly validate: boolean;
  readonly replace: boolean;
  /** The averaged state, by state-dict name (null before the first fit). */
  average: StateSnapshot | null = null;
  /** Optimizer steps averaged so far. */
  steps = 0;
  private raw: StateSnapshot | null = null;

  constructor({ decay = 0.999, warmup = false, validate = false, replace = false }: ModelEMAOptions = {}) {
    if (!(decay >= 0 && decay < 1)) throw new RangeError(`ModelEMA: decay must be in [0, 1), got ${decay}`);
    this.decay = decay;
    this.warmup = warmup;
    this.validate = validate;
    this.replace = replace;
  }

  /** The decay used at step `t` (0-based). */
  decayAt(t: number): number {
    return this.warmup ? Math.min(this.decay, (1 + t) / (10 + t)) : this.decay;
  }

  beforeFit(loop: Loop): void {
    // Kept across fits of the same network (a recipe's stages); a different one starts afresh.
    const names = [...loop.net.stateDict().keys()];
    if (this.average !== null && names.length === this.average.size && names.every((k) => this.average!.has(k))) return;
    if (this.average !== null) disposeState(this.average);
    this.average = snapshotState(loop.net);
    this.steps = 0;
  }

  afterStep(loop: Loop): void {
    const avg = this.average!;
    const d = this.decayAt(this.steps++);
    noGrad(() => {
      for (const [k, w] of loop.net.stateDict()) {
        const a = avg.get(k)!;
        if (w.dtype === 'float32' || w.dtype === 'float64' || w.dtype === 'float16' || w.dtype === 'bfloat16') a.lerp_(w, 1 - d);
        else a.copy_(w);
      }
    });
  }

  beforeValidate(loop: Loop): void {
    if (!this.validate || this.average === null) return;
    this.raw = this.raw ?? snapshotState(loop.net);
    updateSnapshot(this.raw, loop.net);
    restoreSnapshot(loop.net, this.average);
  }

  afterValidate(loop: Loop): void {
    if (this.validate && this.raw !== null) restoreSnapshot(loop.net, this.raw);
  }

  afterFit(loop: Loop): void {
    if (this.raw !== null) {
      disposeState(this.raw);
      this.raw = null;
    }
    if (this.replace && this.average !== null) restoreSnapshot(loop.net, this.average);
  }

  /** Frees the average. */
  dispose(): void {
    if (this.average !== null) disposeState(this.average);
    this.average = null;
  }
}
