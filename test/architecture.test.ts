// The layering of docs/ARCHITECTURE.md, checked on every import of src/: a layer
// imports only the layers its row allows, so arrows only point down.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { repoRoot } from './helpers.js';

const src = join(repoRoot, 'src');

/** The "may import" column of docs/ARCHITECTURE.md, parsed from the document itself. */
function allowedTable(): Map<string, Set<string>> {
  const doc = readFileSync(join(repoRoot, 'docs', 'ARCHITECTURE.md'), 'utf8');
  const table = new Map<string, Set<string>>();
  const all = ['util', 'torch', 'vision', 'report', 'learn', 'deploy', 'studio', 'cli'];
  for (const line of doc.split('\n')) {
    const m = /^\| `src\/(\w+)\/` \|.*\| ([^|]+) \|$/.exec(line);
    if (!m) continue;
    const may = m[2]!.trim();
    table.set(m[1]!, new Set(may === 'everything above' ? all : may === 'nothing of ours' ? [] : [...may.matchAll(/`(\w+)`/g)].map((x) => x[1]!)));
  }
  return table;
}

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

test('every import of src/ follows docs/ARCHITECTURE.md', () => {
  const table = allowedTable();
  assert.deepEqual([...table.keys()].sort(), ['cli', 'deploy', 'learn', 'report', 'studio', 'torch', 'util', 'vision'], 'the table lists every layer');
  const wrong: string[] = [];
  for (const file of tsFiles(src)) {
    const layer = relative(src, file).split('/')[0]!;
    if (layer.endsWith('.ts')) continue; // src/index.ts re-exports everything
    const allowed = table.get(layer);
    assert.ok(allowed, `${relative(repoRoot, file)}: layer '${layer}' is not in docs/ARCHITECTURE.md`);
    for (const m of readFileSync(file, 'utf8').matchAll(/(?:from|import)\s*\(?\s*'(\.[^']+)'/g)) {
      const target = relative(src, resolve(dirname(file), m[1]!)).split('/')[0]!;
      if (target !== layer && !allowed.has(target)) wrong.push(`${relative(repoRoot, file)} imports ${m[1]} (${layer} → ${target})`);
    }
  }
  assert.deepEqual(wrong, []);
});
