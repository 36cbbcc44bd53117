// `fastvision doctor`: what fastvision runs on here (libtorch, CUDA, threads, BLAS,
// Node and the addon), so that "why is it not using my GPU" has an answer.
import { environment, type Environment } from '../torch/environment.js';
import { fastvisionVersion } from '../util/version.js';
import { flag, type CommandSpec } from './args.js';

function zeroFillLine(z: Environment['cpuZeroFill']): string {
  if (!z.available) return 'as the allocator gives it (this libtorch needs no zero-filling)';
  if (z.mode === 'off') return 'as the allocator gives it (FASTVISION_CPU_ZERO_FILL=0)';
  if (z.active) return "zero-filled (oneDNN's convolutions read their channel padding)";
  return 'zero-filled from the first convolution whose channels oneDNN pads (FASTVISION_CPU_ZERO_FILL=1 always, =0 never)';
}

function cudnnVersion(v: number | null): string {
  if (v === null) return 'none';
  // cuDNN 9 reports major*10000 + minor*100 + patch; cuDNN 8, major*1000 + minor*100 + patch.
  return v >= 90000 ? `${Math.floor(v / 10000)}.${Math.floor((v % 10000) / 100)}.${v % 100}` : `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 100)}.${v % 100}`;
}

function cudaRuntime(v: number | null): string {
  return v === null ? 'none' : `${Math.floor(v / 1000)}.${Math.floor((v % 1000) / 10)}`;
}

/** The report's lines, as doctor prints them. */
export function doctorLines(e: Environment): string[] {
  const gpus = e.cuda.devices.map((d) => `  cuda:${d.index}  ${d.name || '(name unavailable)'}`);
  return [
    `fastvision ${fastvisionVersion()}`,
    `node:       ${e.node.version} (ABI ${e.node.abi}, ${e.node.platform}-${e.node.arch})`,
    `addon:      ${e.addon.path} (N-API ${e.addon.napiVersion}, built against libtorch ${e.addon.builtAgainst}${e.addon.cudaLinked ? ', linked to libtorch_cuda' : ', CPU only'}; distributed: ${e.addon.distributed ? 'built' : 'not built'})`,
    `libtorch:   ${e.libtorch.version} at ${e.libtorch.path ?? '(path unknown)'}`,
    `found by:   ${e.libtorch.foundBy ?? 'unknown (scripts/find-libtorch.mjs is not shipped)'}`,
    `CUDA:       ${e.cuda.available ? `available, ${e.cuda.devices.length} device${e.cuda.devices.length === 1 ? '' : 's'}` : e.addon.cudaLinked ? 'this libtorch has CUDA, but no device is visible (driver, CUDA_VISIBLE_DEVICES)' : 'not available: this libtorch is built without CUDA (see docs/GPU.md)'}`,
    ...gpus,
    `CUDA runtime: ${cudaRuntime(e.cuda.cudaRuntime)}; cuDNN: ${cudnnVersion(e.cuda.cudnn)}; NCCL: ${e.cuda.nccl ? 'yes' : 'no'}`,
    `threads:    ${e.threads.intraOp} (FASTVISION_NUM_THREADS or OMP_NUM_THREADS change it)`,
    `BLAS:       ${e.blas.configured ?? 'unknown'}${e.blas.loaded.length > 0 ? ` (loaded: ${e.blas.loaded.join(', ')})` : ''}`,
    `CPU memory: ${zeroFillLine(e.cpuZeroFill)}`,
    `default --device: ${e.cuda.available ? 'cuda:0 (auto)' : 'cpu (auto)'}`,
  ];
}

export const doctorCommand: CommandSpec = {
  name: 'doctor',
  summary: 'Says what fastvision runs on here: libtorch and how it was found, CUDA devices and cuDNN, threads and BLAS, Node and the addon.',
  positionals: [],
  options: {
    json: { type: 'boolean', help: 'print it as JSON' },
    verbose: { type: 'boolean', help: "also print libtorch's own account of its threads" },
  },
  async run(args) {
    const e = await environment();
    if (flag(args, 'json')) {
      console.log(JSON.stringify(e, null, 2));
      return;
    }
    console.log(doctorLines(e).join('\n'));
    if (flag(args, 'verbose')) console.log(`\n${e.threads.parallel}`);
  },
};
