// Heatmaps drawn over pictures (Grad-CAM in the report): a coarse grid of
// values in [0, 1] is scaled up bilinearly to the picture, coloured from blue
// (0) through green to red (1), and blended in.
import type { RgbPixels } from './grids.js';

/** A coarse heatmap: `h`×`w` values in [0, 1], row-major. */
export interface HeatGrid {
  data: ArrayLike<number>;
  w: number;
  h: number;
}

/** The heatmap's value at a picture pixel: bilinear, pixel centres aligned as PyTorch's interpolate (align_corners false). */
function sample(g: HeatGrid, x: number, y: number, width: number, height: number): number {
  const gx = Math.min(Math.max(((x + 0.5) * g.w) / width - 0.5, 0), g.w - 1);
  const gy = Math.min(Math.max(((y + 0.5) * g.h) / height - 0.5, 0), g.h - 1);
  const x0 = Math.floor(gx);
  const y0 = Math.floor(gy);
  const x1 = Math.min(x0 + 1, g.w - 1);
  const y1 = Math.min(y0 + 1, g.h - 1);
  const fx = gx - x0;
  const fy = gy - y0;
  const v = (xx: number, yy: number): number => g.data[yy * g.w + xx]!;
  return (1 - fy) * ((1 - fx) * v(x0, y0) + fx * v(x1, y0)) + fy * ((1 - fx) * v(x0, y1) + fx * v(x1, y1));
}

/** The "jet" colour of v in [0, 1], as 0–255 RGB. */
export function jet(v: number): [number, number, number] {
  const c = (t: number): number => Math.round(255 * Math.min(1, Math.max(0, t)));
  return [c(1.5 - Math.abs(4 * v - 3)), c(1.5 - Math.abs(4 * v - 2)), c(1.5 - Math.abs(4 * v - 1))];
}

/** `image` with `heat` scaled to its size, coloured and blended in with weight `alpha`. */
export function overlayHeatmap(image: RgbPixels, heat: HeatGrid, alpha = 0.5): RgbPixels {
  const { width, height } = image;
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const colour = jet(sample(heat, x, y, width, height));
      for (let ch = 0; ch < 3; ch++) {
        const i = (y * width + x) * 3 + ch;
        data[i] = Math.round((1 - alpha) * image.data[i]! + alpha * colour[ch]!);
      }
    }
  }
  return { data, width, height };
}

/** The mean of a heatmap over each quadrant: [top-left, top-right, bottom-left, bottom-right]. */
export function quadrantMeans(heat: HeatGrid): [number, number, number, number] {
  const sums = [0, 0, 0, 0];
  const counts = [0, 0, 0, 0];
  for (let y = 0; y < heat.h; y++) {
    for (let x = 0; x < heat.w; x++) {
      // A middle row or column (odd sizes) belongs to no quadrant.
      if ((heat.w % 2 === 1 && x === (heat.w - 1) / 2) || (heat.h % 2 === 1 && y === (heat.h - 1) / 2)) continue;
      const q = (y < heat.h / 2 ? 0 : 2) + (x < heat.w / 2 ? 0 : 1);
      sums[q]! += heat.data[y * heat.w + x]!;
      counts[q]!++;
    }
  }
  return sums.map((s, i) => s / Math.max(1, counts[i]!)) as [number, number, number, number];
}
