// PyTorch's `.pth` files (torch.save's zip format) in and out: state dicts with
// torchvision's key names load as they are, and what we write loads in Python.
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { dtypeCode, dtypeSize, type DType } from '../dtype.js';
import { native } from '../native.js';
import { callTensorOp } from '../ops.js';
import { writeFileAtomic } from '../../util/files.js';
import { tidy } from '../scope.js';
import { Tensor } from '../tensor.js';
import {
  PickleError,
  PickleGlobal,
  PyFloat,
  PyGlobal,
  PyPersistent,
  PyReduce,
  PyTuple,
  pickle,
  unpickle,
  unpickleAt,
  type GlobalFactory,
  type PickleValue,
  type PickleWritable,
} from './pickle.js';
import { readZip, writeZip, ZipFormatError } from './zip.js';

const STORAGE_DTYPES: Record<string, DType> = {
  FloatStorage: 'float32',
  DoubleStorage: 'float64',
  HalfStorage: 'float16',
  BFloat16Storage: 'bfloat16',
  LongStorage: 'int64',
  IntStorage: 'int32',
  ShortStorage: 'int16',
  CharStorage: 'int8',
  ByteStorage: 'uint8',
  BoolStorage: 'bool',
};

const STORAGE_OF_DTYPE = Object.fromEntries(Object.entries(STORAGE_DTYPES).map(([k, v]) => [v, k])) as Record<DType, string>;

/** An OrderedDict as read back: a Map (its `_metadata` is dropped). */
class OrderedDictValue extends Map<PickleValue, PickleValue> {
  build(): void {}
}

/** Anything a `.pth` file can hold that fastvision reads: tensors inside maps, arrays, numbers, strings. */
export type PthValue = PickleValue | Tensor;

/** A `.pth` file that is corrupt, truncated, or not a state dict. */
export class PthError extends Error {}

function asDims(v: PickleValue, what: string): number[] {
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'number')) throw new PthError(`${what} is not a tuple of ints`);
  return v as number[];
}

/**
 * Reads a `.pth` file written by `torch.save` (PyTorch ≥ 1.6 zip format). Tensors
 * come back as Tensors (owned by the caller), dicts as Maps, lists and tuples as arrays.
 */
export async function loadPth(path: string): Promise<PthValue> {
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (e) {
    throw new PthError(`cannot read ${path}: ${(e as Error).message}`);
  }
  return parsePth(buf, path);
}

/** Parses the bytes of a `.pth` file (see `loadPth`); `what` names it in errors. */
export function parsePth(buf: Buffer, what = 'buffer'): PthValue {
  if (buf.length >= 2 && buf[0] === 0x80) return parseLegacyPth(buf, what);
  let records: Map<string, Uint8Array>;
  try {
    records = readZip(buf, what);
  } catch (e) {
    if (e instanceof ZipFormatError) throw new PthError(e.message);
    throw e;
  }
  const pklName = [...records.keys()].find((k) => k.endsWith('/data.pkl') || k === 'data.pkl');
  if (pklName === undefined) throw new PthError(`${what}: no data.pkl record; this is not a file written by torch.save`);
  const prefix = pklName.slice(0, pklName.length - 'data.pkl'.length);
  const created: Tensor[] = [];
  const storages = new Map<string, Tensor>();
  const storageFor = (pid: PickleValue): PickleValue => {
    const type = Array.isArray(pid) && pid[0] === 'storage' && pid[1] instanceof PickleGlobal ? STORAGE_DTYPES[pid[1].name.slice('torch.'.length)] : undefined;
    if (type === undefined) throw new PthError(`${what}: unsupported persistent id in data.pkl`);
    const [, , key, , numel] = pid as [string, PickleGlobal, string, string, number];
    let t = storages.get(key);
    if (t === undefined) {
      const bytes = records.get(`${prefix}data/${key}`);
      if (bytes === undefined) throw new PthError(`${what}: storage record data/${key} is missing`);
      const expected = Number(numel) * dtypeSize(type);
      if (bytes.length < expected) throw new PthError(`${what}: storage data/${key} has ${bytes.length} bytes, expected ${expected}`);
      const raw = new Tensor(native.fromTypedArray(bytes.subarray(0, expected), [expected]));
      t = new Tensor(callTensorOp('aten::view.dtype', [raw.handle, dtypeCode(type)]));
      raw.dispose();
      storages.set(key, t);
    }
    return t;
  };
  const globals = allowedGlobals(what, created);
  try {
    return unpickle(records.get(pklName)!, globals, storageFor, `${what} (data.pkl)`) as PthValue;
  } catch (e) {
    for (const t of created) t.dispose();
    if (e instanceof PickleError) throw new PthError(e.message);
    throw e;
  } finally {
    for (const s of storages.values()) s.dispose();
  }
}

/** The globals a state dict may name, with the tensors they create recorded in `created`. */
function allowedGlobals(what: string, created: Tensor[]): Map<string, GlobalFactory> {
  const rebuildTensor = (args: PickleValue[]): PickleValue => {
    const [storage, offset, size, stride] = args;
    if (!(storage instanceof Tensor)) throw new PthError(`${what}: tensor without storage`);
    const dims = asDims(size!, `${what}: tensor size`);
    const strides = asDims(stride!, `${what}: tensor stride`);
    const view = new Tensor(callTensorOp('aten::as_strided', [storage.handle, dims, strides, Number(offset)]));
    const t = view.clone('contiguous');
    view.dispose();
    created.push(t);
    return t;
  };
  const globals = new Map<string, GlobalFactory>([
    ['collections.OrderedDict', () => new OrderedDictValue()],
    ['torch._utils._rebuild_tensor_v2', rebuildTensor],
    ['torch._utils._rebuild_tensor', rebuildTensor],
    ['torch._utils._rebuild_parameter', (args) => args[0]!],
    ['torch._utils._rebuild_parameter_with_state', (args) => args[0]!],
    ['_codecs.encode', (args) => Uint8Array.from(String(args[0]), (c) => c.charCodeAt(0))],
  ]);
  for (const name of Object.keys(STORAGE_DTYPES)) globals.set(`torch.${name}`, () => null);
  return globals;
}

const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;

/**
 * PyTorch's legacy (pre-1.6) format, which older torchvision weights use: a pickled
 * magic number, protocol version and system info, the pickled object whose storages
 * are persistent ids, the pickled list of storage keys, then each storage's bytes
 * (an int64 element count, then the data) in that order.
 */
function parseLegacyPth(buf: Buffer, what: string): PthValue {
  const created: Tensor[] = [];
  const globals = allowedGlobals(what, created);
  const placeholders = new Map<string, { dtype: DType; numel: number; tensor: Tensor }>();
  const noPersistent = (): never => {
    throw new PthError(`${what}: unexpected persistent id in the file header`);
  };
  try {
    const magic = unpickleAt(buf, 0, globals, noPersistent, what);
    if (BigInt(magic.value as number | bigint) !== LEGACY_MAGIC) {
      throw new PthError(`${what}: not a PyTorch file (a pickle, but without torch.save's magic number)`);
    }
    const protocol = unpickleAt(buf, magic.end, globals, noPersistent, what);
    if (protocol.value !== 1001) throw new PthError(`${what}: unsupported legacy protocol ${String(protocol.value)}`);
    const sysInfo = unpickleAt(buf, protocol.end, globals, noPersistent, what);
    // Storages are read after the object, so the object is first built on empty
    // placeholders of the right size, which are filled in place afterwards.
    const storageFor = (pid: PickleValue): PickleValue => {
      const type = Array.isArray(pid) && pid[0] === 'storage' && pid[1] instanceof PickleGlobal ? STORAGE_DTYPES[pid[1].name.slice('torch.'.length)] : undefined;
      if (type === undefined) throw new PthError(`${what}: unsupported persistent id`);
      const [, , key, , numel, viewMetadata] = pid as [string, PickleGlobal, string, string, number, PickleValue];
      if (viewMetadata !== null && viewMetadata !== undefined) throw new PthError(`${what}: storage views are not supported`);
      let p = placeholders.get(key);
      if (p === undefined) {
        p = { dtype: type, numel: Number(numel), tensor: new Tensor(callTensorOp('aten::zeros', [[Number(numel)], dtypeCode(type), null, 'cpu', null])) };
        placeholders.set(key, p);
      }
      return p.tensor;
    };
    const rebuilt = new Map<Tensor, { storage: Tensor; offset: number; size: number[]; stride: number[] }>();
    const lazyGlobals = new Map(globals);
    const lazyRebuild = (args: PickleValue[]): PickleValue => {
      const [storage, offset, size, stride] = args;
      if (!(storage instanceof Tensor)) throw new PthError(`${what}: tensor without storage`);
      const t = new Tensor(callTensorOp('aten::zeros', [asDims(size!, 'size'), native.dtype(storage.handle), null, 'cpu', null]));
      created.push(t);
      rebuilt.set(t, { storage, offset: Number(offset), size: asDims(size!, 'size'), stride: asDims(stride!, 'stride') });
      return t;
    };
    lazyGlobals.set('torch._utils._rebuild_tensor_v2', lazyRebuild);
    lazyGlobals.set('torch._utils._rebuild_tensor', lazyRebuild);
    const obj = unpickleAt(buf, sysInfo.end, lazyGlobals, storageFor, `${what} (object)`);
    const keys = unpickleAt(buf, obj.end, globals, noPersistent, `${what} (storage keys)`);
    if (!Array.isArray(keys.value)) throw new PthError(`${what}: storage key list missing`);
    let pos = keys.end;
    for (const key of keys.value as string[]) {
      const p = placeholders.get(key);
      if (p === undefined) throw new PthError(`${what}: storage ${key} is listed but never used`);
      if (pos + 8 > buf.length) throw new PthError(`${what}: truncated before storage ${key}`);
      const numel = Number(buf.readBigInt64LE(pos));
      pos += 8;
      const bytes = numel * dtypeSize(p.dtype);
      if (numel !== p.numel || pos + bytes > buf.length) throw new PthError(`${what}: storage ${key} is truncated or of the wrong size`);
      const raw = new Tensor(native.fromTypedArray(buf.subarray(pos, pos + bytes), [bytes]));
      const typed = new Tensor(callTensorOp('aten::view.dtype', [raw.handle, dtypeCode(p.dtype)]));
      p.tensor.copy_(typed);
      typed.dispose();
      raw.dispose();
      pos += bytes;
    }
    for (const [t, r] of rebuilt) {
      const view = new Tensor(callTensorOp('aten::as_strided', [r.storage.handle, r.size, r.stride, r.offset]));
      t.copy_(view);
      view.dispose();
    }
    return obj.value as PthValue;
  } catch (e) {
    for (const t of created) t.dispose();
    if (e instanceof PickleError) throw new PthError(e.message);
    throw e;
  } finally {
    for (const p of placeholders.values()) p.tensor.dispose();
  }
}

/**
 * Reads a state dict (parameter name → tensor) from a `.pth` file. A checkpoint
 * that wraps it (`{state_dict: ...}` or `{model: ...}`) is unwrapped.
 */
export async function loadStateDictFile(path: string): Promise<Map<string, Tensor>> {
  const value = await loadPth(path);
  return asStateDict(value, path);
}

/** Interprets a loaded `.pth` value as a state dict, or throws naming `what`. */
export function asStateDict(value: PthValue, what: string): Map<string, Tensor> {
  let v = value;
  if (v instanceof Map && !allTensors(v)) {
    const inner = v.get('state_dict') ?? v.get('model');
    if (inner instanceof Map) v = inner;
  }
  if (!(v instanceof Map) || !allTensors(v)) {
    throw new PthError(`${what}: not a state dict (expected a dict of parameter names to tensors)`);
  }
  const out = new Map<string, Tensor>();
  for (const [k, t] of v) out.set(String(k), t as Tensor);
  return out;
}

function allTensors(m: Map<PickleValue, PickleValue>): boolean {
  for (const [k, t] of m) if (typeof k !== 'string' || !(t instanceof Tensor)) return false;
  return true;
}

/** Values `savePth` can write: tensors, numbers, strings, booleans, null, arrays, Maps and plain objects of them. */
export type PthWritable = Tensor | null | boolean | number | bigint | string | PthWritable[] | Map<string | number, PthWritable> | { [key: string]: PthWritable };

/** Encodes a value as the bytes of a `.pth` file. */
export function serializePth(value: PthWritable, archiveName = 'archive'): Buffer {
  const storages: { key: string; data: Uint8Array }[] = [];
  const emptyOrderedDict = (): PyReduce => new PyReduce('collections', 'OrderedDict', []);
  const encodeTensor = (t: Tensor): PyReduce => tidy(() => {
    const c = t.detach().contiguous();
    const dtype = c.dtype;
    const raw = new Tensor(callTensorOp('aten::view.dtype', [c.reshape(-1).handle, dtypeCode('uint8')]));
    const data = native.toTypedArray(raw.handle) as Uint8Array;
    const shape = c.shape;
    const numel = shape.reduce((a, b) => a * b, 1);
    const key = String(storages.length);
    storages.push({ key, data });
    const strides: number[] = [];
    let acc = 1;
    for (let i = shape.length - 1; i >= 0; i--) {
      strides[i] = acc;
      acc *= shape[i]!;
    }
    const storage = new PyPersistent(new PyTuple(['storage', new PyGlobal('torch', STORAGE_OF_DTYPE[dtype]), key, 'cpu', numel]));
    return new PyReduce('torch._utils', '_rebuild_tensor_v2', [storage, 0, new PyTuple(shape), new PyTuple(strides), false, emptyOrderedDict()]);
  });
  const enc = (v: PthWritable): PickleWritable => {
    if (v instanceof Tensor) return encodeTensor(v);
    if (Array.isArray(v)) return v.map(enc);
    if (v instanceof Map) {
      const items = new Map<PickleWritable, PickleWritable>();
      for (const [k, x] of v) items.set(k, enc(x));
      return new PyReduce('collections', 'OrderedDict', [], items);
    }
    if (v !== null && typeof v === 'object') {
      const o: Record<string, PickleWritable> = {};
      for (const [k, x] of Object.entries(v)) o[k] = enc(x);
      return o;
    }
    if (typeof v === 'number' && !Number.isInteger(v)) return new PyFloat(v);
    return v;
  };
  const pkl = pickle(enc(value));
  const entries = [{ name: `${archiveName}/data.pkl`, data: pkl }];
  for (const s of storages) entries.push({ name: `${archiveName}/data/${s.key}`, data: s.data });
  entries.push({ name: `${archiveName}/version`, data: new TextEncoder().encode('3\n') });
  return writeZip(entries);
}

/**
 * Writes a value as a `.pth` file that Python's `torch.load` reads. The write is
 * atomic: a temporary file in the same folder, flushed, then renamed over `path`,
 * so an interrupted save never destroys the previous file.
 */
export async function savePth(path: string, value: PthWritable): Promise<void> {
  const name = basename(path).replace(/\.[^.]*$/, '').replace(/[^A-Za-z0-9_]/g, '_') || 'archive';
  await writeFileAtomic(path, serializePth(value, name));
}

/** Saves a state dict (e.g. `model.stateDict()`) as a `.pth` file, atomically. */
export async function saveStateDictFile(path: string, state: Map<string, Tensor>): Promise<void> {
  await savePth(path, state);
}

