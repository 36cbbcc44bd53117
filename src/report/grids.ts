// Picture grids: image files or pixels with captions under each, composed into
// one PNG by sharp.
import sharp from 'sharp';
import { shown } from '../util/shown.js';

/** Raw interleaved RGB pixels. */
export interface RgbPixels {
  data: Uint8Array;
  width: number;
  height: number;
}

/** One cell of a grid: an image file or pixels, and caption lines. */
export interface Tile {
  image: string | RgbPixels;
  caption: string[];
}

// Control characters are not allowed in XML at all: they are shown as escapes first.
const escapeXml = (s: string): string => shown(s).replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);

/**
 * Lays tiles out `cols` to a row, each image fitted into a `size`×`size` square
 * with its caption lines below, under an optional title; returns a PNG.
 */
export async function imageGrid(tiles: Tile[], { cols = 4, size = 180, title }: { cols?: number; size?: number; title?: string } = {}): Promise<Buffer> {
  const lines = Math.max(1, ...tiles.map((t) => t.caption.length));
  const lineH = 15;
  const pad = 8;
  const cellW = size + pad;
  const cellH = size + lines * lineH + pad * 2;
  const titleH = title ? 30 : 0;
  const nCols = Math.max(1, Math.min(cols, tiles.length));
  const rows = Math.max(1, Math.ceil(tiles.length / nCols));
  const width = nCols * cellW + pad;
  const height = titleH + rows * cellH + pad;
  const layers: sharp.OverlayOptions[] = [];
  const texts: string[] = [];
  if (title) texts.push(`<text x="${pad}" y="21" font-family="DejaVu Sans" font-size="16" font-weight="bold">${escapeXml(title)}</text>`);
  await Promise.all(
    tiles.map(async (t, i) => {
      const x = pad + (i % nCols) * cellW;
      const y = titleH + pad + Math.floor(i / nCols) * cellH;
      const src = typeof t.image === 'string' ? sharp(t.image).rotate() : sharp(Buffer.from(t.image.data), { raw: { width: t.image.width, height: t.image.height, channels: 3 } });
      const img = await src.resize(size, size, { fit: 'contain', background: '#ffffff' }).removeAlpha().png().toBuffer();
      layers.push({ input: img, left: x, top: y });
      t.caption.forEach((c, k) => {
        const clipped = c.length > 30 ? `${c.slice(0, 29)}…` : c;
        texts.push(`<text x="${x + size / 2}" y="${y + size + 13 + k * lineH}" text-anchor="middle" font-family="DejaVu Sans" font-size="12">${escapeXml(clipped)}</text>`);
      });
    }),
  );
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${texts.join('')}</svg>`;
  layers.push({ input: Buffer.from(svg), left: 0, top: 0 });
  return sharp({ create: { width, height, channels: 3, background: '#ffffff' } })
    .composite(layers)
    .png()
    .toBuffer();
}
