// The fastvision side of bench/learn: ConvLearner on resnet18 (random weights:
// the arithmetic is the same), unfrozen, one epoch of fit with side-on
// augmentation at 224; and the head's epoch on precomputed activations vs
// through the frozen body. Prints JSON with the seconds of each.
import { closeLoaderWorkers, ConvLearner, ImageClassifierData, resnet18, tfmsFromModel, transformsSideOn } from '../src/index.js';
import { arg } from './common.js';

const root = arg('data', '');
const size = Number(arg('size', '224'));
const tfms = tfmsFromModel(resnet18, size, { augTfms: transformsSideOn, maxZoom: 1.1 });
const data = await ImageClassifierData.fromPaths(root, { tfms, bs: Number(arg('bs', '32')), numWorkers: 2 });
const out: Record<string, number> = {};
const timed = async (name: string, fn: () => Promise<unknown>): Promise<void> => {
  const t0 = performance.now();
  await fn();
  out[name] = (performance.now() - t0) / 1000;
};
const memoryFormat = arg('memory-format', 'channelsLast') === 'contiguous' ? 'contiguous' : 'channelsLast';
if (arg('what', 'full') === 'full') {
  const learn = await ConvLearner.pretrained(resnet18, data, { pretrained: false, log: null, memoryFormat });
  learn.unfreeze();
  await timed('epoch', () => learn.fit(1e-3, 1));
} else {
  const learn = await ConvLearner.pretrained(resnet18, data, { pretrained: false, log: null, precompute: true });
  await timed('precompute', () => learn.precomputeActivations());
  await timed('head_precomputed', () => learn.fit(1e-2, 1));
  learn.precompute = false;
  await timed('head_through_body', () => learn.fit(1e-2, 1));
}
await closeLoaderWorkers();
console.log(JSON.stringify(out));
