// The learner: schedules, heads, training loop (in progress: issue 5).
export * from './schedule.js';
export * from './learner.js';
