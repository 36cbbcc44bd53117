// The engine's end-to-end example: a small convnet written with `nn`, trained from scratch on
// Fashion-MNIST (Debian's dataset-fashion-mnist) by the generic Learner with fastai's one-cycle
// schedule, and saved as a PyTorch .pth file. Run with `npm run example:small-convnet`.
import { join, resolve } from 'node:path';
import { crossEntropyLoss, FASHION_MNIST_CLASSES, ImageClassifierData, Learner, loadFashionMnist, manualSeed, nn, tensor, type RawImageSet, type Tensor } from '../src/index.js';

const TRAIN = Number(process.env.DEMO_TRAIN ?? 12000);
const TEST = Number(process.env.DEMO_TEST ?? 2000);
const EPOCHS = Number(process.env.DEMO_EPOCHS ?? 3);
const OUT = resolve(process.env.DEMO_OUT ?? 'fastvision-demo');

function convBlock(cin: number, cout: number): nn.Module[] {
  return [new nn.Conv2d(cin, cout, 3, { padding: 1, bias: false }), new nn.BatchNorm2d(cout), new nn.ReLU()];
}

/** The images scaled to [0, 1] and normalized (N×1×28×28), with their labels. */
function arrays(set: RawImageSet): [Tensor, number[]] {
  const data = Float32Array.from(set.images, (v) => (v / 255 - 0.286) / 0.353);
  return [tensor(data, { shape: [set.count, 1, set.height, set.width] }), Array.from(set.labels)];
}

manualSeed(0);
const train = await loadFashionMnist('train', { limit: TRAIN });
const test = await loadFashionMnist('test', { limit: TEST });
const data = ImageClassifierData.fromArrays('fashion-mnist', arrays(train), arrays(test), [...FASHION_MNIST_CLASSES], { bs: 64 });
const model = new nn.Sequential(
  ...convBlock(1, 32),
  new nn.MaxPool2d(2),
  ...convBlock(32, 64),
  new nn.MaxPool2d(2),
  ...convBlock(64, 128),
  new nn.AdaptiveConcatPool2d(),
  new nn.Flatten(),
  new nn.Dropout(0.25),
  new nn.Linear(256, FASHION_MNIST_CLASSES.length),
);
console.log(`Fashion-MNIST: ${train.count} training images, ${test.count} test images, ${EPOCHS} epochs`);
const learn = new Learner(data, model, { lossFunc: crossEntropyLoss, optFunc: 'sgd', wd: 1e-4, device: 'cpu' });
await learn.fitOneCycle(0.05, EPOCHS);
const path = await learn.save(join(OUT, 'fashion-mnist-small-convnet.pth'));
console.log(`saved the model to ${path} (a PyTorch state dict: torch.load reads it)`);
