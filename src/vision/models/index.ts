// Model architectures with torchvision's module trees and parameter names.
export * from './resnet.js';
export * from './vgg.js';
export * from './densenet.js';
export * from './mobilenet.js';
export * from './inception.js';
export * from './blocks.js';
export * from './convnext.js';
export * from './efficientnet.js';
export * from './regnet.js';
export * from './vit.js';
export * from './swin.js';
export * from './timm-keys.js';
export * from './archs.js';
