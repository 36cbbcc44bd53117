// One fastvision rank of bench/ddp: ResNet-18 at 128², per-rank batch --bs,
// SGD with momentum, DistributedDataParallel over Gloo when WORLD_SIZE > 1 (one
// process with all threads otherwise; --overlap 0 reduces gradients after backward
// instead of during it). Prints one JSON line: the median step time, and the share
// of it spent waiting in collectives outside backward.
import { DistributedDataParallel } from '../src/learn/ddp.js';
import { destroyProcessGroup, ImageClassifierData, initProcessGroup, Loop, manualSeed, nn, optim, randn, resnet18, type Callback } from '../src/index.js';
import { arg, median } from './common.js';

async function main(): Promise<void> {
  const bs = Number(arg('bs', '16'));
  const steps = Number(arg('steps', '10'));
  const warmup = 2;
  const worldSize = Number(process.env.WORLD_SIZE ?? '1');
  const pg = worldSize > 1 ? await initProcessGroup({ timeoutMs: 600_000 }) : null;
  manualSeed(0);
  const n = bs * worldSize * (steps + warmup);
  const x = randn([n, 3, 128, 128]);
  const labels = Array.from({ length: n }, (_, i) => i % 10);
  const data = ImageClassifierData.fromArrays(
    '/tmp',
    [x, labels],
    null,
    Array.from({ length: 10 }, (_, i) => String(i)),
    { bs, seed: 1, shard: pg ? { rank: pg.rank, worldSize } : undefined },
  );
  const net = new nn.Sequential(resnet18({ numClasses: 10 }), new nn.LogSoftmax(1));
  const ddp = pg ? new DistributedDataParallel(pg, { overlap: arg('overlap', '1') === '1' }) : null;
  const times: number[] = [];
  let t0 = 0;
  let commAtStart = 0;
  let commMeasured = 0;
  const timer: Callback = {
    order: -100,
    beforeBatch: () => {
      t0 = performance.now();
      commAtStart = ddp?.commSeconds ?? 0;
    },
    afterBatch: (l) => {
      if (l.iteration > warmup) {
        times.push((performance.now() - t0) / 1000);
        commMeasured += (ddp?.commSeconds ?? 0) - commAtStart;
      }
    },
  };
  await new Loop({ net, opt: new optim.SGD(net.parameters(), { lr: 0.01, momentum: 0.9 }), trn: data.trnDl, val: null, nEpochs: 1, callbacks: [timer, ...(ddp ? [ddp] : [])] }).run();
  const total = times.reduce((a, b) => a + b, 0);
  if (!pg || pg.rank === 0)
    console.log(JSON.stringify({ step: median(times), steps: times.length, commShare: total > 0 ? commMeasured / total : 0, imagesPerSecond: (bs * worldSize) / median(times) }));
  if (pg) destroyProcessGroup();
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
