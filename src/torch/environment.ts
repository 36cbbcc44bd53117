// What this process runs on: the libtorch it loaded and how it was found, CUDA and
// cuDNN, threads and BLAS, Node and the addon. What `fastvision doctor` prints.
import { existsSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { cudaInfo, type CudaInfo } from './device.js';
import { ncclAvailable } from './distributed.js';
import { native, packageRoot } from './native.js';
import { cpuZeroFillState, type ZeroFillState } from './onednn-padding.js';

/** The environment as one object (every field is what was read, not what was hoped for). */
export interface Environment {
  node: { version: string; abi: string; platform: string; arch: string };
  addon: { path: string; napiVersion: number; builtAgainst: string; cudaLinked: boolean; distributed: boolean };
  libtorch: {
    version: string;
    /** The libtorch_cpu library loaded in this process. */
    path: string | null;
    /** How the build found it: $LIBTORCH, python's torch, or the system package (null if the finder is not shipped). */
    foundBy: string | null;
    cudaLibraries: boolean;
  };
  cuda: CudaInfo & { nccl: boolean };
  threads: { intraOp: number; parallel: string };
  blas: { configured: string | null; loaded: string[] };
  /**
   * Whether libtorch's CPU allocations are zero-filled, so that oneDNN's convolutions never multiply
   * stale NaNs in their channel padding: on libtorch 2 with oneDNN, from the first convolution whose
   * channels may be padded (FASTVISION_CPU_ZERO_FILL=1 always, =0 never).
   */
  cpuZeroFill: ZeroFillState;
}

function finderResult(): Promise<string | null> {
  const script = join(packageRoot(), 'scripts', 'find-libtorch.mjs');
  if (!existsSync(script)) return Promise.resolve(null);
  return import(pathToFileURL(script).href)
    .then((m: { findLibtorch: () => { source: string; libdir: string } }) => {
      const f = m.findLibtorch();
      return `${f.source} (${f.libdir})`;
    })
    .catch((e: Error) => `not found now: ${e.message.split('\n')[0]}`);
}

/** Reads the environment; loads libtorch (throws the loader's error when it cannot). */
export async function environment(): Promise<Environment> {
  const build = native.buildInfo();
  const libs = native.loadedLibraries();
  const real = (p: string): string => {
    try {
      return realpathSync(p);
    } catch {
      return p;
    }
  };
  const torchCpu = libs.find((l) => /libtorch_cpu\.so/.test(l)) ?? null;
  const blasConfigured = /BLAS_INFO=(\S+?),?\s/.exec(build.config)?.[1] ?? null;
  const blasLoaded = [...new Set(libs.filter((l) => /blas|mkl_|libmkl|accelerate|blis/i.test(l)).map(real))];
  return {
    node: { version: process.version, abi: process.versions.modules, platform: process.platform, arch: process.arch },
    addon: {
      path: join(packageRoot(), 'build', 'Release', 'fastvision.node'),
      napiVersion: build.napiVersion,
      builtAgainst: build.torchVersion,
      cudaLinked: build.cudaLinked,
      distributed: existsSync(join(packageRoot(), 'build', 'Release', 'fastvision_dist.node')),
    },
    libtorch: {
      version: native.version(),
      path: torchCpu === null ? null : real(torchCpu),
      foundBy: await finderResult(),
      cudaLibraries: libs.some((l) => /libtorch_cuda\.so/.test(l)),
    },
    cuda: { ...cudaInfo(), nccl: ncclAvailable() },
    threads: { intraOp: native.getNumThreads(), parallel: build.parallel.trim() },
    blas: { configured: blasConfigured, loaded: blasLoaded },
    cpuZeroFill: cpuZeroFillState(),
  };
}
