// The fastvision side of bench/models: resnet34 and mobilenet_v2 (and with --models
// convnext_tiny, efficientnet_b0, vit_b_16) inference (eval mode, no grad) on a fixed
// batch, NCHW and (with --formats) channels-last; prints JSON with every timed batch
// per model ("name", and "name channels_last").
import { convnext_tiny, efficientnet_b0, manualSeed, mobilenet_v2, noGrad, randn, resnet34, tidy, vit_b_16, type MemoryFormat, type nn } from '../src/index.js';
import { arg } from './common.js';

const builders: Record<string, () => nn.Module> = { resnet34, mobilenet_v2, convnext_tiny: () => convnext_tiny(), efficientnet_b0: () => efficientnet_b0(), vit_b_16: () => vit_b_16() };
const batch = Number(arg('batch', '32'));
const size = Number(arg('size', '224'));
const steps = Number(arg('steps', '5'));
const warmup = Number(arg('warmup', '2'));
const out: Record<string, number[]> = {};
for (const name of arg('models', 'resnet34,mobilenet_v2').split(','))
  for (const format of arg('formats', 'nchw').split(',')) out[format === 'nchw' ? name : `${name} ${format}`] = run(name, format === 'channels_last' ? 'channelsLast' : 'contiguous');
console.log(JSON.stringify(out));

function run(name: string, format: MemoryFormat): number[] {
  manualSeed(0);
  const model = builders[name]!().eval();
  const x0 = randn([batch, 3, size, size]);
  const x = format === 'channelsLast' ? x0.contiguous('channelsLast') : x0;
  if (format === 'channelsLast') model.toMemoryFormat('channelsLast');
  const times: number[] = [];
  for (let i = 0; i < warmup + steps; i++) {
    const t0 = performance.now();
    tidy(() => noGrad(() => model.forward(x)));
    if (i >= warmup) times.push((performance.now() - t0) / 1000);
  }
  x.dispose();
  x0.dispose();
  model.dispose();
  return times;
}
