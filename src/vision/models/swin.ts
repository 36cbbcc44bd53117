// The Swin Transformer (Liu et al. 2021) with torchvision's module tree and
// parameter names: attention in shifted windows with a relative position bias,
// patch merging between stages, tensors channels last (N, H, W, C) throughout.
import { cat, F, nn, noGrad, tensor, tidy, zeros, type Tensor } from '../../torch/index.js';
import { Permute, StochasticDepth, transformerMlp, type BackboneOptions } from './blocks.js';

/** For each pair of positions in a wh×ww window, its row in the relative position bias table. */
function relativePositionIndex(wh: number, ww: number): Tensor {
  const n = wh * ww;
  const index = new BigInt64Array(n * n);
  for (let a = 0; a < n; a++) {
    for (let b = 0; b < n; b++) {
      const dy = Math.floor(a / ww) - Math.floor(b / ww) + wh - 1;
      const dx = (a % ww) - (b % ww) + ww - 1;
      index[a * n + b] = BigInt(dy * (2 * ww - 1) + dx);
    }
  }
  return tensor(index);
}

/**
 * The mask of a shifted window pass: −100 between positions that the cyclic shift
 * brought together from different regions, 0 elsewhere; (windows, N, N) for a padded
 * H×W map, as torchvision builds it.
 */
function shiftMask(h: number, w: number, win: [number, number], shift: [number, number]): Float32Array {
  const key = `${h}x${w}/${win.join('x')}/${shift.join('x')}`;
  let mask = MASKS.get(key);
  if (mask === undefined) {
    mask = computeShiftMask(h, w, win, shift);
    if (MASKS.size >= 64) MASKS.clear(); // bounded, whatever sizes come
    MASKS.set(key, mask);
  }
  return mask;
}

// A forward pass asks for the same few masks (one per stage and input size) at every step.
const MASKS = new Map<string, Float32Array>();

function computeShiftMask(h: number, w: number, win: [number, number], shift: [number, number]): Float32Array {
  const region = (i: number, size: number, wn: number, s: number): number => (i < size - wn ? 0 : i < size - s ? 1 : 2);
  const label = (y: number, x: number): number => region(y, h, win[0], shift[0]) * 3 + region(x, w, win[1], shift[1]);
  const [nh, nw] = [h / win[0], w / win[1]];
  const n = win[0] * win[1];
  const mask = new Float32Array(nh * nw * n * n);
  for (let wy = 0; wy < nh; wy++) {
    for (let wx = 0; wx < nw; wx++) {
      const base = (wy * nw + wx) * n * n;
      const labels = Array.from({ length: n }, (_, p) => label(wy * win[0] + Math.floor(p / win[1]), wx * win[1] + (p % win[1])));
      for (let a = 0; a < n; a++) for (let b = 0; b < n; b++) mask[base + a * n + b] = labels[a] === labels[b] ? 0 : -100;
    }
  }
  return mask;
}

/** Window multi-head self-attention with a relative position bias, shifted by `shiftSize` (0 for none). */
export class ShiftedWindowAttention extends nn.Module {
  readonly qkv: nn.Linear;
  readonly proj: nn.Linear;
  readonly relativePositionBiasTable: Tensor;
  readonly relativePositionIndex: Tensor;

  constructor(
    dim: number,
    readonly windowSize: [number, number],
    readonly shiftSize: [number, number],
    readonly numHeads: number,
    readonly attentionDropout = 0,
    readonly dropout = 0,
  ) {
    super();
    this.relativePositionBiasTable = this.registerParameter('relative_position_bias_table', zeros([(2 * windowSize[0] - 1) * (2 * windowSize[1] - 1), numHeads]));
    nn.init.truncNormal_(this.relativePositionBiasTable, { std: 0.02 });
    this.relativePositionIndex = this.registerBuffer('relative_position_index', relativePositionIndex(...windowSize))!;
    this.qkv = this.registerModule('qkv', new nn.Linear(dim, dim * 3));
    this.proj = this.registerModule('proj', new nn.Linear(dim, dim));
  }

  /** The bias (1, heads, N, N) that each head adds to its attention scores. */
  relativePositionBias(): Tensor {
    const n = this.windowSize[0] * this.windowSize[1];
    return tidy(() => this.relativePositionBiasTable.index([this.relativePositionIndex]).view(n, n, this.numHeads).permute(2, 0, 1).contiguous().unsqueeze(0));
  }

  forward(input: Tensor): Tensor {
    const [b, h, w, c] = input.shape as [number, number, number, number];
    const [wh, ww] = this.windowSize;
    return tidy(() => {
      const padR = (ww - (w % ww)) % ww;
      const padB = (wh - (h % wh)) % wh;
      let x = padR + padB > 0 ? F.pad(input, [0, 0, 0, padR, 0, padB]) : input;
      const [ph, pw] = [h + padB, w + padR];
      // A window as large as the map is not shifted.
      const shift: [number, number] = [wh >= ph ? 0 : this.shiftSize[0], ww >= pw ? 0 : this.shiftSize[1]];
      const shifted = shift[0] + shift[1] > 0;
      if (shifted) x = F.roll(x, [-shift[0], -shift[1]], [1, 2]);
      const windows = (ph / wh) * (pw / ww);
      const n = wh * ww;
      const d = c / this.numHeads;
      x = x
        .view(b, ph / wh, wh, pw / ww, ww, c)
        .permute(0, 1, 3, 2, 4, 5)
        .reshape(b * windows, n, c);
      const qkv = F.linear(x, this.qkv.weight, this.qkv.bias)
        .reshape(b * windows, n, 3, this.numHeads, d)
        .permute(2, 0, 3, 1, 4);
      let bias = this.relativePositionBias();
      if (shifted) {
        const mask = tensor(shiftMask(ph, pw, this.windowSize, shift), { shape: [windows, n, n], device: input.device });
        // (1, heads, N, N) + (windows, 1, N, N), repeated for each image: (B·windows, heads, N, N).
        bias = bias
          .add(mask.unsqueeze(1))
          .unsqueeze(0)
          .expand(b, windows, this.numHeads, n, n)
          .reshape(b * windows, this.numHeads, n, n);
      }
      const o = F.attention(qkv.select(0, 0), qkv.select(0, 1), qkv.select(0, 2), bias, this.attentionDropout, this.training);
      let y = F.linear(o.transpose(1, 2).reshape(b * windows, n, c), this.proj.weight, this.proj.bias);
      y = F.dropout(y, this.dropout, this.training);
      y = y
        .view(b, ph / wh, pw / ww, wh, ww, c)
        .permute(0, 1, 3, 2, 4, 5)
        .reshape(b, ph, pw, c);
      if (shifted) y = F.roll(y, shift, [1, 2]);
      return padR + padB > 0 ? y.slice(1, 0, h).slice(2, 0, w).contiguous() : y;
    });
  }
}

/**
 * The constant that window attention adds to its scores on a padded ph×pw map: the
 * relative position bias (1, heads, N, N), plus the shift mask when shifted, then
 * (windows, heads, N, N); for export, where it is computed once at the export size.
 */
export function windowAttentionBias(m: ShiftedWindowAttention, ph: number, pw: number, shift: [number, number]): { data: Float32Array; dims: number[] } {
  const n = m.windowSize[0] * m.windowSize[1];
  const rel = noGrad(() => m.relativePositionBias());
  const relData = rel.contiguous().dataSync() as Float32Array;
  rel.dispose();
  if (shift[0] + shift[1] === 0) return { data: Float32Array.from(relData), dims: [1, m.numHeads, n, n] };
  const mask = shiftMask(ph, pw, m.windowSize, shift);
  const windows = mask.length / (n * n);
  const out = new Float32Array(windows * m.numHeads * n * n);
  for (let w = 0; w < windows; w++) for (let h = 0; h < m.numHeads; h++) for (let i = 0; i < n * n; i++) out[(w * m.numHeads + h) * n * n + i] = relData[h * n * n + i]! + mask[w * n * n + i]!;
  return { data: out, dims: [windows, m.numHeads, n, n] };
}

/** A Swin block: pre-norm window attention and MLP, each with stochastic depth and a residual. */
export class SwinTransformerBlock extends nn.Module {
  readonly norm1: nn.LayerNorm;
  readonly attn: ShiftedWindowAttention;
  readonly stochasticDepth: StochasticDepth;
  readonly norm2: nn.LayerNorm;
  readonly mlp: nn.Sequential;

  constructor(dim: number, numHeads: number, windowSize: [number, number], shiftSize: [number, number], stochasticDepthProb: number, { mlpRatio = 4, dropout = 0, attentionDropout = 0 } = {}) {
    super();
    this.norm1 = this.registerModule('norm1', new nn.LayerNorm(dim));
    this.attn = this.registerModule('attn', new ShiftedWindowAttention(dim, windowSize, shiftSize, numHeads, attentionDropout, dropout));
    this.stochasticDepth = this.registerModule('stochastic_depth', new StochasticDepth(stochasticDepthProb));
    this.norm2 = this.registerModule('norm2', new nn.LayerNorm(dim));
    const hidden = Math.floor(dim * mlpRatio);
    this.mlp = this.registerModule('mlp', transformerMlp(dim, hidden, dropout));
  }

  forward(x: Tensor): Tensor {
    return tidy(() => {
      const a = nn.pipe(x, this.norm1, this.attn, this.stochasticDepth).add_(x);
      return nn.pipe(a, this.norm2, this.mlp, this.stochasticDepth).add_(a);
    });
  }
}

/** Halves H and W and doubles C: each 2×2 neighbourhood concatenated (4C), normalized, projected to 2C. */
export class PatchMerging extends nn.Module {
  readonly reduction: nn.Linear;
  readonly norm: nn.LayerNorm;
  constructor(dim: number) {
    super();
    this.reduction = this.registerModule('reduction', new nn.Linear(4 * dim, 2 * dim, { bias: false }));
    this.norm = this.registerModule('norm', new nn.LayerNorm(4 * dim));
  }
  forward(x: Tensor): Tensor {
    return tidy(() => {
      const [h, w] = x.shape.slice(-3, -1) as [number, number];
      const p = h % 2 || w % 2 ? F.pad(x, [0, 0, 0, w % 2, 0, h % 2]) : x;
      const part = (dy: number, dx: number): Tensor => p.slice(-3, dy, undefined, 2).slice(-2, dx, undefined, 2);
      return nn.pipe(cat([part(0, 0), part(1, 0), part(0, 1), part(1, 1)], -1), this.norm, this.reduction);
    });
  }
}

/** Swin options. */
export interface SwinOptions {
  patchSize?: number;
  embedDim: number;
  depths: number[];
  numHeads: number[];
  windowSize?: [number, number];
  stochasticDepthProb?: number;
  numClasses?: number;
}

/** Swin Transformer: a patch embedding, stages of Swin blocks with patch merging between, a LayerNorm and `head`. */
export class SwinTransformer extends nn.Module {
  readonly features: nn.Sequential;
  readonly norm: nn.LayerNorm;
  readonly head: nn.Linear;
  readonly numFeatures: number;

  constructor({ patchSize = 4, embedDim, depths, numHeads, windowSize = [7, 7], stochasticDepthProb = 0.1, numClasses = 1000 }: SwinOptions) {
    super();
    const layers: nn.Module[] = [new nn.Sequential(new nn.Conv2d(3, embedDim, patchSize, { stride: patchSize }), new Permute([0, 2, 3, 1]), new nn.LayerNorm(embedDim))];
    const total = depths.reduce((a, b) => a + b, 0);
    let id = 0;
    depths.forEach((depth, i) => {
      const dim = embedDim * 2 ** i;
      const blocks: nn.Module[] = [];
      for (let j = 0; j < depth; j++, id++) {
        const shift: [number, number] = j % 2 === 0 ? [0, 0] : [Math.floor(windowSize[0] / 2), Math.floor(windowSize[1] / 2)];
        blocks.push(new SwinTransformerBlock(dim, numHeads[i]!, windowSize, shift, (stochasticDepthProb * id) / (total - 1)));
      }
      layers.push(new nn.Sequential(...blocks));
      if (i < depths.length - 1) layers.push(new PatchMerging(dim));
    });
    this.numFeatures = embedDim * 2 ** (depths.length - 1);
    this.features = this.registerModule('features', new nn.Sequential(...layers));
    this.norm = this.registerModule('norm', new nn.LayerNorm(this.numFeatures));
    this.registerModule('permute', new Permute([0, 3, 1, 2]));
    this.registerModule('avgpool', new nn.AdaptiveAvgPool2d(1));
    this.registerModule('flatten', new nn.Flatten(1));
    this.head = this.registerModule('head', new nn.Linear(this.numFeatures, numClasses));
    for (const m of this.modules()) {
      if (m instanceof nn.Linear) {
        nn.init.truncNormal_(m.weight, { std: 0.02 });
        if (m.bias) nn.init.zeros_(m.bias);
      }
    }
  }

  forward(x: Tensor): Tensor {
    return nn.pipe(
      x,
      this.features,
      this.norm,
      (t) => t.permute(0, 3, 1, 2),
      (t) => F.adaptiveAvgPool2d(t, 1),
      (t) => t.flatten(1),
      this.head,
    );
  }
}

/** Swin-T (28M parameters). */
export const swin_t = (o: BackboneOptions = {}): SwinTransformer => new SwinTransformer({ embedDim: 96, depths: [2, 2, 6, 2], numHeads: [3, 6, 12, 24], stochasticDepthProb: 0.2, ...o });
/** Swin-S (50M parameters). */
export const swin_s = (o: BackboneOptions = {}): SwinTransformer => new SwinTransformer({ embedDim: 96, depths: [2, 2, 18, 2], numHeads: [3, 6, 12, 24], stochasticDepthProb: 0.3, ...o });
/** Swin-B (88M parameters). */
export const swin_b = (o: BackboneOptions = {}): SwinTransformer => new SwinTransformer({ embedDim: 128, depths: [2, 2, 18, 2], numHeads: [4, 8, 16, 32], stochasticDepthProb: 0.5, ...o });
