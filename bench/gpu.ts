// bench/gpu: a ResNet-50 training step at 224 px, batch 64, on one GPU: fastvision
// against PyTorch eager on the same device in this invocation, in float32 and in AMP
// (autocast fp16 with loss scaling, channels-last). The two run as separate processes in
// alternating rounds. Prints a table with step times and images per second, then
// `RESULT gpu_step_time_ratio_vs_pytorch <fastvision / PyTorch>`: the larger of the two
// modes' ratios of median step times (the goal, ≤ 1.0, must hold for both).
// It needs a CUDA libtorch (scripts/gpu-check/run.sh runs it on a GPU machine);
// `--device cpu --arch resnet18 --batch 4 --size 64 --amp bf16` dry-runs it anywhere.
import { join } from 'node:path';
import { arg, median, PYTHON, repoRoot, runPeer, table } from './common.js';

const device = arg('device', 'cuda:0');
const common = [
  '--device',
  device,
  '--arch',
  arg('arch', 'resnet50'),
  '--batch',
  arg('batch', '64'),
  '--size',
  arg('size', '224'),
  '--steps',
  arg('steps', '20'),
  '--warmup',
  arg('warmup', '5'),
  '--amp',
  arg('amp', 'fp16'),
];
const rounds = Number(arg('rounds', '2'));
const batch = Number(arg('batch', '64'));
const python = arg('python', PYTHON);
const MODES = ['fp32', 'amp'] as const;

const times = new Map<string, number[]>();
const meta: Record<string, unknown> = {};
for (let r = 0; r < rounds; r++) {
  const programs = r % 2 === 0 ? (['fastvision', 'pytorch'] as const) : (['pytorch', 'fastvision'] as const);
  for (const p of programs) {
    const res =
      p === 'fastvision' ? runPeer('node', [join(repoRoot, 'dist', 'bench', 'gpu-fastvision.js'), ...common], 900) : runPeer(python, [join(repoRoot, 'bench', 'gpu_pytorch.py'), ...common], 900);
    if (res.error) console.log(`${p}: ${String(res.error)}`);
    for (const k of ['torch', 'gpu', 'libtorch']) if (typeof res[k] === 'string') meta[k] = res[k];
    for (const m of MODES) times.set(`${p} ${m}`, [...(times.get(`${p} ${m}`) ?? []), ...((res[m] as number[] | undefined) ?? [])]);
  }
}

const rows: string[][] = [];
const ratios: number[] = [];
for (const m of MODES) {
  const fv = median(times.get(`fastvision ${m}`) ?? []);
  const pt = median(times.get(`pytorch ${m}`) ?? []);
  for (const [who, s] of [
    ['fastvision', fv],
    ['PyTorch', pt],
  ] as const)
    rows.push([m, who, Number.isFinite(s) ? `${(s * 1000).toFixed(1)} ms` : 'n/a', Number.isFinite(s) ? `${(batch / s).toFixed(0)}` : 'n/a']);
  ratios.push(fv / pt);
  console.log(`${m}: fastvision / PyTorch = ${(fv / pt).toFixed(3)}`);
}
console.log(
  `device ${device}${meta.gpu ? ` (${String(meta.gpu)})` : ''}; PyTorch ${String(meta.torch ?? '?')}, fastvision's libtorch ${String(meta.libtorch ?? '?')}; ${common.join(' ')}; ${rounds} rounds`,
);
console.log(table(['mode', 'who', 'median step', 'images/s'], rows));
const worst = ratios.every(Number.isFinite) ? Math.max(...ratios) : Number.NaN;
console.log(`RESULT gpu_step_time_ratio_vs_pytorch ${Number.isFinite(worst) ? worst.toFixed(3) : 'n/a'}`);
