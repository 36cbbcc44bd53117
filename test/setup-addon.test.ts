// Building the addon of an installed package (scripts/install.mjs, `fastvision setup`): what it
// does when the addon is current, and what it says when libtorch is missing. The full build from a
// packed tarball, on Node 20, 22 and 24, is the consumer test (scripts/consumer-test.mjs, in CI).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { BuildPrerequisiteError, setupNativeAddon } from '../src/index.js';
import { repoRoot } from './helpers.js';

const script = join(repoRoot, 'scripts', 'install.mjs');

function install(args: string[], env: Record<string, string>): { code: number | null; stderr: string } {
  const r = spawnSync(process.execPath, [script, ...args], { env: { ...process.env, ...env }, encoding: 'utf8' });
  return { code: r.status, stderr: r.stderr };
}

test('setup leaves a current addon alone unless forced', async () => {
  const lines: string[] = [];
  assert.equal(await setupNativeAddon({ force: false, log: (l) => lines.push(l) }), 'up to date');
  assert.deepEqual(lines, []);
});

test('without libtorch, setup names what to install (exit 2), and npm install goes on with the command to run later', async () => {
  const none = { LIBTORCH: join(repoRoot, 'no-such-libtorch') };
  const asked = install(['--force'], none);
  assert.equal(asked.code, 2, asked.stderr);
  assert.match(asked.stderr, /LIBTORCH=.*no-such-libtorch does not hold include\/ATen\/ATen\.h/);
  const atInstall = install(['--force'], { ...none, npm_lifecycle_event: 'install' });
  assert.equal(atInstall.code, 0, atInstall.stderr);
  assert.match(atInstall.stderr, /the native addon was not built: .*\n.*npx fastvision setup/);
  const saved = process.env.LIBTORCH;
  process.env.LIBTORCH = none.LIBTORCH;
  try {
    await assert.rejects(setupNativeAddon({ log: () => {} }), (e: unknown) => e instanceof BuildPrerequisiteError && /no-such-libtorch/.test(e.message));
  } finally {
    if (saved === undefined) delete process.env.LIBTORCH;
    else process.env.LIBTORCH = saved;
  }
});
