// Vision: datasets, transforms, models.
export * from './fashion-mnist.js';
export * from './models/index.js';
export * from './zoo.js';
