// bench/data: the training input pipeline (decode + fast.ai side-on augmentation
// + batching at 224, batch 64) over pets-sample photos, fastvision's loader vs
// torchvision's DataLoader(num_workers=2) with PIL doing the same transforms,
// each as its own process in alternating rounds, 2 workers each.
// Last line: `RESULT data_time_ratio_vs_torchvision <fastvision / torchvision, time per image>`.
// With --torch2: inside the Debian 13 root, `RESULT data_time_ratio_vs_torchvision2`.
import { cpus } from 'node:os';
import { join } from 'node:path';
import { arg, median, photoDataArg, PYTHON, repoRoot, runPeer, table, torch2Suffix } from './common.js';

// --torch2: the whole bench inside the Debian 13 root, against libtorch and PyTorch 2.6.
const SUFFIX = torch2Suffix('bench:data');

const DATA = photoDataArg('bench/data');
const ROUNDS = Number(arg('rounds', '3'));
const EPOCHS = Number(arg('epochs', '4'));

function main(): void {
  console.log(`bench/data: ${DATA}/train, side-on augmentation (zoom ≤1.1, rotate ≤10°, lighting 0.05, flip), random crop 224, batch 64, 2 workers`);
  console.log(`${ROUNDS} alternating rounds of ${EPOCHS} epochs each; the first epoch of each round (worker start-up) is not counted; machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}`);
  const perImage = new Map<string, number[]>();
  let images = 0;
  let torchVersion = '';
  for (let r = 0; r < ROUNDS; r++) {
    for (const p of r % 2 === 0 ? ['fastvision', 'torchvision'] : ['torchvision', 'fastvision']) {
      const res =
        p === 'fastvision'
          ? runPeer('node', [join(repoRoot, 'dist', 'bench', 'data-fastvision.js'), '--data', DATA, '--epochs', `${EPOCHS}`, '--workers', '2'], 900)
          : runPeer(PYTHON, [join(repoRoot, 'bench', 'data_torchvision.py'), '--data', join(DATA, 'train'), '--epochs', `${EPOCHS}`, '--workers', '2'], 900);
      if (res.error) console.log(`${p} failed: ${String(res.error)}`);
      if (typeof res.torch === 'string') torchVersion = res.torch;
      images = Number(res.images ?? images);
      const epochs = ((res.epochs as number[] | undefined) ?? []).slice(1);
      perImage.set(p, [...(perImage.get(p) ?? []), ...epochs.map((s) => s / images)]);
    }
  }
  const fv = median(perImage.get('fastvision') ?? [Number.NaN]);
  const tv = median(perImage.get('torchvision') ?? [Number.NaN]);
  console.log('');
  console.log(
    table(
      ['pipeline', 'ms per image (median epoch)', 'images/s', 'vs torchvision'],
      [
        ['fastvision (libjpeg-turbo + one affine warp, worker threads)', (fv * 1000).toFixed(2), (1 / fv).toFixed(0), (fv / tv).toFixed(3)],
        [`torchvision ${torchVersion} (PIL, DataLoader num_workers=2)`, (tv * 1000).toFixed(2), (1 / tv).toFixed(0), '1.000'],
      ],
    ),
  );
  console.log('');
  console.log(`RESULT data_time_ratio_vs_torchvision${SUFFIX} ${(fv / tv).toFixed(3)}`);
}

main();
