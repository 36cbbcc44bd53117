// Records what training did, stage by stage, for the pictures and the JSON
// summary: the rate and smoothed loss at every iteration, each epoch's figures.
import type { Callback, EpochRecord } from './loop.js';

/** What a stage of a recipe is (e.g. "head on precomputed activations"): its size, rates and schedule. */
export interface StageShape {
  name: string;
  size: number;
  lrs: number[];
  /** SGDR cycles (or epochs at a constant rate, or of one cycle). */
  nCycle: number;
  cycleLen?: number;
  cycleMult?: number;
}

/** One stage of a recipe as it ran. */
export interface StageRecord extends StageShape {
  history: EpochRecord[];
  /** Global iteration at which each epoch ended. */
  epochEnds: number[];
  seconds: number;
}

/** A training log across stages; `callback()` feeds it from `fit`. */
export class TrainingLog {
  readonly stages: StageRecord[] = [];
  /** Per iteration, across stages: the last group's rate and the smoothed loss. */
  readonly iterations: { iteration: number; lr: number; loss: number; stage: string }[] = [];
  private offset = 0;
  private started = 0;

  /** Starts a stage; what the returned callback records from now on belongs to it. */
  begin(stage: Omit<StageRecord, 'history' | 'epochEnds' | 'seconds'>): Callback {
    const rec: StageRecord = { ...stage, history: [], epochEnds: [], seconds: 0 };
    this.stages.push(rec);
    return this.recorder(rec, this.iterations.length, 0);
  }

  /**
   * Continues the last stage after a resume, `done` of its iterations having been
   * recorded before the interruption.
   */
  continueLast(done: number): Callback {
    const rec = this.stages[this.stages.length - 1];
    if (rec === undefined) throw new Error('TrainingLog: no stage to continue');
    return this.recorder(rec, this.iterations.length - done, rec.seconds);
  }

  /** The log as plain data (for checkpoints). */
  toJSON(): { stages: StageRecord[]; iterations: TrainingLog['iterations'] } {
    return { stages: this.stages, iterations: this.iterations };
  }

  /** A log restored from `toJSON()`'s data. */
  static from(data: { stages: StageRecord[]; iterations: TrainingLog['iterations'] }): TrainingLog {
    const log = new TrainingLog();
    log.stages.push(...data.stages);
    log.iterations.push(...data.iterations);
    return log;
  }

  private recorder(rec: StageRecord, offset: number, secondsBefore: number): Callback {
    this.offset = offset;
    this.started = performance.now() - secondsBefore * 1000;
    return {
      afterBatch: (loop) => {
        const groups = loop.opt.paramGroups;
        this.iterations.push({ iteration: this.offset + loop.iteration, lr: groups[groups.length - 1]!.lr, loss: loop.smoothedLoss, stage: rec.name });
      },
      afterEpoch: (loop) => {
        rec.history.push(loop.record!);
        rec.epochEnds.push(this.offset + loop.iteration);
        rec.seconds = (performance.now() - this.started) / 1000;
      },
    };
  }

  /** Validation loss at the end of each epoch, at its global iteration. */
  validationPoints(): { iteration: number; loss: number; kind: string }[] {
    return this.stages.flatMap((s) => s.history.flatMap((h, i) => (h.valLoss === null ? [] : [{ iteration: s.epochEnds[i]!, loss: h.valLoss, kind: 'validation (per epoch)' }])));
  }

  /** The last epoch's record, if any. */
  last(): EpochRecord | undefined {
    const withEpochs = this.stages.filter((s) => s.history.length > 0);
    const s = withEpochs[withEpochs.length - 1];
    return s?.history[s.history.length - 1];
  }
}
