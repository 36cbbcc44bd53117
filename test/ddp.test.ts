// Data-parallel training on c10d/Gloo, with processes on loopback: the
// collectives; two ranks with half batches give one rank's weights; a rank
// killed mid-epoch, a wrong master address, a port in use and mismatched models
// each end with a clear error, never a hang.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { shardOf } from '../src/vision/loader.js';
import { buckets } from '../src/learn/ddp.js';
import { loadStateDictFile, tensor } from '../src/index.js';
import { photos, repoRoot } from './helpers.js';

const bin = join(repoRoot, 'dist', 'src', 'cli', 'bin.js');

const worker = join(repoRoot, 'dist', 'test', 'ddp-worker.js');
let tmp: string;
let nextPort = 20000 + Math.floor(Math.random() * 20000);
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'fastvision-ddp-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

interface Done {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  ms: number;
}

function rank(env: Record<string, string>, child: (p: ChildProcess) => void = () => {}, netns?: string): Promise<Done> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    const [cmd, args] = netns ? ['ip', ['netns', 'exec', netns, process.execPath, worker]] : [process.execPath, [worker]];
    const p = spawn(cmd, args, { env: { ...process.env, FASTVISION_DDP_WORKER: '1', FASTVISION_NUM_THREADS: '1', MASTER_ADDR: '127.0.0.1', ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    // Every process is bounded: a hang is a failure, not a stuck suite.
    const kill = setTimeout(() => p.kill('SIGKILL'), 60_000);
    p.on('exit', (code, signal) => {
      clearTimeout(kill);
      resolve({ code, signal, stderr, ms: Date.now() - t0 });
    });
    child(p);
  });
}

/** A small copy of the photo fixture's dogscats (8 training, 3 validation photos a class), made once. */
function petsData(): string {
  const data = join(tmp, 'pets');
  if (existsSync(data)) return data;
  for (const split of ['train', 'valid']) {
    for (const label of ['cats', 'dogs']) {
      const src = join(photos, 'dogscats', split, label);
      mkdirSync(join(data, split, label), { recursive: true });
      for (const f of readdirSync(src)
        .sort()
        .slice(0, split === 'train' ? 8 : 3))
        copyFileSync(join(src, f), join(data, split, label, f));
    }
  }
  return data;
}

function group(n: number, env: Record<string, string> = {}, perRank: (r: number) => Record<string, string> = () => ({})): Promise<Done[]> {
  const port = String(nextPort++);
  return Promise.all(Array.from({ length: n }, (_, r) => rank({ WORLD_SIZE: String(n), RANK: String(r), MASTER_PORT: port, ...env, ...perRank(r) })));
}

test("DistributedSampler's shares: padded to equal length, rank r takes every R-th from r", () => {
  const order = [5, 3, 8, 1, 9, 0, 2];
  assert.deepEqual(shardOf(order, { rank: 0, worldSize: 2 }), [5, 8, 9, 2]);
  assert.deepEqual(shardOf(order, { rank: 1, worldSize: 2 }), [3, 1, 0, 5], 'padded with the start');
  assert.deepEqual(shardOf(order, { rank: 2, worldSize: 3, pad: false }), [8, 0]);
  const t = [tensor(new Float32Array(10)), tensor(new Float32Array(10)), tensor(new Float32Array(30))];
  assert.deepEqual(
    buckets(t, 80).map((b) => b.length),
    [2, 1],
    'buckets close before exceeding their size',
  );
});

test('the collectives: all-reduce sums, broadcast copies rank 0, all-gather collects in rank order', async () => {
  const out = join(tmp, 'coll');
  const done = await group(3, { DDP_MODE: 'collectives', DDP_OUT: out });
  for (const d of done) assert.equal(d.code, 0, d.stderr);
  for (let r = 0; r < 3; r++) {
    const res = JSON.parse(readFileSync(`${out}.${r}`, 'utf8')) as { allReduce: number[]; broadcast: number[]; allGather: number[] };
    assert.deepEqual(res.allReduce, [6, 60]);
    assert.deepEqual(res.broadcast, [42, 7]);
    assert.deepEqual(res.allGather, [0, 1, 2]);
  }
});

test("each rank's share of an in-order pass, gathered, is the whole pass in order (validation, TTA, activations)", async () => {
  const out = join(tmp, 'gather');
  const done = await group(3, { DDP_MODE: 'gather', DDP_OUT: out });
  for (const d of done) assert.equal(d.code, 0, d.stderr);
  for (let r = 0; r < 3; r++) {
    const res = JSON.parse(readFileSync(`${out}.${r}`, 'utf8')) as { mine: number; shape: number[]; outs: number[]; whole: number[]; y: number[] };
    assert.equal(res.mine, r === 0 ? 3 : 2, 'unpadded shares: 7 rows over 3 ranks');
    assert.deepEqual(res.shape, [7, 2]);
    assert.deepEqual(res.outs, res.whole);
    assert.deepEqual(res.y, [0, 1, 0, 1, 1, 0, 1]);
  }
});

test('two ranks with batches of 4 end with the weights of one process with batches of 8', async () => {
  const one = join(tmp, 'one.json');
  const two = join(tmp, 'two.json');
  const [a] = await group(1, { DDP_MODE: 'train', DDP_OUT: one, DDP_EPOCHS: '3' });
  assert.equal(a!.code, 0, a!.stderr);
  const done = await group(2, { DDP_MODE: 'train', DDP_OUT: two, DDP_EPOCHS: '3' });
  for (const d of done) assert.equal(d.code, 0, d.stderr);
  const w1 = (JSON.parse(readFileSync(one, 'utf8')) as number[][]).flat();
  const w2 = (JSON.parse(readFileSync(two, 'utf8')) as number[][]).flat();
  assert.equal(w1.length, w2.length);
  let worst = 0;
  for (let i = 0; i < w1.length; i++) worst = Math.max(worst, Math.abs(w1[i]! - w2[i]!));
  assert.ok(worst < 1e-5, `largest difference ${worst}`);
});

test('a rank killed mid-epoch: the other stops with an error naming it, within the timeout', async () => {
  const port = String(nextPort++);
  const env = { WORLD_SIZE: '2', MASTER_PORT: port, DDP_MODE: 'slow', DDP_TIMEOUT_MS: '15000' };
  // Killed once it trains (a fixed delay raced the start under load: Gloo's connect then timed out instead).
  const killWhenTraining = (p: ChildProcess): void => {
    p.stderr!.on('data', (d: Buffer) => {
      if (d.toString().includes('DDP-TRAINING')) setTimeout(() => p.kill('SIGKILL'), 500);
    });
  };
  const [r0, r1] = await Promise.all([rank({ ...env, RANK: '0' }), rank({ ...env, RANK: '1' }, killWhenTraining)]);
  assert.equal(r1.signal, 'SIGKILL');
  assert.equal(r0.code, 1, r0.stderr);
  assert.match(r0.stderr, /rank 1 \(.* pid \d+\) stopped responding/);
  assert.ok(r0.ms < 30_000, `rank 0 took ${r0.ms} ms`);
});

test('a wrong master address or a port in use is a clear error', async () => {
  const port = nextPort++;
  const [lost] = await Promise.all([rank({ WORLD_SIZE: '2', RANK: '1', MASTER_PORT: String(port), MASTER_ADDR: '127.0.0.1', DDP_TIMEOUT_MS: '2000' })]);
  assert.equal(lost.code, 1);
  assert.match(lost.stderr, /rank 1 cannot reach the store at 127\.0\.0\.1:\d+ \(MASTER_ADDR, MASTER_PORT\)/);
  const busy = createServer();
  const busyPort = nextPort++;
  await new Promise<void>((r) => busy.listen(busyPort, '127.0.0.1', r));
  try {
    const [r0] = await Promise.all([rank({ WORLD_SIZE: '2', RANK: '0', MASTER_PORT: String(busyPort), DDP_TIMEOUT_MS: '2000' })]);
    assert.equal(r0.code, 1);
    assert.match(r0.stderr, /port is in use/);
  } finally {
    busy.close();
  }
});

test('ranks started with different models stop with a message', async () => {
  const done = await group(2, { DDP_MODE: 'train', DDP_TIMEOUT_MS: '10000' }, (r) => ({ DDP_CLASSES: r === 1 ? '3' : '2' }));
  for (const d of done) {
    assert.equal(d.code, 1);
    assert.match(d.stderr, /rank 1's model differs from rank 0's/);
  }
});

test('fastvision train --nproc 2: a model, report and JSON as one process gives; only rank 0 writes them; each rank logs', async () => {
  const data = petsData();
  const tiny = ['--recipe', 'lesson', '--sizes', '32,40', '--bs', '2', '--cycles', '1', '--unfreeze-cycles', '1', '--tta-aug', '1', '--workers', '1'];
  const run = (out: string, ...extra: string[]): { code: number | null; stdout: string; stderr: string } => {
    const r = spawnSync(process.execPath, [bin, 'train', data, ...tiny, '--out', out, '--json', `${out}.json`, ...extra], {
      encoding: 'utf8',
      env: { ...process.env, FASTVISION_HOME: join(tmp, 'home'), FASTVISION_QUIET: '1' },
      timeout: 300_000,
    });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const two = run(join(tmp, 'two'), '--nproc', '2');
  assert.equal(two.code, 0, two.stderr + two.stdout);
  assert.match(two.stdout, /starting 2 ranks on this machine \(1 thread each\)/);
  const one = run(join(tmp, 'one'));
  assert.equal(one.code, 0, one.stderr);
  type Summary = { worldSize: number; stages: { name: string; history: unknown[] }[]; tta: { accuracy: number }; artifacts: { pictures: string[] } };
  const s2 = JSON.parse(readFileSync(join(tmp, 'two.json'), 'utf8')) as Summary;
  const s1 = JSON.parse(readFileSync(join(tmp, 'one.json'), 'utf8')) as Summary;
  assert.equal(s2.worldSize, 2);
  assert.deepEqual(
    s2.stages.map((s) => [s.name, s.history.length]),
    s1.stages.map((s) => [s.name, s.history.length]),
  );
  assert.ok(s2.tta.accuracy >= 0 && s2.tta.accuracy <= 1);
  const files = (dir: string): string[] =>
    readdirSync(dir)
      .filter((f) => f !== 'logs')
      .sort();
  assert.deepEqual(files(join(tmp, 'two')), files(join(tmp, 'one')), 'the same files as one process writes');
  assert.deepEqual(readdirSync(join(tmp, 'two', 'logs')).sort(), ['rank-0.log', 'rank-1.log']);
  assert.match(readFileSync(join(tmp, 'two', 'logs', 'rank-1.log'), 'utf8'), /# head on precomputed activations/);
  // The model it saved predicts like any other.
  const pred = spawnSync(process.execPath, [bin, 'predict', join(tmp, 'two'), join(data, 'valid', 'cats'), '--json'], { encoding: 'utf8', env: { ...process.env, FASTVISION_QUIET: '1' } });
  assert.equal(pred.status, 0, pred.stderr);
  assert.equal((JSON.parse(pred.stdout) as unknown[]).length, 3);
});

test('two hosts: each rank in its own network namespace, joined by a veth pair, trains as one process', async (t) => {
  const id = String(process.pid % 100000);
  const [a, b, va, vb] = [`fva${id}`, `fvb${id}`, `fvxa${id}`, `fvxb${id}`];
  const sh = (cmd: string): { status: number | null; stderr: string } => spawnSync('sh', ['-c', cmd], { encoding: 'utf8' });
  const cleanup = (): void => void sh(`ip netns del ${a} 2>/dev/null; ip netns del ${b} 2>/dev/null; ip link del ${va} 2>/dev/null`);
  const setup = sh(
    [
      `ip netns add ${a}`,
      `ip netns add ${b}`,
      `ip link add ${va} type veth peer name ${vb}`,
      `ip link set ${va} netns ${a}`,
      `ip link set ${vb} netns ${b}`,
      `ip -n ${a} addr add 10.77.0.1/24 dev ${va}`,
      `ip -n ${b} addr add 10.77.0.2/24 dev ${vb}`,
      `ip -n ${a} link set ${va} up`,
      `ip -n ${b} link set ${vb} up`,
      `ip -n ${a} link set lo up`,
      `ip -n ${b} link set lo up`,
    ].join(' && '),
  );
  if (setup.status !== 0) {
    cleanup();
    t.skip(`network namespaces refused on this machine (${setup.stderr.trim().split('\n')[0]}): the two-host test did not run`);
    return;
  }
  try {
    const one = join(tmp, 'ns-one.json');
    const two = join(tmp, 'ns-two.json');
    const [alone] = await group(1, { DDP_MODE: 'train', DDP_OUT: one, DDP_EPOCHS: '2' });
    assert.equal(alone!.code, 0, alone!.stderr);
    const port = String(nextPort++);
    const common = { WORLD_SIZE: '2', MASTER_ADDR: '10.77.0.1', MASTER_PORT: port, DDP_MODE: 'train', DDP_OUT: two, DDP_EPOCHS: '2' };
    const done = await Promise.all([rank({ ...common, RANK: '0', GLOO_SOCKET_IFNAME: va }, undefined, a), rank({ ...common, RANK: '1', GLOO_SOCKET_IFNAME: vb }, undefined, b)]);
    for (const d of done) assert.equal(d.code, 0, d.stderr);
    const w1 = (JSON.parse(readFileSync(one, 'utf8')) as number[][]).flat();
    const w2 = (JSON.parse(readFileSync(two, 'utf8')) as number[][]).flat();
    let worst = 0;
    for (let i = 0; i < w1.length; i++) worst = Math.max(worst, Math.abs(w1[i]! - w2[i]!));
    assert.ok(worst < 1e-5, `largest difference ${worst}`);
  } finally {
    cleanup();
  }
});

test('ranks of `fastvision train` started with other options stop with a message naming the rank', async () => {
  const data = petsData();
  const port = String(nextPort++);
  const start = (r: number, extra: string[]): Promise<{ code: number | null; stderr: string }> =>
    new Promise((resolve) => {
      const p = spawn(process.execPath, [bin, 'train', data, '--recipe', 'lesson', '--size', '32', '--bs', '2', '--workers', '1', '--out', join(tmp, `mismatch-${r}`), ...extra], {
        env: { ...process.env, FASTVISION_HOME: join(tmp, 'home'), FASTVISION_QUIET: '1', WORLD_SIZE: '2', RANK: String(r), MASTER_ADDR: '127.0.0.1', MASTER_PORT: port, FASTVISION_NUM_THREADS: '1' },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const kill = setTimeout(() => p.kill('SIGKILL'), 120_000);
      p.on('exit', (code) => {
        clearTimeout(kill);
        resolve({ code, stderr });
      });
    });
  const [r0, r1] = await Promise.all([start(0, ['--cycles', '1']), start(1, ['--cycles', '2'])]);
  for (const r of [r0, r1]) {
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /rank 1 was started with other settings than rank 0/);
  }
});

test("train --nproc 2 killed mid-run, then --resume: every rank continues from rank 0's checkpoint to the weights of an uninterrupted run", async () => {
  const data = petsData();
  const args = (out: string): string[] => [
    bin,
    'train',
    data,
    '--recipe',
    'lesson',
    '--size',
    '32',
    '--bs',
    '2',
    '--cycles',
    '1',
    '--unfreeze-cycles',
    '2',
    '--tta-aug',
    '1',
    '--workers',
    '1',
    '--nproc',
    '2',
    '--out',
    out,
  ];
  const env = { ...process.env, FASTVISION_HOME: join(tmp, 'home'), FASTVISION_QUIET: '1' };
  const full = spawnSync(process.execPath, args(join(tmp, 'full')), { encoding: 'utf8', env, timeout: 300_000 });
  assert.equal(full.status, 0, full.stderr);
  const part = join(tmp, 'part');
  // The whole launch (launcher and ranks) in its own process group, killed at once once the unfrozen stage has begun.
  const child = spawn(process.execPath, args(part), { env, detached: true, stdio: 'ignore' });
  const log = join(part, 'logs', 'rank-0.log');
  const deadline = Date.now() + 120_000;
  while (Date.now() < deadline && !(existsSync(log) && /# unfrozen, differential rates/.test(readFileSync(log, 'utf8')))) await new Promise((r) => setTimeout(r, 100));
  assert.ok(existsSync(join(part, 'checkpoint.pth')), 'a checkpoint was written before the kill');
  process.kill(-child.pid!, 'SIGKILL');
  await new Promise((r) => child.once('exit', r));
  assert.ok(!existsSync(join(part, 'model.pth')), 'killed before the end');
  const resumed = spawnSync(process.execPath, [...args(part), '--resume'], { encoding: 'utf8', env, timeout: 300_000 });
  assert.equal(resumed.status, 0, resumed.stderr);
  assert.match(resumed.stdout, /resuming from .*checkpoint\.pth/);
  assert.match(readFileSync(join(part, 'logs', 'rank-1.log'), 'utf8'), /resuming from/);
  const a = await loadStateDictFile(join(tmp, 'full', 'model.pth'));
  const b = await loadStateDictFile(join(part, 'model.pth'));
  let worst = 0;
  for (const [k, t] of a) {
    const x = t.toArray();
    const y = b.get(k)!.toArray();
    for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i]! - y[i]!));
  }
  assert.ok(worst <= 1e-6, `largest difference ${worst}`);
});
