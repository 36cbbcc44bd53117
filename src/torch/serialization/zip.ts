// The zip container of PyTorch's `.pth` files: uncompressed records, data
// aligned to 64 bytes, as torch.save writes them. Reading also accepts deflate
// and ZIP64, in case a file was repacked by another tool.
import { inflateRawSync } from 'node:zlib';
import { InputError } from '../../util/errors.js';

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (zip's checksum) of a byte array. */
export function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** A record read from a zip archive. */
export interface ZipEntry {
  name: string;
  data: Uint8Array;
}

/** A corrupt, truncated or unsupported archive. */
export class ZipFormatError extends InputError {}

function u16(b: Buffer, o: number): number {
  return b.readUInt16LE(o);
}
function u32(b: Buffer, o: number): number {
  return b.readUInt32LE(o);
}
function u64(b: Buffer, o: number): number {
  return Number(b.readBigUInt64LE(o));
}

/**
 * How much a compressed archive may expand, in all, relative to its own size:
 * weights barely compress, so a file that inflates by more is a zip bomb.
 */
const MAX_EXPANSION = 16;

/**
 * Reads every record of a zip archive held in memory, checking each CRC.
 * Compressed records may expand to at most 16× the archive's size (plus 1 MiB)
 * in all; this is checked from the declared sizes before inflating anything.
 */
export function readZip(buf: Buffer, what = 'archive'): Map<string, Uint8Array> {
  const fail = (why: string): never => {
    throw new ZipFormatError(`${what}: not a valid PyTorch zip file (${why})`);
  };
  if (buf.length < 22) fail('too short');
  // The end-of-central-directory record sits within the last 64 KiB + 22 bytes.
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 65557); i--) {
    if (u32(buf, i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) fail('no end-of-central-directory record; the file may be truncated');
  let count = u16(buf, eocd + 10);
  let cdSize = u32(buf, eocd + 12);
  let cdOffset = u32(buf, eocd + 16);
  if (count === 0xffff || cdOffset === 0xffffffff || cdSize === 0xffffffff) {
    const loc = eocd - 20;
    if (loc < 0 || u32(buf, loc) !== 0x07064b50) fail('missing ZIP64 locator');
    const z64 = u64(buf, loc + 8);
    if (z64 + 56 > buf.length || u32(buf, z64) !== 0x06064b50) fail('bad ZIP64 end record');
    count = u64(buf, z64 + 32);
    cdSize = u64(buf, z64 + 40);
    cdOffset = u64(buf, z64 + 48);
  }
  if (cdOffset + cdSize > buf.length) fail('central directory past the end of the file; the file is truncated');
  const out = new Map<string, Uint8Array>();
  let inflated = 0;
  const maxInflated = MAX_EXPANSION * buf.length + 2 ** 20;
  let p = cdOffset;
  for (let i = 0; i < count; i++) {
    if (p + 46 > buf.length || u32(buf, p) !== 0x02014b50) fail(`bad central directory entry ${i}`);
    const method = u16(buf, p + 10);
    const crc = u32(buf, p + 16);
    let compSize = u32(buf, p + 20);
    let size = u32(buf, p + 24);
    const nameLen = u16(buf, p + 28);
    const extraLen = u16(buf, p + 30);
    const commentLen = u16(buf, p + 32);
    let localOffset = u32(buf, p + 42);
    if (p + 46 + nameLen + extraLen + commentLen > buf.length) fail(`central directory entry ${i} runs past the end of the file`);
    const name = buf.toString('utf8', p + 46, p + 46 + nameLen);
    // ZIP64 extra field: the 64-bit values replace the saturated 32-bit ones, in order.
    let e = p + 46 + nameLen;
    const eEnd = e + extraLen;
    while (e + 4 <= eEnd) {
      const id = u16(buf, e);
      const len = u16(buf, e + 2);
      if (id === 0x0001) {
        let q = e + 4;
        if (size === 0xffffffff) {
          size = u64(buf, q);
          q += 8;
        }
        if (compSize === 0xffffffff) {
          compSize = u64(buf, q);
          q += 8;
        }
        if (localOffset === 0xffffffff) localOffset = u64(buf, q);
      }
      e += 4 + len;
    }
    p = eEnd + commentLen;
    if (localOffset + 30 > buf.length || u32(buf, localOffset) !== 0x04034b50) fail(`bad local header for ${name}`);
    const start = localOffset + 30 + u16(buf, localOffset + 26) + u16(buf, localOffset + 28);
    if (start + compSize > buf.length) fail(`${name} runs past the end of the file; the file is truncated`);
    const raw = buf.subarray(start, start + compSize);
    let data: Uint8Array;
    if (method === 0) data = raw;
    else if (method === 8) {
      inflated += size;
      if (inflated > maxInflated) fail(`${name} would inflate to ${size} bytes, beyond ${MAX_EXPANSION}× the file's size (a zip bomb?)`);
      try {
        // Never more than the declared size, whatever the stream says.
        data = inflateRawSync(raw, { maxOutputLength: Math.max(1, size) });
      } catch {
        return fail(`${name} does not inflate to its declared ${size} bytes`);
      }
    } else return fail(`${name} uses unsupported compression method ${method}`);
    if (data.length !== size) fail(`${name} has ${data.length} bytes, expected ${size}`);
    if (crc32(data) !== crc) fail(`checksum mismatch in ${name}; the file is corrupt`);
    out.set(name, data);
  }
  return out;
}

/** Writes records into a zip archive (stored, data aligned to 64 bytes as PyTorch does). */
export function writeZip(entries: ZipEntry[]): Buffer {
  const chunks: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const { name, data } of entries) {
    const nameBuf = Buffer.from(name, 'utf8');
    const crc = crc32(data);
    // Pad with an extra field so that the data starts on a 64-byte boundary.
    const headerEnd = offset + 30 + nameBuf.length;
    const pad = (64 - ((headerEnd + 4) % 64)) % 64;
    const extra = Buffer.alloc(4 + pad);
    extra.writeUInt16LE(0x4246, 0); // 'FB', the id PyTorch's writer uses for padding
    extra.writeUInt16LE(pad, 2);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0, 6);
    local.writeUInt16LE(0, 8);
    local.writeUInt32LE(0, 10);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBuf.length, 26);
    local.writeUInt16LE(extra.length, 28);
    chunks.push(local, nameBuf, extra, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    const cd = Buffer.alloc(46);
    cd.writeUInt32LE(0x02014b50, 0);
    cd.writeUInt16LE(20, 4);
    cd.writeUInt16LE(20, 6);
    cd.writeUInt32LE(crc, 16);
    cd.writeUInt32LE(data.length, 20);
    cd.writeUInt32LE(data.length, 24);
    cd.writeUInt16LE(nameBuf.length, 28);
    cd.writeUInt32LE(offset, 42);
    central.push(cd, nameBuf);
    offset += 30 + nameBuf.length + extra.length + data.length;
    if (offset > 0xffffffff) throw new RangeError('writeZip: archives over 4 GiB are not supported');
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
