// torch.optim for fastvision.
export * from './optimizer.js';
export * from './sgd.js';
export * from './adam.js';
