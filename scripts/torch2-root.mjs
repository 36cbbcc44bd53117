#!/usr/bin/env node
// A Debian 13 ("trixie") root with libtorch 2.6 and PyTorch 2.6, made once and reused,
// so that fastvision is built, tested and benchmarked against PyTorch 2 on this Debian 12
// machine as well as against the system's libtorch 1.13.
//
//   node scripts/torch2-root.mjs ensure            make the root if it is missing or incomplete
//   node scripts/torch2-root.mjs test              the whole suite inside, on a fresh copy of the checkout
//   node scripts/torch2-root.mjs run -- CMD ...    CMD inside, in a fresh copy of the checkout
//   node scripts/torch2-root.mjs run --incremental -- CMD ...   the same, keeping the last copy's builds
//   node scripts/torch2-root.mjs shell -- CMD ...  CMD inside, in the root's own copy (kept between runs)
//
// Where: $FASTVISION_TORCH2_ROOT, default ~/.cache/fastvision/torch2-root (outside the
// checkout). Only Debian's own packages are installed, from the mirror this machine's apt
// already uses. Every command runs in its own mount namespace (unshare), so /proc, /dev,
// /sys and /run bound into the root vanish with it and nothing is left mounted on the host.
// Needs root, debootstrap (installed with apt when missing) and Node's standard library only.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const checkout = join(dirname(fileURLToPath(import.meta.url)), '..');
const rootDir = process.env.FASTVISION_TORCH2_ROOT ?? join(homedir(), '.cache', 'fastvision', 'torch2-root');
const SUITE = 'trixie';
/** What the root holds, beyond debootstrap's minimal base. A change here makes `ensure` install the difference. */
const PACKAGES = [
  'libtorch-dev',
  'python3-torch',
  'python3-torchvision',
  'libgloo-dev',
  'libopenblas0-pthread',
  'libjpeg-dev',
  'nodejs',
  'npm',
  'g++',
  'make',
  'git',
  'ca-certificates',
  'iproute2',
  'procps',
  'dataset-fashion-mnist',
  'chromium',
  'python3-onnx',
  'python3-setuptools',
  'python3-dev',
];
const READY = join(rootDir, 'etc', 'fastvision-root-packages');
/** Where a fresh copy of the checkout is put for `test` and `run`, inside the root. */
const WORK = '/root/fastvision';

const started = Date.now();
const log = (msg) => process.stderr.write(`[torch2-root ${((Date.now() - started) / 1000).toFixed(0)}s] ${msg}\n`);

function fail(msg) {
  process.stderr.write(`[torch2-root] ${msg}\n`);
  process.exit(1);
}

function run(cmd, args, opts = {}) {
  log(`$ ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'inherit', 'inherit'], ...opts });
  if (r.status !== 0) fail(`failed: ${cmd} ${args.join(' ')} (exit ${r.status ?? r.signal})`);
}

/** The Debian mirror this machine's apt uses, so that the root is fetched from the same place. */
function hostMirror() {
  const files = [];
  if (existsSync('/etc/apt/sources.list')) files.push('/etc/apt/sources.list');
  if (existsSync('/etc/apt/sources.list.d')) {
    for (const f of readdirSync('/etc/apt/sources.list.d')) if (/\.(list|sources)$/.test(f)) files.push(join('/etc/apt/sources.list.d', f));
  }
  for (const f of files) {
    const text = readFileSync(f, 'utf8');
    // deb822 stanzas ("URIs: ..." with "Suites: bookworm ...") and one-line entries ("deb URI bookworm main").
    for (const stanza of text.split(/\n\s*\n/)) {
      const uri = /^URIs:\s*(\S+)/m.exec(stanza)?.[1];
      const suites = /^Suites:\s*(.+)$/m.exec(stanza)?.[1] ?? '';
      if (uri && /\/debian\/?$/.test(uri) && !/security/.test(uri) && /\bbookworm\b|\btrixie\b/.test(suites)) return uri;
    }
    for (const line of text.split('\n')) {
      const m = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+\/debian\/?)\s+(\S+)/.exec(line.trim());
      if (m && !/security/.test(m[1])) return m[1];
    }
  }
  fail('no Debian mirror found in /etc/apt/sources.list or /etc/apt/sources.list.d');
}

/**
 * Runs a shell script inside the root, with /proc, /dev, /sys and a fresh /run (and any
 * `extraMounts`, shell commands) in a private mount namespace that ends with the script.
 */
function inRoot(script, { env = {}, check = true, extraMounts = [] } = {}) {
  const mounts = [
    // The root a mount point of its own, so that inside "/" is one (ip netns needs to mark it).
    `mount --bind "${rootDir}" "${rootDir}"`,
    ...extraMounts,
    `mount --rbind /dev "${rootDir}/dev"`,
    `mount -t proc proc "${rootDir}/proc"`,
    `mount --rbind /sys "${rootDir}/sys"`,
    `mount -t tmpfs tmpfs "${rootDir}/run"`,
  ].join(' && ');
  const vars = Object.entries({
    HOME: '/root',
    PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    LANG: 'C.UTF-8',
    DEBIAN_FRONTEND: 'noninteractive',
    // Tests that need PyTorch 2 beside fastvision fail here instead of skipping.
    FASTVISION_IN_TORCH2_ROOT: '1',
    ...(process.env.CI ? { CI: process.env.CI } : {}),
    ...env,
  }).map(([k, v]) => `${k}=${shellQuote(v)}`);
  const inner = `${mounts} && exec chroot "${rootDir}" /usr/bin/env -i ${vars.join(' ')} /bin/bash -c ${shellQuote(script)}`;
  const r = spawnSync('unshare', ['--mount', '--propagation', 'private', '--fork', '/bin/sh', '-c', inner], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (check && r.status !== 0) fail(`failed inside the root (exit ${r.status ?? r.signal}): ${script.split('\n')[0]}`);
  return r.status ?? 1;
}

function shellQuote(s) {
  return `'${String(s).replace(/'/g, `'\\''`)}'`;
}

function ensureHostTools() {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) fail('making and entering the root needs root (debootstrap, chroot, mount)');
  if (!existsSync('/usr/sbin/debootstrap')) {
    run('apt-get', ['update', '-q'], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    run('apt-get', ['install', '-y', '-q', '--no-install-recommends', 'debootstrap'], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  }
}

/** This machine's settings the root needs to reach the same registries: DNS, CA bundle, npm's configuration. */
function copyHostSettings() {
  for (const f of ['/etc/resolv.conf', '/etc/hosts']) if (existsSync(f)) copyFileSync(f, join(rootDir, f));
  const ca = '/etc/ssl/certs/ca-certificates.crt';
  if (existsSync(ca)) {
    // Kept under its own name: the root's ca-certificates package rewrites the usual one.
    mkdirSync(join(rootDir, 'etc', 'ssl'), { recursive: true });
    copyFileSync(ca, join(rootDir, 'etc', 'ssl', 'fastvision-host-ca.crt'));
  }
  let npmrc = existsSync(join(homedir(), '.npmrc')) ? readFileSync(join(homedir(), '.npmrc'), 'utf8') : '';
  npmrc = npmrc
    .split('\n')
    .filter((l) => !/^\s*(cafile|nodedir)\s*=/.test(l))
    .join('\n');
  if (existsSync(ca)) npmrc += '\ncafile=/etc/ssl/fastvision-host-ca.crt\n';
  npmrc += 'nodedir=/usr\n';
  mkdirSync(join(rootDir, 'root'), { recursive: true });
  writeFileSync(join(rootDir, 'root', '.npmrc'), npmrc);
}

function installedList() {
  return existsSync(READY) ? readFileSync(READY, 'utf8').split('\n').filter(Boolean) : [];
}

/** Makes the root, or completes it; a root that already holds every package is left as it is. */
export function ensureRoot() {
  const have = installedList();
  const missing = PACKAGES.filter((p) => !have.includes(p));
  if (missing.length === 0 && existsSync(join(rootDir, 'usr', 'bin', 'node'))) {
    copyHostSettings();
    return;
  }
  ensureHostTools();
  if (!existsSync(join(rootDir, 'usr', 'bin', 'apt-get')) || !existsSync(join(rootDir, 'etc', 'fastvision-debootstrap-done'))) {
    const mirror = hostMirror();
    log(`making a Debian ${SUITE} root in ${rootDir} from ${mirror} (debootstrap, a few minutes)`);
    rmSync(rootDir, { recursive: true, force: true });
    mkdirSync(rootDir, { recursive: true });
    run('debootstrap', ['--variant=minbase', SUITE, rootDir, mirror]);
    writeFileSync(join(rootDir, 'etc', 'apt', 'sources.list'), `deb ${mirror} ${SUITE} main\n`);
    writeFileSync(join(rootDir, 'etc', 'fastvision-debootstrap-done'), new Date().toISOString() + '\n');
  }
  copyHostSettings();
  log(`installing into the root: ${missing.join(' ')}`);
  inRoot(`apt-get update -q && apt-get install -y -q --no-install-recommends ${missing.join(' ')} && apt-get clean`);
  writeFileSync(READY, [...new Set([...have, ...missing])].join('\n') + '\n');
  log(`the root is ready (${((Date.now() - started) / 1000).toFixed(0)} s)`);
}

/**
 * Puts a fresh copy of the checkout's files (tracked and untracked, less what git ignores)
 * at WORK inside the root. node_modules is carried over from the last copy when
 * package-lock.json is byte for byte the same (npm ci would make the same tree); with
 * `incremental`, build/ and dist/ are kept too, and setup rebuilds what is older than its sources.
 */
function freshCopy(incremental) {
  const dest = join(rootDir, WORK);
  const keep = incremental ? ['node_modules', 'build', 'dist'] : ['node_modules'];
  const aside = join(rootDir, 'root', '.fastvision-kept');
  rmSync(aside, { recursive: true, force: true });
  const lock = join(checkout, 'package-lock.json');
  const sameLock = existsSync(lock) && existsSync(join(dest, 'package-lock.json')) && readFileSync(lock).equals(readFileSync(join(dest, 'package-lock.json')));
  if (sameLock) {
    mkdirSync(aside, { recursive: true });
    for (const k of keep) if (existsSync(join(dest, k))) renameSync(join(dest, k), join(aside, k));
  }
  rmSync(dest, { recursive: true, force: true });
  mkdirSync(dest, { recursive: true });
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: checkout })
    .toString()
    .split('\0')
    .filter((f) => f && existsSync(join(checkout, f)));
  const r = spawnSync('bash', ['-o', 'pipefail', '-c', `tar -C ${shellQuote(checkout)} --null -T - -cf - | tar -C ${shellQuote(dest)} -xf -`], {
    input: files.join('\0'),
    stdio: ['pipe', 'inherit', 'inherit'],
  });
  if (r.status !== 0) fail(`copying the checkout into the root failed (exit ${r.status ?? r.signal})`);
  if (sameLock) for (const k of keep) if (existsSync(join(aside, k))) renameSync(join(aside, k), join(dest, k));
  rmSync(aside, { recursive: true, force: true });
  log(`fresh copy of the checkout (${files.length} files${sameLock ? `; kept ${keep.join(', ')}` : ''}) at ${WORK} in the root`);
}

/** Runs `command` in the fresh copy, with the checkout's ../shared (data sets for benches) bound read-only beside it. */
function runInCopy(command, env = {}) {
  const shared = join(checkout, '..', 'shared');
  const extraMounts = [];
  if (existsSync(shared)) {
    mkdirSync(join(rootDir, 'root', 'shared'), { recursive: true });
    extraMounts.push(`mount --bind ${shellQuote(shared)} "${rootDir}/root/shared"`, `mount -o remount,bind,ro "${rootDir}/root/shared"`);
  }
  return inRoot(`cd ${WORK} && ${command}`, { env, check: false, extraMounts });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [what, ...rest] = process.argv.slice(2);
  const incremental = rest[0] === '--incremental';
  if (incremental) rest.shift();
  const command = rest[0] === '--' ? rest.slice(1) : rest;
  if (what === 'ensure') {
    ensureRoot();
  } else if (what === 'test' || what === 'run') {
    ensureRoot();
    freshCopy(incremental);
    const cmd = what === 'test' ? 'npm test' : command.map(shellQuote).join(' ');
    if (!cmd) fail('run needs a command: node scripts/torch2-root.mjs run -- CMD ...');
    log(`inside the root (libtorch 2.6): ${cmd}`);
    const status = runInCopy(cmd);
    log(`done, exit ${status} (${((Date.now() - started) / 1000).toFixed(0)} s in all)`);
    process.exit(status);
  } else if (what === 'shell') {
    ensureRoot();
    process.exit(inRoot(command.map(shellQuote).join(' ') || 'bash', { check: false }));
  } else {
    fail('usage: node scripts/torch2-root.mjs ensure | test | run -- CMD ... | shell -- CMD ...');
  }
}
