// Fast JPEG decoding for the loaders (libjpeg-turbo through native/image.cc) and
// the EXIF orientation tag, read from the bytes without decoding anything.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { maxImagePixels, overLimitMessage } from './image-limits.js';

/** Decoded RGB pixels, row-major, 3 bytes per pixel. */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

interface ImageAddon {
  decodeJpeg(bytes: Uint8Array, minWidth: number, minHeight: number, maxPixels: number): RgbImage | null;
}

let addon: ImageAddon | null | undefined;

function load(): ImageAddon | null {
  if (addon !== undefined) return addon;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5 && !existsSync(join(dir, 'package.json')); i++) dir = dirname(dir);
  const file = join(dir, 'build', 'Release', 'fastvision_image.node');
  addon = existsSync(file) ? (createRequire(import.meta.url)(file) as ImageAddon) : null;
  return addon;
}

/** Whether the bytes start like a JPEG file. */
export function isJpeg(bytes: Uint8Array): boolean {
  return bytes.length > 3 && bytes[0] === 0xff && bytes[1] === 0xd8 && bytes[2] === 0xff;
}

/**
 * Decodes a JPEG to RGB, shrunk by 1/2, 1/4 or 1/8 in the DCT domain while both
 * sides stay at least minWidth × minHeight. Returns null when this decoder does not
 * handle the file (CMYK, or the addon is not built): use sharp instead. Throws on
 * corrupt or truncated data, and — from the header, before decoding — on an image
 * of more than `maxPixels` pixels.
 */
export function decodeJpeg(bytes: Uint8Array, minWidth = 0, minHeight = 0, maxPixels = maxImagePixels()): RgbImage | null {
  const a = load();
  if (a === null) return null;
  try {
    return a.decodeJpeg(bytes, minWidth, minHeight, maxPixels);
  } catch (e) {
    const { width, height } = e as { width?: number; height?: number };
    if (width !== undefined && height !== undefined) throw new Error(overLimitMessage(width, height, maxPixels));
    throw e;
  }
}

/** The EXIF orientation (1-8) of a JPEG, 1 when there is none. */
export function exifOrientation(bytes: Uint8Array): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let p = 2;
  while (p + 4 <= bytes.length) {
    if (bytes[p] !== 0xff) return 1;
    const marker = bytes[p + 1]!;
    if (marker === 0xda || marker === 0xd9) return 1; // image data begins: no EXIF before it
    const len = view.getUint16(p + 2);
    if (marker === 0xe1 && p + 10 <= bytes.length && view.getUint32(p + 4) === 0x45786966 && view.getUint16(p + 8) === 0) {
      const tiff = p + 10;
      if (tiff + 8 > bytes.length) return 1;
      const little = view.getUint16(tiff) === 0x4949;
      const ifd = tiff + view.getUint32(tiff + 4, little);
      if (ifd + 2 > bytes.length) return 1;
      const n = view.getUint16(ifd, little);
      for (let i = 0; i < n; i++) {
        const e = ifd + 2 + i * 12;
        if (e + 12 > bytes.length) return 1;
        if (view.getUint16(e, little) === 0x0112) {
          const v = view.getUint16(e + 8, little);
          return v >= 1 && v <= 8 ? v : 1;
        }
      }
      return 1;
    }
    p += 2 + len;
  }
  return 1;
}
