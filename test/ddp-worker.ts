// A rank of the distributed tests (test/ddp.test.ts runs several of these as
// processes). Does nothing unless FASTVISION_DDP_WORKER=1, so the test runner,
// which loads every file of dist/test/, finds no test here.
//   DDP_MODE=train     train a BatchNorm-free net on sharded arrays with DDP; rank 0 prints the weights
//   DDP_MODE=slow      the same for many epochs, slowly (a rank gets killed mid-way)
//   DDP_MODE=classes   like train, but the model's output size is DDP_CLASSES (a mismatch test)
//   DDP_MODE=collectives  all-reduce, broadcast and all-gather of known tensors; prints what arrived
//   DDP_MODE=gather  each rank predicts its share of 7 rows; the gathered outputs vs one process's
import { writeFileSync } from 'node:fs';
import { DistributedDataParallel, gatherRows } from '../src/learn/ddp.js';
import { predictLoader } from '../src/learn/loop.js';
import { ImageClassifierData, initProcessGroup, destroyProcessGroup, Loop, manualSeed, nn, optim, randn, tensor, type Callback } from '../src/index.js';

async function main(): Promise<void> {
  const mode = process.env.DDP_MODE ?? 'train';
  const out = process.env.DDP_OUT;
  const pg = await initProcessGroup({ timeoutMs: Number(process.env.DDP_TIMEOUT_MS ?? 20000) });
  // Left on success only: after a failure the process exits (a group whose peer died may not shut down cleanly).
  {
    if (mode === 'collectives') {
      const a = tensor(Float32Array.from([pg.rank + 1, 10 * (pg.rank + 1)]));
      await pg.allReduce([a]);
      const b = tensor(Float32Array.from([pg.rank === 0 ? 42 : -1, pg.rank === 0 ? 7 : -1]));
      await pg.broadcast([b], 0);
      const g = await pg.allGather(tensor(Float32Array.from([pg.rank])));
      const res = { rank: pg.rank, allReduce: a.toArray(), broadcast: b.toArray(), allGather: g.map((t) => t.toArray()[0]) };
      if (out) writeFileSync(`${out}.${pg.rank}`, JSON.stringify(res));
      destroyProcessGroup();
      return;
    }
    if (mode === 'gather') {
      manualSeed(5);
      const x = randn([7, 8]);
      const y = [0, 1, 0, 1, 1, 0, 1];
      manualSeed(9);
      const net = new nn.Sequential(new nn.Linear(8, 2), new nn.LogSoftmax(1));
      const mine = ImageClassifierData.fromArrays('/tmp', [x, y], [x, y], ['a', 'b'], { bs: 2, shard: { rank: pg.rank, worldSize: pg.worldSize } });
      const all = ImageClassifierData.fromArrays('/tmp', [x, y], [x, y], ['a', 'b'], { bs: 2 });
      const part = await predictLoader(net, mine.valDl!);
      const gathered = { out: await gatherRows(pg, part.out), y: await gatherRows(pg, part.y) };
      const whole = await predictLoader(net, all.valDl!);
      const res = { rank: pg.rank, mine: part.out.shape[0], shape: gathered.out.shape, outs: gathered.out.toArray(), whole: whole.out.toArray(), y: gathered.y.toArray() };
      if (out) writeFileSync(`${out}.${pg.rank}`, JSON.stringify(res));
      destroyProcessGroup();
      return;
    }
    const worldSize = pg.worldSize;
    const batch = Number(process.env.DDP_BATCH ?? 8);
    manualSeed(1);
    const x = randn([32, 8]);
    const labels = x
      .toArray()
      .filter((_, i) => i % 8 === 0)
      .map((v) => (v > 0 ? 1 : 0));
    const data = ImageClassifierData.fromArrays('/tmp', [x, labels], null, ['a', 'b'], { bs: batch / worldSize, seed: 3, shard: worldSize > 1 ? { rank: pg.rank, worldSize } : undefined });
    // Different seeds per rank: DDP must broadcast rank 0's initial weights.
    manualSeed(7 + (mode === 'train' ? pg.rank : 0));
    const classes = Number(process.env.DDP_CLASSES ?? 2);
    const net = new nn.Sequential(new nn.Linear(8, 16), new nn.ReLU(), new nn.Linear(16, classes), new nn.LogSoftmax(1));
    // Says once that batches run, so that a test kills a rank mid-epoch and not while it starts.
    let said = false;
    const slow: Callback = {
      afterBatch: () => {
        if (!said) process.stderr.write('DDP-TRAINING\n');
        said = true;
        return new Promise((r) => setTimeout(r, 50));
      },
    };
    const epochs = mode === 'slow' ? 1000 : Number(process.env.DDP_EPOCHS ?? 3);
    const cbs: Callback[] = [...(worldSize > 1 ? [new DistributedDataParallel(pg)] : []), ...(mode === 'slow' ? [slow] : [])];
    await new Loop({ net, opt: new optim.SGD(net.parameters(), { lr: 0.1, momentum: 0.9 }), trn: data.trnDl, val: null, nEpochs: epochs, callbacks: cbs }).run();
    if (pg.rank === 0 && out) writeFileSync(out, JSON.stringify([...net.stateDict().values()].map((t) => t.toArray())));
    destroyProcessGroup();
  }
}

if (process.env.FASTVISION_DDP_WORKER === '1') {
  main().catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : String(e));
    process.exit(1);
  });
}
