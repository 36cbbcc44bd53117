#!/usr/bin/env node
// Interop check: fastvision ranks and PyTorch ranks (Debian's python3-torch:
// 1.13 here, 2.6 in the Debian 13 root, where test/torch2.test.ts runs this in CI) join one Gloo group through torch.distributed's
// env:// rendezvous and run all-reduce, broadcast and all-gather together. This
// shows the protocol is c10d's own. Two layouts: fastvision as rank 0 with a
// Python rank 1, then Python as rank 0 with a fastvision rank 1.
// Usage: node scripts/ddp-interop.mjs   (after `npm run build`)
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const python = process.env.FASTVISION_BENCH_PYTHON ?? '/usr/bin/python3';
const tmp = mkdtempSync(join(tmpdir(), 'fastvision-interop-'));

function start(kind, rank, port, out) {
  const env = {
    ...process.env,
    WORLD_SIZE: '2',
    RANK: String(rank),
    MASTER_ADDR: '127.0.0.1',
    MASTER_PORT: String(port),
    DDP_OUT: out,
    DDP_MODE: 'collectives',
    FASTVISION_DDP_WORKER: '1',
    DDP_TIMEOUT_MS: '30000',
  };
  // Debian's PyTorch 2.6 is built without libuv, which torch.distributed asks its TCPStore for
  // unless USE_LIBUV=0 (1.13 ignores it); fastvision's store falls back by itself.
  if (kind === 'pytorch') env.USE_LIBUV = '0';
  const [cmd, args] = kind === 'fastvision' ? [process.execPath, [join(root, 'dist', 'test', 'ddp-worker.js')]] : [python, [join(root, 'scripts', 'ddp_interop_rank.py')]];
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { env, stdio: ['ignore', 'inherit', 'inherit'] });
    const timer = setTimeout(() => p.kill('SIGKILL'), 60_000);
    p.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ kind, rank, code });
    });
  });
}

let failed = false;
try {
  for (const [first, second] of [
    ['fastvision', 'pytorch'],
    ['pytorch', 'fastvision'],
  ]) {
    const port = 29600 + Math.floor(Math.random() * 1000);
    const out = join(tmp, `${first}-${second}`);
    const done = await Promise.all([start(first, 0, port, out), start(second, 1, port, out)]);
    const results = done.map((d) => (d.code === 0 ? JSON.parse(readFileSync(`${out}.${d.rank}`, 'utf8')) : null));
    const same = (a, b) => Array.isArray(a) && a.length === b.length && a.every((v, i) => v === b[i]);
    const ok = results.every((r) => r && same(r.allReduce, [3, 30]) && same(r.broadcast, [42, 7]) && same(r.allGather, [0, 1]));
    failed ||= !ok;
    console.log(
      `rank 0 ${first}, rank 1 ${second}: ${ok ? 'OK' : 'FAILED'}  ${done.map((d, i) => `${d.kind} rank ${d.rank} exit ${d.code} -> ${JSON.stringify(results[i] && { allReduce: results[i].allReduce, broadcast: results[i].broadcast, allGather: results[i].allGather })}`).join('; ')}`,
    );
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
console.log(`RESULT ddp_interop_with_pytorch ${failed ? 'failed' : 'ok'}`);
process.exit(failed ? 1 : 0);
