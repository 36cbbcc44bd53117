// bench/parity: from-scratch training parity. resnet18 from one shared initial
// state dict, trained on the same Fashion-MNIST subset, in the same batch order,
// with the same SGDR schedule (SGD momentum 0.9), in fastvision and in PyTorch;
// the test accuracies must end within 1 point.
// Last line: `RESULT parity_accuracy_diff_points <|fastvision - PyTorch| × 100>`.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { F, getNumThreads, loadFashionMnist, manualSeed, noGrad, optim, resnet18, savePth, seededPermutation, sgdrSchedule, tensor, tidy, type RawImageSet, type Tensor } from '../src/index.js';
import { arg, PYTHON, repoRoot, runPeer } from './common.js';

const TRAIN = Number(arg('train', '6000'));
const TEST = Number(arg('test', '1000'));
const BS = 64;
const LR = 0.05;
const WD = 5e-4;
const CYCLES = Number(arg('cycles', '5'));

/** Images normalized as the Python side does: 28×28 padded to 32×32, grey repeated in 3 channels. */
function asTensor(set: RawImageSet): { x: Tensor; y: Tensor } {
  const n = set.count;
  const data = new Float32Array(n * 3 * 32 * 32);
  const pad = (0 - 0.286) / 0.353;
  data.fill(pad);
  for (let i = 0; i < n; i++) {
    for (let r = 0; r < 28; r++) {
      for (let c = 0; c < 28; c++) {
        const v = (set.images[i * 784 + r * 28 + c]! / 255 - 0.286) / 0.353;
        for (let ch = 0; ch < 3; ch++) data[((i * 3 + ch) * 32 + r + 2) * 32 + c + 2] = v;
      }
    }
  }
  return { x: tensor(data, { shape: [n, 3, 32, 32] }), y: tensor(BigInt64Array.from(set.labels, (l) => BigInt(l))) };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'fastvision-parity-'));
  try {
    manualSeed(0);
    const model = resnet18({ numClasses: 10 });
    const init = join(dir, 'init.pth');
    await savePth(init, model.stateDict());
    const perEpoch = Math.floor(TRAIN / BS);
    const sched = sgdrSchedule(CYCLES, perEpoch, 1, 1);
    const orders = Array.from({ length: sched.epochs }, (_, e) => seededPermutation(TRAIN, 1000 + e));
    const plan = { init, train: TRAIN, test: TEST, bs: BS, lr: LR, wd: WD, multipliers: sched.multipliers, orders, threads: getNumThreads() };
    const planFile = join(dir, 'plan.json');
    await writeFile(planFile, JSON.stringify(plan));

    const trn = asTensor(await loadFashionMnist('train', { limit: TRAIN }));
    const tst = asTensor(await loadFashionMnist('test', { limit: TEST }));
    const opt = new optim.SGD(model.parameters(), { lr: LR, momentum: 0.9, weightDecay: WD });
    const t0 = performance.now();
    let it = 0;
    for (const order of orders) {
      model.train();
      for (let b = 0; b + BS <= order.length; b += BS) {
        for (const g of opt.paramGroups) g.lr = LR * sched.multipliers[it]!;
        opt.zeroGrad();
        const loss = tidy(() => {
          const ix = tensor(BigInt64Array.from(order.slice(b, b + BS), (i) => BigInt(i)));
          return F.crossEntropy(model.forward(trn.x.indexSelect(0, ix)), trn.y.indexSelect(0, ix));
        });
        loss.backward();
        loss.dispose();
        opt.step();
        it++;
      }
    }
    const fvSeconds = (performance.now() - t0) / 1000;
    model.eval();
    let correct = 0;
    noGrad(() => {
      for (let i = 0; i < TEST; i += 250)
        correct += tidy(() =>
          model
            .forward(tst.x.narrow(0, i, 250))
            .argmax(1)
            .eq(tst.y.narrow(0, i, 250))
            .sum()
            .item(),
        );
    });
    const fvAcc = correct / TEST;
    const t1 = performance.now();
    const py = runPeer(PYTHON, [join(repoRoot, 'bench', 'parity_pytorch.py'), planFile], 3600);
    const pySeconds = (performance.now() - t1) / 1000;
    if (py.error) throw new Error(String(py.error));
    const pyAcc = py.accuracy as number;
    console.log(
      `bench/parity: resnet18 from one initial state dict, Fashion-MNIST ${TRAIN} train / ${TEST} test (32×32), batch ${BS}, ${CYCLES} SGDR cycles of 1 epoch (${it} iterations), SGD momentum 0.9, lr ${LR}, wd ${WD}`,
    );
    console.log(`fastvision accuracy ${fvAcc.toFixed(4)} (${fvSeconds.toFixed(0)} s), PyTorch accuracy ${pyAcc.toFixed(4)} (${pySeconds.toFixed(0)} s, process included), ${py.iterations} iterations`);
    console.log(`RESULT parity_accuracy_diff_points ${(Math.abs(fvAcc - pyAcc) * 100).toFixed(2)}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
