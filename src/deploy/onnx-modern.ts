// ONNX rules for today's backbones (ConvNeXt, EfficientNet, RegNet, ViT, Swin): layer
// normalization as LayerNormalization (opset 17), GELU by its exact form with Erf,
// linear layers on any rank as MatMul, attention as MatMul and Softmax, Swin's windows
// as Reshape and Transpose with its relative position bias and shift mask as constants
// computed at the export size. Like the other rules, each emits what the module's
// `forward` computes in evaluation mode (stochastic depth and dropout are identities).
import { nn, noGrad, tidy, type Tensor } from '../torch/index.js';
import { Permute, SqueezeExcitation, StochasticDepth } from '../vision/models/blocks.js';
import { CNBlock } from '../vision/models/convnext.js';
import { FusedMBConv, MBConv } from '../vision/models/efficientnet.js';
import { ResBottleneckBlock } from '../vision/models/regnet.js';
import { PatchMerging, ShiftedWindowAttention, SwinTransformerBlock, windowAttentionBias } from '../vision/models/swin.js';
import { EncoderBlock, positionEmbeddingsFor, ViTBody } from '../vision/models/vit.js';
import type { OnnxGraph, Value } from './onnx-graph.js';
import { FloatAttr } from './onnx-graph.js';

/** What these rules need of the exporter: its graph, and its rules for any module. */
export interface EmitterLike {
  readonly g: OnnxGraph;
  emit(m: nn.Module, x: Value, path: string): Value;
}

/** A linear map's weight [out, in] and bias [out]. */
type Projection = { weight: Tensor; bias: Tensor | null };

/** An error the exporter raises, made by the caller (so these rules need not import it). */
type Fail = (message: string) => never;

function data(t: Tensor): Float32Array {
  return tidy(() => t.detach().float().contiguous().dataSync() as Float32Array);
}

/** Rows × cols (row-major) transposed. */
function transposed(w: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = w[r * cols + c]!;
  return out;
}

class Rules {
  constructor(
    readonly e: EmitterLike,
    readonly fail: Fail,
  ) {}

  get g(): OnnxGraph {
    return this.e.g;
  }

  op(op: string, inputs: string[], shape: number[], path: string, attrs: Record<string, number | number[] | FloatAttr> = {}): Value {
    return { name: this.g.node(op, inputs, attrs, path), shape };
  }

  scalar(v: number, path: string): string {
    return this.g.floats(path, [], Float32Array.of(v));
  }

  /** Transpose over the full rank (the batch first and kept first). */
  transpose(x: Value, perm: number[], path: string): Value {
    if (perm[0] !== 0) this.fail(`${path}: a permutation that moves the batch dimension is not supported`);
    const full = [-1, ...x.shape];
    return this.op(
      'Transpose',
      [x.name],
      perm.slice(1).map((p) => full[p]!),
      `${path}.transpose`,
      { perm },
    );
  }

  /** Reshape to `shape` (without the batch), the batch copied. */
  reshape(x: Value, shape: number[], path: string): Value {
    return this.op('Reshape', [x.name, this.g.ints(`${path}.shape`, [0, ...shape])], shape, `${path}.reshape`);
  }

  /** Reshape whose first dimension absorbs the batch (-1): the shape tracked is the rest. */
  reshapeFolded(x: Value, shape: number[], path: string): Value {
    return this.op('Reshape', [x.name, this.g.ints(`${path}.shape`, [-1, ...shape])], shape, `${path}.reshape`);
  }

  /** y = x Wᵀ + b on the last dimension, any rank; `rows` takes a block of W's rows (and b's). */
  linear({ weight, bias }: Projection, x: Value, path: string, rows?: [number, number]): Value {
    const [out0, inF] = weight.shape as [number, number];
    const [r0, r1] = rows ?? [0, out0];
    const out = r1 - r0;
    if (x.shape[x.shape.length - 1] !== inF) this.fail(`${path}: Linear(${inF} → ${out0}) on a value of shape [${x.shape.join(', ')}]`);
    const w = data(weight).subarray(r0 * inF, r1 * inF);
    const shape = [...x.shape.slice(0, -1), out];
    const y = this.op('MatMul', [x.name, this.g.floats(`${path}.weight`, [inF, out], transposed(w, out, inF))], shape, `${path}.matmul`);
    if (bias === null) return y;
    return this.op('Add', [y.name, this.g.floats(`${path}.bias`, [out], data(bias).subarray(r0, r1))], shape, `${path}.bias_add`);
  }

  layerNorm(m: nn.LayerNorm, x: Value, path: string): Value {
    if (m.normalizedShape.length !== 1 || x.shape[x.shape.length - 1] !== m.normalizedShape[0])
      this.fail(`${path}: LayerNorm over [${m.normalizedShape.join(', ')}] of a value of shape [${x.shape.join(', ')}]`);
    const c = m.normalizedShape[0]!;
    const scale = this.g.floats(`${path}.weight`, [c], m.weight ? data(m.weight) : new Float32Array(c).fill(1));
    const bias = this.g.floats(`${path}.bias`, [c], m.bias ? data(m.bias) : new Float32Array(c));
    return this.op('LayerNormalization', [x.name, scale, bias], x.shape, path, { axis: -1, epsilon: new FloatAttr(m.eps) });
  }

  /** x·Φ(x) = x · (1 + erf(x/√2)) / 2, the exact GELU. */
  gelu(m: nn.GELU, x: Value, path: string): Value {
    if (m.approximate !== 'none') this.fail(`${path}: GELU(approximate='${m.approximate}') has no rule`);
    const scaled = this.op('Mul', [x.name, this.scalar(Math.SQRT1_2, `${path}.inv_sqrt2`)], x.shape, `${path}.scale`);
    const erf = this.op('Erf', [scaled.name], x.shape, `${path}.erf`);
    const plus = this.op('Add', [erf.name, this.scalar(1, `${path}.one`)], x.shape, `${path}.plus1`);
    const times = this.op('Mul', [x.name, plus.name], x.shape, `${path}.times_x`);
    return this.op('Mul', [times.name, this.scalar(0.5, `${path}.half`)], x.shape, `${path}.half`);
  }

  add(a: Value, b: Value, path: string): Value {
    return this.op('Add', [a.name, b.name], a.shape, `${path}.add`);
  }

  /** Elements start..end (exclusive, step) along `axis` (counted with the batch). */
  slice(x: Value, axis: number, start: number, end: number, path: string, step = 1): Value {
    const shape = [...x.shape];
    shape[axis - 1] = Math.ceil((end - start) / step);
    return this.op(
      'Slice',
      [x.name, this.g.ints(`${path}.starts`, [start]), this.g.ints(`${path}.ends`, [end]), this.g.ints(`${path}.axes`, [axis]), this.g.ints(`${path}.steps`, [step])],
      shape,
      `${path}.slice`,
    );
  }

  concat(xs: Value[], axis: number, path: string): Value {
    const shape = [...xs[0]!.shape];
    shape[axis - 1] = xs.reduce((n, v) => n + v.shape[axis - 1]!, 0);
    return this.op(
      'Concat',
      xs.map((v) => v.name),
      shape,
      `${path}.concat`,
      { axis },
    );
  }

  /** torch.roll by `shift` along `axis`: the last `shift` elements first. */
  roll(x: Value, shift: number, axis: number, path: string): Value {
    const n = x.shape[axis - 1]!;
    const s = ((shift % n) + n) % n;
    if (s === 0) return x;
    return this.concat([this.slice(x, axis, n - s, n, `${path}.tail`), this.slice(x, axis, 0, n - s, `${path}.head`)], axis, path);
  }

  /**
   * Multi-head attention of (…, L, C) queries, keys and values from `qkv` (rows: q, k, v),
   * with an optional constant bias added to the scores: through MatMul and Softmax.
   * A bias with `windows` is per window, the leading dimension carrying batch × windows (Swin).
   */
  attention(qkv: Projection, heads: number, x: Value, path: string, bias?: { data: Float32Array; dims: number[]; windows?: number }): Value {
    const [l, c] = x.shape as [number, number];
    const d = c / heads;
    const part = (i: number, name: string): Value => this.reshape(this.linear(qkv, x, `${path}.${name}`, [i * c, (i + 1) * c]), [l, heads, d], `${path}.${name}`);
    const q = this.transpose(part(0, 'q'), [0, 2, 1, 3], `${path}.q`);
    const kt = this.transpose(part(1, 'k'), [0, 2, 3, 1], `${path}.k`);
    const v = this.transpose(part(2, 'v'), [0, 2, 1, 3], `${path}.v`);
    let scores = this.op('MatMul', [q.name, kt.name], [heads, l, l], `${path}.scores`);
    scores = this.op('Mul', [scores.name, this.scalar(1 / Math.sqrt(d), `${path}.scale`)], scores.shape, `${path}.scaled`);
    if (bias) {
      const b = this.g.floats(`${path}.bias`, bias.dims, bias.data);
      if (bias.windows === undefined) scores = this.op('Add', [scores.name, b], scores.shape, `${path}.biased`);
      else {
        const byWindow = this.reshapeFolded(scores, [bias.windows, heads, l, l], `${path}.windows`);
        const added = this.op('Add', [byWindow.name, b], byWindow.shape, `${path}.biased`);
        scores = this.reshapeFolded(added, [heads, l, l], `${path}.unwindows`);
      }
    }
    const probs = this.op('Softmax', [scores.name], scores.shape, `${path}.softmax`, { axis: -1 });
    const o = this.op('MatMul', [probs.name, v.name], [heads, l, d], `${path}.weighted`);
    return this.reshape(this.transpose(o, [0, 2, 1, 3], `${path}.merge`), [l, c], `${path}.merge`);
  }

  vitBody(m: ViTBody, x: Value, path: string): Value {
    const vit = m.vit;
    const p = vit.patchSize;
    const [, hh, ww] = x.shape as [number, number, number];
    if (hh % p !== 0 || ww % p !== 0) this.fail(`${path}: ViT input ${hh}×${ww} is not a multiple of its patch size ${p}`);
    const [h, w, dim] = [hh / p, ww / p, vit.hiddenDim];
    const patches = this.e.emit(vit.convProj, x, `${path}.conv_proj`);
    const seq = this.transpose(this.reshape(patches, [dim, h * w], `${path}.patches`), [0, 2, 1], `${path}.patches`);
    // The class token, expanded to the batch: Expand to [N, 1, D], N read from the input's shape.
    const batch = this.op('Slice', [this.op('Shape', [x.name], [4], `${path}.shape`).name, this.g.ints(`${path}.b0`, [0]), this.g.ints(`${path}.b1`, [1])], [1], `${path}.batch`);
    const target = this.op('Concat', [batch.name, this.g.ints(`${path}.token_dims`, [1, dim])], [3], `${path}.token_shape`, { axis: 0 });
    const token = this.op('Expand', [this.g.floats(`${path}.class_token`, [1, 1, dim], data(vit.classToken)), target.name], [1, dim], `${path}.class_token`);
    let t = this.concat([token, seq], 1, `${path}.tokens`);
    const pos = noGrad(() => positionEmbeddingsFor(vit.encoder.posEmbedding, h, w));
    t = this.op('Add', [t.name, this.g.floats(`${path}.pos_embedding`, [1, 1 + h * w, dim], data(pos))], t.shape, `${path}.pos`);
    pos.dispose();
    for (const [name, block] of vit.encoder.layers.namedChildren()) t = this.encoderBlock(block as EncoderBlock, t, `${path}.${name}`);
    t = this.layerNorm(vit.encoder.ln, t, `${path}.ln`);
    const patchTokens = this.slice(t, 1, 1, 1 + h * w, `${path}.patch_tokens`);
    return this.reshape(this.transpose(patchTokens, [0, 2, 1], `${path}.map`), [dim, h, w], `${path}.map`);
  }

  encoderBlock(m: EncoderBlock, x: Value, path: string): Value {
    const att = m.selfAttention;
    const n1 = this.layerNorm(m.ln1, x, `${path}.ln_1`);
    const o = this.attention({ weight: att.inProjWeight, bias: att.inProjBias }, att.numHeads, n1, `${path}.self_attention`);
    const a = this.add(this.linear(att.outProj, o, `${path}.out_proj`), x, `${path}.attn`);
    return this.add(this.e.emit(m.mlp, this.layerNorm(m.ln2, a, `${path}.ln_2`), `${path}.mlp`), a, `${path}.mlp`);
  }

  windowAttention(m: ShiftedWindowAttention, x: Value, path: string): Value {
    const [h, w, c] = x.shape as [number, number, number];
    const [wh, ww] = m.windowSize;
    const padB = (wh - (h % wh)) % wh;
    const padR = (ww - (w % ww)) % ww;
    let y = x;
    if (padB + padR > 0) y = this.op('Pad', [x.name, this.g.ints(`${path}.pads`, [0, 0, 0, 0, 0, padB, padR, 0])], [h + padB, w + padR, c], `${path}.pad`, {});
    const [ph, pw] = [h + padB, w + padR];
    const shift: [number, number] = [wh >= ph ? 0 : m.shiftSize[0], ww >= pw ? 0 : m.shiftSize[1]];
    y = this.roll(this.roll(y, -shift[0], 1, `${path}.shift_h`), -shift[1], 2, `${path}.shift_w`);
    const [nh, nw, n] = [ph / wh, pw / ww, wh * ww];
    const windows = this.reshapeFolded(this.transpose(this.reshape(y, [nh, wh, nw, ww, c], `${path}.split`), [0, 1, 3, 2, 4, 5], `${path}.split`), [n, c], `${path}.windows`);
    const bias = windowAttentionBias(m, ph, pw, shift);
    const o = this.attention(m.qkv, m.numHeads, windows, `${path}.attn`, {
      data: bias.data,
      dims: bias.dims,
      ...(bias.dims[0]! > 1 ? { windows: nh * nw } : {}),
    });
    const proj = this.linear(m.proj, o, `${path}.proj`);
    const back = this.reshapeFolded(this.transpose(this.reshapeFolded(proj, [nh, nw, wh, ww, c], `${path}.unsplit`), [0, 1, 3, 2, 4, 5], `${path}.unsplit`), [ph, pw, c], `${path}.merged`);
    y = this.roll(this.roll(back, shift[0], 1, `${path}.unshift_h`), shift[1], 2, `${path}.unshift_w`);
    if (padB + padR > 0) y = this.slice(this.slice(y, 1, 0, h, `${path}.crop_h`), 2, 0, w, `${path}.crop_w`);
    return y;
  }

  patchMerging(m: PatchMerging, x: Value, path: string): Value {
    const [h, w, c] = x.shape as [number, number, number];
    let y = x;
    if (h % 2 || w % 2) y = this.op('Pad', [x.name, this.g.ints(`${path}.pads`, [0, 0, 0, 0, 0, h % 2, w % 2, 0])], [h + (h % 2), w + (w % 2), c], `${path}.pad`, {});
    const [ph, pw] = y.shape as [number, number, number];
    const part = (dy: number, dx: number): Value => this.slice(this.slice(y, 1, dy, ph, `${path}.r${dy}${dx}`, 2), 2, dx, pw, `${path}.c${dy}${dx}`, 2);
    const merged = this.concat([part(0, 0), part(1, 0), part(0, 1), part(1, 1)], 3, path);
    return this.linear(m.reduction, this.layerNorm(m.norm, merged, `${path}.norm`), `${path}.reduction`);
  }

  emit(m: nn.Module, x: Value, path: string): Value | undefined {
    const e = this.e;
    if (m instanceof nn.LayerNorm2d) {
      const nhwc = this.transpose(x, [0, 2, 3, 1], `${path}.to_nhwc`);
      return this.transpose(this.layerNorm(m, nhwc, path), [0, 3, 1, 2], `${path}.to_nchw`);
    }
    if (m instanceof nn.LayerNorm) return this.layerNorm(m, x, path);
    if (m instanceof nn.Linear && x.shape.length > 1) return this.linear(m, x, path);
    if (m instanceof nn.GELU) return this.gelu(m, x, path);
    if (m instanceof nn.SiLU) return this.op('Mul', [x.name, this.op('Sigmoid', [x.name], x.shape, `${path}.sigmoid`).name], x.shape, `${path}.silu`);
    if (m instanceof StochasticDepth) return x;
    if (m instanceof Permute) return this.transpose(x, m.dims, path);
    if (m instanceof SqueezeExcitation) {
      const pooled = this.op('GlobalAveragePool', [x.name], [x.shape[0]!, 1, 1], `${path}.avgpool`);
      const s = e.emit(m.fc2, e.emit(m.activation, e.emit(m.fc1, pooled, `${path}.fc1`), `${path}.activation`), `${path}.fc2`);
      return this.op('Mul', [x.name, this.op('Sigmoid', [s.name], s.shape, `${path}.scale_activation`).name], x.shape, `${path}.scale`);
    }
    if (m instanceof CNBlock) {
      const y = e.emit(m.block, x, `${path}.block`);
      const c = m.layerScale.shape[0]!;
      const scaled = this.op('Mul', [y.name, this.g.floats(`${path}.layer_scale`, [c, 1, 1], data(m.layerScale))], y.shape, `${path}.layer_scale`);
      return this.add(scaled, x, path);
    }
    if (m instanceof MBConv || m instanceof FusedMBConv) {
      const y = e.emit(m.block, x, `${path}.block`);
      return m.useResConnect ? this.add(y, x, path) : y;
    }
    if (m instanceof ResBottleneckBlock) {
      const f = e.emit(m.f, x, `${path}.f`);
      const shortcut = m.proj === null ? x : e.emit(m.proj, x, `${path}.proj`);
      return this.op('Relu', [this.add(f, shortcut, path).name], f.shape, `${path}.relu`);
    }
    if (m instanceof ViTBody) return this.vitBody(m, x, path);
    if (m instanceof EncoderBlock) return this.encoderBlock(m, x, path);
    if (m instanceof SwinTransformerBlock) {
      const a = this.add(this.windowAttention(m.attn, this.layerNorm(m.norm1, x, `${path}.norm1`), `${path}.attn`), x, `${path}.attn`);
      return this.add(e.emit(m.mlp, this.layerNorm(m.norm2, a, `${path}.norm2`), `${path}.mlp`), a, `${path}.mlp`);
    }
    if (m instanceof ShiftedWindowAttention) return this.windowAttention(m, x, path);
    if (m instanceof PatchMerging) return this.patchMerging(m, x, path);
    return undefined;
  }
}

/** The nodes for `m` if it is one of the newer backbones' modules; undefined otherwise. */
export function emitModern(e: EmitterLike, m: nn.Module, x: Value, path: string, fail: Fail): Value | undefined {
  return new Rules(e, fail).emit(m, x, path);
}
