// The command line never loses a good model or a user's time: outputs are checked
// and locked before training, a diverged run saves nothing broken, a model file
// describes itself (a torn model.pth/model.json pair still loads), Ctrl-C leaves
// no temporary file or lock, and an interrupted run resumes to the same result.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { loadStateDictFile } from '../src/index.js';
import { readSavedModel } from '../src/learn/saved-model.js';
import { photos, repoRoot } from './helpers.js';

const bin = join(repoRoot, 'dist', 'src', 'cli', 'bin.js');
let tmp = '';
let data = '';
const SMALL = ['--recipe', 'lesson', '--size', '32', '--bs', '4', '--cycles', '1', '--unfreeze-cycles', '1', '--tta-aug', '1', '--workers', '1'];

function env(): NodeJS.ProcessEnv {
  return { ...process.env, FASTVISION_HOME: join(tmp, 'home'), FASTVISION_QUIET: '1' };
}

function cli(args: string[], timeout = 300_000): { code: number; stdout: string; stderr: string; ms: number } {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: tmp, encoding: 'utf8', env: env(), timeout });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, ms: performance.now() - t0 };
}

function ok(r: { code: number; stdout: string; stderr: string }, what: string): string {
  assert.equal(r.code, 0, `${what} failed (${r.code}):\n${r.stderr}\n${r.stdout}`);
  return r.stdout;
}

/** Lists a folder's entries, recursively, as relative paths. */
function tree(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true }).map((e) => join(e.parentPath ?? (e as unknown as { path: string }).path, e.name).slice(dir.length + 1));
}

async function sameWeights(a: string, b: string): Promise<number> {
  const x = await loadStateDictFile(a);
  const y = await loadStateDictFile(b);
  assert.deepEqual([...x.keys()], [...y.keys()]);
  let worst = 0;
  for (const [k, t] of x) {
    const u = t.toArray();
    const v = y.get(k)!.toArray();
    for (let i = 0; i < u.length; i++) worst = Math.max(worst, Math.abs(u[i]! - v[i]!));
  }
  return worst;
}

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'fastvision-cli-safety-'));
  data = join(tmp, 'dogscats');
  cpSync(join(photos, 'dogscats'), data, { recursive: true });
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

test('outputs are checked before training: an impossible --out or --json fails at once, naming it', () => {
  const proc = cli(['train', data, ...SMALL, '--out', '/proc/fastvision-x'], 30_000);
  assert.equal(proc.code, 2, proc.stderr);
  assert.match(proc.stderr.trim(), /^fastvision train: --out \/proc\/fastvision-x: .*(ENOENT|EACCES|EPERM)/);
  assert.ok(proc.ms < 20_000, `answered in ${proc.ms.toFixed(0)} ms (Node's recursive mkdir spins forever there)`);
  const json = cli(['train', data, ...SMALL, '--out', join(tmp, 'o1'), '--json', '/proc/fastvision-x/run.json'], 30_000);
  assert.equal(json.code, 2, json.stderr);
  assert.match(json.stderr.trim(), /^fastvision train: --json \/proc\/fastvision-x\/run\.json: cannot be written/);
  assert.doesNotMatch(json.stdout, /learning-rate finder/, 'nothing was trained');
});

test('a second run into the same --out is refused while the first is alive; a stale lock is taken over', async () => {
  const out = join(tmp, 'locked');
  mkdirSync(out);
  writeFileSync(join(out, '.fastvision.lock'), `${process.pid}\n`);
  const r = cli(['fit', data, '--precompute', '--cycles', '1', '--size', '32', '--bs', '4', '--out', out]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, new RegExp(`in use by another fastvision run \\(pid ${process.pid}\\)`));
  // A lock left by a process that is gone.
  const dead = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' }).stdout.trim();
  writeFileSync(join(out, '.fastvision.lock'), `${dead}\n`);
  ok(cli(['fit', data, '--precompute', '--cycles', '1', '--size', '32', '--bs', '4', '--out', out]), 'fit over a stale lock');
  const { info } = await readSavedModel(out);
  assert.deepEqual([info.classes, info.size], [['cats', 'dogs'], 32], 'the run over a stale lock wrote its model');
  assert.ok(!existsSync(join(out, '.fastvision.lock')), 'the lock is released');
});

test('fit into a folder that does not exist yet keeps its model; a diverging fit never replaces a good one', async () => {
  const out = join(tmp, 'new', 'nested', 'out');
  ok(cli(['fit', data, '--precompute', '--cycles', '1', '--size', '32', '--bs', '4', '--out', out]), 'fit');
  const good = readFileSync(join(out, 'model.pth'));
  const r = cli(['fit', data, '--precompute', '--lr', '100', '--cycles', '2', '--size', '32', '--bs', '4', '--out', out]);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr.trim(), /^fastvision fit: training diverged in epoch 0 .*no model was saved \(the previous model is kept\); try a lower --lr$/);
  assert.deepEqual(readFileSync(join(out, 'model.pth')), good, 'the good model is untouched');
  assert.deepEqual(
    tree(out).filter((f) => /\.tmp$|checkpoint|lock/.test(f)),
    [],
  );
});

test('train at an absurd rate stops with exit 1 and saves nothing', () => {
  const out = join(tmp, 'absurd');
  const r = cli(['train', data, ...SMALL, '--lr', '10', '--out', out]);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stderr.trim(), /diverged .* no model was saved; try a lower --lr/);
  assert.ok(!existsSync(join(out, 'model.pth')));
});

test('a model file describes itself: predict works from the .pth alone, or beside a stale model.json', () => {
  const out = join(tmp, 'described');
  ok(cli(['fit', data, '--precompute', '--cycles', '1', '--size', '32', '--bs', '4', '--out', out]), 'fit');
  const photo = join(data, 'test', readdirSync(join(data, 'test'))[0]!);
  const expected = JSON.parse(ok(cli(['predict', out, photo, '--json']), 'predict')) as { top: { label: string; p: number }[] }[];
  // A kill between the two writes leaves the new .pth with an old (here: wrong) description beside it.
  writeFileSync(join(out, 'model.json'), JSON.stringify({ format: 'fastvision-model', version: 1, arch: 'resnet18', classes: ['x', 'y', 'z'], size: 64, xtraFc: [512], ps: [0.25, 0.5] }));
  assert.deepEqual(JSON.parse(ok(cli(['predict', join(out, 'model.pth'), photo, '--json']), 'predict with a stale json')), expected);
  rmSync(join(out, 'model.json'));
  assert.deepEqual(JSON.parse(ok(cli(['predict', join(out, 'model.pth'), photo, '--json']), 'predict without json')), expected);
});

test('Ctrl-C during training leaves no temporary file and no lock, and exits 130', async () => {
  const out = join(tmp, 'interrupted');
  const child = spawn(process.execPath, [bin, 'train', data, ...SMALL, '--size', '48', '--bs', '2', '--unfreeze-cycles', '3', '--out', out], {
    cwd: tmp,
    env: env(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const deadline = Date.now() + 120_000;
  while (!existsSync(join(out, 'checkpoint.pth')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 150));
  child.kill('SIGINT');
  const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  assert.equal(code, 130, stderr);
  assert.match(stderr, /interrupted \(SIGINT\)/);
  assert.deepEqual(
    tree(out).filter((f) => /\.tmp$|\.lock$|\.probe$/.test(f)),
    [],
    'no temporary file, no lock',
  );
  assert.ok(existsSync(join(out, 'checkpoint.pth')), 'the last checkpoint is intact');
});

test('a run killed mid-epoch resumes (--resume) to the weights of an uninterrupted run', async () => {
  const args = ['train', data, '--recipe', 'lesson', '--size', '48', '--bs', '2', '--cycles', '1', '--unfreeze-cycles', '2', '--tta-aug', '1', '--workers', '1', '--seed', '3'];
  ok(cli([...args, '--out', join(tmp, 'whole'), '--json', join(tmp, 'whole.json')]), 'the uninterrupted run');
  const out = join(tmp, 'killed');
  const child = spawn(process.execPath, [bin, ...args, '--out', out], { cwd: tmp, env: env(), stdio: 'ignore' });
  const deadline = Date.now() + 120_000;
  while (!existsSync(join(out, 'checkpoint.pth')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  // A little into the next epoch (each takes about half a second here).
  await new Promise((r) => setTimeout(r, 250));
  child.kill('SIGKILL');
  const signal = await new Promise<string | null>((r) => child.on('exit', (_, s) => r(s)));
  assert.equal(signal, 'SIGKILL');
  assert.ok(!existsSync(join(out, 'model.pth')), 'killed before the end');
  const resumed = ok(cli([...args, '--out', out, '--resume', '--json', join(tmp, 'resumed.json')]), 'resume');
  assert.match(resumed, /resuming from .*checkpoint\.pth/);
  assert.equal(await sameWeights(join(tmp, 'whole', 'model.pth'), join(out, 'model.pth')), 0, 'the same weights, bit for bit');
  type Run = { stages: { name: string; history: unknown[] }[]; tta: unknown; resumedFrom: unknown };
  const a = JSON.parse(readFileSync(join(tmp, 'whole.json'), 'utf8')) as Run;
  const b = JSON.parse(readFileSync(join(tmp, 'resumed.json'), 'utf8')) as Run;
  assert.deepEqual(
    b.stages.map((s) => [s.name, s.history]),
    a.stages.map((s) => [s.name, s.history]),
  );
  assert.deepEqual(b.tta, a.tta);
  assert.ok(b.resumedFrom !== null && a.resumedFrom === null);
  assert.ok(!existsSync(join(out, 'checkpoint.pth')), 'a finished run removes its checkpoint');
  // Nothing to resume now, and other settings are refused.
  assert.match(cli([...args, '--out', out, '--resume']).stderr, /--resume: no checkpoint in/);
});

test('--resume refuses a checkpoint made with other settings', async () => {
  const out = join(tmp, 'other-settings');
  const args = (cycles: string): string[] => ['fit', data, '--size', '32', '--bs', '2', '--cycles', cycles, '--out', out, '--workers', '1'];
  const child = spawn(process.execPath, [bin, ...args('3')], { cwd: tmp, env: env(), stdio: 'ignore' });
  while (!existsSync(join(out, 'checkpoint.pth'))) await new Promise((r) => setTimeout(r, 10));
  child.kill('SIGKILL');
  await new Promise((r) => child.on('exit', r));
  const r = cli([...args('4'), '--resume']);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /--resume: the checkpoint in .* was made by a run with other data or settings/);
  assert.match(ok(cli([...args('3'), '--resume']), 'the same settings resume'), /resuming from/);
  assert.ok(existsSync(join(out, 'model.pth')));
});

test('one-class data, a batch that cannot fit, and data errors are refused at once with exit 2', () => {
  const one = join(tmp, 'one-class');
  cpSync(join(photos, 'dogscats'), one, { recursive: true });
  rmSync(join(one, 'train', 'dogs'), { recursive: true });
  rmSync(join(one, 'valid', 'dogs'), { recursive: true });
  const r = cli(['train', one, ...SMALL, '--out', join(tmp, 'o-one')]);
  assert.equal(r.code, 2);
  assert.match(r.stderr.trim(), /only one class \('cats'\); a classifier needs at least two$/);
  const big = cli(['train', data, '--size', '512', '--bs', '4096', '--out', join(tmp, 'o-big')]);
  assert.equal(big.code, 2, big.stderr);
  assert.match(big.stderr.trim(), /batch size 4096 at 512 px needs about [\d.]+ GiB to train mobilenet_v2_nsfwjs unfrozen, and [\d.]+ GiB is available: try --bs \d+$/);
  assert.doesNotMatch(big.stdout, /learning-rate finder/, 'refused before the finder');
  const stray = join(tmp, 'stray');
  cpSync(join(photos, 'dogscats'), stray, { recursive: true });
  cpSync(join(stray, 'valid', 'dogs'), join(stray, 'valid', 'birds'), { recursive: true });
  const e = cli(['sizes', stray, '--out', join(tmp, 'o-stray')]);
  assert.equal(e.code, 2, 'data errors exit 2, as the README says');
  assert.match(e.stderr, /label 'birds' is not among the training labels/);
});

test('train and sizes skip unreadable images, naming each; predict takes ./photo.jpg', () => {
  const bad = join(tmp, 'bad');
  cpSync(join(photos, 'dogscats'), bad, { recursive: true });
  writeFileSync(join(bad, 'train', 'cats', 'zero.jpg'), '');
  writeFileSync(join(bad, 'train', 'dogs', 'text.jpg'), 'not a photo');
  const jpg = readFileSync(join(bad, 'valid', 'dogs', readdirSync(join(bad, 'valid', 'dogs'))[0]!));
  writeFileSync(join(bad, 'valid', 'cats', 'cut.jpg'), jpg.subarray(0, jpg.length >> 1));
  const sizes = cli(['sizes', bad, '--out', join(tmp, 'o-sizes')]);
  assert.equal(sizes.code, 0, sizes.stderr);
  assert.match(sizes.stderr, /skipping unreadable image .*zero\.jpg/);
  assert.match(sizes.stderr, /skipping unreadable image .*text\.jpg/);
  const out = join(tmp, 'o-bad');
  const train = cli(['train', bad, ...SMALL, '--out', out]);
  assert.equal(train.code, 0, train.stderr);
  assert.match(train.stderr, /cut\.jpg/);
  const predicted = ok(cli(['predict', out, './dogscats/test/' + readdirSync(join(data, 'test'))[0]!]), 'predict ./photo.jpg');
  assert.match(predicted, /\t(cats|dogs) \d\.\d{4}/);
});

test('lr-find runs at least 100 mini-batches; predict --ensemble averages the cycle snapshots', () => {
  const lr = ok(cli(['lr-find', data, '--size', '32', '--bs', '4', '--out', join(tmp, 'o-lr')]), 'lr-find');
  const n = Number(/(\d+) iterations( \(stopped early[^)]*\))?; suggested rate/.exec(lr)![1]);
  assert.ok(n >= 100 || /stopped early/.test(lr), `${n} iterations: ${lr}`);
  const out = join(tmp, 'o-ens');
  ok(cli(['fit', data, '--precompute', '--cycles', '2', '--cycle-len', '1', '--save-cycles', '--size', '32', '--bs', '4', '--out', out]), 'fit --save-cycles');
  const photo = join(data, 'test', readdirSync(join(data, 'test'))[0]!);
  type Row = { top: { label: string; p: number }[] }[];
  const p = (model: string, ...extra: string[]): Map<string, number> =>
    new Map((JSON.parse(ok(cli(['predict', model, photo, '--json', '--top', '2', ...extra]), `predict ${model}`)) as Row)[0]!.top.map((t) => [t.label, t.p]));
  const a = p(join(out, 'model_cyc_0.pth'));
  const b = p(join(out, 'model_cyc_1.pth'));
  const e = p(out, '--ensemble');
  for (const label of ['cats', 'dogs']) assert.ok(Math.abs(e.get(label)! - (a.get(label)! + b.get(label)!) / 2) < 2e-4, `${label}: ${e.get(label)} is the mean of ${a.get(label)} and ${b.get(label)}`);
  assert.match(cli(['predict', join(tmp, 'o-lr'), photo, '--ensemble']).stderr, /no (model weights|cycle snapshots)/);
});

test('weights that do not fit the description: the message names the keys', async () => {
  const out = join(tmp, 'o-mismatch');
  ok(cli(['fit', data, '--precompute', '--cycles', '1', '--size', '32', '--bs', '4', '--out', out]), 'fit');
  // An older model file without its description inside, beside a description of another head.
  const { savePth } = await import('../src/index.js');
  const state = await loadStateDictFile(join(out, 'model.pth'));
  await savePth(join(out, 'model.pth'), state);
  writeFileSync(join(out, 'model.json'), JSON.stringify({ format: 'fastvision-model', version: 1, arch: 'mobilenet_v2_nsfwjs', classes: ['a', 'b', 'c'], size: 32, xtraFc: [512], ps: [0.25, 0.5] }));
  const r = cli(['predict', out, join(data, 'test')]);
  assert.equal(r.code, 2);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.match(r.stderr, /cannot load into mobilenet_v2_nsfwjs for 3 classes \(.*size mismatch for head\.6\.weight: the checkpoint has \[2, 512\], the model \[3, 512\]/);
});
