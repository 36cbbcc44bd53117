// Vision: datasets, transforms, models.
export * from './fashion-mnist.js';
export * from './models/index.js';
export * from './zoo.js';
export * from './keras/index.js';
export * from './models/nsfwjs.js';
export * from './augment.js';
export * from './verify.js';
export * from './transforms.js';
export * from './dataset.js';
export * from './cleaning.js';
export * from './loader.js';
export * from './data.js';
export * from './jpeg.js';
export { DEFAULT_MAX_IMAGE_PIXELS, maxImagePixels, setMaxImagePixels } from './image-limits.js';
export * from './warp.js';
export * from './bmp.js';
