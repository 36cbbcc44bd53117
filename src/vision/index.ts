// Vision: datasets, transforms, models.
export * from './fashion-mnist.js';
