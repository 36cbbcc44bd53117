// The fastvision side of bench/data: the training loader of ImageClassifierData
// (side-on augmentation, maxZoom 1.1, 224, batch 64) over a folder of photos.
// Prints JSON: seconds per epoch and images per epoch.
import { closeLoaderWorkers, ImageClassifierData, resnet34, tfmsFromModel, transformsSideOn } from '../src/index.js';
import { arg } from './common.js';

const root = arg('data', '');
const size = Number(arg('size', '224'));
const tfms = tfmsFromModel(resnet34, size, { augTfms: transformsSideOn, maxZoom: 1.1 });
const data = await ImageClassifierData.fromPaths(root, { tfms, bs: Number(arg('bs', '64')), valName: null, numWorkers: Number(arg('workers', '2')) });
const epochs: number[] = [];
let images = 0;
for (let e = 0; e < Number(arg('epochs', '3')); e++) {
  const t0 = performance.now();
  images = 0;
  for await (const { x, y } of data.trnDl) {
    images += x.shape[0]!;
    x.dispose();
    y.dispose();
  }
  epochs.push((performance.now() - t0) / 1000);
}
await closeLoaderWorkers();
console.log(JSON.stringify({ epochs, images }));
