// What a deployed model needs besides its weights: the labels and the exact
// preprocessing (size, resize, crop, normalization), as `metadata.json`
// beside `model.onnx` and as the ONNX file's own metadata_props, so that a
// downstream tool needs only the one file.
import type { ModelInfo } from '../learn/saved-model.js';
import { fastvisionVersion } from '../util/version.js';
import { archOf } from '../vision/models/archs.js';

/** What `metadata.json` holds. */
export interface DeployMetadata {
  format: 'fastvision-onnx';
  /** 2: validation resizes as torchvision (antialiased); 1 (before): a box shrink then bilinear. */
  version: 2;
  /** The fastvision version that exported the model. */
  fastvision: string;
  arch: string;
  /** Class names, in the order of the output's columns. */
  labels: string[];
  input: {
    name: 'image';
    layout: 'NCHW';
    channels: 'RGB';
    size: number;
    /** Pixel values are divided by 255, then normalized per channel: (x − mean) / std. */
    mean: [number, number, number];
    std: [number, number, number];
  };
  preprocessing: {
    /** EXIF orientation is applied first. */
    orientation: 'exif';
    /** The shorter side to `size`, the longer `floor(size * long / short)`, by an antialiased bilinear (triangle) filter. */
    resize: typeof RESIZE;
    /** The center `size` × `size`, offsets rounded half to even. */
    crop: 'center';
    /** The same in torchvision's words, on a PIL image. */
    torchvision: string;
  };
  /** The second graph, which takes decoded pixels and does all of the above itself. */
  withPreprocessing: { file: 'model-preprocess.onnx'; input: { name: 'pixels'; type: 'uint8'; shape: [1, 'height', 'width', 3] }; opset: number } | null;
  /** Softmax over classes; multi-label models: a sigmoid per tag, tags kept above `threshold`. */
  output: { name: 'probabilities'; classes: number; activation: 'softmax' | 'sigmoid'; threshold?: number };
  onnx: { opset: number; foldedBatchNorm: boolean };
}

const RESIZE = 'shorter side to size, longer side truncated; antialiased bilinear as PIL Image.resize(BILINEAR), torchvision Resize(antialias=True), ONNX Resize(mode=linear, antialias=1)';

/** The deployment metadata of a saved model. */
export function deployMetadata(info: ModelInfo, { opset, foldedBatchNorm, preprocessOpset = null }: { opset: number; foldedBatchNorm: boolean; preprocessOpset?: number | null }): DeployMetadata {
  const arch = archOf(info.arch);
  return {
    format: 'fastvision-onnx',
    version: 2,
    fastvision: fastvisionVersion(),
    arch: info.arch,
    labels: [...info.classes],
    input: { name: 'image', layout: 'NCHW', channels: 'RGB', size: info.size, mean: [...arch.stats.mean], std: [...arch.stats.std] },
    preprocessing: {
      orientation: 'exif',
      resize: RESIZE,
      crop: 'center',
      torchvision: `Compose([Resize(${info.size}), CenterCrop(${info.size}), ToTensor(), Normalize(mean=${JSON.stringify(arch.stats.mean)}, std=${JSON.stringify(arch.stats.std)})])`,
    },
    withPreprocessing: preprocessOpset === null ? null : { file: 'model-preprocess.onnx', input: { name: 'pixels', type: 'uint8', shape: [1, 'height', 'width', 3] }, opset: preprocessOpset },
    output: info.multiLabel
      ? { name: 'probabilities', classes: info.classes.length, activation: 'sigmoid', threshold: info.threshold ?? 0.5 }
      : { name: 'probabilities', classes: info.classes.length, activation: 'softmax' },
    onnx: { opset, foldedBatchNorm },
  };
}

/** The same facts as ONNX metadata_props (string keys and values; lists as JSON). */
export function metadataProps(m: DeployMetadata): Record<string, string> {
  return {
    fastvision: JSON.stringify(m),
    fastvision_version: m.fastvision,
    arch: m.arch,
    labels: JSON.stringify(m.labels),
    input_size: String(m.input.size),
    mean: JSON.stringify(m.input.mean),
    std: JSON.stringify(m.input.std),
    resize: m.preprocessing.resize,
    torchvision: m.preprocessing.torchvision,
    crop: m.preprocessing.crop,
  };
}
