#!/usr/bin/env node
// Writes the sample .pth files (test/pth-samples.ts) for scripts/check_fastvision_pth.py.
// Run after `npm run build`:  node scripts/write-fastvision-pth.mjs
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { savePth } = await import(join(root, 'dist/src/index.js'));
const { sampleStateDict, sampleMixed } = await import(join(root, 'dist/test/pth-samples.js'));
const dir = join(root, 'test/fixtures/engine');
await savePth(join(dir, 'written_by_fastvision.pth'), sampleStateDict());
await savePth(join(dir, 'mixed_by_fastvision.pth'), sampleMixed());
console.log(`wrote ${dir}/written_by_fastvision.pth and mixed_by_fastvision.pth`);
