// The public surface: what `import … from 'fastvision'` offers (the package's only entry
// point, by its exports map), pinned, so that a name cannot vanish or appear unnoticed.
// After a deliberate change: FASTVISION_UPDATE_API=1 node --test dist/test/public-api.test.js
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import * as api from '../src/index.js';
import { fixturesDir, repoRoot } from './helpers.js';

const pinned = join(fixturesDir, 'public-api.json');

test("the package's exports map has one entry point, and its names are the pinned ones", () => {
  const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { exports: Record<string, unknown> };
  assert.deepEqual(Object.keys(pkg.exports), ['.', './package.json']);
  const names = Object.keys(api).sort();
  if (process.env.FASTVISION_UPDATE_API === '1') writeFileSync(pinned, `${JSON.stringify(names, null, 1)}\n`);
  const expected = JSON.parse(readFileSync(pinned, 'utf8')) as string[];
  const gone = expected.filter((n) => !names.includes(n));
  const added = names.filter((n) => !expected.includes(n));
  assert.deepEqual({ gone, added }, { gone: [], added: [] }, 'the public API changed: if on purpose, FASTVISION_UPDATE_API=1 node --test dist/test/public-api.test.js');
  for (const n of ['ConvLearner', 'loadLearner', 'exportOnnx', 'serve', 'Report', 'FastvisionError', 'resolveDevice', 'MixedPrecision', 'GradScaler', 'environment']) assert.ok(names.includes(n), n);
});
