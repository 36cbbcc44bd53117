// bench/ddp: one data-parallel training step of ResNet-18 at 128², 2 ranks × 1
// thread on this machine, per-rank batch 16: fastvision's DistributedDataParallel
// on c10d/Gloo against PyTorch's DDP (torch.distributed, Gloo), in alternating
// rounds in the same invocation. Also the scaling: images/s of 2 ranks × 1
// thread against 1 process × 2 threads (fastvision, the same 32 images a step),
// and the share of the step fastvision's ranks spend waiting on collectives (with
// c10d's Reducer overlapping backward, and reducing after backward).
// Last line: `RESULT ddp_step_time_ratio_vs_pytorch <fastvision ÷ PyTorch>`.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { arg, median, PYTHON, repoRoot, runPeer, table } from './common.js';

const ROUNDS = Number(arg('rounds', '2'));
const BS = arg('bs', '16');
const STEPS = arg('steps', '10');

/** Runs `argv` as 2 ranks (torchrun's environment, 1 thread each); resolves with rank 0's JSON line. */
function twoRanks(cmd: string, args: string[]): Promise<Record<string, unknown>> {
  const port = String(29700 + Math.floor(Math.random() * 1000));
  const runs = [0, 1].map(
    (r) =>
      new Promise<string>((resolve) => {
        const p = spawn(cmd, args, {
          cwd: repoRoot,
          env: { ...process.env, WORLD_SIZE: '2', RANK: String(r), MASTER_ADDR: '127.0.0.1', MASTER_PORT: port, FASTVISION_NUM_THREADS: '1', OMP_NUM_THREADS: '1' },
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        let out = '';
        p.stdout.on('data', (d: Buffer) => (out += d.toString()));
        const timer = setTimeout(() => p.kill('SIGKILL'), 900_000);
        p.on('exit', () => {
          clearTimeout(timer);
          resolve(out);
        });
      }),
  );
  return Promise.all(runs).then(([out0]) => {
    const line = out0!
      .trim()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .at(-1);
    return line ? (JSON.parse(line) as Record<string, unknown>) : { error: 'rank 0 printed no result' };
  });
}

async function main(): Promise<void> {
  console.log(`bench/ddp: ResNet-18, 128², batch ${BS} per rank, 2 ranks × 1 thread, SGD momentum; ${ROUNDS} alternating rounds of ${STEPS} timed steps`);
  const fv: number[] = [];
  const py: number[] = [];
  const comm: number[] = [];
  let torchVersion = '';
  const fvRank = [join(repoRoot, 'dist', 'bench', 'ddp-fastvision.js'), '--bs', BS, '--steps', STEPS];
  for (let r = 0; r < ROUNDS; r++) {
    for (const who of r % 2 === 0 ? ['fastvision', 'pytorch'] : ['pytorch', 'fastvision']) {
      const res = who === 'fastvision' ? await twoRanks(process.execPath, fvRank) : await twoRanks(PYTHON, [join(repoRoot, 'bench', 'ddp_pytorch.py'), '--bs', BS, '--steps', STEPS]);
      if (res.error) {
        console.log(`${who} failed: ${String(res.error)}`);
        continue;
      }
      if (who === 'fastvision') {
        fv.push(res.step as number);
        comm.push(res.commShare as number);
      } else {
        py.push(res.step as number);
        torchVersion = String(res.torch);
      }
      console.log(`round ${r + 1} ${who}: ${(res.step as number).toFixed(3)} s a step`);
    }
  }
  // The same with the gradients reduced after backward (no overlap): what overlapping saves, and the wait it hides.
  const after = await twoRanks(process.execPath, [...fvRank, '--overlap', '0']);
  // Scaling: the same 32 images a step in one process with both threads.
  const single = runPeer(process.execPath, [join(repoRoot, 'dist', 'bench', 'ddp-fastvision.js'), '--bs', String(Number(BS) * 2), '--steps', STEPS], 900, {
    ...process.env,
    FASTVISION_NUM_THREADS: '2',
    WORLD_SIZE: '1',
  });
  const fvStep = median(fv);
  const pyStep = median(py);
  const images = (2 * Number(BS)) / fvStep;
  console.log(
    table(
      ['program', 'step (median)', 'images/s', 'vs PyTorch'],
      [
        ['fastvision DDP, 2 ranks × 1 thread', `${fvStep.toFixed(3)} s`, images.toFixed(1), (fvStep / pyStep).toFixed(3)],
        [`PyTorch ${torchVersion} DDP, 2 ranks × 1 thread`, `${pyStep.toFixed(3)} s`, ((2 * Number(BS)) / pyStep).toFixed(1), '1.000'],
        [
          'fastvision DDP, reduced after backward',
          after.error ? String(after.error) : `${(after.step as number).toFixed(3)} s`,
          after.error ? '-' : ((2 * Number(BS)) / (after.step as number)).toFixed(1),
          after.error ? '-' : ((after.step as number) / pyStep).toFixed(3),
        ],
        [
          'fastvision, 1 process × 2 threads (batch 32)',
          single.error ? String(single.error) : `${(single.step as number).toFixed(3)} s`,
          single.error ? '-' : (single.imagesPerSecond as number).toFixed(1),
          '-',
        ],
      ],
    ),
  );
  if (!single.error) console.log(`scaling: 2 ranks × 1 thread give ${(images / (single.imagesPerSecond as number)).toFixed(2)}× the images/s of 1 process × 2 threads`);
  console.log(
    `communication: with the reducer, backward overlaps the gradient all-reduce and the ranks wait on other collectives (loss, buffers) for ${(100 * median(comm)).toFixed(1)}% of a step; reducing after backward instead, they wait ${after.error ? '?' : (100 * (after.commShare as number)).toFixed(1)}% of a step`,
  );
  console.log(`RESULT ddp_step_time_ratio_vs_pytorch ${(fvStep / pyStep).toFixed(3)}`);
}

void main();
