// A seeded fuzzer for the safetensors reader: the reference library's files and
// fastvision's own, mutated at random — raw bytes, and the header's numbers (offsets,
// dimensions, its length) and dtypes rewritten with a consistent length prefix — then
// parsed. Every input must end as tensors or a SafetensorsError: anything else (another
// exception, a leaked tensor, a crash, memory far beyond the input's size) is a finding.
// Run by test/safetensors-fuzz.test.ts for a few seconds and by scripts/fuzz-pth.mjs
// --target safetensors for longer.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseSafetensors, SafetensorsError } from '../src/index.js';
import { fixturesDir } from './helpers.js';
import { fuzzReader, INTERESTING_64, mutateBytes, type Rand, type FuzzStats } from './pth-fuzzer.js';

/** The files mutations start from. */
export function corpus(): Buffer[] {
  const dir = join(fixturesDir, 'safetensors');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.safetensors'))
    .map((f) => readFileSync(join(dir, f)))
    .filter((b) => b.length < 40_000);
}

const NUMBERS = [...INTERESTING_64.map((v) => Number(v)), -1, 0.5, 3, 4, 1e300, Number.MAX_SAFE_INTEGER];
const DTYPES = ['F32', 'F16', 'BF16', 'F64', 'I64', 'U8', 'BOOL', 'F8_E4M3', 'C64', '', 'f32'];

/** One mutation of the header: a number, a dtype or the length prefix changed; the prefix kept consistent unless it is the target. */
function mutateHeader(file: Buffer, rand: Rand): Buffer {
  if (file.length < 8) return mutateBytes(file, rand);
  const n = Number(file.readBigUInt64LE(0));
  if (n > file.length - 8) return mutateBytes(file, rand);
  let header: Record<string, { dtype?: unknown; shape?: unknown[]; data_offsets?: unknown[] }>;
  try {
    header = JSON.parse(file.subarray(8, 8 + n).toString('utf8')) as typeof header;
  } catch {
    return mutateBytes(file, rand);
  }
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  const data = file.subarray(8 + n);
  const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]!;
  if (names.length > 0) {
    const e = header[pick(names)]!;
    const r = rand();
    if (r < 0.35 && Array.isArray(e.data_offsets)) e.data_offsets[Math.floor(rand() * 2)] = pick(NUMBERS);
    else if (r < 0.7 && Array.isArray(e.shape) && e.shape.length > 0) e.shape[Math.floor(rand() * e.shape.length)] = pick(NUMBERS);
    else if (r < 0.8 && Array.isArray(e.shape)) e.shape.push(pick(NUMBERS));
    else e.dtype = pick(DTYPES);
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(rand() < 0.1 ? BigInt.asUintN(64, INTERESTING_64[Math.floor(rand() * INTERESTING_64.length)]!) : BigInt(json.length));
  return Buffer.concat([len, json, data]);
}

/** Fuzzes `parseSafetensors` (see `fuzzReader`): the header's numbers and dtypes, and raw bytes. */
export function fuzzSafetensors(options: { seconds: number; seed: number; onInput?: (input: Buffer) => void }): Promise<FuzzStats> {
  return fuzzReader(
    {
      corpus: corpus(),
      mutate: (b, rand) => (rand() < 0.6 ? mutateHeader(b, rand) : mutateBytes(b, rand)),
      parse: (b) => [...parseSafetensors(b, 'fuzz.safetensors').tensors.values()],
      expected: (e) => e instanceof SafetensorsError,
    },
    options,
  );
}
