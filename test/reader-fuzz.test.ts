// The .pth and safetensors readers under a seeded fuzzer for a bounded time
// (scripts/fuzz-pth.mjs; `npm run fuzz:pth` and `fuzz:safetensors` run it for ten
// minutes): mutated real files never crash the process, never raise anything but the
// reader's own error (PthError, SafetensorsError), never leak a tensor, and never
// allocate far beyond their own size.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot } from './helpers.js';

for (const [target, reader, error, seed] of [
  ['pth', 'parsePth', 'PthError', 20261129],
  ['safetensors', 'parseSafetensors', 'SafetensorsError', 20261207],
] as const) {
  test(`15 s of fuzzing ${reader}: no crash, only ${error}s, no leak, bounded memory`, async () => {
    const out = await mkdtemp(join(tmpdir(), 'fastvision-fuzz-'));
    try {
      const r = spawnSync(process.execPath, [join(repoRoot, 'scripts', 'fuzz-pth.mjs'), '--target', target, '--seconds', '15', '--seed', String(seed), '--out', out], {
        encoding: 'utf8',
        timeout: 120_000,
      });
      const summary = JSON.parse(r.stdout.trim().split('\n').pop()!) as {
        iterations: number;
        loaded: number;
        rejected: number;
        findings: string[];
        crashes: unknown[];
        leakedTensors: number;
        peakGrowthMiB: number;
        mostTensorBytes: { bytes: number; inputBytes: number };
      };
      assert.deepEqual(summary.crashes, [], 'no input crashed the process');
      assert.deepEqual(summary.findings, [], `every input ended as a value or a ${error}`);
      assert.equal(summary.leakedTensors, 0);
      assert.equal(r.status, 0);
      assert.ok(summary.iterations > 5000, `${summary.iterations} inputs tried`);
      assert.ok(summary.loaded > 0 && summary.rejected > 0, 'the mutations reach both outcomes');
      assert.ok(summary.peakGrowthMiB < 256, `peak RSS grew by ${summary.peakGrowthMiB} MiB`);
      const { bytes, inputBytes } = summary.mostTensorBytes;
      assert.ok(bytes <= 2 * inputBytes + 65536, `an input of ${inputBytes} bytes gave ${bytes} bytes of tensors`);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
}
