// Windows bitmaps, which libvips (as sharp ships it) does not read: uncompressed
// 1/4/8-bit palette, 16-bit (5-5-5 or bit fields), 24-bit and 32-bit images, bottom-up
// or top-down. Every offset and size is checked against the bytes present before a
// pixel is read, and the pixel limit is checked from the header.
import { overLimitMessage } from './image-limits.js';
import type { RgbImage } from './jpeg.js';

/** Whether the bytes start like a Windows bitmap. */
export function isBmp(b: Uint8Array): boolean {
  return b.length >= 26 && b[0] === 0x42 && b[1] === 0x4d;
}

/** Width and height from a BMP's header, without decoding it. */
export function bmpSize(b: Uint8Array): { width: number; height: number } {
  if (!isBmp(b)) throw new Error('not a BMP file');
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const headerSize = v.getUint32(14, true);
  const [width, height] = headerSize === 12 ? [v.getUint16(18, true), v.getInt16(20, true)] : [v.getInt32(18, true), v.getInt32(22, true)];
  if (width <= 0 || height === 0) throw new Error(`BMP declares ${width}×${height} pixels`);
  return { width, height: Math.abs(height) };
}

const BI_RGB = 0;
const BI_RLE8 = 1;
const BI_RLE4 = 2;
const BI_BITFIELDS = 3;
const BI_ALPHABITFIELDS = 6;

/** The shift and width of a channel's bits in a mask, to scale it to 0..255. */
function maskScale(mask: number): { shift: number; max: number } {
  if (mask === 0) return { shift: 0, max: 0 };
  let shift = 0;
  while (((mask >>> shift) & 1) === 0) shift++;
  return { shift, max: mask >>> shift };
}

/**
 * Decodes a BMP to 8-bit RGB. Throws an Error saying what is wrong for a truncated,
 * inconsistent or unsupported (RLE-compressed, JPEG/PNG-in-BMP) file.
 */
export function decodeBmp(b: Uint8Array, maxPixels: number): RgbImage {
  if (!isBmp(b)) throw new Error('not a BMP file');
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const dataOffset = v.getUint32(10, true);
  const headerSize = v.getUint32(14, true);
  let width: number;
  let height: number;
  let bpp: number;
  let compression = BI_RGB;
  let colours = 0;
  if (headerSize === 12) {
    width = v.getUint16(18, true);
    height = v.getInt16(20, true);
    bpp = v.getUint16(24, true);
  } else if (headerSize >= 40 && b.length >= 14 + 40) {
    width = v.getInt32(18, true);
    height = v.getInt32(22, true);
    bpp = v.getUint16(28, true);
    compression = v.getUint32(30, true);
    colours = v.getUint32(46, true);
  } else {
    throw new Error(`BMP header of ${headerSize} bytes is not one of the known ones (12, 40, 52, 56, 108, 124)`);
  }
  const topDown = height < 0;
  height = Math.abs(height);
  if (width <= 0 || height <= 0) throw new Error(`BMP declares ${width}×${height} pixels`);
  if (width * height > maxPixels) throw new Error(overLimitMessage(width, height, maxPixels));
  if (compression === BI_RLE8 || compression === BI_RLE4) throw new Error('RLE-compressed BMPs are not supported; save it uncompressed or as PNG');
  if (compression !== BI_RGB && compression !== BI_BITFIELDS && compression !== BI_ALPHABITFIELDS) throw new Error(`BMP compression ${compression} (embedded JPEG or PNG) is not supported`);
  if (![1, 4, 8, 16, 24, 32].includes(bpp)) throw new Error(`BMP with ${bpp} bits per pixel is not supported`);
  if (compression !== BI_RGB && bpp !== 16 && bpp !== 32) throw new Error(`BMP bit fields need 16 or 32 bits per pixel, not ${bpp}`);

  // Palette (1/4/8 bits): after the header, 3 bytes per entry in the old header, else 4.
  let palette: Uint8Array | null = null;
  if (bpp <= 8) {
    const entries = colours === 0 ? 1 << bpp : colours;
    if (entries > 1 << bpp) throw new Error(`BMP palette of ${entries} colours for ${bpp} bits per pixel`);
    const step = headerSize === 12 ? 3 : 4;
    const at = 14 + headerSize;
    if (at + entries * step > b.length) throw new Error('BMP palette is cut off');
    palette = new Uint8Array((1 << bpp) * 3);
    for (let i = 0; i < entries; i++) {
      palette[i * 3] = b[at + i * step + 2]!;
      palette[i * 3 + 1] = b[at + i * step + 1]!;
      palette[i * 3 + 2] = b[at + i * step]!;
    }
  }
  // Channel masks: given after the 40-byte header (bit fields), or the defaults.
  let masks = bpp === 16 ? [0x7c00, 0x03e0, 0x001f] : [0xff0000, 0x00ff00, 0x0000ff];
  if (compression === BI_BITFIELDS || compression === BI_ALPHABITFIELDS) {
    if (14 + 40 + 12 > b.length) throw new Error('BMP bit masks are cut off');
    masks = [v.getUint32(54, true), v.getUint32(58, true), v.getUint32(62, true)];
  }
  const scales = masks.map(maskScale);

  const rowBytes = Math.ceil((width * bpp) / 32) * 4;
  if (dataOffset < 14 + headerSize || dataOffset + rowBytes * height > b.length) {
    throw new Error(`BMP pixel data is cut off (${rowBytes * height} bytes needed from offset ${dataOffset}, ${b.length} in the file)`);
  }
  const out = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    const row = dataOffset + (topDown ? y : height - 1 - y) * rowBytes;
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 3;
      if (palette !== null) {
        const bit = x * bpp;
        const byte = b[row + (bit >> 3)]!;
        const idx = (byte >> (8 - bpp - (bit & 7))) & ((1 << bpp) - 1);
        out[o] = palette[idx * 3]!;
        out[o + 1] = palette[idx * 3 + 1]!;
        out[o + 2] = palette[idx * 3 + 2]!;
      } else if (bpp === 24) {
        out[o] = b[row + x * 3 + 2]!;
        out[o + 1] = b[row + x * 3 + 1]!;
        out[o + 2] = b[row + x * 3]!;
      } else {
        const px = bpp === 16 ? v.getUint16(row + x * 2, true) : v.getUint32(row + x * 4, true);
        for (let c = 0; c < 3; c++) {
          const { shift, max } = scales[c]!;
          out[o + c] = max === 0 ? 0 : Math.round((((px & masks[c]!) >>> 0) >>> shift) * (255 / max));
        }
      }
    }
  }
  return { data: out, width, height };
}
