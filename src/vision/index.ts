// Vision: datasets, transforms, models.
export * from './fashion-mnist.js';
export * from './models/index.js';
export * from './zoo.js';
export * from './keras/index.js';
export * from './models/nsfwjs.js';
