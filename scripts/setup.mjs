#!/usr/bin/env node
// Brings a checkout to a runnable state, doing only what is missing:
//   1. system packages: libtorch (Debian libtorch-dev), OpenBLAS, libjpeg-turbo's and Gloo's headers, when missing
//      (and, with --demo, Debian's Fashion-MNIST; with --browser, Debian's Chromium for the browser tests);
//   2. npm packages, when node_modules is missing or older than package-lock.json;
//   3. the native addon, when it is missing or older than its sources;
//   4. the TypeScript build, when dist/ is older than any .ts file.
// `npm test` and `npm run demo` run it first, so a fresh clone needs no third command.
// Uses only Node's standard library: it runs before node_modules exists.
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildAddon, newestUnder } from './install.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const quiet = process.argv.includes('--quiet');
const log = (msg) => {
  if (!quiet) process.stderr.write(`[setup] ${msg}\n`);
};

function run(cmd, args, opts = {}) {
  log(`$ ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'], ...opts });
  if (r.status !== 0) {
    process.stderr.write(`[setup] failed: ${cmd} ${args.join(' ')} (exit ${r.status ?? r.signal})\n`);
    process.exit(1);
  }
}

function dpkgInstalled(pkg) {
  try {
    const out = execFileSync('dpkg-query', ['-W', '-f=${Status}', pkg], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
    return out.includes('install ok installed');
  } catch {
    return false;
  }
}

function isRoot() {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

async function systemPackages() {
  const { findLibtorch } = await import('./find-libtorch.mjs');
  let found = null;
  let howTo = '';
  try {
    found = findLibtorch();
  } catch (e) {
    howTo = e.message;
  }
  const hasApt = existsSync('/usr/bin/apt-get') && existsSync('/usr/bin/dpkg-query');
  // Debian's libtorch without OpenBLAS falls back to the reference BLAS, 30x slower on Linear layers.
  const wanted = [];
  if (!found) wanted.push('libtorch-dev');
  // The demo's default data set: Fashion-MNIST, packaged by Debian.
  if (process.argv.includes('--demo') && hasApt && !existsSync('/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz')) wanted.push('dataset-fashion-mnist');
  if ((!found || found.source === 'system') && hasApt && !dpkgInstalled('libopenblas0-pthread')) wanted.push('libopenblas0-pthread');
  // libjpeg-turbo's headers, for the data loader's JPEG decoder (native/image.cc).
  if (!existsSync('/usr/include/jpeglib.h') && hasApt) wanted.push('libjpeg-dev');
  // Gloo's headers, for distributed training on c10d (native/dist.cc); its symbols are in libtorch_cpu.
  if (!existsSync('/usr/include/gloo/config.h') && hasApt) wanted.push('libgloo-dev');
  // The browser tests drive Debian's Chromium (never a downloaded one).
  if (process.argv.includes('--browser') && hasApt && !existsSync('/usr/bin/chromium')) wanted.push('chromium');
  if (wanted.length === 0) return;
  if (!hasApt || !isRoot()) {
    if (!found) {
      process.stderr.write(`${howTo}\n`);
      process.exit(1);
    }
    if (wanted.includes('dataset-fashion-mnist')) log('warning: the demo needs Fashion-MNIST: apt-get install dataset-fashion-mnist (as root)');
    if (wanted.includes('chromium')) log('warning: the browser tests need Chromium: apt-get install chromium (as root)');
    log(`warning: install ${wanted.join(' ')} (as root: apt-get install -y ${wanted.join(' ')}) for full speed`);
    return;
  }
  run('apt-get', ['update', '-q'], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  run('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...wanted], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
}

function mtime(p) {
  try {
    return statSync(p).mtimeMs;
  } catch {
    return 0;
  }
}

function npmPackages() {
  const stamp = join(root, 'node_modules', '.package-lock.json');
  const lock = join(root, 'package-lock.json');
  if (existsSync(stamp) && mtime(stamp) >= mtime(lock) && mtime(stamp) >= mtime(join(root, 'package.json'))) return;
  // onnxruntime-node's own installer would download CUDA files: its CPU binaries are in the package.
  run('npm', existsSync(lock) ? ['ci', '--no-audit', '--no-fund'] : ['install', '--no-audit', '--no-fund'], { env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip' } });
}

async function nativeAddon() {
  // The same build that npm's install runs (scripts/install.mjs): Node's headers are local, never downloaded.
  try {
    await buildAddon({ log });
  } catch (e) {
    process.stderr.write(`[setup] ${e.message}\n`);
    process.exit(1);
  }
}

function typescript() {
  const stamp = join(root, 'dist', '.build-stamp');
  const newest = Math.max(...['src', 'test', 'bench', 'examples'].map((d) => newestUnder(join(root, d), (n) => n.endsWith('.ts'))), mtime(join(root, 'tsconfig.json')));
  if (existsSync(stamp) && mtime(stamp) >= newest) return;
  // A clean build, so that a deleted test never lingers in dist/.
  rmSync(join(root, 'dist'), { recursive: true, force: true });
  run(join(root, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.json']);
  // The `fastvision` executable (package.json's bin), runnable directly once linked.
  chmodSync(join(root, 'dist', 'src', 'cli', 'bin.js'), 0o755);
  writeFileSync(stamp, new Date().toISOString() + '\n');
}

await systemPackages();
npmPackages();
await nativeAddon();
typescript();
