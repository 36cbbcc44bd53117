// Helpers shared by the benchmarks: running the peer programs, medians, tables.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (benchmarks run from dist/bench/). */
export const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The Python with PyTorch (Debian's python3-torch). */
export const PYTHON = process.env.FASTVISION_BENCH_PYTHON ?? '/usr/bin/python3';

/** Median of a list of numbers. */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Runs a peer program that prints one JSON line last; returns it parsed, or an error description. */
export function runPeer(cmd: string, args: string[], timeoutS: number, env: NodeJS.ProcessEnv = process.env): Record<string, unknown> {
  const r = spawnSync(cmd, args, { cwd: repoRoot, encoding: 'utf8', timeout: timeoutS * 1000, maxBuffer: 64 * 2 ** 20, env });
  if (r.error) return { error: `${cmd} failed: ${r.error.message}` };
  const lines = (r.stdout ?? '').trim().split('\n');
  for (let i = lines.length - 1; i >= 0; i--) {
    const l = lines[i]!.trim();
    if (l.startsWith('{')) {
      try {
        return JSON.parse(l) as Record<string, unknown>;
      } catch {
        break;
      }
    }
  }
  return { error: `${cmd} ${args.join(' ')} printed no result (exit ${r.status}): ${(r.stderr ?? '').trim().split('\n').slice(-3).join(' | ')}` };
}

/** Reads `--name value` from the command line. */
export function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : def;
}

/** Formats rows as an aligned Markdown table. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(header), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...rows.map(line)].join('\n');
}

/** glibc settings equal to those fastvision's addon applies at load (native/addon.cc, TuneMalloc), for timing PyTorch alike. */
export const SAME_MALLOC = { MALLOC_MMAP_THRESHOLD_: `${2 ** 30}`, MALLOC_TRIM_THRESHOLD_: `${2 ** 30}`, MALLOC_TOP_PAD_: `${2 ** 28}` };

/**
 * The photo folder a benchmark reads: `--data DIR`, by default pets-sample's `dogscats`
 * beside the project. When it is missing, says so in one line and exits (code 2).
 */
export function photoDataArg(bench: string): string {
  const dflt = join(repoRoot, '..', 'shared', 'datasets', 'pets-sample', 'dogscats');
  const dir = arg('data', dflt);
  if (!existsSync(join(dir, 'train'))) {
    console.error(`${bench}: no photo folder at ${dir} (pets-sample is not beside this checkout); pass --data DIR, a folder with train/<label>/ and valid/<label>/`);
    process.exit(2);
  }
  return dir;
}

/** Whether this run is inside the project's Debian 13 root (scripts/torch2-root.mjs sets it). */
export const IN_TORCH2_ROOT = process.env.FASTVISION_IN_TORCH2_ROOT === '1';

/**
 * `--torch2`: the same bench, built and run inside the Debian 13 root against its
 * libtorch 2.6 and PyTorch 2.6, side by side in that one invocation. Outside the root
 * this re-runs `npm run <script>` there (a fresh copy of the checkout) and exits with its
 * status; inside, it returns the suffix for the RESULT name ('2'), and '' without the flag.
 */
export function torch2Suffix(script: string): string {
  if (!process.argv.includes('--torch2')) return '';
  if (IN_TORCH2_ROOT) return '2';
  const args = process.argv.slice(2);
  const r = spawnSync('node', [join(repoRoot, 'scripts', 'torch2-root.mjs'), 'run', '--', 'npm', 'run', '--silent', script, '--', ...args], { stdio: 'inherit' });
  process.exit(r.status ?? 1);
}
