// How to unfreeze a pretrained body: the lesson's way (batch statistics, the same rate),
// or the architecture's measured advice where it has one (the offline MobileNetV2 keeps
// its batch-norm statistics and unfreezes at a fifth of the rate). fastvision train and
// the API's learners follow the same plan.
import type { Arch } from '../vision/models/archs.js';

/** What the caller decided, each overriding the advice (undefined: as the architecture advises). */
export interface UnfreezeChoices {
  /** Keep the body's batch-norm statistics (fast.ai's bn_freeze). */
  bnFreeze?: boolean;
  /** The head's rate once unfrozen. */
  unfreezeLr?: number;
  /** Ignore the architecture's advice: the lesson's way. */
  lessonUnfreeze?: boolean;
}

/** How to unfreeze: batch-norm statistics kept or not, the head's rate, and a note when advice was followed. */
export interface UnfreezePlan {
  bnFreeze: boolean;
  lr: number;
  note?: string;
}

/**
 * The plan for unfreezing `arch` after training the head at `lr`: the caller's choices,
 * else the architecture's measured advice (unless `lessonUnfreeze`), else the lesson's
 * way (batch statistics, the same rate). `note` says when advice was followed.
 */
export function unfreezePlan(arch: Arch, lr: number, s: UnfreezeChoices = {}): UnfreezePlan {
  const advice = s.lessonUnfreeze ? undefined : arch.unfreezeAdvice;
  const bnFreeze = s.bnFreeze ?? advice?.bnFreeze ?? false;
  const top = s.unfreezeLr ?? Math.min(lr * (advice?.lrFactor ?? 1), advice?.maxLr ?? Infinity);
  const followed = advice !== undefined && (s.bnFreeze === undefined || s.unfreezeLr === undefined);
  return {
    bnFreeze,
    lr: top,
    note: followed
      ? `unfreezing ${arch.name} with batch-norm statistics ${bnFreeze ? 'kept' : 'updated'} and the head at ${top.toExponential(2)}: ${advice.why} (--lesson-unfreeze for the lesson's way)`
      : undefined,
  };
}
