// bench/learn: one epoch of full-model training (unfrozen resnet18, 224, batch
// 32, side-on augmentation, then validation) on pets-sample/dogscats, fastvision's
// ConvLearner.fit vs the same recipe written in PyTorch + torchvision, each as its
// own process in alternating rounds, with 2 threads and 2 loader workers each;
// PyTorch NCHW (its default), fastvision in its default channels-last and in NCHW.
// Also: the speed-up that precomputed activations give to head training.
// Last line: `RESULT learn_epoch_time_ratio_vs_pytorch <fastvision / PyTorch>`.
// With --torch2: inside the Debian 13 root, `RESULT learn_epoch_time_ratio_vs_pytorch2`.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getNumThreads } from '../src/index.js';
import { arg, median, photoDataArg, PYTHON, repoRoot, runPeer, table, torch2Suffix } from './common.js';

// --torch2: the whole bench inside the Debian 13 root, against libtorch and PyTorch 2.6.
const SUFFIX = torch2Suffix('bench:learn');

const DATA = photoDataArg('bench/learn');
const ROUNDS = Number(arg('rounds', '2'));

async function main(): Promise<void> {
  const home = await mkdtemp(join(tmpdir(), 'fastvision-bench-learn-'));
  const env = { ...process.env, FASTVISION_HOME: home };
  try {
    console.log(`bench/learn: one epoch, unfrozen resnet18 + fast.ai head, 224, batch 32, side-on augmentation, ${DATA}; ${ROUNDS} alternating rounds`);
    const fv: number[] = [];
    const fvNchw: number[] = [];
    const py: number[] = [];
    let torchVersion = '';
    for (let r = 0; r < ROUNDS; r++) {
      for (const p of r % 2 === 0 ? ['fastvision', 'pytorch'] : ['pytorch', 'fastvision']) {
        if (p === 'fastvision') {
          // The learner's default layout (channels-last), then NCHW for comparison.
          for (const [format, times] of [
            ['channelsLast', fv],
            ['contiguous', fvNchw],
          ] as const) {
            const res = runPeer('node', [join(repoRoot, 'dist', 'bench', 'learn-fastvision.js'), '--data', DATA, '--memory-format', format], 1800, env);
            if (res.error) console.log(`fastvision (${format}) failed: ${String(res.error)}`);
            else times.push(res.epoch as number);
          }
        } else {
          const res = runPeer(PYTHON, [join(repoRoot, 'bench', 'learn_pytorch.py'), '--data', DATA, '--threads', `${getNumThreads()}`], 1800);
          if (res.error) console.log(`PyTorch failed: ${String(res.error)}`);
          else {
            py.push((res.train as number) + (res.valid as number));
            torchVersion = String(res.torch);
          }
        }
      }
    }
    const head = runPeer('node', [join(repoRoot, 'dist', 'bench', 'learn-fastvision.js'), '--data', DATA, '--what', 'head'], 1800, env);
    const f = median(fv);
    const fn = median(fvNchw);
    const t = median(py);
    console.log('');
    console.log(
      table(
        ['program', 'epoch (train + validation), median', 'vs PyTorch'],
        [
          ['fastvision ConvLearner.fit (channels-last, the default)', `${f.toFixed(1)} s`, (f / t).toFixed(3)],
          ["fastvision ConvLearner.fit (memoryFormat: 'contiguous', NCHW)", `${fn.toFixed(1)} s`, (fn / t).toFixed(3)],
          [`PyTorch ${torchVersion} + torchvision, by hand`, `${t.toFixed(1)} s`, '1.000'],
        ],
      ),
    );
    const hp = head.head_precomputed as number;
    const hb = head.head_through_body as number;
    console.log('');
    console.log(
      `head training, one epoch: on precomputed activations ${hp.toFixed(2)} s, through the frozen body with augmentation ${hb.toFixed(1)} s ` +
        `(${(hb / hp).toFixed(0)}× faster; computing the activations once took ${(head.precompute as number).toFixed(1)} s)`,
    );
    console.log('');
    console.log(`RESULT learn_epoch_time_ratio_vs_pytorch${SUFFIX} ${(f / t).toFixed(3)}`);
  } finally {
    await rm(home, { recursive: true, force: true });
  }
}

await main();
