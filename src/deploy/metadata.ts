// What a deployed model needs besides its weights: the labels and the exact
// preprocessing (size, shrink, resize, crop, normalization), as `metadata.json`
// beside `model.onnx` and as the ONNX file's own metadata_props, so that a
// downstream tool needs only the one file.
import type { ModelInfo } from '../learn/saved-model.js';
import { fastvisionVersion } from '../util/version.js';
import { archOf } from '../vision/models/archs.js';

/** What `metadata.json` holds. */
export interface DeployMetadata {
  format: 'fastvision-onnx';
  version: 1;
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
    /** Shrink by 8, 4 or 2 — the largest factor keeping both sides ≥ size — averaging pixel blocks. */
    shrink: 'box, largest of 8/4/2 keeping both sides >= size';
    /** The shorter side resized to `size`, bilinear, mirrored borders. */
    resize: 'shorter side to size, bilinear';
    crop: 'center';
  };
  /** Softmax over classes; multi-label models: a sigmoid per tag, tags kept above `threshold`. */
  output: { name: 'probabilities'; classes: number; activation: 'softmax' | 'sigmoid'; threshold?: number };
  onnx: { opset: number; foldedBatchNorm: boolean };
}

/** The deployment metadata of a saved model. */
export function deployMetadata(info: ModelInfo, { opset, foldedBatchNorm }: { opset: number; foldedBatchNorm: boolean }): DeployMetadata {
  const arch = archOf(info.arch);
  return {
    format: 'fastvision-onnx',
    version: 1,
    fastvision: fastvisionVersion(),
    arch: info.arch,
    labels: [...info.classes],
    input: { name: 'image', layout: 'NCHW', channels: 'RGB', size: info.size, mean: [...arch.stats.mean], std: [...arch.stats.std] },
    preprocessing: { orientation: 'exif', shrink: 'box, largest of 8/4/2 keeping both sides >= size', resize: 'shorter side to size, bilinear', crop: 'center' },
    output: info.multiLabel ? { name: 'probabilities', classes: info.classes.length, activation: 'sigmoid', threshold: info.threshold ?? 0.5 } : { name: 'probabilities', classes: info.classes.length, activation: 'softmax' },
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
    shrink: m.preprocessing.shrink,
    resize: m.preprocessing.resize,
    crop: m.preprocessing.crop,
  };
}
