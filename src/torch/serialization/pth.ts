// PyTorch's `.pth` files (torch.save's zip format) in and out: state dicts with
// torchvision's key names load as they are, and what we write loads in Python.
import { basename } from 'node:path';
import { dtypeCode, dtypeSize, type DType } from '../dtype.js';
import { native } from '../native.js';
import { isSafetensorsPath, readSafetensors, saveSafetensors } from './safetensors.js';
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
  pickleText,
  unpickle,
  unpickleAt,
  type GlobalFactory,
  type PickleValue,
  type PickleWritable,
} from './pickle.js';
import { readZip, writeZip, ZipFormatError } from './zip.js';
import { readRegularFile } from '../../util/read-files.js';
import { InputError } from '../../util/errors.js';

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
export class PthError extends InputError {}

/** An integer from a pickle (a number or a big int), or null. */
function asInt(v: PickleValue | undefined): bigint | null {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number' && Number.isInteger(v)) return BigInt(v);
  return null;
}

/** A tuple of non-negative integers (sizes or strides) from a pickle. */
function asDims(v: PickleValue | undefined, what: string): bigint[] {
  if (!Array.isArray(v)) throw new PthError(`${what} is not a tuple of ints`);
  if (v.length > 64) throw new PthError(`${what} has ${v.length} dimensions (PyTorch allows 64)`);
  return (v as PickleValue[]).map((x) => {
    const n = asInt(x);
    if (n === null || n < 0n) throw new PthError(`${what} is not a tuple of non-negative ints: ${pickleText(v)}`);
    return n;
  });
}

const MAX_INDEX = 2n ** 62n;

/**
 * Every allocation a `.pth` file asks for, checked before it is made: storage
 * sizes against the bytes the file really holds, each tensor's offset, sizes
 * and strides (in exact integer arithmetic, so nothing wraps around) against its
 * storage, and the bytes of all tensors together against a budget set by the
 * file's size (twice its storages' bytes, plus 64 KiB) — a small file can never
 * make the reader allocate gigabytes.
 */
class AllocationBudget {
  private storageBytes = 0n;
  private tensorBytes = 0n;
  private readonly storages = new Map<Tensor, { numel: bigint; itemSize: number; key: string }>();

  constructor(private readonly what: string) {}

  /** Checks a storage of `numel` elements against the `available` bytes that hold it; returns its size in bytes. */
  storage(key: string, numelValue: PickleValue | undefined, type: DType, available: number): number {
    const numel = asInt(numelValue);
    if (numel === null || numel < 0n) throw new PthError(`${this.what}: storage ${key} has an invalid element count (${pickleText(numelValue)})`);
    const bytes = numel * BigInt(dtypeSize(type));
    if (bytes > BigInt(available))
      throw new PthError(`${this.what}: storage ${key} claims ${bytes} bytes (${numel} × ${type}), but the file holds only ${available} for it; the file is truncated or corrupt`);
    this.storageBytes += bytes;
    return Number(bytes);
  }

  /** Registers a storage tensor, so that only real storages can back tensors. */
  register(t: Tensor, key: string, numel: number, type: DType): void {
    this.storages.set(t, { numel: BigInt(numel), itemSize: dtypeSize(type), key });
  }

  /**
   * Checks a tensor view (offset, sizes, strides) of `storage` and charges its bytes
   * to the budget; returns the view's arguments as plain numbers for `as_strided`.
   */
  view(
    storage: PickleValue | undefined,
    offsetValue: PickleValue | undefined,
    sizeValue: PickleValue | undefined,
    strideValue: PickleValue | undefined,
  ): { storage: Tensor; offset: number; size: number[]; stride: number[] } {
    const s = storage instanceof Tensor ? this.storages.get(storage) : undefined;
    if (s === undefined || !(storage instanceof Tensor)) throw new PthError(`${this.what}: a tensor without a storage`);
    const where = `${this.what}: tensor on storage ${s.key}`;
    const offset = asInt(offsetValue);
    if (offset === null || offset < 0n) throw new PthError(`${where} has an invalid storage offset (${pickleText(offsetValue)})`);
    const size = asDims(sizeValue, `${where}: its size`);
    const stride = asDims(strideValue, `${where}: its stride`);
    if (size.length !== stride.length) throw new PthError(`${where} has ${size.length} sizes but ${stride.length} strides`);
    let numel = 1n;
    let last = offset;
    for (let i = 0; i < size.length; i++) {
      numel *= size[i]!;
      if (size[i]! > 0n) last += (size[i]! - 1n) * stride[i]!;
      if (numel > MAX_INDEX || last > MAX_INDEX) throw new PthError(`${where}: offset ${offset}, size (${size.join(', ')}) and stride (${stride.join(', ')}) are out of range`);
    }
    if (numel > 0n && last >= s.numel) {
      throw new PthError(`${where}: offset ${offset}, size (${size.join(', ')}) and stride (${stride.join(', ')}) reach element ${last}, but the storage has ${s.numel}`);
    }
    if (numel === 0n && offset > s.numel) throw new PthError(`${where}: offset ${offset} is past the storage's ${s.numel} elements`);
    // A view may legitimately repeat elements (stride 0), but never by much more than the file holds.
    this.tensorBytes += numel * BigInt(s.itemSize);
    const budget = 2n * this.storageBytes + 2n ** 16n;
    if (this.tensorBytes > budget) {
      throw new PthError(`${where}: the tensors would take ${this.tensorBytes} bytes from ${this.storageBytes} bytes of storage (stride 0 or overlapping views); refusing`);
    }
    return { storage, offset: Number(offset), size: size.map(Number), stride: stride.map(Number) };
  }
}

/**
 * Reads a `.pth` file written by `torch.save` (PyTorch ≥ 1.6 zip format, or the
 * legacy format). Tensors come back as Tensors (owned by the caller), dicts as
 * Maps, lists and tuples as arrays. Anything else in the pickle is refused, and
 * every size in the file is checked before anything is allocated.
 */
export async function loadPth(path: string): Promise<PthValue> {
  let buf: Buffer;
  try {
    buf = await readRegularFile(path);
  } catch (e) {
    throw new PthError(`cannot read ${path}: ${(e as Error).message}`);
  }
  return parsePth(buf, path);
}

/** The storage dtype a persistent id names, or undefined. */
function storageType(pid: PickleValue): DType | undefined {
  return Array.isArray(pid) && pid[0] === 'storage' && pid[1] instanceof PickleGlobal ? STORAGE_DTYPES[pid[1].name.slice('torch.'.length)] : undefined;
}

/** Parses the bytes of a `.pth` file (see `loadPth`); `what` names it in errors. */
export function parsePth(buf: Buffer, what = 'buffer'): PthValue {
  try {
    return buf.length >= 2 && buf[0] === 0x80 ? parseLegacyPth(buf, what) : parseZipPth(buf, what);
  } catch (e) {
    if (e instanceof PthError) throw e;
    // Whatever else a hostile file provokes (a libtorch check, a malformed value) is still an error about the file.
    throw new PthError(`${what}: corrupt or unsupported .pth file (${(e as Error).message.split('\n')[0]})`);
  }
}

/** The records of a zip-format `.pth`; a broken archive is a PthError. */
function zipRecords(buf: Buffer, what: string): Map<string, Uint8Array> {
  try {
    return readZip(buf, what);
  } catch (e) {
    if (e instanceof ZipFormatError) throw new PthError(e.message);
    throw e;
  }
}

function parseZipPth(buf: Buffer, what: string): PthValue {
  const records = zipRecords(buf, what);
  const pklName = [...records.keys()].find((k) => k.endsWith('/data.pkl') || k === 'data.pkl');
  if (pklName === undefined) throw new PthError(`${what}: no data.pkl record; this is not a file written by torch.save`);
  const prefix = pklName.slice(0, pklName.length - 'data.pkl'.length);
  // PyTorch 2.x records the byte order its storages were written in; ours are read as little-endian.
  const byteorder = records.get(`${prefix}byteorder`);
  if (byteorder !== undefined) {
    const order = new TextDecoder().decode(byteorder).trim();
    if (order !== 'little') throw new PthError(`${what}: its byteorder record says '${order.slice(0, 16)}'; only little-endian files are read`);
  }
  const created: Tensor[] = [];
  const storages = new Map<string, Tensor>();
  const budget = new AllocationBudget(what);
  const storageFor = (pid: PickleValue): PickleValue => {
    const type = storageType(pid);
    if (type === undefined) throw new PthError(`${what}: unsupported persistent id in data.pkl`);
    const [, , keyValue, , numel] = pid as [string, PickleGlobal, PickleValue, string, PickleValue];
    const key = pickleText(keyValue);
    let t = storages.get(key);
    if (t === undefined) {
      const bytes = records.get(`${prefix}data/${key}`);
      if (bytes === undefined) throw new PthError(`${what}: storage record data/${key} is missing`);
      const n = budget.storage(key, numel, type, bytes.length);
      const raw = new Tensor(native.fromTypedArray(bytes.subarray(0, n), [n]));
      t = new Tensor(callTensorOp('aten::view.dtype', [raw.handle, dtypeCode(type)]));
      raw.dispose();
      storages.set(key, t);
      budget.register(t, key, n / dtypeSize(type), type);
    }
    return t;
  };
  const globals = allowedGlobals((args) => {
    const v = budget.view(args[0], args[1], args[2], args[3]);
    const view = new Tensor(callTensorOp('aten::as_strided', [v.storage.handle, v.size, v.stride, v.offset]));
    const t = view.clone('contiguous');
    view.dispose();
    created.push(t);
    return t;
  });
  try {
    return keepReachable(unpickle(records.get(pklName)!, globals, storageFor, `${what} (data.pkl)`), created, what);
  } catch (e) {
    for (const t of created) t.dispose();
    if (e instanceof PickleError) throw new PthError(e.message);
    throw e;
  } finally {
    for (const s of storages.values()) s.dispose();
  }
}

/**
 * Disposes the tensors a pickle built but did not hand back (a crafted pickle can
 * build and drop them), so that the caller owns exactly what it receives.
 */
function keepReachable(value: PthValue, created: Tensor[], what: string): PthValue {
  const reachable = new Set<Tensor>();
  const seen = new Set<unknown>();
  const walk = (v: unknown): void => {
    if (v instanceof Tensor) reachable.add(v);
    if (v === null || typeof v !== 'object' || seen.has(v)) return;
    seen.add(v);
    if (v instanceof Map) {
      for (const [k, x] of v) {
        walk(k);
        walk(x);
      }
    } else if (Array.isArray(v)) for (const x of v) walk(x);
  };
  walk(value);
  const own = new Set(created);
  // The caller's catch disposes every created tensor.
  if ([...reachable].some((t) => !own.has(t))) throw new PthError(`${what}: a storage outside of any tensor (torch.save never writes one)`);
  for (const t of created) if (!reachable.has(t)) t.dispose();
  return value;
}

/** The globals a state dict may name; tensors are rebuilt by `rebuildTensor`. */
function allowedGlobals(rebuildTensor: GlobalFactory): Map<string, GlobalFactory> {
  const globals = new Map<string, GlobalFactory>([
    ['collections.OrderedDict', () => new OrderedDictValue()],
    ['torch._utils._rebuild_tensor_v2', rebuildTensor],
    ['torch._utils._rebuild_tensor', rebuildTensor],
    ['torch._utils._rebuild_parameter', (args) => args[0]!],
    ['torch._utils._rebuild_parameter_with_state', (args) => args[0]!],
    ['_codecs.encode', (args) => Uint8Array.from(pickleText(args[0]), (c) => c.charCodeAt(0))],
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
  const budget = new AllocationBudget(what);
  const placeholders = new Map<string, { dtype: DType; numel: number; tensor: Tensor; filled: boolean }>();
  const noPersistent = (): never => {
    throw new PthError(`${what}: unexpected persistent id in the file header`);
  };
  const plainGlobals = allowedGlobals(() => {
    throw new PthError(`${what}: a tensor in the file header`);
  });
  try {
    const magic = unpickleAt(buf, 0, plainGlobals, noPersistent, what);
    const magicInt = asInt(magic.value);
    if (magicInt !== LEGACY_MAGIC) throw new PthError(`${what}: not a PyTorch file (a pickle, but without torch.save's magic number)`);
    const protocol = unpickleAt(buf, magic.end, plainGlobals, noPersistent, what);
    if (protocol.value !== 1001) throw new PthError(`${what}: unsupported legacy protocol ${pickleText(protocol.value)}`);
    const sysInfo = unpickleAt(buf, protocol.end, plainGlobals, noPersistent, what);
    // Storages come after the object, so the object is first built on empty
    // placeholders of the right size, filled in place afterwards. Every storage's
    // bytes must be in the rest of the file, so that bounds what may be allocated.
    let claimed = 0;
    const storageFor = (pid: PickleValue): PickleValue => {
      const type = storageType(pid);
      if (type === undefined) throw new PthError(`${what}: unsupported persistent id`);
      const [, , keyValue, , numel, viewMetadata] = pid as [string, PickleGlobal, PickleValue, string, PickleValue, PickleValue];
      if (viewMetadata !== null && viewMetadata !== undefined) throw new PthError(`${what}: storage views are not supported`);
      const key = pickleText(keyValue);
      let p = placeholders.get(key);
      if (p === undefined) {
        const bytes = budget.storage(key, numel, type, buf.length - sysInfo.end - claimed);
        claimed += bytes;
        const n = bytes / dtypeSize(type);
        p = { dtype: type, numel: n, tensor: new Tensor(callTensorOp('aten::zeros', [[n], dtypeCode(type), null, 'cpu', null])), filled: false };
        budget.register(p.tensor, key, n, type);
        placeholders.set(key, p);
      }
      return p.tensor;
    };
    const rebuilt = new Map<Tensor, { storage: Tensor; offset: number; size: number[]; stride: number[] }>();
    const lazyGlobals = allowedGlobals((args) => {
      const v = budget.view(args[0], args[1], args[2], args[3]);
      const t = new Tensor(callTensorOp('aten::zeros', [v.size, native.dtype(v.storage.handle), null, 'cpu', null]));
      created.push(t);
      rebuilt.set(t, v);
      return t;
    });
    const obj = unpickleAt(buf, sysInfo.end, lazyGlobals, storageFor, `${what} (object)`);
    const keys = unpickleAt(buf, obj.end, plainGlobals, noPersistent, `${what} (storage keys)`);
    if (!Array.isArray(keys.value)) throw new PthError(`${what}: storage key list missing`);
    let pos = keys.end;
    for (const keyValue of keys.value) {
      const key = pickleText(keyValue);
      const p = placeholders.get(key);
      if (p === undefined) throw new PthError(`${what}: storage ${key} is listed but never used`);
      if (p.filled) throw new PthError(`${what}: storage ${key} is listed twice`);
      if (pos + 8 > buf.length) throw new PthError(`${what}: truncated before storage ${key}`);
      const numel = buf.readBigInt64LE(pos);
      pos += 8;
      const bytes = p.numel * dtypeSize(p.dtype);
      if (numel !== BigInt(p.numel) || pos + bytes > buf.length) throw new PthError(`${what}: storage ${key} is truncated or of the wrong size`);
      const raw = new Tensor(native.fromTypedArray(buf.subarray(pos, pos + bytes), [bytes]));
      const typed = new Tensor(callTensorOp('aten::view.dtype', [raw.handle, dtypeCode(p.dtype)]));
      p.tensor.copy_(typed);
      typed.dispose();
      raw.dispose();
      p.filled = true;
      pos += bytes;
    }
    const missing = [...placeholders].filter(([, p]) => !p.filled).map(([k]) => k);
    if (missing.length > 0) throw new PthError(`${what}: the data of storage(s) ${missing.slice(0, 5).join(', ')} is missing; the file is truncated`);
    for (const [t, r] of rebuilt) {
      const view = new Tensor(callTensorOp('aten::as_strided', [r.storage.handle, r.size, r.stride, r.offset]));
      t.copy_(view);
      view.dispose();
    }
    return keepReachable(obj.value, created, what);
  } catch (e) {
    for (const t of created) t.dispose();
    if (e instanceof PickleError) throw new PthError(e.message);
    throw e;
  } finally {
    for (const p of placeholders.values()) p.tensor.dispose();
  }
}

/**
 * Reads a state dict (parameter name → tensor) from a `.pth` file, or from a
 * `.safetensors` file (timm's and the Hub's weights). A `.pth` checkpoint that wraps
 * it (`{state_dict: ...}` or `{model: ...}`) is unwrapped.
 */
export async function loadStateDictFile(path: string): Promise<Map<string, Tensor>> {
  if (isSafetensorsPath(path)) return (await readSafetensors(path)).tensors;
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
  for (const [k, t] of v) out.set(pickleText(k), t as Tensor);
  return out;
}

function allTensors(m: Map<PickleValue, PickleValue>): boolean {
  for (const [k, t] of m) if (typeof k !== 'string' || !(t instanceof Tensor)) return false;
  return true;
}

/** Values `savePth` can write: tensors, numbers, strings, booleans, null, arrays, Maps and plain objects of them. */
export type PthWritable = Tensor | null | boolean | number | bigint | string | PthWritable[] | Map<string | number, PthWritable> | { [key: string]: PthWritable };

/**
 * Encodes a value as the bytes of a `.pth` file. `extras` become records
 * `{archive}/extra/{name}` beside the pickle: `torch.load` ignores them, and
 * `readPthExtras` reads them back (fastvision keeps a model's description there).
 */
export function serializePth(value: PthWritable, archiveName = 'archive', extras: Record<string, Uint8Array | string> = {}): Buffer {
  const storages: { key: string; data: Uint8Array }[] = [];
  const emptyOrderedDict = (): PyReduce => new PyReduce('collections', 'OrderedDict', []);
  const encodeTensor = (t: Tensor): PyReduce =>
    tidy(() => {
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
  for (const [name, data] of Object.entries(extras)) {
    if (!/^[\w.-]+$/.test(name)) throw new Error(`serializePth: extra record name '${name}' must be a plain file name`);
    entries.push({ name: `${archiveName}/extra/${name}`, data: typeof data === 'string' ? new TextEncoder().encode(data) : data });
  }
  return writeZip(entries);
}

/** The extra records of a `.pth` file (see `serializePth`), by name; none for the legacy format. */
export function readPthExtras(buf: Buffer, what = 'buffer'): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  if (buf.length >= 2 && buf[0] === 0x80) return out;
  for (const [name, data] of zipRecords(buf, what)) {
    const m = /^[^/]+\/extra\/([\w.-]+)$/.exec(name);
    if (m) out.set(m[1]!, data);
  }
  return out;
}

/**
 * Writes a value as a `.pth` file that Python's `torch.load` reads. The write is
 * atomic: a temporary file in the same folder, flushed, then renamed over `path`,
 * so an interrupted save never destroys the previous file.
 */
export async function savePth(path: string, value: PthWritable, { extras }: { extras?: Record<string, Uint8Array | string> } = {}): Promise<void> {
  const name =
    basename(path)
      .replace(/\.[^.]*$/, '')
      .replace(/[^A-Za-z0-9_]/g, '_') || 'archive';
  await writeFileAtomic(path, serializePth(value, name, extras));
}

/** Saves a state dict (e.g. `model.stateDict()`) as a `.pth` file, or as `.safetensors` by the path's extension, atomically. */
export async function saveStateDictFile(path: string, state: Map<string, Tensor>): Promise<void> {
  if (isSafetensorsPath(path)) await saveSafetensors(path, state);
  else await savePth(path, state);
}
