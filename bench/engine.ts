// bench/engine: one ResNet-18 training step (forward, backward, SGD-momentum)
// in fastvision, in Python PyTorch and in TensorFlow.js, all in this invocation
// on the same machine. fastvision and PyTorch run as separate processes in
// alternating rounds, so drift of a shared machine hits both alike. Prints a
// table, then `RESULT engine_step_time_ratio_vs_pytorch <fastvision / PyTorch, NCHW>`.
// With --torch2, all of it inside the Debian 13 root against libtorch/PyTorch 2.6, plus
// PyTorch with torch.compile (inductor) as a further row, and
// `RESULT engine_step_time_ratio_vs_pytorch2`.
import { cpus } from 'node:os';
import { join } from 'node:path';
import { getNumThreads, libtorchVersion } from '../src/index.js';
import { arg, median, PYTHON, repoRoot, runPeer, SAME_MALLOC, table, torch2Suffix } from './common.js';

const BATCH = Number(arg('batch', '32'));
const SIZE = Number(arg('size', '128'));
const STEPS = Number(arg('steps', '5'));
const WARMUP = Number(arg('warmup', '2'));
const ROUNDS = Number(arg('rounds', '3'));
// TF.js' pure-JS backend needs ~10 s for one step even at this tiny size.
const TINY = { batch: 2, size: 32 };

const SUFFIX = torch2Suffix('bench:engine');

type Program = 'fastvision' | 'pytorch' | 'pytorch-malloc' | 'pytorch-compile';

function runProgram(p: Program, batch: number, size: number, steps: number, warmup: number, formats: string, threads: number): Record<string, unknown> {
  const common = ['--batch', `${batch}`, '--size', `${size}`, '--steps', `${steps}`, '--warmup', `${warmup}`, '--formats', formats];
  if (p === 'fastvision') return runPeer('node', [join(repoRoot, 'dist', 'bench', 'engine-fastvision.js'), ...common], 1800);
  const env = p === 'pytorch-malloc' ? { ...process.env, ...SAME_MALLOC } : process.env;
  const compile = p === 'pytorch-compile' ? ['--compile'] : [];
  return runPeer(PYTHON, [join(repoRoot, 'bench', 'engine_pytorch.py'), ...common, '--threads', `${threads}`, ...compile], 1800, env);
}

/** Alternates the two programs for `rounds` rounds; returns all step times per program and format. */
function alternate(batch: number, size: number, rounds: number, formats: string[], threads: number, programs: Program[]): Map<string, number[]> {
  const times = new Map<string, number[]>();
  const errors: string[] = [];
  for (let r = 0; r < rounds; r++) {
    for (const p of r % 2 === 0 ? programs : [...programs].reverse()) {
      const res = runProgram(p, batch, size, STEPS, WARMUP, formats.join(','), threads);
      if (res.error) errors.push(`${p}: ${String(res.error)}`);
      if (typeof res.torch === 'string') pytorchVersion = res.torch;
      for (const f of formats) {
        const key = `${p} ${f}`;
        times.set(key, [...(times.get(key) ?? []), ...((res[f] as number[] | undefined) ?? [])]);
      }
    }
  }
  for (const e of errors) console.log(`peer error: ${e}`);
  return times;
}

let pytorchVersion = '';

function fmt(s: number | undefined): string {
  return s === undefined || Number.isNaN(s) ? 'n/a' : `${s.toFixed(3)} s`;
}

function main(): void {
  const threads = getNumThreads();
  console.log(`bench/engine: ResNet-18 training step (forward + backward + SGD momentum), batch ${BATCH}, 3×${SIZE}×${SIZE}`);
  console.log(`${ROUNDS} alternating rounds per program, each ${STEPS} timed steps after ${WARMUP} warm-up; median over all timed steps`);
  console.log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}; libtorch ${libtorchVersion()}; ${threads} threads for both`);
  const big = alternate(BATCH, SIZE, ROUNDS, ['nchw', 'channels_last'], threads, ['fastvision', 'pytorch', 'pytorch-malloc']);
  // torch.compile (PyTorch 2 only): one round, compilation inside its warm-up steps.
  const compiled = SUFFIX ? alternate(BATCH, SIZE, 1, ['nchw', 'channels_last'], threads, ['pytorch-compile']) : new Map<string, number[]>();
  const tiny = alternate(TINY.batch, TINY.size, 1, ['nchw'], threads, ['fastvision', 'pytorch']);
  const tfCpu = runPeer('node', [join(repoRoot, 'dist', 'bench', 'engine-tfjs.js'), '--backend', 'cpu', '--batch', `${TINY.batch}`, '--size', `${TINY.size}`], 900);
  const tfWasm = runPeer('node', [join(repoRoot, 'dist', 'bench', 'engine-tfjs.js'), '--backend', 'wasm', '--batch', `${TINY.batch}`, '--size', `${TINY.size}`], 900);

  const m = (t: Map<string, number[]>, k: string): number | undefined => {
    const v = t.get(k);
    return v && v.length > 0 ? median(v) : undefined;
  };
  const ratio = (a?: number, b?: number): string => (a !== undefined && b !== undefined ? (a / b).toFixed(3) : 'n/a');
  const fvN = m(big, 'fastvision nchw');
  const pyN = m(big, 'pytorch nchw');
  const fvC = m(big, 'fastvision channels_last');
  const pyC = m(big, 'pytorch channels_last');
  const pmN = m(big, 'pytorch-malloc nchw');
  const pmC = m(big, 'pytorch-malloc channels_last');
  const pcN = m(compiled, 'pytorch-compile nchw');
  const pcC = m(compiled, 'pytorch-compile channels_last');
  const fvT = m(tiny, 'fastvision nchw');
  const pyT = m(tiny, 'pytorch nchw');
  const tfStep = (r: Record<string, unknown>): string => (typeof r.step === 'number' ? fmt(r.step) : `cannot train: ${String(r.error)}`);
  const shape = `${BATCH}×${SIZE}²`;
  const tinyShape = `${TINY.batch}×${TINY.size}²`;
  console.log('');
  console.log(
    table(
      ['program', 'batch×size', 'step (median)', 'vs PyTorch, same size'],
      [
        ['fastvision, NCHW', shape, fmt(fvN), ratio(fvN, pyN)],
        [`PyTorch ${pytorchVersion}, NCHW`, shape, fmt(pyN), '1.000'],
        [`PyTorch ${pytorchVersion}, NCHW, fastvision's malloc settings`, shape, fmt(pmN), ratio(pmN, pyN)],
        ['fastvision, channels-last', shape, fmt(fvC), ratio(fvC, pyC)],
        [`PyTorch ${pytorchVersion}, channels-last`, shape, fmt(pyC), '1.000'],
        [`PyTorch ${pytorchVersion}, channels-last, fastvision's malloc settings`, shape, fmt(pmC), ratio(pmC, pyC)],
        ...(SUFFIX
          ? [
              [`PyTorch ${pytorchVersion}, NCHW, torch.compile (inductor)`, shape, fmt(pcN), ratio(pcN, pyN)],
              [`PyTorch ${pytorchVersion}, channels-last, torch.compile (inductor)`, shape, fmt(pcC), ratio(pcC, pyC)],
            ]
          : []),
        ['fastvision, NCHW', tinyShape, fmt(fvT), ratio(fvT, pyT)],
        [`PyTorch ${pytorchVersion}, NCHW`, tinyShape, fmt(pyT), '1.000'],
        ['TF.js 4.22 cpu backend (pure JS)', tinyShape, tfStep(tfCpu), typeof tfCpu.step === 'number' ? ratio(tfCpu.step, pyT) : 'n/a'],
        ['TF.js 4.22 wasm backend', tinyShape, tfStep(tfWasm), 'n/a'],
      ],
    ),
  );
  console.log('');
  console.log(`fastvision vs PyTorch with the same malloc settings: NCHW ${ratio(fvN, pmN)}, channels-last ${ratio(fvC, pmC)}`);
  console.log(`fastvision channels-last vs NCHW: ${ratio(fvC, fvN)} (PyTorch: ${ratio(pyC, pyN)})`);
  if (SUFFIX) console.log(`fastvision vs PyTorch with torch.compile: NCHW ${ratio(fvN, pcN)}, channels-last ${ratio(fvC, pcC)}`);
  console.log(`RESULT engine_step_time_ratio_vs_pytorch${SUFFIX} ${fvN !== undefined && pyN !== undefined ? (fvN / pyN).toFixed(3) : 'n/a'}`);
}

main();
