// fastvision: the fast.ai way of training image classifiers, on libtorch.
export * from './torch/index.js';
export * from './vision/index.js';
export * from './learn/index.js';
export { FastvisionError, InputError, exitCodeOf, type ErrorKind } from './util/errors.js';
