// One vocabulary on the command line: an option of the recipe not chosen is an error that
// names its recipe (not silently ignored), submit offers only --no-tta (TTA is its default),
// fit chooses any optimizer with --opt, and lr-find measures as fit trains.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { photos, repoRoot } from './helpers.js';

const bin = join(repoRoot, 'dist', 'src', 'cli', 'bin.js');
const tmp = mkdtempSync(join(tmpdir(), 'fastvision-vocabulary-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const data = join(photos, 'dogscats');

function cli(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: tmp, encoding: 'utf8', env: { ...process.env, FASTVISION_HOME: join(tmp, 'home') }, timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

test('an option of the other recipe is an error naming the recipe it belongs to, before any work', () => {
  for (const [argv, re] of [
    [['--cycles', '2'], /^fastvision train: --cycles belongs to --recipe lesson; the fine-tune recipe \(the default\) trains --freeze-epochs, then --epochs$/],
    [['--unfreeze-cycles', '1'], /--unfreeze-cycles belongs to --recipe lesson/],
    [['--group-div', '3'], /--group-div belongs to --recipe lesson/],
    [['--recipe', 'lesson', '--epochs', '2'], /^fastvision train: --epochs belongs to --recipe fine-tune; the lesson recipe trains --cycles, then --unfreeze-cycles$/],
    [['--recipe', 'lesson', '--freeze-epochs', '0'], /--freeze-epochs belongs to --recipe fine-tune/],
  ] as const) {
    const out = join(tmp, `out-${argv.join('')}`);
    const r = cli('train', data, ...argv, '--out', out);
    assert.equal(r.code, 2, `${argv.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr.trim(), re);
    assert.equal(r.stdout, '', 'nothing ran');
  }
});

test('submit lists --no-tta and not --tta; fit chooses the optimizer with --opt; lr-find takes --precompute as fit does', () => {
  const submit = cli('submit', '--help').stdout;
  assert.match(submit, /^ {2}--no-tta /m);
  assert.doesNotMatch(submit, /^ {2}--tta /m);
  assert.match(submit, /^ {2}--tta-aug N/m);
  assert.match(cli('fit', '--help').stdout, /^ {2}--opt NAME +the optimizer: sgd \(momentum 0\.9\), adam, or adamw/m);
  const bad = cli('fit', data, '--opt', 'nadam', '--out', join(tmp, 'fit'));
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--opt: 'nadam' is not one of sgd, adam, adamw/);
  assert.match(cli('lr-find', '--help').stdout, /^ {2}--precompute +measure on precomputed activations/m);
  const both = cli('lr-find', data, '--precompute', '--unfreeze', '--out', join(tmp, 'lr'));
  assert.equal(both.code, 2);
  assert.match(both.stderr, /--precompute and --unfreeze exclude each other/);
});

test("train's options are typed once: help shows each range and the library's default, and a value out of range stops before any work", async () => {
  const { RECIPE_DEFAULTS } = await import('../src/index.js');
  const help = cli('train', '--help').stdout;
  assert.match(help, new RegExp(`--epochs N .*\\(whole numbers 1 to 1000\\) \\(default ${RECIPE_DEFAULTS.epochs}\\)`));
  assert.match(help, new RegExp(`--tta-aug N .*\\(whole numbers 0 to 64\\) \\(default ${RECIPE_DEFAULTS.ttaAug}\\)`));
  assert.match(help, /--suggest RULE .*\(valley, slide, minimum, steep, lesson\)/);
  for (const [argv, re] of [
    [['--epochs', '0'], /^fastvision train: --epochs: 0 is out of range \(1 to 1000\)$/],
    [['--sizes', '64,4096'], /^fastvision train: --sizes: 4096 is out of range \(8 to 2048\)$/],
    [['--bs', '2.5'], /^fastvision train: --bs: '2\.5' must be a whole number$/],
    [['--suggest', 'guess'], /^fastvision train: --suggest: 'guess' is not one of valley, slide, minimum, steep, lesson$/],
  ] as const) {
    const r = cli('train', data, ...argv, '--out', join(tmp, 'typed'));
    assert.equal(r.code, 2, `${argv.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr.trim(), re);
    assert.equal(r.stdout, '', 'nothing ran');
  }
});
