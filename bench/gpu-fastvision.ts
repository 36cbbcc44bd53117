// The fastvision side of bench/gpu, as its own process: a ResNet training step
// (forward, backward, SGD-momentum) on a fixed batch already on the device, in float32
// (NCHW) and in AMP (autocast fp16 with a GradScaler, or bf16, channels-last, as cuDNN
// prefers under autocast). Each step ends with a device synchronisation, so its time is
// the GPU's. Prints JSON with every measured step time per mode.
import { autocast, F, GradScaler, libtorchVersion, manualSeed, optim, randint, randn, resnet18, resnet50, synchronize, tidy } from '../src/index.js';
import { arg } from './common.js';

const device = arg('device', 'cuda:0');
const batch = Number(arg('batch', '64'));
const size = Number(arg('size', '224'));
const steps = Number(arg('steps', '20'));
const warmup = Number(arg('warmup', '5'));
const classes = Number(arg('classes', '1000'));
const amp = arg('amp', 'fp16') === 'bf16' ? 'bfloat16' : 'float16';
const build = arg('arch', 'resnet50') === 'resnet18' ? resnet18 : resnet50;

function run(mode: 'fp32' | 'amp'): number[] {
  manualSeed(0);
  const model = build({ numClasses: classes }).to(device);
  const x0 = randn([batch, 3, size, size], { device });
  const x = mode === 'amp' ? x0.contiguous('channelsLast') : x0;
  if (mode === 'amp') model.toMemoryFormat('channelsLast');
  const y = randint(0, classes, [batch], { device });
  const opt = new optim.SGD(model.parameters(), { lr: 0.01, momentum: 0.9, weightDecay: 1e-4 });
  const scaler = mode === 'amp' && amp === 'float16' ? new GradScaler(device) : null;
  model.train();
  const times: number[] = [];
  for (let i = 0; i < warmup + steps; i++) {
    synchronize(device);
    const t0 = performance.now();
    opt.zeroGrad();
    const loss = mode === 'amp' ? autocast(device, amp, () => tidy(() => F.crossEntropy(model.forward(x), y))) : tidy(() => F.crossEntropy(model.forward(x), y));
    if (scaler) {
      const scaled = scaler.scaleLoss(loss);
      scaled.backward();
      scaled.dispose();
      if (!scaler.unscale(opt)) opt.step();
      scaler.update();
    } else {
      loss.backward();
      opt.step();
    }
    loss.dispose();
    synchronize(device);
    if (i >= warmup) times.push((performance.now() - t0) / 1000);
  }
  scaler?.dispose();
  opt.dispose();
  model.dispose();
  for (const t of [x0, x, y]) t.dispose();
  return times;
}

const out: Record<string, unknown> = { libtorch: libtorchVersion(), device };
for (const m of arg('modes', 'fp32,amp').split(',') as ('fp32' | 'amp')[]) out[m] = run(m);
console.log(JSON.stringify(out));
