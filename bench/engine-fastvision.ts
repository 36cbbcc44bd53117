// The fastvision side of bench/engine, as its own process (like the PyTorch
// side): torchvision-layout ResNet-18 from src/torch nn, one SGD-momentum step
// on a fixed batch. Prints JSON with every measured step time per format.
import { F, getNumThreads, manualSeed, optim, randint, randn, resnet18, tidy, type MemoryFormat } from '../src/index.js';
import { arg } from './common.js';

function run(format: MemoryFormat, batch: number, size: number, steps: number, warmup: number, classes: number): number[] {
  manualSeed(0);
  const model = resnet18({ numClasses: classes });
  const x0 = randn([batch, 3, size, size]);
  const x = format === 'channelsLast' ? x0.contiguous('channelsLast') : x0;
  if (format === 'channelsLast') model.toMemoryFormat('channelsLast');
  const y = randint(0, classes, [batch]);
  const opt = new optim.SGD(model.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 1e-4 });
  model.train();
  const times: number[] = [];
  for (let i = 0; i < warmup + steps; i++) {
    const t0 = performance.now();
    opt.zeroGrad();
    const loss = tidy(() => F.crossEntropy(model.forward(x), y));
    loss.backward();
    loss.dispose();
    opt.step();
    if (i >= warmup) times.push((performance.now() - t0) / 1000);
  }
  opt.dispose();
  model.dispose();
  for (const t of [x0, x, y]) t.dispose();
  return times;
}

const batch = Number(arg('batch', '32'));
const size = Number(arg('size', '128'));
const steps = Number(arg('steps', '10'));
const warmup = Number(arg('warmup', '3'));
const classes = Number(arg('classes', '10'));
const out: Record<string, unknown> = { threads: getNumThreads() };
for (const f of arg('formats', 'nchw,channels_last').split(',')) {
  out[f] = run(f === 'channels_last' ? 'channelsLast' : 'contiguous', batch, size, steps, warmup, classes);
}
console.log(JSON.stringify(out));
