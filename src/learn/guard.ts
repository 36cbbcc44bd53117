// The divergence guard of the fit loop, a callback on by default: a loss that
// becomes NaN or infinite, or runs away (far above where training started),
// stops training, and the weights go back to the last point where everything
// was finite — the end of the last good epoch, or the start of the fit — so a
// diverged run never hands back a broken model.
import type { nn } from '../torch/index.js';
import type { Callback, EpochRecord, Loop } from './loop.js';
import { disposeState, snapshotState, updateSnapshot, type StateSnapshot } from './state.js';
import { FastvisionError } from '../util/errors.js';

/** Training stopped because the loss diverged; the weights were restored (see `restoredTo`). */
export class TrainingDivergedError extends FastvisionError {
  constructor(
    /** Why: "training loss NaN", "validation loss 2.1e+31 ran away", ... */
    readonly reason: string,
    /** The epoch (0-based, within the fit) in which it happened. */
    readonly epoch: number,
    /** Where the weights were put back: "the end of epoch 2" or "the start of this fit". */
    readonly restoredTo: string,
    /** The epochs that finished well before it (their rows). */
    readonly history: EpochRecord[],
  ) {
    super(`training diverged in epoch ${epoch} (${reason}); the weights are those of ${restoredTo}. Try a lower learning rate.`);
  }
}

/** Keeps the last good weights of a model while it trains, and checks each loss. */
export class DivergenceGuard {
  private readonly good: StateSnapshot;
  private goodLabel = 'the start of this fit';
  private reference: number | null = null;

  /** `runawayFactor`: a smoothed or validation loss above this many times max(first loss, 1) has run away. */
  constructor(
    private readonly model: nn.Module,
    private readonly runawayFactor = 10,
  ) {
    this.good = snapshotState(model);
  }

  private limit(): number {
    return this.runawayFactor * Math.max(this.reference ?? 1, 1);
  }

  /** The reason a training batch's loss means divergence, or null. */
  checkBatch(loss: number, smoothed: number): string | null {
    if (!Number.isFinite(loss)) return `training loss ${loss}`;
    if (this.reference === null) this.reference = loss;
    if (smoothed > this.limit()) return `smoothed training loss ${smoothed.toPrecision(3)} ran away (above ${this.limit().toPrecision(3)}, ${this.runawayFactor}× where it started)`;
    return null;
  }

  /** The reason an epoch's figures mean divergence, or null; when they are sound, its weights become the good ones. */
  checkEpoch(rec: EpochRecord): string | null {
    if (!Number.isFinite(rec.trnLoss)) return `training loss ${rec.trnLoss}`;
    if (rec.valLoss !== null) {
      if (!Number.isFinite(rec.valLoss)) return `validation loss ${rec.valLoss}`;
      if (rec.valLoss > this.limit()) return `validation loss ${rec.valLoss.toPrecision(3)} ran away (above ${this.limit().toPrecision(3)})`;
    }
    updateSnapshot(this.good, this.model);
    this.goodLabel = `the end of epoch ${rec.epoch}`;
    return null;
  }

  /** Puts the last good weights back; returns where they are from. */
  restore(): string {
    this.model.loadStateDict(this.good);
    return this.goodLabel;
  }

  /** Frees the kept weights. */
  dispose(): void {
    disposeState(this.good);
  }
}

/**
 * The guard as a callback (fit's default): stops on a NaN/Inf or runaway loss,
 * puts back the last good weights, says so, and throws TrainingDivergedError.
 */
export class DivergenceGuardCallback implements Callback {
  readonly order = -10;
  private guard: DivergenceGuard | null = null;
  private failure: TrainingDivergedError | null = null;
  constructor(private readonly runawayFactor = 10) {}

  beforeFit(loop: Loop): void {
    this.guard = new DivergenceGuard(loop.model, this.runawayFactor);
    this.failure = null;
  }

  afterBatch(loop: Loop): void {
    const why = this.guard!.checkBatch(loop.lossValue, loop.smoothedLoss);
    if (why) this.fail(loop, why, loop.history);
  }

  afterEpoch(loop: Loop): void {
    const why = this.guard!.checkEpoch(loop.record!);
    if (why) this.fail(loop, why, loop.history.slice(0, -1));
  }

  private fail(loop: Loop, why: string, history: EpochRecord[]): never {
    this.failure = new TrainingDivergedError(why, loop.epoch, this.guard!.restore(), [...history]);
    throw this.failure;
  }

  afterFit(loop: Loop): void {
    if (this.failure) loop.log?.(`stopped: ${this.failure.message}`);
    this.guard?.dispose();
    this.guard = null;
  }
}
