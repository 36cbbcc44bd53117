// Distributed training from the command line: `--nproc N` starts N ranks on
// this machine (torchrun's environment for each: RANK, WORLD_SIZE, LOCAL_RANK,
// LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT; cores / N threads each); on
// several machines the same command runs on each with that environment, or with
// --world-size, --rank and --master host:port. Every rank logs to
// <out>/logs/rank-R.log; only rank 0 prints and writes results.
import { spawn } from 'node:child_process';
import { appendFileSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { destroyProcessGroup, initProcessGroup, type ProcessGroup } from '../torch/distributed.js';
import { num, rangeOf, str, UsageError, type OptionSpec, type ParsedArgs } from './args.js';

export const DIST_OPTIONS: Record<string, OptionSpec> = {
  nproc: { type: 'string', arg: 'N', help: 'train data-parallel with N processes on this machine (cores / N threads each)', default: '1', value: { kind: 'number', min: 1, max: 256, integer: true } },
  'world-size': { type: 'string', arg: 'N', help: 'processes in all, across machines (or WORLD_SIZE)', value: { kind: 'number', min: 1, max: 65536, integer: true } },
  rank: { type: 'string', arg: 'R', help: "this process's rank, 0 … N−1 (or RANK); rank 0 writes the results" },
  master: { type: 'string', arg: 'HOST:PORT', help: "rank 0's address and a free port (or MASTER_ADDR, MASTER_PORT)" },
  'dist-timeout': {
    type: 'string',
    arg: 'SECONDS',
    help: 'how long the start-up and each collective may take before the run stops with an error',
    default: '1800',
    value: { kind: 'number', min: 1, max: 86400 },
  },
};

/** Options that say how a run is split, not what it computes (left out of a run's fingerprint). */
export const DIST_OPTION_NAMES = Object.keys(DIST_OPTIONS);

/** How this process takes part: alone, as the launcher of --nproc ranks, or as one rank. */
export type DistRole = { kind: 'alone' } | { kind: 'launcher'; nproc: number } | { kind: 'rank'; worldSize: number; rank: number; masterAddr: string; masterPort: number; timeoutMs: number };

/** The role the options and the environment (torchrun's variables) give this process. */
export function distRole(args: ParsedArgs, env: NodeJS.ProcessEnv = process.env): DistRole {
  const timeoutMs = num(args, 'dist-timeout', 1800, rangeOf(DIST_OPTIONS['dist-timeout'])) * 1000;
  const nproc = num(args, 'nproc', 1, rangeOf(DIST_OPTIONS.nproc));
  const launched = env.FASTVISION_LAUNCHED === '1';
  if (nproc > 1 && !launched) {
    if (args.values['world-size'] !== undefined || args.values.rank !== undefined)
      throw new UsageError('--nproc starts every rank on this machine; leave out --world-size and --rank (or run one process per rank with them)');
    return { kind: 'launcher', nproc };
  }
  const worldSize = num(args, 'world-size', env.WORLD_SIZE !== undefined ? Number(env.WORLD_SIZE) : 1, rangeOf(DIST_OPTIONS['world-size']));
  if (!Number.isInteger(worldSize) || worldSize < 1) throw new UsageError(`WORLD_SIZE '${env.WORLD_SIZE}' is not a positive integer`);
  if (worldSize === 1) return { kind: 'alone' };
  const rank = args.values.rank !== undefined ? num(args, 'rank', 0, { min: 0, max: worldSize - 1, integer: true }) : env.RANK !== undefined ? Number(env.RANK) : undefined;
  if (rank === undefined) throw new UsageError(`--world-size ${worldSize} needs --rank (or RANK)`);
  if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) throw new UsageError(`RANK ${env.RANK} is not a rank of ${worldSize} (0 … ${worldSize - 1})`);
  const master = str(args, 'master') ?? (env.MASTER_ADDR ? `${env.MASTER_ADDR}:${env.MASTER_PORT ?? '29500'}` : undefined);
  if (master === undefined) throw new UsageError("--world-size needs --master HOST:PORT (or MASTER_ADDR and MASTER_PORT): rank 0's address");
  const m = /^(.+):(\d+)$/.exec(master);
  if (!m || Number(m[2]) < 1 || Number(m[2]) > 65535) throw new UsageError(`--master: '${master}' is not HOST:PORT`);
  return { kind: 'rank', worldSize, rank, masterAddr: m[1]!, masterPort: Number(m[2]), timeoutMs };
}

/** A free TCP port on loopback (for --nproc's store). */
async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/**
 * Runs this same command as `nproc` ranks on this machine and waits for them.
 * A rank that fails makes the run fail: the others stop on their own (their
 * next collective names the lost rank), or are stopped after the timeout.
 */
export async function launchRanks(nproc: number, argv: string[], out: string, timeoutMs: number): Promise<number> {
  const port = await freePort();
  const threads = Math.max(1, Math.floor(availableParallelism() / nproc));
  mkdirSync(join(out, 'logs'), { recursive: true });
  console.log(`starting ${nproc} ranks on this machine (${threads} thread${threads > 1 ? 's' : ''} each); logs in ${join(out, 'logs')}`);
  const children = Array.from({ length: nproc }, (_, r) =>
    spawn(process.execPath, [process.argv[1]!, ...argv], {
      env: {
        ...process.env,
        FASTVISION_LAUNCHED: '1',
        RANK: String(r),
        LOCAL_RANK: String(r),
        WORLD_SIZE: String(nproc),
        LOCAL_WORLD_SIZE: String(nproc),
        MASTER_ADDR: '127.0.0.1',
        MASTER_PORT: String(port),
        FASTVISION_NUM_THREADS: String(threads),
      },
      stdio: r === 0 ? 'inherit' : ['ignore', 'ignore', 'pipe'],
    }),
  );
  const stopAll = (): void => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  };
  process.once('SIGINT', stopAll);
  process.once('SIGTERM', stopAll);
  const errors: string[] = Array.from({ length: nproc }, () => '');
  children.forEach((c, r) => c.stderr?.on('data', (d: Buffer) => (errors[r] += d.toString())));
  let killer: NodeJS.Timeout | null = null;
  const codes = await Promise.all(
    children.map(
      (c, r) =>
        new Promise<number>((resolve) =>
          c.on('exit', (code, signal) => {
            const status = code ?? (signal ? 128 : 1);
            // One rank down: give the others the collective timeout to notice, then stop them.
            if (status !== 0 && killer === null) killer = setTimeout(stopAll, timeoutMs + 10_000);
            if (status !== 0 && r !== 0)
              console.error(`rank ${r} exited with ${signal ?? `code ${status}`}: ${errors[r]!.trim().split('\n').at(-1) ?? ''} (log: ${join(out, 'logs', `rank-${r}.log`)})`);
            resolve(status);
          }),
        ),
    ),
  );
  if (killer) clearTimeout(killer);
  process.off('SIGINT', stopAll);
  process.off('SIGTERM', stopAll);
  return codes.find((c) => c !== 0) ?? 0;
}

/** Joins the group as the role says (NCCL when the rank trains on a GPU, else Gloo); null when training alone. */
export async function joinGroup(role: DistRole, device = 'cpu'): Promise<ProcessGroup | null> {
  if (role.kind !== 'rank') return null;
  const backend = device === 'cpu' ? 'gloo' : 'nccl';
  return initProcessGroup({ backend, device, worldSize: role.worldSize, rank: role.rank, masterAddr: role.masterAddr, masterPort: role.masterPort, timeoutMs: role.timeoutMs });
}

/** Leaves the group. */
export function leaveGroup(): void {
  destroyProcessGroup();
}

/** A rank's own log (<out>/logs/rank-R.log); rank 0 also prints. */
export function rankLogger(out: string, pg: ProcessGroup | null): (line: string) => void {
  if (!pg) return (l) => console.log(l);
  const dir = join(out, 'logs');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `rank-${pg.rank}.log`);
  return (line) => {
    appendFileSync(file, `${line}\n`);
    if (pg.rank === 0) console.log(line);
  };
}
