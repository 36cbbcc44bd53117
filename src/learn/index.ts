// The learner: Learner and ConvLearner, the training loop and its callbacks, schedules, the
// learning-rate finder, metrics, losses, prediction helpers, and the recipe with its session.
export * from './schedule.js';
export * from './loop.js';
export * from './callbacks.js';
export * from './metrics.js';
export * from './losses.js';
export * from './lr-finder.js';
export * from './predict.js';
export * from './mixup.js';
export * from './ema.js';
export * from './gradcam.js';
export * from './state.js';
export * from './learner.js';
export * from './conv-learner.js';
export { TrainingDivergedError, DivergenceGuardCallback } from './guard.js';
export { CACHE_ENTRIES, pruneCache } from './activations.js';
export { DistributedDataParallel, checkSameEverywhere, gatherRows, type DDPOptions } from './ddp.js';
export { GradScaler, MixedPrecision, checkMixedPrecision, type GradScalerOptions, type MixedPrecisionMode } from './mixed-precision.js';
export { OutOfMemoryError, BatchTooLargeError, checkBatchFits } from './memory.js';
export { saveCheckpoint, loadCheckpoint, disposeCheckpoint, type Checkpoint } from './checkpoint.js';
export { loadLearner, type LoadLearnerOptions } from './load-learner.js';
export { unfreezePlan, type UnfreezeChoices, type UnfreezePlan } from './unfreeze-plan.js';
export {
  trainRecipe,
  recipeStages,
  completeRecipeSettings,
  defaultSuggestion,
  RECIPES,
  RECIPE_DEFAULTS,
  predictedFiles,
  scoreTags,
  VALIDATION_PREDICTIONS,
  type Recipe,
  type RecipeObserver,
  type StageEvent,
  type ValidationPredictions,
  type RecipeOptions,
  type RecipeSettings,
  type StagePlan,
  type StageSettings,
  type TrainSummary,
} from './recipe.js';
export { checkpointFile, openCheckpoint, shareCheckpoint, notingCheckpoint, refuseBatchTooLarge, inSession, TrainingSession, type SessionMeta, type SessionOptions } from './session.js';
export { TrainingLog, type StageShape, type StageRecord } from './training-log.js';
export { submissionCsv, writeSubmission, imageId, type SubmissionOptions } from './submission.js';
