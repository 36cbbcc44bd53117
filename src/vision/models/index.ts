// Model architectures with torchvision's module trees and parameter names.
export * from './resnet.js';
export * from './vgg.js';
export * from './densenet.js';
export * from './mobilenet.js';
export * from './inception.js';
export * from './archs.js';
