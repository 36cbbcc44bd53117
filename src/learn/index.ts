// The learner: ConvLearner, its fit loop and guard, schedules, precomputed activations.
export * from './schedule.js';
export * from './learner.js';
export { TrainingDivergedError } from './guard.js';
export { CACHE_ENTRIES, pruneCache } from './activations.js';
