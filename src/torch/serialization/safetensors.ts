// The safetensors format (Hugging Face; timm's and the Hub's weights): an 8-byte
// little-endian header length, a JSON header naming each tensor's dtype, shape and
// byte range, then the bytes. Files come from strangers, so the header is checked
// against the file in exact integer arithmetic before any byte is read: its length,
// each dtype, shape and range, and that the ranges tile the data with no gap or overlap.
import { open, stat } from 'node:fs/promises';
import { callTensorOp } from '../ops.js';
import { dtypeCode, dtypeSize, type DType } from '../dtype.js';
import { native } from '../native.js';
import { Tensor } from '../tensor.js';
import { tidy } from '../scope.js';
import { writeFileAtomic } from '../../util/files.js';
import { InputError } from '../../util/errors.js';

/** A safetensors file that is malformed, truncated or inconsistent. */
export class SafetensorsError extends InputError {}

// The reference implementation's limit: a header larger than this is refused unread.
const MAX_HEADER = 100_000_000;

const DTYPES: Record<string, DType> = {
  F64: 'float64',
  F32: 'float32',
  F16: 'float16',
  BF16: 'bfloat16',
  I64: 'int64',
  I32: 'int32',
  I16: 'int16',
  I8: 'int8',
  U8: 'uint8',
  BOOL: 'bool',
};
const NAMES = new Map<DType, string>(Object.entries(DTYPES).map(([k, v]) => [v, k]));

/** One tensor's entry in a safetensors header, checked. */
interface Entry {
  name: string;
  dtype: DType;
  shape: number[];
  begin: number;
  end: number;
}

/** What `readSafetensors` returns: the tensors by name, in the file's order, and the header's `__metadata__`. */
export interface Safetensors {
  tensors: Map<string, Tensor>;
  metadata: Record<string, string>;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The header's entries, checked against a data section of `dataBytes` bytes. */
function parseHeader(json: string, dataBytes: number, what: string): { entries: Entry[]; metadata: Record<string, string> } {
  let header: unknown;
  try {
    header = JSON.parse(json);
  } catch (e) {
    throw new SafetensorsError(`${what}: the header is not JSON (${(e as Error).message})`);
  }
  if (!isRecord(header)) throw new SafetensorsError(`${what}: the header is not a JSON object`);
  const metadata: Record<string, string> = {};
  const entries: Entry[] = [];
  for (const [name, value] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (!isRecord(value) || Object.values(value).some((v) => typeof v !== 'string')) throw new SafetensorsError(`${what}: __metadata__ must map strings to strings`);
      Object.assign(metadata, value);
      continue;
    }
    if (!isRecord(value)) throw new SafetensorsError(`${what}: tensor '${name}' is not described by an object`);
    const { dtype, shape, data_offsets: offsets } = value;
    const type = typeof dtype === 'string' && Object.hasOwn(DTYPES, dtype) ? DTYPES[dtype]! : undefined;
    if (type === undefined) throw new SafetensorsError(`${what}: tensor '${name}' has the dtype ${JSON.stringify(dtype)}; fastvision reads ${Object.keys(DTYPES).join(', ')}`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0))
      throw new SafetensorsError(`${what}: tensor '${name}' has an invalid shape ${JSON.stringify(shape)}`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && (o as number) >= 0))
      throw new SafetensorsError(`${what}: tensor '${name}' has invalid data_offsets ${JSON.stringify(offsets)}`);
    const [begin, end] = offsets as [number, number];
    // Exact arithmetic: a shape's product can exceed 2^53 long before the file ends.
    const bytes = (shape as number[]).reduce((a, d) => a * BigInt(d), BigInt(dtypeSize(type)));
    if (end < begin || BigInt(end - begin) !== bytes)
      throw new SafetensorsError(`${what}: tensor '${name}' (${type} [${(shape as number[]).join(', ')}], ${bytes} bytes) does not match its byte range ${begin}..${end}`);
    if (end > dataBytes) throw new SafetensorsError(`${what}: tensor '${name}' ends at byte ${end} of a data section of ${dataBytes}; the file is truncated`);
    entries.push({ name, dtype: type, shape: shape as number[], begin, end });
  }
  // The ranges must tile the data section: no gaps (hidden bytes), no overlaps (aliased tensors).
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  for (const e of sorted) {
    if (e.begin !== at) throw new SafetensorsError(`${what}: tensor '${e.name}' starts at byte ${e.begin}, expected ${at} (the byte ranges overlap or leave a gap)`);
    at = e.end;
  }
  if (at !== dataBytes) throw new SafetensorsError(`${what}: the tensors cover ${at} bytes of a data section of ${dataBytes}`);
  return { entries, metadata };
}

function tensorFrom(bytes: Uint8Array, e: Entry): Tensor {
  const raw = new Tensor(native.fromTypedArray(bytes, [bytes.length]));
  const typed = new Tensor(callTensorOp('aten::view.dtype', [raw.handle, dtypeCode(e.dtype)]));
  raw.dispose();
  const t = typed.reshape(...e.shape);
  typed.dispose();
  return t;
}

/** The header length from a file's first 8 bytes, checked against the bytes after them. */
function headerLength(first8: Buffer, size: number, what: string): number {
  if (size < 8) throw new SafetensorsError(`${what}: ${size} bytes is too short for a safetensors file`);
  const n = first8.readBigUInt64LE(0);
  if (n > BigInt(Math.min(MAX_HEADER, size - 8)))
    throw new SafetensorsError(`${what}: the header claims ${n} bytes, but the file has ${size - 8} after its length${n > BigInt(MAX_HEADER) ? ` (and at most ${MAX_HEADER} are read)` : ''}`);
  return Number(n);
}

function headerText(json: Buffer, what: string): string {
  if (json[0] !== 0x7b) throw new SafetensorsError(`${what}: not a safetensors file (the header does not start with '{')`);
  return json.toString('utf8');
}

/** Parses a safetensors file held in memory (the tensors are copies; see `readSafetensors`). */
export function parseSafetensors(buf: Buffer, what = 'buffer'): Safetensors {
  const n = headerLength(buf.subarray(0, 8), buf.length, what);
  const start = 8 + n;
  const { entries, metadata } = parseHeader(headerText(buf.subarray(8, start), what), buf.length - start, what);
  const tensors = new Map<string, Tensor>();
  try {
    for (const e of entries) tensors.set(e.name, tensorFrom(buf.subarray(start + e.begin, start + e.end), e));
  } catch (err) {
    for (const t of tensors.values()) t.dispose();
    throw err;
  }
  return { tensors, metadata };
}

/**
 * Reads a `.safetensors` file: every tensor (on the CPU, in its own dtype) and the
 * metadata. Only the header and then each tensor's own bytes are read, so a file
 * that lies about its sizes fails before anything large is allocated.
 */
export async function readSafetensors(path: string): Promise<Safetensors> {
  const size = (await stat(path)).size;
  const fh = await open(path, 'r');
  const tensors = new Map<string, Tensor>();
  try {
    const head = Buffer.alloc(8);
    await fh.read(head, 0, Math.min(8, size), 0);
    const json = Buffer.alloc(headerLength(head, size, path));
    await fh.read(json, 0, json.length, 8);
    const start = 8 + json.length;
    const { entries, metadata } = parseHeader(headerText(json, path), size - start, path);
    for (const e of entries) {
      const bytes = Buffer.alloc(e.end - e.begin);
      const { bytesRead } = await fh.read(bytes, 0, bytes.length, start + e.begin);
      if (bytesRead !== bytes.length) throw new SafetensorsError(`${path}: tensor '${e.name}' is truncated`);
      tensors.set(e.name, tensorFrom(bytes, e));
    }
    return { tensors, metadata };
  } catch (err) {
    for (const t of tensors.values()) t.dispose();
    throw err;
  } finally {
    await fh.close();
  }
}

/** The bytes of a safetensors file holding `tensors` (written contiguous, in the map's order) and `metadata`. */
export function serializeSafetensors(tensors: Map<string, Tensor>, metadata: Record<string, string> = {}): Buffer {
  const header: Record<string, unknown> = Object.keys(metadata).length > 0 ? { __metadata__: metadata } : {};
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of tensors) {
    if (name === '__metadata__') throw new SafetensorsError("a tensor cannot be named '__metadata__'");
    const dtype = NAMES.get(t.dtype);
    if (dtype === undefined) throw new SafetensorsError(`tensor '${name}': safetensors has no dtype for ${t.dtype}`);
    // tidy frees each step's handle: on CUDA, the CPU copy would otherwise live until a GC.
    const bytes = tidy(() => {
      const flat = t.detach().toDevice('cpu').contiguous().reshape(-1);
      const u8 = new Tensor(callTensorOp('aten::view.dtype', [flat.handle, dtypeCode('uint8')]));
      return t.numel === 0 ? new Uint8Array(0) : (native.toTypedArray(u8.handle) as Uint8Array);
    });
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    parts.push(bytes);
    offset += bytes.length;
  }
  // Padded with spaces to a multiple of 8, as the reference writer does, so the data is aligned.
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  return Buffer.concat([len, Buffer.from(json, 'utf8'), ...parts]);
}

/** Writes tensors (and string metadata) as a `.safetensors` file, atomically: a failed write leaves any old file as it was. */
export async function saveSafetensors(path: string, tensors: Map<string, Tensor>, metadata: Record<string, string> = {}): Promise<void> {
  await writeFileAtomic(path, serializeSafetensors(tensors, metadata));
}

/** Whether a path names a safetensors file (by its extension). */
export function isSafetensorsPath(path: string): boolean {
  return path.toLowerCase().endsWith('.safetensors');
}
