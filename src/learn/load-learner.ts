// fastai v2's `load_learner`: a learner from the self-describing model file that
// `learn.export` (and `fastvision train`) write, ready to predict, on any device.
import { dirname } from 'node:path';
import { ImageClassifierData } from '../vision/data.js';
import { FilesDataset } from '../vision/dataset.js';
import { archOf } from '../vision/models/archs.js';
import { tfmsFromModel, transformsSideOn, transformsTopDown } from '../vision/transforms.js';
import { ConvLearner, type ConvLearnerOptions } from './conv-learner.js';
import { readSavedModel } from './saved-model.js';

/** Options of `loadLearner`: where it runs, and how it says what it does. */
export interface LoadLearnerOptions {
  /** 'auto' (the default: CUDA when there is a GPU), 'cpu', 'cuda' or 'cuda:N'. */
  device?: ConvLearnerOptions['device'];
  /** Batch size of its loaders (default 32). */
  bs?: number;
  /** Where progress goes (default null: silent). */
  log?: ConvLearnerOptions['log'];
}

/**
 * The learner a model file describes (a `.pth` that `learn.export` or `fastvision train`
 * wrote, its `.json`, or their folder), with its weights, on `device`. Its data holds the
 * classes and transforms and no images: `predict(image)` classifies one, and
 * `setData` gives it a data set to predict on or fine-tune. Errors name the file.
 */
export async function loadLearner(path: string, { device, bs = 32, log = null }: LoadLearnerOptions = {}): Promise<ConvLearner> {
  const saved = await readSavedModel(path);
  const arch = archOf(saved.info.arch);
  const multiLabel = saved.info.multiLabel ?? false;
  const tfms = tfmsFromModel(arch, saved.info.size, { augTfms: multiLabel ? transformsTopDown : transformsSideOn, maxZoom: 1.1 });
  const none = new FilesDataset([], [], saved.info.classes);
  const data = new ImageClassifierData(dirname(saved.pth), none, null, null, saved.info.classes, tfms, { bs, seed: 0, channelsLast: false, onBadImage: 'skip' });
  const learn = await ConvLearner.pretrained(arch, data, { pretrained: false, xtraFc: saved.info.xtraFc, ps: saved.info.ps, multiLabel, device, log });
  await learn.load(saved.pth);
  if (multiLabel && saved.info.threshold !== undefined) learn.threshold = saved.info.threshold;
  return learn;
}
