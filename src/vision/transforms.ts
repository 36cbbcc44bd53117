// fast.ai's image transforms: scale, random zoom, rotation, lighting, flips and
// dihedral turns, random or center crop, normalization by the architecture's
// statistics. Transforms are plain data (applied by augment.ts in loader workers).
import type { Augmentation, CropType, ErasingAugmentation, Normalization, Transform } from './augment.js';
import { archOf, type ArchLike } from './models/archs.js';

export type { Augmentation, CropType, Transform } from './augment.js';

/** Training and validation transforms, as `tfmsFromModel` returns them. */
export interface Transforms {
  trn: Transform;
  val: Transform;
}

/** Random rotation by up to `degrees` either way (applied with probability p). */
export function randomRotate(degrees: number, probability = 0.75): Augmentation {
  return { kind: 'rotate', degrees, probability };
}
/** Random brightness and contrast changes (fast.ai's RandomLighting). */
export function randomLighting(brightness: number, contrast: number): Augmentation {
  return { kind: 'lighting', brightness, contrast };
}
/** Random horizontal flip. */
export function randomFlip(): Augmentation {
  return { kind: 'flip' };
}
/** Random rotation by a multiple of 90° and random flip: the 8 symmetries of a square. */
export function randomDihedral(): Augmentation {
  return { kind: 'dihedral' };
}

/**
 * torchvision's RandomErasing: with probability p, a rectangle of a `scale` share of the
 * image and an aspect ratio in `ratio` is set to the mean colour (0 after normalization).
 */
export function randomErasing(probability = 0.5, { scale = [0.02, 0.33], ratio = [0.3, 3.3] }: { scale?: [number, number]; ratio?: [number, number] } = {}): ErasingAugmentation {
  if (!(probability >= 0 && probability <= 1)) throw new RangeError(`randomErasing: probability must be in [0, 1], got ${probability}`);
  if (!(scale[0] > 0 && scale[0] <= scale[1] && scale[1] < 1)) throw new RangeError(`randomErasing: scale must satisfy 0 < min ≤ max < 1, got [${scale.join(', ')}]`);
  if (!(ratio[0] > 0 && ratio[0] <= ratio[1])) throw new RangeError(`randomErasing: ratio must satisfy 0 < min ≤ max, got [${ratio.join(', ')}]`);
  return { kind: 'erasing', probability, scale, ratio };
}

/**
 * torchvision's TrivialAugmentWide: one of 14 operations (shears, translations, rotation,
 * brightness, colour, contrast, sharpness, posterize, solarize, autocontrast, equalize,
 * identity) at a random one of `bins` magnitudes, on the cropped image.
 */
export function trivialAugmentWide(bins = 31): Augmentation {
  if (!Number.isInteger(bins) || bins < 2) throw new RangeError(`trivialAugmentWide: bins must be an integer of at least 2, got ${bins}`);
  return { kind: 'trivial', bins };
}

/** torchvision's RandAugment: `n` random operations, each at magnitude bin `magnitude` of `bins`. */
export function randAugment(n = 2, magnitude = 9, bins = 31): Augmentation {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`randAugment: n must be a positive integer, got ${n}`);
  if (!Number.isInteger(magnitude) || magnitude < 0 || magnitude >= bins) throw new RangeError(`randAugment: magnitude must be a bin in 0…${bins - 1}, got ${magnitude}`);
  return { kind: 'randaug', n, magnitude, bins };
}

/** Small rotations and lighting changes, for any photo. */
export const transformsBasic: Augmentation[] = [randomRotate(10), randomLighting(0.05, 0.05)];
/** Photos taken from the side (cats, dogs): basic plus horizontal flips. */
export const transformsSideOn: Augmentation[] = [...transformsBasic, randomFlip()];
/** Photos taken from above (satellite, microscopy): basic plus the dihedral group. */
export const transformsTopDown: Augmentation[] = [...transformsBasic, randomDihedral()];

/** Options of `tfmsFromModel` / `tfmsFromStats`. */
export interface TfmsOptions {
  /** Augmentations for training (default none). */
  augTfms?: Augmentation[];
  /** Random zoom up to this factor in training (default 1: none). */
  maxZoom?: number;
  /** How training images are cropped (default random; validation is always centered). */
  cropType?: CropType;
}

/** Training and validation transforms for images of side `sz` normalized by `stats`. */
export function tfmsFromStats(stats: Normalization, sz: number, { augTfms = [], maxZoom = 1, cropType = 'random' }: TfmsOptions = {}): Transforms {
  if (!Number.isInteger(sz) || sz < 8) throw new RangeError(`image size must be an integer of at least 8, got ${sz}`);
  if (!(maxZoom >= 1)) throw new RangeError(`maxZoom must be at least 1, got ${maxZoom}`);
  return {
    trn: { sz, maxZoom, augs: augTfms, crop: cropType, stats },
    val: { sz, maxZoom: 1, augs: [], crop: cropType === 'none' ? 'none' : 'center', stats, exact: true },
  };
}

/** Training and validation transforms with the architecture's normalization (fast.ai's tfms_from_model). */
export function tfmsFromModel(arch: ArchLike, sz: number, options: TfmsOptions = {}): Transforms {
  return tfmsFromStats(archOf(arch).stats, sz, options);
}
