// The layers of today's backbones beside the convnet's: layer normalization, the
// smooth activations (GELU, SiLU) and multi-head self-attention, with PyTorch's
// parameter names and default initialization.
import { empty, ones, zeros } from '../creation.js';
import * as F from '../functional.js';
import type { Tensor } from '../tensor.js';
import { tidy } from '../scope.js';
import { Linear } from './layers.js';
import { xavierUniform_, zeros_ } from './init.js';
import { Module } from './module.js';

/** Layer normalization over the last dimensions (torch.nn.LayerNorm): `weight` and `bias` of `normalizedShape`. */
export class LayerNorm extends Module {
  readonly normalizedShape: number[];
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;

  constructor(
    normalizedShape: number | number[],
    readonly eps = 1e-5,
    elementwiseAffine = true,
  ) {
    super();
    this.normalizedShape = typeof normalizedShape === 'number' ? [normalizedShape] : [...normalizedShape];
    this.weight = elementwiseAffine ? this.registerParameter('weight', ones(this.normalizedShape)) : this.registerParameter('weight', null);
    this.bias = elementwiseAffine ? this.registerParameter('bias', zeros(this.normalizedShape)) : this.registerParameter('bias', null);
  }

  forward(x: Tensor): Tensor {
    return F.layerNorm(x, this.normalizedShape, this.weight, this.bias, this.eps);
  }

  protected override extraRepr(): string {
    return `(${this.normalizedShape.join(', ')},), eps=${this.eps}, elementwise_affine=${this.weight !== null}`;
  }
}

/**
 * LayerNorm over the channels of an (N, C, H, W) tensor, as ConvNeXt uses it
 * (torchvision's LayerNorm2d): channels last, normalized, channels first again.
 */
export class LayerNorm2d extends LayerNorm {
  override forward(x: Tensor): Tensor {
    const nhwc = x.permute(0, 2, 3, 1);
    const y = F.layerNorm(nhwc, this.normalizedShape, this.weight, this.bias, this.eps);
    nhwc.dispose();
    const out = y.permute(0, 3, 1, 2);
    y.dispose();
    return out;
  }
}

/** x·Φ(x), the Gaussian error linear unit (exact by default, as torch.nn.GELU). */
export class GELU extends Module {
  constructor(readonly approximate: 'none' | 'tanh' = 'none') {
    super();
  }
  forward(x: Tensor): Tensor {
    return F.gelu(x, this.approximate);
  }
}

/** x·σ(x) (swish), as EfficientNet uses it. */
export class SiLU extends Module {
  forward(x: Tensor): Tensor {
    return F.silu(x);
  }
}

/**
 * Multi-head self-attention over (N, L, E) sequences (torch.nn.MultiheadAttention
 * with batch_first and query = key = value): `in_proj_weight` [3E, E],
 * `in_proj_bias` [3E] and `out_proj`, as PyTorch names them.
 */
export class MultiheadAttention extends Module {
  readonly inProjWeight: Tensor;
  readonly inProjBias: Tensor;
  readonly outProj: Linear;
  readonly headDim: number;

  constructor(
    readonly embedDim: number,
    readonly numHeads: number,
    readonly dropout = 0,
  ) {
    super();
    if (embedDim % numHeads !== 0) throw new Error(`MultiheadAttention: embed_dim (${embedDim}) must be divisible by num_heads (${numHeads})`);
    this.headDim = embedDim / numHeads;
    this.inProjWeight = this.registerParameter('in_proj_weight', empty([3 * embedDim, embedDim]));
    this.inProjBias = this.registerParameter('in_proj_bias', empty([3 * embedDim]));
    this.outProj = this.registerModule('out_proj', new Linear(embedDim, embedDim));
    // PyTorch's _reset_parameters.
    xavierUniform_(this.inProjWeight);
    zeros_(this.inProjBias);
    zeros_(this.outProj.bias!);
  }

  forward(x: Tensor): Tensor {
    if (x.ndim !== 3) throw new Error(`MultiheadAttention: expected (batch, sequence, embedding), got [${x.shape.join(', ')}]`);
    const [n, l] = x.shape as [number, number, number];
    return tidy(() => {
      // (N, L, 3E) → (3, N, H, L, d)
      const heads = F.linear(x, this.inProjWeight, this.inProjBias).view(n, l, 3, this.numHeads, this.headDim).permute(2, 0, 3, 1, 4);
      const o = F.attention(heads.select(0, 0), heads.select(0, 1), heads.select(0, 2), null, this.dropout, this.training);
      return this.outProj.forward(o.transpose(1, 2).reshape(n, l, this.embedDim));
    });
  }

  protected override extraRepr(): string {
    return `embed_dim=${this.embedDim}, num_heads=${this.numHeads}`;
  }
}
