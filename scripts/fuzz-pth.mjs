#!/usr/bin/env node
// Fuzzes fastvision's .pth reader (test/pth-fuzzer.ts), or with --target safetensors
// its safetensors reader (test/safetensors-fuzzer.ts), for a while, each run in a
// child process, so that a crash is caught with the input that caused it (saved
// under --out). Prints one JSON summary as its last line; exit 1 on any finding.
//   node scripts/fuzz-pth.mjs [--target pth|safetensors] [--seconds 600] [--seed 1] [--out fuzz-findings]
// (npm run fuzz:pth and fuzz:safetensors build first.)  --child runs one fuzzing run in this process.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '600' },
    seed: { type: 'string', default: '1' },
    out: { type: 'string', default: 'fuzz-findings' },
    child: { type: 'boolean' },
    target: { type: 'string', default: 'pth' },
    current: { type: 'string' },
  },
});
const seconds = Number(values.seconds);
const seed = Number(values.seed);
const TARGETS = { pth: ['pth-fuzzer.js', 'fuzzPth'], safetensors: ['safetensors-fuzzer.js', 'fuzzSafetensors'] };
if (!Object.hasOwn(TARGETS, values.target)) {
  console.error(`--target must be one of ${Object.keys(TARGETS).join(', ')}`);
  process.exit(2);
}
const [moduleFile, fuzzName] = TARGETS[values.target];
const ext = values.target === 'pth' ? '.pth' : '.safetensors';

if (values.child) {
  const fuzz = (await import(join(root, 'dist', 'test', moduleFile)))[fuzzName];
  const stats = await fuzz({ seconds, seed, onInput: values.current ? (b) => writeFileSync(values.current, b) : undefined });
  console.log(JSON.stringify(stats));
  process.exit(0);
}

// Parent: runs children until the time is spent; a child killed by a signal is a crash.
const work = mkdtempSync(join(tmpdir(), 'fastvision-fuzz-'));
const current = join(work, `current${ext}`);
const total = { seeds: [], iterations: 0, loaded: 0, rejected: 0, findings: [], crashes: [], leakedTensors: 0, peakGrowthMiB: 0, largestInput: 0, mostTensorBytes: { bytes: 0, inputBytes: 0 } };
const end = Date.now() + seconds * 1000;
let s = seed;
while (Date.now() < end - 500) {
  const left = Math.max(1, Math.floor((end - Date.now()) / 1000));
  const r = spawnSync(process.execPath, [fileURLToPath(import.meta.url), '--child', '--target', values.target, '--seconds', String(Math.min(left, 120)), '--seed', String(s), '--current', current], {
    encoding: 'utf8',
    maxBuffer: 64 * 2 ** 20,
  });
  total.seeds.push(s);
  if (r.signal || r.status !== 0) {
    mkdirSync(values.out, { recursive: true });
    const saved = join(values.out, `crash-seed${s}${ext}`);
    if (existsSync(current)) copyFileSync(current, saved);
    total.crashes.push({ seed: s, signal: r.signal, status: r.status, input: saved, stderr: (r.stderr ?? '').split('\n').slice(-5).join(' | ') });
  } else {
    const st = JSON.parse(r.stdout.trim().split('\n').pop());
    for (const k of ['iterations', 'loaded', 'rejected', 'leakedTensors']) total[k] += st[k];
    total.peakGrowthMiB = Math.max(total.peakGrowthMiB, st.peakGrowthMiB);
    total.largestInput = Math.max(total.largestInput, st.largestInput);
    if (st.mostTensorBytes.bytes > total.mostTensorBytes.bytes) total.mostTensorBytes = st.mostTensorBytes;
    total.findings.push(...st.findings);
  }
  s++;
}
rmSync(work, { recursive: true, force: true });
if (total.findings.length > 0) {
  mkdirSync(values.out, { recursive: true });
  total.findings.forEach((f, i) => writeFileSync(join(values.out, `finding-${i}${ext}`), Buffer.from(f.input, 'base64')));
}
console.log(JSON.stringify({ ...total, findings: total.findings.map((f) => f.error) }));
process.exit(total.findings.length + total.crashes.length > 0 ? 1 : 0);
