// Builders of hostile `.pth` files, in both of PyTorch's formats, for the
// reader's tests and its fuzzer: any offset, size, stride or storage length a
// stranger's file could claim, and zip records compressed as a stranger likes.
import { deflateRawSync } from 'node:zlib';
import { crc32, writeZip } from '../src/torch/serialization/zip.js';
import { pickle, PyGlobal, PyPersistent, PyReduce, PyTuple, type PickleWritable } from '../src/torch/serialization/pickle.js';

/** What one tensor of a hostile file claims. */
export interface TensorClaim {
  /** Elements the storage says it has. */
  numel: number | bigint;
  /** Bytes of storage data really in the file. */
  dataBytes: number;
  offset: number | bigint;
  size: (number | bigint)[];
  stride: (number | bigint)[];
}

const int = (v: number | bigint): number | bigint => (typeof v === 'bigint' && v >= -(2n ** 53n) && v <= 2n ** 53n ? Number(v) : v);

function tensorPickle(c: TensorClaim): PickleWritable {
  const storage = new PyPersistent(new PyTuple(['storage', new PyGlobal('torch', 'FloatStorage'), '0', 'cpu', int(c.numel)]));
  return new Map([
    [
      'weight',
      new PyReduce('torch._utils', '_rebuild_tensor_v2', [storage, int(c.offset), new PyTuple(c.size.map(int)), new PyTuple(c.stride.map(int)), false, new PyReduce('collections', 'OrderedDict', [])]),
    ],
  ]);
}

/** A zip-format `.pth` (as torch.save writes) holding one float tensor as claimed. */
export function zipPth(c: TensorClaim): Buffer {
  return writeZip([
    { name: 'archive/data.pkl', data: pickle(tensorPickle(c)) },
    { name: 'archive/data/0', data: new Uint8Array(c.dataBytes) },
    { name: 'archive/version', data: new TextEncoder().encode('3\n') },
  ]);
}

/** A legacy-format (pre-1.6) `.pth` holding one float tensor as claimed; the storage's own header says `headerNumel` (default: the claim). */
export function legacyPth(c: TensorClaim, headerNumel: bigint = BigInt(c.numel)): Buffer {
  const magic = pickle(0x1950a86a20f9469cfc6cn);
  const protocol = pickle(1001);
  const sys = pickle({ protocol_version: 1001, little_endian: true });
  const obj = pickle(tensorPickle(c));
  const keys = pickle(['0']);
  const count = Buffer.alloc(8);
  count.writeBigInt64LE(headerNumel);
  return Buffer.concat([magic, protocol, sys, obj, keys, count, Buffer.alloc(c.dataBytes)]);
}

/** A zip archive whose records are deflated, each declaring `declared(name, real size)` as its size. */
export function deflatedZip(entries: { name: string; data: Uint8Array }[], declared: (name: string, size: number) => number = (_, n) => n): Buffer {
  const chunks: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const { name, data } of entries) {
    const nameBuf = Buffer.from(name);
    const comp = deflateRawSync(data);
    const size = declared(name, data.length);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(8, 8);
    local.writeUInt32LE(crc32(data), 14);
    local.writeUInt32LE(comp.length, 18);
    local.writeUInt32LE(size, 22);
    local.writeUInt16LE(nameBuf.length, 26);
    chunks.push(local, nameBuf, comp);
    const cd = Buffer.alloc(46);
    cd.writeUInt32LE(0x02014b50, 0);
    cd.writeUInt16LE(20, 4);
    cd.writeUInt16LE(20, 6);
    cd.writeUInt16LE(8, 10);
    cd.writeUInt32LE(crc32(data), 16);
    cd.writeUInt32LE(comp.length, 20);
    cd.writeUInt32LE(size, 24);
    cd.writeUInt16LE(nameBuf.length, 28);
    cd.writeUInt32LE(offset, 42);
    central.push(cd, nameBuf);
    offset += 30 + nameBuf.length + comp.length;
  }
  const cdBuf = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cdBuf.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...chunks, cdBuf, end]);
}
