// What `npm pack` puts in the tarball: what runs and what builds the addon, and no
// tests, fixtures, benches, scripts of our own or source maps. (vendor/, which prepack adds,
// and the install from the tarball are the consumer test's: scripts/consumer-test.mjs.)
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { repoRoot } from './helpers.js';

test('the tarball holds the compiled library, the addon sources and the libtorch finder, and nothing of the test bench', () => {
  const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: repoRoot, encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  const [entry] = JSON.parse(r.stdout) as { files: { path: string }[]; entryCount: number; unpackedSize: number }[];
  const files = entry!.files.map((f) => f.path);
  for (const must of [
    'package.json',
    'README.md',
    'binding.gyp',
    'native/addon.cc',
    'native/dist.cc',
    'native/image.cc',
    'native/tensor_box.h',
    'scripts/find-libtorch.mjs',
    'scripts/install.mjs',
    'dist/src/index.js',
    'dist/src/index.d.ts',
    'dist/src/cli/bin.js',
    'dist/src/deploy/web-app/app.js',
    'dist/src/studio/app/studio.js',
    'dist/src/studio/train-child.js',
  ]) {
    assert.ok(files.includes(must), `${must} is in the tarball`);
  }
  const stray = files.filter(
    (f) =>
      /^(test|bench|examples|fastvision-out|\.ci)\//.test(f) ||
      /^dist\/(test|bench|examples)\//.test(f) ||
      f.endsWith('.map') ||
      f.startsWith('test/fixtures') ||
      /\.py$/.test(f) ||
      (f.startsWith('scripts/') && !['scripts/find-libtorch.mjs', 'scripts/install.mjs'].includes(f)),
  );
  assert.deepEqual(stray, [], 'no tests, fixtures, benches, maps or development scripts');
  assert.ok(entry!.unpackedSize < 5 * 2 ** 20, `unpacked ${(entry!.unpackedSize / 2 ** 20).toFixed(1)} MiB`);
  console.log(`${entry!.entryCount} files, ${(entry!.unpackedSize / 2 ** 20).toFixed(2)} MiB unpacked`);
});
