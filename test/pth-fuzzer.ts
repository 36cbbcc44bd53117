// A seeded fuzzer for the .pth reader: real files (PyTorch's zip format, written
// by torch.save and by fastvision, and the legacy format) and the hostile
// builders' files, mutated at random — raw bytes, and, past the zip's CRCs, the
// pickle's integers and the storage records — then parsed. Every input must end
// as a value or a PthError: anything else (another exception, a leaked tensor, a
// crash, memory far beyond the input's size) is a finding.
// Run by test/pth-fuzz.test.ts for a few seconds and by scripts/fuzz-pth.mjs for longer.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dtypeSize, liveTensorCount, parsePth, PthError, Tensor } from '../src/index.js';
import { readZip, writeZip } from '../src/torch/serialization/zip.js';
import { fixturesDir } from './helpers.js';
import { legacyPth, zipPth } from './pth-hostile.js';

/** What a fuzzing run saw. */
export interface FuzzStats {
  seed: number;
  iterations: number;
  loaded: number;
  rejected: number;
  /** Inputs that ended in anything but a value or a PthError (first few, as base64). */
  findings: { error: string; input: string }[];
  /** Tensors left alive after an input was parsed and its value disposed. */
  leakedTensors: number;
  /** Growth of the peak RSS over the run, in MiB. */
  peakGrowthMiB: number;
  /** The largest input, in bytes. */
  largestInput: number;
  /** The most tensor bytes one input produced, and that input's size. */
  mostTensorBytes: { bytes: number; inputBytes: number };
}

/** The files mutations start from. */
export function corpus(): Buffer[] {
  const dir = join(fixturesDir, 'engine');
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.pth'))
    .map((f) => readFileSync(join(dir, f)))
    .filter((b) => b.length < 20_000);
  const claim = { numel: 6, dataBytes: 24, offset: 1, size: [2, 2], stride: [2, 1] };
  return [...files, zipPth(claim), legacyPth(claim)];
}

/** A seeded source of numbers in [0, 1). */
export type Rand = () => number;

/** mulberry32: a small, fast seeded generator. */
function mulberry32(seed: number): Rand {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const INTERESTING_32 = [0, 1, 2, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff];
/** 64-bit values at the edges of what readers check. */
export const INTERESTING_64 = [0n, 1n, -1n, 2n ** 31n, 2n ** 32n, 2n ** 53n, 2n ** 61n, 2n ** 62n, 2n ** 62n + 1024n, 2n ** 63n - 1n, -(2n ** 63n)];

/** One raw mutation of `buf`: flips, interesting values, inserted, deleted or repeated runs, truncation. */
export function mutateBytes(buf: Uint8Array, rand: Rand): Buffer {
  const b = Buffer.from(buf);
  const at = (): number => Math.floor(rand() * Math.max(1, b.length));
  switch (Math.floor(rand() * 8)) {
    case 0:
      if (b.length > 0) {
        const p = at();
        b[p] = b[p]! ^ (1 << Math.floor(rand() * 8));
      }
      return b;
    case 1:
      if (b.length > 0) b[at()] = Math.floor(rand() * 256);
      return b;
    case 2: {
      const p = at();
      if (p + 4 <= b.length) b.writeUInt32LE(INTERESTING_32[Math.floor(rand() * INTERESTING_32.length)]!, p);
      return b;
    }
    case 3: {
      const p = at();
      if (p + 8 <= b.length) b.writeBigInt64LE(INTERESTING_64[Math.floor(rand() * INTERESTING_64.length)]!, p);
      return b;
    }
    case 4:
      return b.subarray(0, at());
    case 5: {
      const p = at();
      return Buffer.concat([b.subarray(0, p), b.subarray(p + 1 + Math.floor(rand() * 16))]);
    }
    case 6: {
      const p = at();
      const n = Math.floor(rand() * 64);
      return Buffer.concat([b.subarray(0, p), b.subarray(p, p + n), b.subarray(p)]);
    }
    default: {
      const p = at();
      return Buffer.concat([b.subarray(0, p), Buffer.from([Math.floor(rand() * 256)]), b.subarray(p)]);
    }
  }
}

/**
 * Replaces one integer of a pickle (a BININT, BININT1/2 or LONG1 operand) with an
 * interesting value: how offsets, sizes, strides and element counts are written.
 */
function mutatePickleInt(pkl: Uint8Array, rand: Rand): Buffer {
  const spots: { pos: number; op: number }[] = [];
  for (let i = 0; i < pkl.length; i++) if (pkl[i] === 0x4a || pkl[i] === 0x4b || pkl[i] === 0x4d || pkl[i] === 0x8a) spots.push({ pos: i, op: pkl[i]! });
  if (spots.length === 0) return mutateBytes(pkl, rand);
  const { pos, op } = spots[Math.floor(rand() * spots.length)]!;
  const v = INTERESTING_64[Math.floor(rand() * INTERESTING_64.length)]!;
  const bytes: number[] = [];
  let x = v;
  for (let i = 0; i < 8; i++) {
    bytes.push(Number(x & 0xffn));
    x >>= 8n;
  }
  const long = Buffer.from([0x8a, 8, ...bytes]);
  const width = op === 0x4a ? 5 : op === 0x4b ? 2 : op === 0x4d ? 3 : 2 + (pkl[pos + 1] ?? 0);
  return Buffer.concat([pkl.subarray(0, pos), long, pkl.subarray(pos + width)]);
}

/** One mutation of a file: raw bytes, or (zip) a record's contents re-packed with a valid CRC. */
export function mutate(file: Buffer, rand: Rand): Buffer {
  if (file[0] === 0x80 || rand() < 0.3) return rand() < 0.5 ? mutateBytes(file, rand) : mutatePickleInt(file, rand);
  let records: Map<string, Uint8Array>;
  try {
    records = readZip(file);
  } catch {
    return mutateBytes(file, rand);
  }
  const names = [...records.keys()];
  if (names.length === 0) return mutateBytes(file, rand);
  const pkl = names.find((n) => n.endsWith('data.pkl'));
  const target = pkl !== undefined && rand() < 0.7 ? pkl : names[Math.floor(rand() * names.length)]!;
  const data = records.get(target)!;
  const changed = target === pkl && rand() < 0.6 ? mutatePickleInt(data, rand) : mutateBytes(data, rand);
  return writeZip(names.map((name) => ({ name, data: name === target ? changed : records.get(name)! })));
}

/** Disposes every tensor in a parsed value; returns the bytes they held. */
function disposeAll(v: unknown, seen = new Set<unknown>()): number {
  if (v === null || typeof v !== 'object' || seen.has(v)) return 0;
  seen.add(v);
  if (v instanceof Tensor) {
    const bytes = v.numel * dtypeSize(v.dtype);
    v.dispose();
    return bytes;
  }
  let bytes = 0;
  if (v instanceof Map) for (const [k, x] of v) bytes += disposeAll(k, seen) + disposeAll(x, seen);
  else if (Array.isArray(v)) for (const x of v) bytes += disposeAll(x, seen);
  return bytes;
}

/** What a fuzzing loop fuzzes: where it starts, how it mutates, how it parses, and which errors are the reader's own. */
export interface FuzzTarget {
  corpus: Buffer[];
  mutate(input: Buffer, rand: Rand): Buffer;
  /** Parses an input and returns what it made (disposed by the loop). */
  parse(input: Buffer): unknown;
  /** Whether an error is the reader rejecting its input as it should. */
  expected(e: unknown): boolean;
}

/**
 * Fuzzes a reader for `seconds` from `seed`: each input is 1–4 mutations of a corpus
 * file. `onInput` sees each input before it is parsed (the script saves it, so that
 * a crash leaves the input behind).
 */
export async function fuzzReader(target: FuzzTarget, { seconds, seed, onInput }: { seconds: number; seed: number; onInput?: (input: Buffer) => void }): Promise<FuzzStats> {
  const rand = mulberry32(seed);
  const seeds = target.corpus;
  const stats: FuzzStats = { seed, iterations: 0, loaded: 0, rejected: 0, findings: [], leakedTensors: 0, peakGrowthMiB: 0, largestInput: 0, mostTensorBytes: { bytes: 0, inputBytes: 0 } };
  const rss0 = process.resourceUsage().maxRSS;
  const live0 = liveTensorCount();
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    // Let the event loop run now and then: N-API finalizers of dropped handles run there.
    if (stats.iterations % 500 === 0) await new Promise((r) => setImmediate(r));
    let input = seeds[Math.floor(rand() * seeds.length)]!;
    const rounds = 1 + Math.floor(rand() * 4);
    for (let r = 0; r < rounds; r++) input = target.mutate(input, rand);
    stats.largestInput = Math.max(stats.largestInput, input.length);
    onInput?.(input);
    stats.iterations++;
    try {
      const bytes = disposeAll(target.parse(input));
      if (bytes > stats.mostTensorBytes.bytes) stats.mostTensorBytes = { bytes, inputBytes: input.length };
      stats.loaded++;
    } catch (e) {
      if (target.expected(e)) stats.rejected++;
      else if (stats.findings.length < 20)
        stats.findings.push({
          error: String((e as Error).stack ?? e)
            .split('\n')
            .slice(0, 3)
            .join(' | '),
          input: input.toString('base64'),
        });
    }
    const live = liveTensorCount() - live0;
    if (live > 0) {
      stats.leakedTensors += live;
      if (process.env.FASTVISION_FUZZ_LEAK) writeFileSync(process.env.FASTVISION_FUZZ_LEAK, input);
      if (stats.findings.length < 20) stats.findings.push({ error: `${live} tensor(s) leaked`, input: input.toString('base64') });
      break;
    }
  }
  stats.peakGrowthMiB = (process.resourceUsage().maxRSS - rss0) / 1024;
  return stats;
}

/** Fuzzes `parsePth` (see `fuzzReader`). */
export function fuzzPth(options: { seconds: number; seed: number; onInput?: (input: Buffer) => void }): Promise<FuzzStats> {
  return fuzzReader({ corpus: corpus(), mutate, parse: (b) => parsePth(b, 'fuzz.pth'), expected: (e) => e instanceof PthError }, options);
}
