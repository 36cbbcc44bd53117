// `fastvision studio` as a process among others: a second studio on the same output
// folder is refused (each would write cleaning.csv over the other's), a studio killed
// while it trains takes its training child with it (the checkpoint stays and the folder
// is free again), and files of the output folder or the data that it cannot use are
// clear errors rather than a crash or a large read.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { disposeCheckpoint, loadCheckpoint } from '../src/learn/checkpoint.js';
import { checkpointFile } from '../src/learn/session.js';
import { photos, repoRoot } from './helpers.js';

const bin = join(repoRoot, 'dist', 'src', 'cli', 'bin.js');
let tmp = '';
let data = '';
const started: ChildProcess[] = [];

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'fastvision-studio-process-'));
  data = join(tmp, 'data');
  cpSync(join(photos, 'dogscats'), data, { recursive: true });
});

after(async () => {
  for (const p of started) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
  await rm(tmp, { recursive: true, force: true });
});

/** A studio started as the CLI starts it, its address once printed (or its exit code and error when it stops first). */
function studio(out: string): Promise<{ proc: ChildProcess; url?: string; code?: number | null; stderr: string }> {
  const proc = spawn(process.execPath, [bin, 'studio', data, '--out', out, '--port', '0'], { env: { ...process.env, FASTVISION_HOME: join(tmp, 'home') } });
  started.push(proc);
  let stdout = '';
  let stderr = '';
  proc.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the studio neither started nor stopped in 60 s: ${stderr}`)), 60_000);
    proc.stdout.on('data', (b: Buffer) => {
      stdout += b.toString();
      const url = /open (http:\S+)/.exec(stdout)?.[1];
      if (url !== undefined) {
        clearTimeout(timer);
        resolve({ proc, url, stderr });
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ proc, code, stderr });
    });
  });
}

/** A call of the studio's API with its token. */
async function api(url: string, path: string, init: RequestInit = {}): Promise<Response> {
  const [base, query] = url.split('/?');
  const token = new URLSearchParams(query).get('token')!;
  return fetch(base + path, { ...init, headers: { 'x-fastvision-token': token, 'content-type': 'application/json', ...(init.headers as Record<string, string>) } });
}

/** Whether process `pid` is alive (and not a zombie). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return false;
  }
}

async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 120_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('a second studio on the same output folder is refused, naming it; a studio killed mid-run stops its training child, which keeps its checkpoint and frees the folder', async () => {
  const out = join(tmp, 'out');
  const first = await studio(out);
  assert.ok(first.url, `the first studio started: ${first.stderr}`);
  const second = await studio(out);
  assert.equal(second.code, 2, 'the second studio exits with a usage error');
  assert.match(second.stderr, new RegExp(`--out ${out}: .*in use by another fastvision studio \\(pid ${first.proc.pid}\\)`));

  const res = await api(first.url, '/api/run', { method: 'POST', body: JSON.stringify({ size: 32, bs: 4, lr: 0.001, freezeEpochs: 2, epochs: 60, device: 'cpu' }) });
  assert.equal(res.status, 202, await res.clone().text());
  let pid = 0;
  await until('a checkpoint of the run', async () => {
    const s = (await (await api(first.url!, '/api/run')).json()) as { pid: number | null; checkpoint: boolean; state: string; error: string | null };
    assert.equal(s.state, 'running', `the run ended early: ${s.error}`);
    pid = s.pid ?? 0;
    return s.pid !== null && s.checkpoint;
  });
  assert.equal(readFileSync(join(out, '.fastvision.lock'), 'utf8').trim(), String(pid), 'the training child holds the output folder');
  first.proc.kill('SIGKILL');
  await until('the training child to stop', () => !alive(pid), 60_000);
  assert.ok(!existsSync(join(out, '.fastvision.lock')), 'the child released the output folder as it stopped');
  disposeCheckpoint(await loadCheckpoint(checkpointFile(out)));

  // The killed studio's lock is stale: a new studio takes it over, and resumes the run.
  const third = await studio(out);
  assert.ok(third.url, `a studio starts over a dead one's lock: ${third.stderr}`);
  const status = (await (await api(third.url, '/api/run')).json()) as { checkpoint: boolean };
  assert.equal(status.checkpoint, true, 'the new studio offers to resume');

  // The architectures offered first are those whose weights are here: the offline backbones, and zoo files once cached.
  const here = async (): Promise<string[]> => ((await (await api(third.url!, '/api/data')).json()) as { archsHere: string[] }).archsHere;
  const before = await here();
  assert.ok(before.includes('mobilenet_v2_nsfwjs') && before.includes('inception_v3_nsfwjs'), before.join());
  assert.ok(!before.includes('resnet18'), 'resnet18 needs a download');
  mkdirSync(join(tmp, 'home', 'weights'), { recursive: true });
  writeFileSync(join(tmp, 'home', 'weights', 'resnet18-f37072fd.pth'), '');
  assert.ok((await here()).includes('resnet18'), 'resnet18 once its file is in the cache');

  // A validation.json it cannot use is an error naming it, and the server stays up.
  writeFileSync(join(out, 'validation.json'), '{"classes": ["a", "b"], "files": [');
  const broken = await api(third.url, '/api/results');
  assert.equal(broken.status, 422);
  assert.match(((await broken.json()) as { error: string }).error, /validation\.json cannot be read/);
  writeFileSync(join(out, 'validation.json'), 'null');
  assert.match(((await (await api(third.url, '/api/results')).json()) as { error: string }).error, /validation\.json is not a validation\.json that fastvision wrote/);

  // Photos are streamed from their files; a file that only looks like a photo by name is refused.
  const dog = `train/dogs/${readdirSync(join(data, 'train', 'dogs'))[0]!}`;
  const full = await api(third.url, `/api/image?root=data&file=${encodeURIComponent(dog)}`);
  assert.equal(full.status, 200);
  assert.equal(full.headers.get('content-type'), 'image/jpeg');
  assert.deepEqual(Buffer.from(await full.arrayBuffer()), readFileSync(join(data, dog)));
  writeFileSync(join(data, 'train', 'dogs', 'not-a-photo.jpg'), 'hello');
  const fake = await api(third.url, '/api/image?root=data&file=train/dogs/not-a-photo.jpg');
  assert.equal(fake.status, 415);
  assert.equal((await api(third.url, '/api/data')).status, 200, 'the server is still up');
  third.proc.kill('SIGINT');
  await until('the studio to stop', () => third.proc.exitCode !== null, 30_000);
  assert.ok(!existsSync(join(out, '.fastvision-studio.lock')), 'a studio stopped by Ctrl-C releases the folder');
});
