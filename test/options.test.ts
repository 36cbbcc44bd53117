// Options as a careless user types them: negative numbers, hexadecimal sizes,
// names that are JavaScript's own (`__proto__`), options that do not apply, outputs
// that cannot be written, and results that should stream rather than wait.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, cpSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { looksLikeFormula, submissionCsv } from '../src/learn/submission.js';
import { photos, repoRoot, saveSeededModel } from './helpers.js';

const bin = join(repoRoot, 'dist', 'src', 'cli', 'bin.js');
let tmp = '';
let model = '';
let data = '';

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'fastvision-options-'));
  process.env.FASTVISION_HOME = join(tmp, 'home');
  model = join(tmp, 'model');
  await saveSeededModel(model, ['cats', 'dogs'], 32);
  data = join(tmp, 'dogscats');
  cpSync(join(photos, 'dogscats'), data, { recursive: true });
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function run(args: string[]): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, FASTVISION_QUIET: '1' } });
}

test('bad option values get one line naming the option: negative numbers, hexadecimal, JavaScript’s own property names, options without --csv', () => {
  const cases: [string[], RegExp][] = [
    [['train', data, '--bs', '-1'], /^fastvision train: --bs: -1 is out of range \(1 to 4096\)$/],
    [['train', data, '--lr', '-1'], /^fastvision train: --lr: -1 is out of range/],
    [['train', data, '--lr', '-.5'], /^fastvision train: --lr: -\.5 is out of range/],
    [['train', data, '--size', '0x20'], /^fastvision train: --size: '0x20' is not a number$/],
    [['train', data, '--size', '0b100000'], /^fastvision train: --size: '0b100000' is not a number$/],
    [['train', data, '--size', 'Infinity'], /^fastvision train: --size: 'Infinity' is not a number$/],
    [['train', data, '--arch', '__proto__'], /^fastvision train: --arch: unknown architecture '__proto__' \(known: resnet18,/],
    [['train', data, '--arch', 'constructor'], /^fastvision train: --arch: unknown architecture 'constructor'/],
    [['train', data, '--val-pct', '0.3'], /^fastvision train: --val-pct only applies to a labels CSV: give --csv FILE too$/],
    [['sizes', data, '--suffix', '.jpg'], /^fastvision sizes: --suffix only applies to a labels CSV/],
    [['train', data, '--weights', '__proto__', '--epochs', '1', '--out', join(tmp, 'w-out')], /^fastvision train: weights: '__proto__' is neither a zoo name \(resnet18, .*\) nor a readable file/],
  ];
  for (const [args, re] of cases) {
    const r = run(args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr.trim().split('\n').at(-1)!, re, args.join(' '));
    assert.doesNotMatch(r.stderr, /TypeError|ambiguous|at .*\.js:\d+/, args.join(' '));
  }
});

test('export --web pointing at a file is refused before model.onnx is written', () => {
  const out = join(tmp, 'export-out');
  const afile = join(tmp, 'afile');
  writeFileSync(afile, 'mine');
  const r = run(['export', model, '--out', out, '--web', afile]);
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /--web .*afile is not a folder/);
  assert.equal(existsSync(join(out, 'model.onnx')), false);
});

test('predict streams its rows as each chunk is done instead of after the last image', async () => {
  const many = join(tmp, 'many');
  mkdirSync(many);
  const src = readdirSync(join(data, 'train', 'cats')).map((f) => join(data, 'train', 'cats', f));
  for (let i = 0; i < 140; i++) copyFileSync(src[i % src.length]!, join(many, `p${String(i).padStart(3, '0')}.jpg`));
  const child = spawn(process.execPath, [bin, 'predict', model, many, '--bs', '1'], { env: { ...process.env, FASTVISION_QUIET: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  const arrivals: number[] = [];
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    arrivals.push(out.split('\n').length - 1);
  });
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((r) => child.on('exit', r));
  assert.equal(code, 0, err);
  assert.equal(out.trim().split('\n').length, 140);
  assert.ok(arrivals[0]! < 140, `rows arrived in ${arrivals.length} part(s): ${arrivals.join(', ')}`);
  assert.match(out.split('\n')[0]!, /p000\.jpg\t(cats|dogs) 0\.\d{4}\t(cats|dogs) 0\.\d{4}$/);
});

test('submissions: ids and labels are raw for Kaggle unless --spreadsheet-safe quotes what a spreadsheet would run', () => {
  const files = ['/x/=HYPERLINK("evil").jpg', '/x/plain.jpg', '/x/-12.jpg'];
  const probs = new Float32Array([0.9, 0.1, 0.2, 0.8, 0.6, 0.4]);
  const raw = submissionCsv(files, probs, ['@cats', 'dogs'], { labels: true });
  assert.equal(raw, 'id,label\n"=HYPERLINK(""evil"")",@cats\nplain,dogs\n-12,@cats\n');
  const safe = submissionCsv(files, probs, ['@cats', 'dogs'], { labels: true, spreadsheetSafe: true });
  assert.equal(safe, `id,label\n"'=HYPERLINK(""evil"")",'@cats\nplain,dogs\n'-12,'@cats\n`);
  assert.deepEqual(['=1', '+1', '-1', '@a', '\tx', 'a=1', '1-'].map(looksLikeFormula), [true, true, true, true, true, false, false]);
});
