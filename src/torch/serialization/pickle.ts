// A restricted pickle reader and a small pickle writer: exactly what PyTorch
// state dicts use. Reading resolves only the globals in an allow-list, so a
// weights file can never run code (PyTorch's `weights_only=True` in spirit).
import { InputError } from '../../util/errors.js';

/** A Python global the reader allows, as `module.name`. */
export type GlobalName = string;

/** A persistent reference (PyTorch uses them for tensor storages). */
export type PersistentLoader = (pid: PickleValue) => PickleValue;

/** A Python object reconstructed by a whitelisted global. */
export type GlobalFactory = (args: PickleValue[]) => PickleValue;

/** What unpickling can produce. */
export type PickleValue = null | boolean | number | bigint | string | Uint8Array | PickleValue[] | Map<PickleValue, PickleValue> | PickleGlobal | object;

/** A reference to a whitelisted global (a class or function) before it is called. */
export class PickleGlobal {
  constructor(
    readonly name: GlobalName,
    readonly call: GlobalFactory,
  ) {}
}

/** An object whose state arrives through BUILD (OrderedDict's `_metadata`); reconstruction ignores it. */
export interface Buildable {
  build?(state: PickleValue): void;
}

/** A pickle that is malformed or asks for something not allowed. */
export class PickleError extends InputError {}

const MARK = Symbol('mark');
type StackItem = PickleValue | typeof MARK;

/**
 * Unpickles `data`. `globals` maps allowed `module.name` to factories; any other
 * global is refused with an error naming it. `persistentLoad` resolves BINPERSID.
 */
export function unpickle(data: Uint8Array, globals: Map<GlobalName, GlobalFactory>, persistentLoad: PersistentLoader, what = 'pickle'): PickleValue {
  return unpickleAt(data, 0, globals, persistentLoad, what).value;
}

/** Unpickles the pickle that starts at `start`; returns its value and the offset just past its STOP. */
export function unpickleAt(data: Uint8Array, start: number, globals: Map<GlobalName, GlobalFactory>, persistentLoad: PersistentLoader, what = 'pickle'): { value: PickleValue; end: number } {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const dec = new TextDecoder('utf-8');
  const stack: StackItem[] = [];
  const memo = new Map<number, PickleValue>();
  let pos = start;
  const fail = (why: string): never => {
    throw new PickleError(`${what}: ${why} (at byte ${pos})`);
  };
  const need = (n: number): void => {
    if (pos + n > data.length) fail('unexpected end of data; the file is truncated');
  };
  const u8 = (): number => (need(1), data[pos++]!);
  const u16 = (): number => (need(2), (pos += 2), view.getUint16(pos - 2, true));
  const u32 = (): number => (need(4), (pos += 4), view.getUint32(pos - 4, true));
  const i32 = (): number => (need(4), (pos += 4), view.getInt32(pos - 4, true));
  const bytes = (n: number): Uint8Array => (need(n), (pos += n), data.subarray(pos - n, pos));
  const line = (): string => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0) fail('unterminated text line');
    const s = dec.decode(data.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const pop = (): PickleValue => {
    const v = stack.pop();
    if (v === undefined || v === MARK) fail('stack underflow');
    return v as PickleValue;
  };
  const top = (): PickleValue => {
    const v = stack[stack.length - 1];
    if (v === undefined || v === MARK) fail('stack underflow');
    return v as PickleValue;
  };
  const popMark = (): PickleValue[] => {
    const items: PickleValue[] = [];
    for (;;) {
      const v = stack.pop();
      if (v === undefined) fail('missing MARK');
      if (v === MARK) break;
      items.push(v as PickleValue);
    }
    return items.reverse();
  };
  const findGlobal = (module: string, name: string): PickleGlobal => {
    const full = `${module}.${name}`;
    const f = globals.get(full);
    if (f === undefined) fail(`refusing to load '${full}': only tensors, numbers, strings and containers are allowed`);
    return new PickleGlobal(full, f!);
  };
  const long = (b: Uint8Array): number | bigint => {
    // State dicts hold no integers beyond 64 bits; a longer one is a malformed file (and costly to decode).
    if (b.length > 16) fail(`an integer of ${b.length} bytes`);
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
    if (b.length > 0 && b[b.length - 1]! & 0x80) v -= 1n << BigInt(8 * b.length);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const setItems = (target: PickleValue, items: PickleValue[]): void => {
    if (!(target instanceof Map)) fail('SETITEMS on something that is not a dict');
    for (let i = 0; i + 1 < items.length; i += 2) (target as Map<PickleValue, PickleValue>).set(items[i]!, items[i + 1]!);
  };
  const appendItems = (target: PickleValue, items: PickleValue[]): void => {
    if (!Array.isArray(target)) fail('APPENDS on something that is not a list');
    (target as PickleValue[]).push(...items);
  };

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        u8();
        break;
      case 0x95: // FRAME
        bytes(8);
        break;
      case 0x2e: // STOP
        return { value: pop(), end: pos };
      case 0x28: // MARK
        stack.push(MARK);
        break;
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push([]);
        break;
      case 0x8f: // EMPTY_SET
        stack.push([]);
        break;
      case 0x74: // TUPLE
        stack.push(popMark());
        break;
      case 0x85: // TUPLE1
        stack.push([pop()]);
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        stack.push([pop(), b]);
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        stack.push([pop(), b, c]);
        break;
      }
      case 0x91: // FROZENSET
        stack.push(popMark());
        break;
      case 0x61: {
        // APPEND
        const v = pop();
        appendItems(top(), [v]);
        break;
      }
      case 0x65: // APPENDS
      case 0x90: {
        // ADDITEMS
        const items = popMark();
        appendItems(top(), items);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        // SETITEMS
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x4a: // BININT
        stack.push(i32());
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: // LONG1
        stack.push(long(bytes(u8())));
        break;
      case 0x8b: // LONG4
        stack.push(long(bytes(u32())));
        break;
      case 0x49: {
        // INT (text)
        const s = line();
        stack.push(s === '01' ? true : s === '00' ? false : Number.parseInt(s, 10));
        break;
      }
      case 0x4c: // LONG (text)
        stack.push(Number.parseInt(line().replace(/L$/, ''), 10));
        break;
      case 0x47: // BINFLOAT
        need(8);
        stack.push(view.getFloat64(pos, false));
        pos += 8;
        break;
      case 0x46: // FLOAT (text)
        stack.push(Number.parseFloat(line()));
        break;
      case 0x58: // BINUNICODE
        stack.push(dec.decode(bytes(u32())));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(dec.decode(bytes(u8())));
        break;
      case 0x8d: {
        // BINUNICODE8
        need(8);
        const n = Number(view.getBigUint64(pos, true));
        pos += 8;
        stack.push(dec.decode(bytes(n)));
        break;
      }
      case 0x54: // BINSTRING
        stack.push(dec.decode(bytes(i32())));
        break;
      case 0x55: // SHORT_BINSTRING
        stack.push(dec.decode(bytes(u8())));
        break;
      case 0x42: // BINBYTES
        stack.push(bytes(u32()).slice());
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(bytes(u8()).slice());
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x63: {
        // GLOBAL
        const module = line();
        const name = line();
        stack.push(findGlobal(module, name));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings');
        stack.push(findGlobal(module as string, name as string));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const fn = pop();
        if (!(fn instanceof PickleGlobal)) fail('REDUCE on something that is not an allowed global');
        if (!Array.isArray(args)) fail('REDUCE arguments are not a tuple');
        stack.push((fn as PickleGlobal).call(args as PickleValue[]));
        break;
      }
      case 0x81: {
        // NEWOBJ
        const args = pop();
        const cls = pop();
        if (!(cls instanceof PickleGlobal)) fail('NEWOBJ on something that is not an allowed class');
        stack.push((cls as PickleGlobal).call(args as PickleValue[]));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop();
        const obj = top() as Buildable;
        if (obj !== null && typeof obj === 'object' && typeof obj.build === 'function') obj.build(state);
        // Other objects (OrderedDict's _metadata) carry state we do not need.
        break;
      }
      case 0x51: // BINPERSID
        stack.push(persistentLoad(pop()));
        break;
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: {
        // BINGET
        const k = u8();
        if (!memo.has(k)) fail(`memo key ${k} missing`);
        stack.push(memo.get(k)!);
        break;
      }
      case 0x6a: {
        // LONG_BINGET
        const k = u32();
        if (!memo.has(k)) fail(`memo key ${k} missing`);
        stack.push(memo.get(k)!);
        break;
      }
      case 0x30: // POP
        stack.pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      default:
        fail(`unsupported pickle opcode 0x${op.toString(16)}`);
    }
  }
}

/** A Python tuple when writing (plain arrays are written as lists). */
export class PyTuple {
  constructor(readonly items: PickleWritable[]) {}
}

/** A call `module.name(*args)` when writing: how tensors and OrderedDicts are encoded. */
export class PyReduce {
  constructor(
    readonly module: string,
    readonly name: string,
    readonly args: PickleWritable[],
    readonly items?: Map<PickleWritable, PickleWritable>,
  ) {}
}

/** A persistent id when writing (PyTorch's storage references). */
export class PyPersistent {
  constructor(readonly id: PickleWritable) {}
}

/** A reference to a global when writing (e.g. `torch.FloatStorage`). */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
  ) {}
}

/** A Python float even when the value is integral. */
export class PyFloat {
  constructor(readonly value: number) {}
}

/** Values the writer knows how to encode. */
export type PickleWritable =
  null | boolean | number | bigint | string | PickleWritable[] | Map<PickleWritable, PickleWritable> | { [key: string]: PickleWritable } | PyTuple | PyReduce | PyPersistent | PyGlobal | PyFloat;

/** Pickles a value with protocol 2, as torch.save does. */
export function pickle(value: PickleWritable): Uint8Array {
  const out: number[] = [];
  const enc = new TextEncoder();
  const globalsMemo = new Map<string, number>();
  let memoCount = 0;
  const put = (): void => {
    if (memoCount < 256) out.push(0x71, memoCount);
    else out.push(0x72, ...u32le(memoCount));
    memoCount++;
  };
  const writeGlobal = (module: string, name: string): void => {
    const key = `${module}\n${name}\n`;
    const m = globalsMemo.get(key);
    if (m !== undefined) {
      if (m < 256) out.push(0x68, m);
      else out.push(0x6a, ...u32le(m));
      return;
    }
    out.push(0x63, ...enc.encode(key));
    globalsMemo.set(key, memoCount);
    put();
  };
  const writeInt = (n: number | bigint): void => {
    const b = BigInt(n);
    if (b >= 0n && b < 256n) out.push(0x4b, Number(b));
    else if (b >= 0n && b < 65536n) out.push(0x4d, Number(b) & 0xff, Number(b) >> 8);
    else if (b >= -(2n ** 31n) && b < 2n ** 31n) out.push(0x4a, ...i32le(Number(b)));
    else {
      const bytes: number[] = [];
      let v = b;
      for (;;) {
        bytes.push(Number(v & 0xffn));
        v >>= 8n;
        if ((v === 0n && !(bytes[bytes.length - 1]! & 0x80)) || (v === -1n && bytes[bytes.length - 1]! & 0x80)) break;
      }
      out.push(0x8a, bytes.length, ...bytes);
    }
  };
  const writeFloat = (x: number): void => {
    const b = new DataView(new ArrayBuffer(8));
    b.setFloat64(0, x, false);
    out.push(0x47, ...new Uint8Array(b.buffer));
  };
  const items = (entries: Iterable<[PickleWritable, PickleWritable]>): void => {
    let batch: [PickleWritable, PickleWritable][] = [];
    const flush = (): void => {
      if (batch.length === 0) return;
      out.push(0x28);
      for (const [k, v] of batch) {
        w(k);
        w(v);
      }
      out.push(0x75);
      batch = [];
    };
    for (const e of entries) {
      batch.push(e);
      if (batch.length === 1000) flush();
    }
    flush();
  };
  const w = (v: PickleWritable): void => {
    if (v === null) out.push(0x4e);
    else if (v === true) out.push(0x88);
    else if (v === false) out.push(0x89);
    else if (typeof v === 'number') {
      if (Number.isInteger(v) && Math.abs(v) <= Number.MAX_SAFE_INTEGER) writeInt(v);
      else writeFloat(v);
    } else if (typeof v === 'bigint') writeInt(v);
    else if (typeof v === 'string') {
      const b = enc.encode(v);
      out.push(0x58, ...u32le(b.length));
      for (const x of b) out.push(x);
      put();
    } else if (v instanceof PyFloat) writeFloat(v.value);
    else if (v instanceof PyGlobal) writeGlobal(v.module, v.name);
    else if (v instanceof PyTuple) {
      if (v.items.length === 0) out.push(0x29);
      else {
        out.push(0x28);
        for (const x of v.items) w(x);
        out.push(0x74);
      }
      put();
    } else if (v instanceof PyPersistent) {
      w(v.id);
      out.push(0x51);
    } else if (v instanceof PyReduce) {
      writeGlobal(v.module, v.name);
      w(new PyTuple(v.args));
      out.push(0x52);
      put();
      if (v.items) items(v.items.entries());
    } else if (Array.isArray(v)) {
      out.push(0x5d);
      put();
      if (v.length > 0) {
        out.push(0x28);
        for (const x of v) w(x);
        out.push(0x65);
      }
    } else if (v instanceof Map) {
      out.push(0x7d);
      put();
      items(v.entries());
    } else {
      out.push(0x7d);
      put();
      items(Object.entries(v));
    }
  };
  out.push(0x80, 2);
  w(value);
  out.push(0x2e);
  return Uint8Array.from(out);
}

function u32le(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
}

function i32le(n: number): number[] {
  return u32le(n >>> 0);
}

/**
 * A pickled value as an error message or a key shows it: strings and numbers as they are,
 * containers and objects by kind (never "[object Object]"), at most 8 items of a tuple.
 */
export function pickleText(v: unknown): string {
  if (v === null || v === undefined) return 'None';
  if (typeof v === 'string' || typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') return String(v);
  if (Array.isArray(v)) return `(${v.slice(0, 8).map(pickleText).join(', ')}${v.length > 8 ? ', …' : ''})`;
  if (v instanceof Map) return `a dict of ${v.size}`;
  if (v instanceof PickleGlobal) return v.name;
  if (v instanceof Uint8Array) return `${v.length} bytes`;
  return typeof v === 'object' ? `a ${(v as { constructor?: { name?: string } }).constructor?.name ?? 'object'}` : typeof v;
}
