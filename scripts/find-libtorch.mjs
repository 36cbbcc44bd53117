#!/usr/bin/env node
// Finds a libtorch to build the addon against: $LIBTORCH, then a Python `torch`
// install, then the system (Debian's libtorch-dev). Used by binding.gyp and setup.
//
// A libtorch with libtorch_cuda.so is linked to it and c10_cuda without --as-needed,
// since nothing in the addon names a CUDA symbol and the linker would otherwise drop
// them, and with them the registration of every CUDA kernel.
//
//   node scripts/find-libtorch.mjs include|libdir|ldflags|defines|dist-include|dist-defines|json
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';

const HOW_TO = `fastvision needs libtorch (PyTorch's C++ library) and found none. Any one of these works:
  1. set LIBTORCH to an unzipped libtorch folder (it holds include/ and lib/);
  2. install PyTorch for python3 (python3 -c "import torch" must work, with its include/ and lib/ folders);
  3. install the system package: apt-get install libtorch-dev libopenblas0-pthread (Debian/Ubuntu).`;

function layout(root, source) {
  const include = join(root, 'include');
  const libdir = join(root, 'lib');
  const api = join(include, 'torch', 'csrc', 'api', 'include');
  if (existsSync(join(include, 'ATen', 'ATen.h')) && existsSync(api) && existsSync(join(libdir, 'libtorch.so'))) {
    return { source, includes: [include, api], libdir, rpath: true };
  }
  return null;
}

function fromEnv() {
  const root = process.env.LIBTORCH;
  if (!root) return null;
  const found = layout(root, 'LIBTORCH');
  if (!found) throw new Error(`LIBTORCH=${root} does not hold include/ATen/ATen.h and lib/libtorch.so`);
  return found;
}

function fromPython() {
  for (const py of ['python3', '/usr/bin/python3']) {
    try {
      const dir = execFileSync(py, ['-c', 'import torch, os; print(os.path.dirname(torch.__file__))'], {
        stdio: ['ignore', 'pipe', 'ignore'],
        timeout: 30000,
      })
        .toString()
        .trim();
      const found = dir && layout(dir, `python torch at ${dir}`);
      if (found) return found;
    } catch {
      // this interpreter has no torch; try the next way
    }
  }
  return null;
}

function fromSystem() {
  const include = '/usr/include';
  const api = '/usr/include/torch/csrc/api/include';
  for (const libdir of ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib', '/usr/local/lib']) {
    if (existsSync(join(include, 'ATen', 'ATen.h')) && existsSync(api) && existsSync(join(libdir, 'libtorch.so'))) {
      return { source: 'system', includes: [api], libdir, rpath: false };
    }
  }
  return null;
}

/** The folders holding nccl.h and cuda_runtime_api.h for a CUDA libtorch, or null (no NCCL then). */
function ncclHeaders(libdir) {
  const roots = [];
  // pip's torch: site-packages/torch/lib; NCCL and the CUDA runtime come as nvidia-* wheels beside it.
  const nvidia = join(dirname(dirname(libdir)), 'nvidia');
  if (existsSync(nvidia)) {
    for (const d of readdirSync(nvidia)) roots.push(join(nvidia, d, 'include'));
  }
  roots.push(join(dirname(libdir), 'include'));
  if (process.env.CUDA_HOME) roots.push(join(process.env.CUDA_HOME, 'include'));
  roots.push('/usr/local/cuda/include', '/usr/include');
  const nccl = roots.find((r) => existsSync(join(r, 'nccl.h')));
  const cuda = roots.find((r) => existsSync(join(r, 'cuda_runtime_api.h')));
  return nccl && cuda ? [...new Set([nccl, cuda])] : null;
}

/** Locates libtorch or throws an Error whose message names the three ways to provide one. */
export function findLibtorch() {
  const found = fromEnv() ?? fromPython() ?? fromSystem();
  if (!found) throw new Error(HOW_TO);
  found.cuda = existsSync(join(found.libdir, 'libtorch_cuda.so'));
  found.ncclIncludes = found.cuda ? ncclHeaders(found.libdir) : null;
  return found;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  let found;
  try {
    found = findLibtorch();
  } catch (e) {
    process.stderr.write(`${e.message}\n`);
    process.exit(1);
  }
  const what = process.argv[2] ?? 'json';
  if (what === 'include') process.stdout.write(found.includes.join(' '));
  else if (what === 'libdir') process.stdout.write(found.libdir);
  else if (what === 'ldflags') {
    const flags = [`-L${found.libdir}`];
    if (found.rpath) flags.push(`-Wl,-rpath,${found.libdir}`);
    if (found.cuda) flags.push('-Wl,--no-as-needed', '-ltorch_cuda', '-lc10_cuda', '-Wl,--as-needed');
    process.stdout.write(flags.join(' '));
  } else if (what === 'defines') {
    process.stdout.write(found.cuda ? 'FASTVISION_CUDA_LINKED' : '');
  } else if (what === 'dist-include') {
    process.stdout.write([...found.includes, ...(found.ncclIncludes ?? [])].join(' '));
  } else if (what === 'dist-defines') {
    process.stdout.write([found.cuda ? 'FASTVISION_CUDA_LINKED' : '', found.ncclIncludes ? 'USE_C10D_NCCL' : ''].filter(Boolean).join(' '));
  } else process.stdout.write(JSON.stringify(found, null, 2) + '\n');
}
