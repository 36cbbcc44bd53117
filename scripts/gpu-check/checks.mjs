// The GPU check's numerical steps (scripts/gpu-check/run.sh runs them): ResNet-18's
// forward pass, backward and an SGD step on the device against the CPU, and an
// autocast step (fp16 with loss scaling, or bf16) against float32 on the device.
// Prints one line per figure and exits 1 when one is out of tolerance.
//
//   node scripts/gpu-check/checks.mjs [--device cuda:0] [--amp fp16|bf16]
import { autocast, cudaInfo, F, GradScaler, manualSeed, noGrad, optim, randint, randn, resnet18, tidy } from '../../dist/src/index.js';

const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : dflt;
};
const device = arg('device', 'cuda:0');
const amp = arg('amp', 'fp16') === 'bf16' ? 'bfloat16' : 'float16';
let failed = 0;

/** max |a − b| over max |b|: the error relative to the figures' own scale. */
function relErr(a, b) {
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / Math.max(scale, 1e-12);
}

function report(what, value, tolerance) {
  const ok = Number.isFinite(value) && value <= tolerance;
  if (!ok) failed++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}: ${value.toExponential(2)} (tolerance ${tolerance.toExponential(0)})`);
}

console.log(`CUDA: ${JSON.stringify(cudaInfo())}`);

// 1. ResNet-18 on the device against the CPU: same weights, same batch.
manualSeed(0);
const cpu = resnet18({ numClasses: 10 });
const dev = resnet18({ numClasses: 10 });
dev.loadStateDict(cpu.stateDict());
dev.to(device);
const x = randn([8, 3, 64, 64]);
const y = randint(0, 10, [8]);
const xd = x.toDevice(device);
const yd = y.toDevice(device);
const step = (net, xb, yb) => {
  net.train();
  const opt = new optim.SGD(net.parameters(), { lr: 0.01, momentum: 0.9 });
  const out = net.forward(xb);
  const loss = tidy(() => F.crossEntropy(out, yb));
  loss.backward();
  const grads = net.parameters().map((p) => p.grad.toArray());
  opt.step();
  return { out: out.toArray(), loss: loss.item(), grads, weights: net.parameters().map((p) => p.toArray()) };
};
const a = step(cpu, x, y);
const b = step(dev, xd, yd);
console.log(`model on ${dev.device}; loss cpu ${a.loss.toFixed(6)}, ${device} ${b.loss.toFixed(6)}`);
// cuDNN convolutions may use TF32 on Ampere and later (libtorch's default, as PyTorch's): about 1e-3.
report('forward, relative to the CPU', relErr(b.out, a.out), 1e-2);
report('loss, relative to the CPU', Math.abs(b.loss - a.loss) / Math.abs(a.loss), 1e-2);
report('gradients, worst tensor relative to the CPU', Math.max(...b.grads.map((g, i) => relErr(g, a.grads[i]))), 5e-2);
report('weights after an SGD step, relative to the CPU', Math.max(...b.weights.map((w, i) => relErr(w, a.weights[i]))), 1e-3);

// 2. An autocast step against float32 on the device.
manualSeed(1);
const net = resnet18({ numClasses: 10 }).to(device);
net.train();
const x2 = randn([8, 3, 64, 64], { device });
const fp32 = noGrad(() => tidy(() => F.crossEntropy(net.forward(x2), yd).item()));
const scaler = amp === 'float16' ? new GradScaler(device) : null;
const opt = new optim.SGD(net.parameters(), { lr: 0.01, momentum: 0.9 });
const loss = autocast(device, amp, () => tidy(() => F.crossEntropy(net.forward(x2), yd)));
const lossValue = loss.item();
(scaler ? scaler.scaleLoss(loss) : loss).backward();
const skipped = scaler ? scaler.unscale(opt) : false;
const gradsFinite = net.parameters().every((p) => p.grad.toArray().every(Number.isFinite));
console.log(`autocast ${amp}: loss ${lossValue.toFixed(6)} against float32 ${fp32.toFixed(6)}; gradients finite: ${gradsFinite}; step skipped: ${skipped}`);
report(`${amp} autocast loss, relative to float32`, Math.abs(lossValue - fp32) / Math.abs(fp32), 2e-2);
if (!gradsFinite || skipped) {
  failed++;
  console.log('FAIL autocast gradients are not finite');
}
console.log(failed === 0 ? 'checks: all within tolerance' : `checks: ${failed} out of tolerance`);
process.exit(failed === 0 ? 0 : 1);
