// torch.nn for fastvision: modules, layers, initialization and losses.
export * from './module.js';
export * from './layers.js';
export * as init from './init.js';
export * from './loss.js';
export * from './transformer-layers.js';
