// What `npm pack` puts in the tarball: what runs and what builds the addon, and no
// tests, fixtures, benches, scripts of our own or source maps. (vendor/, which prepack adds,
// and the install from the tarball are the consumer test's: scripts/consumer-test.mjs.)
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import { test } from 'node:test';
import { repoRoot } from './helpers.js';

/** The tarball's file list, as `npm pack` would make it. */
function packedFiles(): { files: string[]; entryCount: number; unpackedSize: number } {
  const r = spawnSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: repoRoot, encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, r.stderr);
  const [entry] = JSON.parse(r.stdout) as { files: { path: string }[]; entryCount: number; unpackedSize: number }[];
  assert.ok(entry, 'npm pack describes one tarball');
  return { files: entry.files.map((f) => f.path), entryCount: entry.entryCount, unpackedSize: entry.unpackedSize };
}

test('the tarball holds the compiled library, the addon sources and the libtorch finder, and nothing of the test bench', () => {
  const entry = packedFiles();
  const files = entry.files;
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
  assert.ok(entry.unpackedSize < 5 * 2 ** 20, `unpacked ${(entry.unpackedSize / 2 ** 20).toFixed(1)} MiB`);
  console.log(`${entry.entryCount} files, ${(entry.unpackedSize / 2 ** 20).toFixed(2)} MiB unpacked`);
});

test('every relative link and picture of the packed README and docs is in the tarball, so they read whole from node_modules', () => {
  const { files } = packedFiles();
  const pages = files.filter((f) => f === 'README.md' || /^docs\/[^/]+\.md$/.test(f));
  assert.ok(pages.length > 5, `the README and the docs are packed (${pages.join(', ')})`);
  const broken: string[] = [];
  for (const page of pages) {
    const text = readFileSync(join(repoRoot, page), 'utf8');
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target!) || target!.startsWith('#')) continue;
      const path = normalize(join(dirname(page), target!.split('#')[0]!));
      if (!files.includes(path)) broken.push(`${page}: ${target}`);
    }
  }
  assert.deepEqual(broken, [], 'links to files that npm pack leaves out');
});
