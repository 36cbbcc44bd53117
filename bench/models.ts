// bench/models: inference throughput at 224×224, batch 32, for resnet34 and
// mobilenet_v2 (torchvision's layouts and weights shapes), and at batch 8 (NCHW) for
// today's convnext_tiny, efficientnet_b0 and vit_b_16, fastvision vs Python PyTorch,
// each as its own process in alternating rounds in this invocation.
// Last line: `RESULT models_inference_time_ratio_vs_pytorch <fastvision / PyTorch, resnet34>`.
// With --torch2: inside the Debian 13 root, `RESULT models_inference_time_ratio_vs_pytorch2`.
import { cpus } from 'node:os';
import { join } from 'node:path';
import { getNumThreads, libtorchVersion } from '../src/index.js';
import { arg, median, PYTHON, repoRoot, runPeer, SAME_MALLOC, table, torch2Suffix } from './common.js';

// --torch2: the whole bench inside the Debian 13 root, against libtorch and PyTorch 2.6.
const SUFFIX = torch2Suffix('bench:models');

const BATCH = Number(arg('batch', '32'));
const SIZE = Number(arg('size', '224'));
const ROUNDS = Number(arg('rounds', '3'));
const MODELS = ['resnet34', 'mobilenet_v2'];
const MODERN = ['convnext_tiny', 'efficientnet_b0', 'vit_b_16'];
const MODERN_BATCH = Number(arg('modern-batch', '8'));
// --only-modern: just today's backbones (a quicker run); the RESULT line then stays unprinted.
const ONLY_MODERN = process.argv.includes('--only-modern');

function main(): void {
  const threads = getNumThreads();
  console.log(`bench/models: inference (eval, no grad), batch ${BATCH}, 3×${SIZE}×${SIZE}; ${ROUNDS} alternating rounds of 5 timed batches after 2 warm-up`);
  console.log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}; libtorch ${libtorchVersion()}; ${threads} threads for both`);
  const times = new Map<string, number[]>();
  let torchVersion = '';
  const common = ['--batch', `${BATCH}`, '--size', `${SIZE}`, '--models', MODELS.join(','), '--formats', 'nchw,channels_last'];
  for (let r = 0; r < (ONLY_MODERN ? 0 : ROUNDS); r++) {
    const programs = ['fastvision', 'pytorch', 'pytorch-malloc'];
    for (const p of r % 2 === 0 ? programs : [...programs].reverse()) {
      const res =
        p === 'fastvision'
          ? runPeer('node', [join(repoRoot, 'dist', 'bench', 'models-fastvision.js'), ...common], 1800)
          : runPeer(PYTHON, [join(repoRoot, 'bench', 'models_pytorch.py'), ...common, '--threads', `${threads}`], 1800, p === 'pytorch' ? process.env : { ...process.env, ...SAME_MALLOC });
      if (res.error) console.log(`${p} failed: ${String(res.error)}`);
      if (typeof res.torch === 'string') torchVersion = res.torch;
      for (const m of MODELS.flatMap((n) => [n, `${n} channels_last`])) times.set(`${p} ${m}`, [...(times.get(`${p} ${m}`) ?? []), ...((res[m] as number[] | undefined) ?? [])]);
    }
  }
  const rows: string[][] = [];
  const ratios: Record<string, number> = {};
  const formats: string[] = [];
  for (const m of ONLY_MODERN ? [] : MODELS) {
    const fv = median(times.get(`fastvision ${m}`) ?? [Number.NaN]);
    const py = median(times.get(`pytorch ${m}`) ?? [Number.NaN]);
    const pm = median(times.get(`pytorch-malloc ${m}`) ?? [Number.NaN]);
    ratios[m] = fv / py;
    rows.push([m, 'fastvision', `${fv.toFixed(3)} s`, `${(BATCH / fv).toFixed(1)}`, (fv / py).toFixed(3), (fv / pm).toFixed(3)]);
    rows.push([m, `PyTorch ${torchVersion}`, `${py.toFixed(3)} s`, `${(BATCH / py).toFixed(1)}`, '1.000', (py / pm).toFixed(3)]);
    rows.push([m, `PyTorch ${torchVersion}, fastvision's malloc settings`, `${pm.toFixed(3)} s`, `${(BATCH / pm).toFixed(1)}`, (pm / py).toFixed(3), '1.000']);
    const fvC = median(times.get(`fastvision ${m} channels_last`) ?? [Number.NaN]);
    const pyC = median(times.get(`pytorch ${m} channels_last`) ?? [Number.NaN]);
    rows.push([m, 'fastvision, channels-last', `${fvC.toFixed(3)} s`, `${(BATCH / fvC).toFixed(1)}`, (fvC / py).toFixed(3), (fvC / pm).toFixed(3)]);
    rows.push([m, `PyTorch ${torchVersion}, channels-last`, `${pyC.toFixed(3)} s`, `${(BATCH / pyC).toFixed(1)}`, (pyC / py).toFixed(3), (pyC / pm).toFixed(3)]);
    formats.push(`${m}: fastvision channels-last ÷ NCHW ${(fvC / fv).toFixed(3)} (PyTorch ${(pyC / py).toFixed(3)})`);
  }
  // Today's backbones: NCHW, a smaller batch (each is 10-30× mobilenet_v2's work per image).
  const modernArgs = ['--batch', `${MODERN_BATCH}`, '--size', `${SIZE}`, '--models', MODERN.join(','), '--formats', 'nchw'];
  for (let r = 0; r < ROUNDS; r++) {
    const programs = ['fastvision', 'pytorch', 'pytorch-malloc'];
    for (const p of r % 2 === 0 ? programs : [...programs].reverse()) {
      const res =
        p === 'fastvision'
          ? runPeer('node', [join(repoRoot, 'dist', 'bench', 'models-fastvision.js'), ...modernArgs], 1800)
          : runPeer(PYTHON, [join(repoRoot, 'bench', 'models_pytorch.py'), ...modernArgs, '--threads', `${threads}`], 1800, p === 'pytorch' ? process.env : { ...process.env, ...SAME_MALLOC });
      if (res.error) console.log(`${p} failed: ${String(res.error)}`);
      if (typeof res.torch === 'string') torchVersion = res.torch;
      for (const m of MODERN) times.set(`${p} ${m}`, [...(times.get(`${p} ${m}`) ?? []), ...((res[m] as number[] | undefined) ?? [])]);
    }
  }
  const modernRows: string[][] = [];
  for (const m of MODERN) {
    const fv = median(times.get(`fastvision ${m}`) ?? [Number.NaN]);
    const py = median(times.get(`pytorch ${m}`) ?? [Number.NaN]);
    const pm = median(times.get(`pytorch-malloc ${m}`) ?? [Number.NaN]);
    modernRows.push([m, 'fastvision', `${fv.toFixed(3)} s`, `${(MODERN_BATCH / fv).toFixed(1)}`, (fv / py).toFixed(3), (fv / pm).toFixed(3)]);
    modernRows.push([m, `PyTorch ${torchVersion}`, `${py.toFixed(3)} s`, `${(MODERN_BATCH / py).toFixed(1)}`, '1.000', (py / pm).toFixed(3)]);
    modernRows.push([m, `PyTorch ${torchVersion}, fastvision's malloc settings`, `${pm.toFixed(3)} s`, `${(MODERN_BATCH / pm).toFixed(1)}`, (pm / py).toFixed(3), '1.000']);
  }
  console.log('');
  if (!ONLY_MODERN) console.log(table(['model', 'program', 'batch time (median)', 'images/s', 'time vs PyTorch', 'vs PyTorch, same malloc'], rows));
  console.log('');
  console.log(`today's backbones, batch ${MODERN_BATCH}, NCHW:`);
  console.log(table(['model', 'program', 'batch time (median)', 'images/s', 'time vs PyTorch', 'vs PyTorch, same malloc'], modernRows));
  console.log('');
  for (const f of formats) console.log(f);
  if (!ONLY_MODERN) console.log(`RESULT models_inference_time_ratio_vs_pytorch${SUFFIX} ${ratios.resnet34!.toFixed(3)}`);
}

main();
