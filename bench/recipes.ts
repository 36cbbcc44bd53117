// bench/recipes: which `train` recipe gives the better accuracy per minute on
// this machine — the lesson's (SGD, head on precomputed activations, SGDR,
// unfreeze with differential rates) or fastai v2's fine-tune (AdamW, one-cycle,
// head then everything) — on pets-sample's dogscats (2 classes, folder layout)
// and breeds (37 classes, CSV layout), default settings otherwise, `--runs`
// seeds each (alternating the order), each run a fresh process with an empty cache.
// Last line: `RESULT recipe_accuracy_per_minute_ratio_fine_tune_vs_lesson <ratio>`
// (the geometric mean over the two datasets of fine-tune's ÷ the lesson's).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { arg, photoDataArg, repoRoot, table } from './common.js';

const RUNS = Number(arg('runs', '3'));
const dogscats = photoDataArg('bench/recipes');
const breeds = join(dirname(dogscats), 'breeds');
const DATASETS: [string, string[]][] = [
  ['dogscats', [dogscats]],
  ['breeds', [breeds, '--csv', 'labels.csv', '--suffix', '.jpg']],
];
const RECIPES = ['lesson', 'fine-tune'] as const;

interface Run {
  accuracy: number;
  loss: number;
  minutes: number;
}

function trainOnce(data: string[], recipe: string, seed: number): Run {
  const home = mkdtempSync(join(tmpdir(), 'fastvision-bench-recipes-'));
  try {
    const json = join(home, 'run.json');
    const r = spawnSync(process.execPath, [join(repoRoot, 'dist', 'src', 'cli', 'bin.js'), 'train', ...data, '--recipe', recipe, '--seed', String(seed), '--out', join(home, 'out'), '--json', json], {
      env: { ...process.env, FASTVISION_HOME: join(home, 'home'), FASTVISION_QUIET: '1' },
      encoding: 'utf8',
      timeout: 3_600_000,
    });
    if (r.status !== 0) throw new Error(`train --recipe ${recipe} failed: ${r.stderr.slice(-500)}`);
    const s = JSON.parse(readFileSync(json, 'utf8')) as { tta: { accuracy: number; loss: number }; seconds: number };
    return { accuracy: s.tta.accuracy, loss: s.tta.loss, minutes: s.seconds / 60 };
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

function main(): void {
  console.log(`bench/recipes: train --recipe lesson vs fine-tune, default settings, ${RUNS} seeds each, on ${DATASETS.map(([n]) => n).join(' and ')}`);
  const rows: string[][] = [];
  const ratios: number[] = [];
  for (const [name, data] of DATASETS) {
    const runs: Record<string, Run[]> = { lesson: [], 'fine-tune': [] };
    for (let seed = 0; seed < RUNS; seed++) {
      for (const recipe of seed % 2 === 0 ? RECIPES : [...RECIPES].reverse()) {
        const r = trainOnce(data, recipe, seed);
        runs[recipe]!.push(r);
        console.log(`${name} ${recipe} seed ${seed}: TTA accuracy ${r.accuracy.toFixed(4)}, loss ${r.loss.toFixed(4)}, ${r.minutes.toFixed(2)} min`);
      }
    }
    const perMinute: Record<string, number> = {};
    for (const recipe of RECIPES) {
      const rs = runs[recipe]!;
      perMinute[recipe] = mean(rs.map((r) => r.accuracy)) / mean(rs.map((r) => r.minutes));
      rows.push([
        name,
        recipe,
        mean(rs.map((r) => r.accuracy)).toFixed(4),
        rs.map((r) => r.accuracy.toFixed(3)).join(' '),
        mean(rs.map((r) => r.loss)).toFixed(4),
        mean(rs.map((r) => r.minutes)).toFixed(2),
        perMinute[recipe].toFixed(4),
      ]);
    }
    ratios.push(perMinute['fine-tune']! / perMinute.lesson!);
  }
  console.log(table(['data', 'recipe', 'TTA accuracy (mean)', 'per run', 'TTA loss', 'minutes', 'accuracy / minute'], rows));
  const ratio = ratios.reduce((a, b) => a * b, 1) ** (1 / ratios.length);
  console.log(`fine-tune's accuracy per minute ÷ the lesson's: ${ratios.map((r, i) => `${DATASETS[i]![0]} ${r.toFixed(3)}`).join(', ')}`);
  console.log(`RESULT recipe_accuracy_per_minute_ratio_fine_tune_vs_lesson ${ratio.toFixed(3)}`);
}

main();
