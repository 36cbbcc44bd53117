// One pixel limit for every decoder (libjpeg-turbo, sharp/libvips), checked from
// the image's header before anything is decoded: a JPEG of a few hundred bytes
// can declare 30000×30000 pixels, and libjpeg has no limit of its own.

/** The default: Pillow's decompression-bomb limit (2 × 89,478,485 pixels), ample for any camera. */
export const DEFAULT_MAX_IMAGE_PIXELS = 178_956_970;

function fromEnv(): number {
  const v = process.env.FASTVISION_MAX_IMAGE_PIXELS;
  if (v === undefined || v === '') return DEFAULT_MAX_IMAGE_PIXELS;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`FASTVISION_MAX_IMAGE_PIXELS: '${v}' is not a positive whole number`);
  return n;
}

let limit = fromEnv();

/** The most pixels (width × height) an image may declare; larger ones are unreadable images. */
export function maxImagePixels(): number {
  return limit;
}

/** Sets the pixel limit (default 178,956,970; also `FASTVISION_MAX_IMAGE_PIXELS`). Loaders created afterwards use it. */
export function setMaxImagePixels(n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`maxImagePixels must be a positive whole number, got ${n}`);
  limit = n;
}

/** The error text for an image over the limit. */
export function overLimitMessage(width: number, height: number, max: number): string {
  return `declares ${width}×${height} = ${(width * height).toLocaleString('en-US')} pixels, over the limit of ${max.toLocaleString('en-US')} (raise it with --max-image-pixels or FASTVISION_MAX_IMAGE_PIXELS)`;
}
