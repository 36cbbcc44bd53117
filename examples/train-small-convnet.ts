// The engine's end-to-end example: a small convnet trained from scratch on
// Fashion-MNIST (Debian's dataset-fashion-mnist), evaluated, and saved as a
// PyTorch .pth file. Run with `npm run example:small-convnet`.
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { F, FASHION_MNIST_CLASSES, loadFashionMnist, manualSeed, nn, noGrad, optim, savePth, tensor, tidy, type RawImageSet, type Tensor } from '../src/index.js';

const TRAIN = Number(process.env.DEMO_TRAIN ?? 12000);
const TEST = Number(process.env.DEMO_TEST ?? 2000);
const EPOCHS = Number(process.env.DEMO_EPOCHS ?? 3);
const BS = 64;
const OUT = resolve(process.env.DEMO_OUT ?? 'fastvision-demo');

function convBlock(cin: number, cout: number): nn.Module[] {
  return [new nn.Conv2d(cin, cout, 3, { padding: 1, bias: false }), new nn.BatchNorm2d(cout), new nn.ReLU()];
}

/** A batch of images scaled to [0, 1] and normalized, with int64 labels. */
function batch(set: RawImageSet, idx: number[]): { x: Tensor; y: Tensor } {
  const px = set.height * set.width;
  const data = new Float32Array(idx.length * px);
  idx.forEach((i, j) => {
    for (let k = 0; k < px; k++) data[j * px + k] = (set.images[i * px + k]! / 255 - 0.286) / 0.353;
  });
  return {
    x: tensor(data, { shape: [idx.length, 1, set.height, set.width] }),
    y: tensor(BigInt64Array.from(idx, (i) => BigInt(set.labels[i]!))),
  };
}

function shuffled(n: number, seed: number): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  let s = seed >>> 0;
  for (let i = n - 1; i > 0; i--) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const j = s % (i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

async function main(): Promise<void> {
  manualSeed(0);
  const train = await loadFashionMnist('train', { limit: TRAIN });
  const test = await loadFashionMnist('test', { limit: TEST });
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
  const opt = new optim.SGD(model.parameters(), { lr: 0.05, momentum: 0.9, weightDecay: 1e-4 });
  const steps = Math.floor(train.count / BS);
  console.log(`Fashion-MNIST: ${train.count} training images, ${test.count} test images, ${EPOCHS} epochs of ${steps} batches`);
  console.log('epoch  trn_loss  val_loss  accuracy  seconds');
  for (let epoch = 0; epoch < EPOCHS; epoch++) {
    const t0 = performance.now();
    model.train();
    const order = shuffled(train.count, epoch + 1);
    let smooth = 0;
    for (let s = 0; s < steps; s++) {
      // Cosine annealing within each epoch keeps this short run stable.
      const lr = 0.05 * 0.5 * (1 + Math.cos((Math.PI * s) / steps));
      for (const g of opt.paramGroups) g.lr = lr;
      opt.zeroGrad();
      const loss = tidy(() => {
        const { x, y } = batch(train, order.slice(s * BS, (s + 1) * BS));
        const l = F.crossEntropy(model.forward(x), y);
        l.backward();
        return l.item();
      });
      opt.step();
      smooth = s === 0 ? loss : 0.98 * smooth + 0.02 * loss;
    }
    const { loss, accuracy } = evaluate(model, test);
    console.log(`${String(epoch).padEnd(5)}  ${smooth.toFixed(4).padEnd(8)}  ${loss.toFixed(4).padEnd(8)}  ${accuracy.toFixed(4).padEnd(8)}  ${((performance.now() - t0) / 1000).toFixed(1)}`);
  }
  await mkdir(OUT, { recursive: true });
  const path = join(OUT, 'fashion-mnist-small-convnet.pth');
  await savePth(path, model.stateDict());
  console.log(`saved the model to ${path} (a PyTorch state dict: torch.load reads it)`);
}

function evaluate(model: nn.Module, set: RawImageSet): { loss: number; accuracy: number } {
  model.eval();
  let lossSum = 0;
  let correct = 0;
  noGrad(() => {
    for (let s = 0; s < set.count; s += 256) {
      const idx = Array.from({ length: Math.min(256, set.count - s) }, (_, i) => s + i);
      tidy(() => {
        const { x, y } = batch(set, idx);
        const out = model.forward(x);
        lossSum += F.crossEntropy(out, y, { reduction: 'sum' }).item();
        correct += out.argmax(1).eq(y).sum().item();
      });
    }
  });
  return { loss: lossSum / set.count, accuracy: correct / set.count };
}

await main();
