// What the learner needs to know about each architecture (fast.ai's model_meta):
// its normalization statistics, where the body ends, how many features the body
// gives, where to split it into layer groups, and which published weights fit it.
import { loadStateDictFile, nn } from '../../torch/index.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { resolveWeights, weightsDir, ZOO, type FetchOptions } from '../zoo.js';
import { densenet121, renameLegacyDenseNetKeys } from './densenet.js';
import { inception_v3, type Inception3 } from './inception.js';
import { mobilenet_v2 } from './mobilenet.js';
import { resnet101, resnet152, resnet18, resnet34, resnet50, resnext101_32x8d, resnext101_64x4d, resnext50_32x4d, wide_resnet50_2 } from './resnet.js';
import { vgg16_bn } from './vgg.js';
import { KerasModel } from '../keras/convert.js';
import { convnext_base, convnext_large, convnext_small, convnext_tiny } from './convnext.js';
import * as effnet from './efficientnet.js';
import * as regnets from './regnet.js';
import { swin_b, swin_s, swin_t, type SwinTransformer } from './swin.js';
import { vit_b_16, vit_b_32, vit_l_16, vitBodyGroups, ViTBody, type VisionTransformer } from './vit.js';
import { Permute } from './blocks.js';
import { timmConvNeXtKeys, timmViTKeys } from './timm-keys.js';
import { inception_v3_nsfwjs, mobilenet_v2_nsfwjs } from './nsfwjs.js';

import type { Normalization } from '../augment.js';

export type { Normalization } from '../augment.js';

/** ImageNet statistics (torchvision's weights). */
export const IMAGENET_STATS: Normalization = { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };

/** An architecture with what the learner needs to use it. */
export interface Arch {
  name: string;
  /** Builds the full network (classifier included). */
  create(options?: { numClasses?: number }): nn.Module;
  /** The convolutional body: the network cut before its pooling and classifier, sharing its modules. */
  body(model: nn.Module): nn.Module;
  /** Channels of the body's output. */
  bodyFeatures: number;
  /**
   * Where the body splits into two layer groups (fast.ai's lr_cut): an index into
   * a Sequential body's children, or a layer name for a converted Keras body.
   */
  split: number | string;
  /** The body's two layer groups where they are not a cut of its children (ViT: blocks of its encoder). */
  groups?(body: nn.Module): [nn.Module[], nn.Module[]];
  /** Input normalization for the published weights. */
  stats: Normalization;
  /** The input size the weights were trained at. */
  size: number;
  /** The zoo name of the published weights, if any. */
  weights?: string;
  /** Rewrites a published state dict into this module tree's names, if they differ. */
  adaptState?<T>(state: Map<string, T>): Map<string, T>;
  /** Called with pretrained weights loaded (Inception's input transform). */
  onPretrained?(model: nn.Module): void;
  /** Builds the network with its weights from a local source (the offline backbones); used for `pretrained: true`. */
  loadPretrained?(): nn.Module;
  /**
   * Measured advice for fine-tuning the whole body, where the lesson's way does
   * badly: keep batch-norm statistics (`bnFreeze`) and unfreeze with the head's
   * rate times `lrFactor`, at most `maxLr`. The CLI's recipe follows it unless told otherwise.
   */
  unfreezeAdvice?: { bnFreeze: boolean; lrFactor: number; maxLr?: number; why: string };
}

/** The body's modules in its two layer groups (early layers, later layers). */
export function bodyGroups(arch: Arch, body: nn.Module): [nn.Module[], nn.Module[]] {
  if (arch.groups) return arch.groups(body);
  if (typeof arch.split === 'string') {
    if (!(body instanceof KerasModel)) throw new Error(`${arch.name}: a named split needs a Keras body`);
    return body.splitAt(arch.split);
  }
  const kids = body.children();
  return [kids.slice(0, arch.split), kids.slice(arch.split)];
}

function children(model: nn.Module, names: string[]): nn.Sequential {
  return nn.Sequential.named(
    names.map((n) => {
      const m = model.getModule(n);
      if (m === undefined) throw new Error(`${model.constructor.name} has no child '${n}'`);
      return [n, m];
    }),
  );
}

const RESNET_BODY = ['conv1', 'bn1', 'relu', 'maxpool', 'layer1', 'layer2', 'layer3', 'layer4'];

function resnetArch(name: string, create: (o?: { numClasses?: number }) => nn.Module, bodyFeatures: number): Arch {
  // fast.ai: cut the last two children (pool, fc); layer groups split at child 6 (layer3).
  return { name, create, body: (m) => children(m, RESNET_BODY), bodyFeatures, split: 6, stats: IMAGENET_STATS, size: 224, weights: name };
}

/** The architectures by name. */
export const ARCHS: Record<string, Arch> = {
  resnet18: resnetArch('resnet18', resnet18, 512),
  resnet34: resnetArch('resnet34', resnet34, 512),
  resnet50: resnetArch('resnet50', resnet50, 2048),
  resnet101: resnetArch('resnet101', resnet101, 2048),
  resnet152: resnetArch('resnet152', resnet152, 2048),
  resnext50_32x4d: resnetArch('resnext50_32x4d', resnext50_32x4d, 2048),
  resnext101_32x8d: resnetArch('resnext101_32x8d', resnext101_32x8d, 2048),
  resnext101_64x4d: resnetArch('resnext101_64x4d', resnext101_64x4d, 2048),
  wide_resnet50_2: resnetArch('wide_resnet50_2', wide_resnet50_2, 2048),
  vgg16_bn: {
    name: 'vgg16_bn',
    create: vgg16_bn,
    // fast.ai: the `features` Sequential, split at child 22 (the third pooling stage).
    body: (m) => m.getModule('features') as nn.Sequential,
    bodyFeatures: 512,
    split: 22,
    stats: IMAGENET_STATS,
    size: 224,
    weights: 'vgg16_bn',
  },
  densenet121: {
    name: 'densenet121',
    create: densenet121,
    // torchvision applies a ReLU after features.norm5 in forward; the body includes it.
    body: (m) => nn.Sequential.named([...(m.getModule('features') as nn.Sequential).namedChildren(), ['relu5', new nn.ReLU(true)]]),
    bodyFeatures: 1024,
    split: 7,
    stats: IMAGENET_STATS,
    size: 224,
    weights: 'densenet121',
    adaptState: renameLegacyDenseNetKeys,
  },
  mobilenet_v2: {
    name: 'mobilenet_v2',
    create: mobilenet_v2,
    body: (m) => m.getModule('features') as nn.Sequential,
    bodyFeatures: 1280,
    split: 10,
    stats: IMAGENET_STATS,
    size: 224,
    weights: 'mobilenet_v2',
  },
  inception_v3: {
    name: 'inception_v3',
    create: (o) => inception_v3({ ...o, auxLogits: true }),
    body: (m) =>
      children(m, [
        'Conv2d_1a_3x3',
        'Conv2d_2a_3x3',
        'Conv2d_2b_3x3',
        'maxpool1',
        'Conv2d_3b_1x1',
        'Conv2d_4a_3x3',
        'maxpool2',
        'Mixed_5b',
        'Mixed_5c',
        'Mixed_5d',
        'Mixed_6a',
        'Mixed_6b',
        'Mixed_6c',
        'Mixed_6d',
        'Mixed_6e',
        'Mixed_7a',
        'Mixed_7b',
        'Mixed_7c',
      ]),
    bodyFeatures: 2048,
    split: 11,
    stats: IMAGENET_STATS,
    size: 299,
    weights: 'inception_v3',
    onPretrained: (m) => {
      // Google's weights expect inputs normalized to [-1, 1]; torchvision turns on this transform with them.
      (m as Inception3 & { transformInput: boolean }).transformInput = true;
    },
  },
};

// Today's backbones, with torchvision's weights. Each body ends at the last feature
// map (fast.ai's cut: what precedes the pooling and classifier), which the head
// pools and Grad-CAM reads; layer groups split where the stride reaches 16, as
// ResNet's do at layer3.
type Create = (o?: { numClasses?: number }) => nn.Module;
const features = (m: nn.Module): nn.Sequential => m.getModule('features') as nn.Sequential;
const modern = (name: string, create: Create, bodyFeatures: number, split: number, body: (m: nn.Module) => nn.Module, size = 224): Arch => ({
  name,
  create,
  body,
  bodyFeatures,
  split,
  stats: IMAGENET_STATS,
  size,
  weights: name,
});
const MODERN: [Create, Arch][] = [
  ...(
    [
      [convnext_tiny, 'convnext_tiny', 768],
      [convnext_small, 'convnext_small', 768],
      [convnext_base, 'convnext_base', 1024],
      [convnext_large, 'convnext_large', 1536],
    ] as const
  ).map(([f, n, c]): [Create, Arch] => [f, { ...modern(n, f, c, 4, features), adaptState: timmConvNeXtKeys }]),
  ...(
    [
      [effnet.efficientnet_b0, 'efficientnet_b0', 1280, 224],
      [effnet.efficientnet_b1, 'efficientnet_b1', 1280, 240],
      [effnet.efficientnet_b2, 'efficientnet_b2', 1408, 288],
      [effnet.efficientnet_b3, 'efficientnet_b3', 1536, 300],
      [effnet.efficientnet_b4, 'efficientnet_b4', 1792, 380],
      [effnet.efficientnet_b5, 'efficientnet_b5', 2048, 456],
      [effnet.efficientnet_b6, 'efficientnet_b6', 2304, 528],
      [effnet.efficientnet_b7, 'efficientnet_b7', 2560, 600],
      [effnet.efficientnet_v2_s, 'efficientnet_v2_s', 1280, 384],
      [effnet.efficientnet_v2_m, 'efficientnet_v2_m', 1280, 480],
      [effnet.efficientnet_v2_l, 'efficientnet_v2_l', 1280, 480],
    ] as const
  ).map(([f, n, c, size]): [Create, Arch] => [f, modern(n, f, c, 4, features, size)]),
  ...(
    [
      [regnets.regnet_y_400mf, 'regnet_y_400mf', 440],
      [regnets.regnet_y_800mf, 'regnet_y_800mf', 784],
      [regnets.regnet_y_1_6gf, 'regnet_y_1_6gf', 888],
      [regnets.regnet_y_3_2gf, 'regnet_y_3_2gf', 1512],
      [regnets.regnet_y_8gf, 'regnet_y_8gf', 2016],
      [regnets.regnet_y_16gf, 'regnet_y_16gf', 3024],
      [regnets.regnet_y_32gf, 'regnet_y_32gf', 3712],
      [regnets.regnet_y_128gf, 'regnet_y_128gf', 7392],
      [regnets.regnet_x_400mf, 'regnet_x_400mf', 400],
      [regnets.regnet_x_800mf, 'regnet_x_800mf', 672],
      [regnets.regnet_x_1_6gf, 'regnet_x_1_6gf', 912],
      [regnets.regnet_x_3_2gf, 'regnet_x_3_2gf', 1008],
      [regnets.regnet_x_8gf, 'regnet_x_8gf', 1920],
      [regnets.regnet_x_16gf, 'regnet_x_16gf', 2048],
      [regnets.regnet_x_32gf, 'regnet_x_32gf', 2520],
    ] as const
  ).map(([f, n, c]): [Create, Arch] => [
    f,
    // The stem and the four stages; layer groups split at the third (stride 16). regnet_y_128gf's weights are SWAG's, at 384.
    modern(n, f, c, 3, (m) => nn.Sequential.named([['stem', m.getModule('stem')!], ...(m.getModule('trunk_output') as nn.Sequential).namedChildren()]), n === 'regnet_y_128gf' ? 384 : 224),
  ]),
  ...(
    [
      [vit_b_16, 'vit_b_16', 768, 6],
      [vit_b_32, 'vit_b_32', 768, 6],
      [vit_l_16, 'vit_l_16', 1024, 12],
    ] as const
  ).map(([f, n, c, half]): [Create, Arch] => [
    f,
    // The encoded patch tokens as a feature map; layer groups: the embeddings and the first half of the blocks, then the rest.
    { ...modern(n, f, c, half, (m) => new ViTBody(m as VisionTransformer)), groups: (body) => vitBodyGroups(body, half), adaptState: timmViTKeys },
  ]),
  ...(
    [
      [swin_t, 'swin_t', 768],
      [swin_s, 'swin_s', 768],
      [swin_b, 'swin_b', 1024],
    ] as const
  ).map(([f, n, c]): [Create, Arch] => [
    f,
    // The stages, the final LayerNorm (channels last) and the permutation to channels first.
    modern(n, f, c, 4, (m) => nn.Sequential.named([...features(m).namedChildren(), ['norm', (m as SwinTransformer).norm], ['permute', new Permute([0, 3, 1, 2])]])),
  ]),
];
for (const [, arch] of MODERN) ARCHS[arch.name] = arch;

/** Input in [0, 1], as nsfwjs feeds its Keras models. */
export const UNIT_RANGE: Normalization = { mean: [0, 0, 0], std: [1, 1, 1] };

/**
 * nsfwjs' Keras MobileNetV2, offline. The body ends at Conv_1 (the last 1×1
 * convolution, before its batch norm and ReLU6): in a linear probe on
 * pets-sample cats vs dogs (bench/probe-nsfwjs.ts, 5-fold cross-validation) it
 * scored 0.895, against 0.854 at block_16 and 0.816 at block_10, the last
 * block with the original ImageNet weights. Layer groups split at block_11,
 * where nsfwjs' fine-tuned layers begin.
 */
ARCHS.mobilenet_v2_nsfwjs = {
  name: 'mobilenet_v2_nsfwjs',
  create: () => mobilenet_v2_nsfwjs(),
  loadPretrained: () => mobilenet_v2_nsfwjs(),
  body: (m) => (m as KerasModel).cut('Conv_1'),
  bodyFeatures: 1280,
  split: 'block_11_expand',
  stats: UNIT_RANGE,
  size: 224,
  // pets-sample dogscats, 224, the CLI recipe: the lesson's unfreeze (batch statistics, same head rate)
  // fell from 0.81-0.85 to 0.69-0.78 and ended at TTA 0.77-0.82; with running statistics kept and a
  // fifth of the rate it rose to 0.86-0.89, TTA 0.851 with the lowest validation loss of all runs.
  // With statistics kept, the body diverged at restarts (validation loss 2-6) with the head at
  // 2e-3 and 5e-3 and was stable at 0.9e-3 to 1.4e-3: hence the cap.
  unfreezeAdvice: {
    bnFreeze: true,
    lrFactor: 0.2,
    maxLr: 1e-3,
    why: 'its batch norm, switched to batch statistics, moves the features the head was trained on, and with statistics kept it needs gentler rates',
  },
};

/** nsfwjs' Keras InceptionV3, offline; the body ends at mixed10, layer groups split at mixed6. */
ARCHS.inception_v3_nsfwjs = {
  name: 'inception_v3_nsfwjs',
  create: () => inception_v3_nsfwjs(),
  loadPretrained: () => inception_v3_nsfwjs(),
  body: (m) => (m as KerasModel).cut('mixed10'),
  bodyFeatures: 2048,
  split: 'mixed6',
  stats: UNIT_RANGE,
  size: 299,
};

const BY_FUNCTION = new Map<unknown, Arch>([
  [mobilenet_v2_nsfwjs, ARCHS.mobilenet_v2_nsfwjs],
  [inception_v3_nsfwjs, ARCHS.inception_v3_nsfwjs],
  [resnet18, ARCHS.resnet18!],
  [resnet34, ARCHS.resnet34!],
  [resnet50, ARCHS.resnet50!],
  [resnet101, ARCHS.resnet101!],
  [resnet152, ARCHS.resnet152!],
  [resnext50_32x4d, ARCHS.resnext50_32x4d!],
  [resnext101_32x8d, ARCHS.resnext101_32x8d!],
  [resnext101_64x4d, ARCHS.resnext101_64x4d!],
  [wide_resnet50_2, ARCHS.wide_resnet50_2!],
  [vgg16_bn, ARCHS.vgg16_bn!],
  [densenet121, ARCHS.densenet121!],
  [mobilenet_v2, ARCHS.mobilenet_v2!],
  [inception_v3, ARCHS.inception_v3!],
  ...MODERN,
]);

/** Something that names an architecture: its name, its constructor function (`resnet34`), or the Arch itself. */
export type ArchLike = string | Arch | ((...args: never[]) => nn.Module);

/** The Arch for a name, constructor or Arch; an unknown one is an error listing the known names. */
export function archOf(a: ArchLike): Arch {
  if (typeof a === 'object') return a;
  const found = typeof a === 'string' ? (Object.hasOwn(ARCHS, a) ? ARCHS[a] : undefined) : BY_FUNCTION.get(a);
  if (found === undefined) {
    throw new Error(`unknown architecture ${typeof a === 'string' ? `'${a}'` : a.name || 'function'}; known: ${Object.keys(ARCHS).join(', ')}`);
  }
  return found;
}

/**
 * Whether an architecture's published weights can be had without a download: it is built
 * from a local source (the offline backbones), or its zoo file is already in the cache.
 */
export function weightsHere(a: ArchLike, dir = weightsDir()): boolean {
  const arch = archOf(a);
  if (arch.loadPretrained) return true;
  const entry = arch.weights !== undefined && Object.hasOwn(ZOO, arch.weights) ? ZOO[arch.weights] : undefined;
  return entry !== undefined && existsSync(join(dir, entry.fileName));
}

/**
 * Builds an architecture and loads weights into it: `true` for its published
 * weights (zoo, cached), or a zoo name or local `.pth` path. Returns the model in eval mode.
 */
export async function createPretrained(a: ArchLike, weights: true | string = true, options: FetchOptions = {}): Promise<nn.Module> {
  const arch = archOf(a);
  if (weights === true && arch.loadPretrained) return arch.loadPretrained().eval();
  const source = weights === true ? arch.weights : weights;
  if (source === undefined) throw new Error(`${arch.name} has no published weights; pass a .pth file`);
  const path = await resolveWeights(source, options);
  const model = arch.create();
  let state = await loadStateDictFile(path);
  if (arch.adaptState) state = arch.adaptState(state);
  model.loadStateDict(state);
  for (const t of state.values()) t.dispose();
  arch.onPretrained?.(model);
  return model.eval();
}
