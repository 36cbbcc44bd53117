// Which cut of nsfwjs' MobileNetV2 transfers best to cats vs dogs? For each
// candidate cut, a linear probe (logistic regression on mean+max pooled features)
// is scored by 5-fold cross-validation over all 370 pets-sample/dogscats photos
// (74 validation photos alone are too few: one photo is 1.4 points), under two
// probe set-ups: raw features with plain Adam, and standardized features with
// weight decay. Center crop 224, input in [0, 1] as nsfwjs feeds it.
// Run: npm run bench:probe
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { cat, F, manualSeed, mobilenet_v2_nsfwjs, noGrad, nn, optim, tensor, tidy, type Tensor } from '../src/index.js';
import { arg, photoDataArg, table } from './common.js';

const ROOT = photoDataArg('bench/probe');
const CUTS = arg('cuts', 'block_6_project_BN,block_10_project_BN,block_13_project_BN,block_16_project_BN,Conv_1,Conv_1_bn,out_relu').split(',');

interface ProbeSetup {
  name: string;
  lr: number;
  steps: number;
  wd: number;
  standardize: boolean;
}
const SETUPS: ProbeSetup[] = [
  { name: 'raw features, Adam 1e-3 ×1000', lr: 1e-3, steps: 1000, wd: 0, standardize: false },
  { name: 'standardized, Adam 1e-2 ×200, wd 1e-2', lr: 1e-2, steps: 200, wd: 1e-2, standardize: true },
];

async function loadAll(): Promise<{ x: Tensor; y: Tensor }> {
  const labels: bigint[] = [];
  const files: string[] = [];
  for (const split of ['train', 'valid']) {
    for (const [i, cls] of ['cats', 'dogs'].entries()) {
      for (const f of readdirSync(join(ROOT, split, cls)).sort()) {
        files.push(join(ROOT, split, cls, f));
        labels.push(BigInt(i));
      }
    }
  }
  const hw = 224 * 224;
  const out = new Float32Array(files.length * 3 * hw);
  for (const [i, f] of files.entries()) {
    const raw = await sharp(f).rotate().resize(224, 224, { fit: 'cover' }).removeAlpha().raw().toBuffer();
    for (let p = 0; p < hw; p++) for (let c = 0; c < 3; c++) out[i * 3 * hw + c * hw + p] = raw[p * 3 + c]! / 255;
  }
  return { x: tensor(out, { shape: [files.length, 3, 224, 224] }), y: tensor(BigInt64Array.from(labels)) };
}

function features(body: nn.Module, x: Tensor): Tensor {
  return noGrad(() =>
    tidy(() => {
      const parts: Tensor[] = [];
      for (let i = 0; i < x.shape[0]!; i += 32) {
        const f = body.forward(x.narrow(0, i, Math.min(32, x.shape[0]! - i)));
        parts.push(cat([f.mean([2, 3]), f.flatten(2).maxDim(2).values], 1));
      }
      return cat(parts, 0);
    }),
  );
}

function probe(a0: Tensor, ya: Tensor, b0: Tensor, yb: Tensor, s: ProbeSetup): number {
  manualSeed(0);
  return tidy(() => {
    let a = a0;
    let b = b0;
    if (s.standardize) {
      const mean = a.mean(0, true);
      const std = a.std(0, { keepdim: true }).add(1e-6);
      a = a.sub(mean).div(std);
      b = b.sub(mean).div(std);
    }
    const lin = new nn.Linear(a.shape[1]!, 2);
    const opt = new optim.Adam(lin.parameters(), { lr: s.lr, weightDecay: s.wd });
    for (let i = 0; i < s.steps; i++) {
      opt.zeroGrad();
      tidy(() => F.crossEntropy(lin.forward(a), ya).backward());
      opt.step();
    }
    const correct = noGrad(() => lin.forward(b).argmax(1).eq(yb).sum().item());
    lin.dispose();
    opt.dispose();
    return correct;
  });
}

function crossValidate(x: Tensor, y: Tensor, s: ProbeSetup, folds = 5): number {
  const n = y.shape[0]!;
  const perm = Array.from({ length: n }, (_, i) => i);
  let seed = 7;
  for (let i = n - 1; i > 0; i--) {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    const j = seed % (i + 1);
    [perm[i], perm[j]] = [perm[j]!, perm[i]!];
  }
  let correct = 0;
  for (let k = 0; k < folds; k++) {
    correct += tidy(() => {
      const idx = (a: number[]): Tensor => tensor(BigInt64Array.from(a, (v) => BigInt(v)));
      const te = idx(perm.filter((_, i) => i % folds === k));
      const tr = idx(perm.filter((_, i) => i % folds !== k));
      return probe(x.indexSelect(0, tr), y.indexSelect(0, tr), x.indexSelect(0, te), y.indexSelect(0, te), s);
    });
  }
  return correct / n;
}

const { x, y } = await loadAll();
const model = mobilenet_v2_nsfwjs().eval();
const rows: string[][] = [];
for (const cut of CUTS) {
  const f = features(model.cut(cut), x);
  const accs = SETUPS.map((s) => crossValidate(f, y, s));
  rows.push([cut, String(f.shape[1]! / 2), ...accs.map((a) => a.toFixed(3))]);
  console.log(rows[rows.length - 1]!.join('  '));
  f.dispose();
}
console.log('');
console.log(`nsfwjs MobileNetV2, linear probe, 5-fold cross-validation over ${y.shape[0]} photos (cats vs dogs)`);
console.log(table(['cut (output of)', 'channels', ...SETUPS.map((s) => s.name)], rows));
const best = rows.reduce((a, b) => (Number(b[2]) + Number(b[3]) > Number(a[2]) + Number(a[3]) ? b : a));
console.log(`RESULT nsfwjs_best_cut ${best[0]}`);
