// Keras / TensorFlow.js layers-format models as fastvision modules.
export * from './tfjs-format.js';
export * from './convert.js';
