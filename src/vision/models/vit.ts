// The Vision Transformer (Dosovitskiy et al. 2021) with torchvision's module tree and
// parameter names. Its position embeddings are interpolated for other input sizes
// as torchvision's interpolate_embeddings does, here at every forward pass, so that
// the network takes any size that is a multiple of its patch (progressive resizing).
import { cat, empty, F, nn, tidy, zeros, type Tensor } from '../../torch/index.js';
import { transformerMlp } from './blocks.js';

/** A transformer encoder block: pre-norm self-attention and MLP, each with a residual. */
export class EncoderBlock extends nn.Module {
  readonly ln1: nn.LayerNorm;
  readonly selfAttention: nn.MultiheadAttention;
  readonly ln2: nn.LayerNorm;
  readonly mlp: nn.Sequential;

  constructor(numHeads: number, hiddenDim: number, mlpDim: number, dropout: number, attentionDropout: number) {
    super();
    this.ln1 = this.registerModule('ln_1', new nn.LayerNorm(hiddenDim, 1e-6));
    this.selfAttention = this.registerModule('self_attention', new nn.MultiheadAttention(hiddenDim, numHeads, attentionDropout));
    this.registerModule('dropout', new nn.Dropout(dropout));
    this.ln2 = this.registerModule('ln_2', new nn.LayerNorm(hiddenDim, 1e-6));
    this.mlp = this.registerModule('mlp', transformerMlp(hiddenDim, mlpDim, dropout));
  }

  forward(x: Tensor): Tensor {
    return tidy(() => {
      const a = nn.pipe(x, this.ln1, this.selfAttention, this.getModule('dropout')!).add_(x);
      return nn.pipe(a, this.ln2, this.mlp).add_(a);
    });
  }
}

/**
 * The position embeddings for an h×w grid of patches: the class token's as they
 * are, the patches' resampled bicubically (align_corners) from the trained square grid.
 */
export function positionEmbeddingsFor(pos: Tensor, h: number, w: number): Tensor {
  const [, seq, dim] = pos.shape as [number, number, number];
  const side = Math.round(Math.sqrt(seq - 1));
  if (side * side !== seq - 1) throw new Error(`position embeddings of ${seq - 1} patches do not form a square grid`);
  if (h === side && w === side) return pos.view(...pos.shape);
  return tidy(() => {
    const grid = pos.slice(1, 1).permute(0, 2, 1).reshape(1, dim, side, side);
    const resized = F.interpolateBicubic(grid, [h, w], true)
      .reshape(1, dim, h * w)
      .permute(0, 2, 1);
    return cat([pos.slice(1, 0, 1), resized], 1);
  });
}

/** ViT options. */
export interface VisionTransformerOptions {
  imageSize?: number;
  patchSize: number;
  numLayers: number;
  numHeads: number;
  hiddenDim: number;
  mlpDim: number;
  dropout?: number;
  attentionDropout?: number;
  numClasses?: number;
}

/** The encoder: position embeddings, dropout, the blocks ('encoder_layer_0'…) and a final LayerNorm. */
export class Encoder extends nn.Module {
  readonly posEmbedding: Tensor;
  readonly layers: nn.Sequential;
  readonly ln: nn.LayerNorm;
  constructor(seqLength: number, o: VisionTransformerOptions) {
    super();
    this.posEmbedding = this.registerParameter('pos_embedding', empty([1, seqLength, o.hiddenDim]));
    nn.init.normal_(this.posEmbedding, 0, 0.02);
    this.registerModule('dropout', new nn.Dropout(o.dropout ?? 0));
    this.layers = this.registerModule(
      'layers',
      nn.Sequential.named(Array.from({ length: o.numLayers }, (_, i) => [`encoder_layer_${i}`, new EncoderBlock(o.numHeads, o.hiddenDim, o.mlpDim, o.dropout ?? 0, o.attentionDropout ?? 0)])),
    );
    this.ln = this.registerModule('ln', new nn.LayerNorm(o.hiddenDim, 1e-6));
  }
  /** The encoded tokens of an h×w patch grid (the class token first). */
  encode(tokens: Tensor, h: number, w: number): Tensor {
    return tidy(() => nn.pipe(tokens.add(positionEmbeddingsFor(this.posEmbedding, h, w)), this.getModule('dropout')!, this.layers, this.ln));
  }
  forward(tokens: Tensor): Tensor {
    const side = Math.round(Math.sqrt(tokens.shape[1]! - 1));
    return this.encode(tokens, side, side);
  }
}

/** ViT: patches by a strided convolution, a class token, the encoder, and `heads.head` on the class token. */
export class VisionTransformer extends nn.Module {
  readonly classToken: Tensor;
  readonly convProj: nn.Conv2d;
  readonly encoder: Encoder;
  readonly heads: nn.Sequential;
  readonly patchSize: number;
  readonly hiddenDim: number;

  constructor(o: VisionTransformerOptions) {
    super();
    const imageSize = o.imageSize ?? 224;
    if (imageSize % o.patchSize !== 0) throw new Error(`ViT: the image size ${imageSize} is not a multiple of the patch size ${o.patchSize}`);
    this.patchSize = o.patchSize;
    this.hiddenDim = o.hiddenDim;
    this.classToken = this.registerParameter('class_token', zeros([1, 1, o.hiddenDim]));
    this.convProj = this.registerModule('conv_proj', new nn.Conv2d(3, o.hiddenDim, o.patchSize, { stride: o.patchSize }));
    this.encoder = this.registerModule('encoder', new Encoder((imageSize / o.patchSize) ** 2 + 1, o));
    this.heads = this.registerModule('heads', nn.Sequential.named([['head', new nn.Linear(o.hiddenDim, o.numClasses ?? 1000)]]));
    nn.init.truncNormal_(this.convProj.weight, { std: Math.sqrt(1 / (3 * o.patchSize * o.patchSize)) });
    nn.init.zeros_(this.convProj.bias!);
    const head = this.heads.at(0) as nn.Linear;
    nn.init.zeros_(head.weight);
    nn.init.zeros_(head.bias!);
  }

  /** The encoded tokens (N, 1 + h·w, D) and the patch grid's h, w. */
  tokens(x: Tensor): { tokens: Tensor; h: number; w: number } {
    const [n, , height, width] = x.shape as [number, number, number, number];
    const p = this.patchSize;
    if (height % p !== 0 || width % p !== 0) throw new Error(`ViT: the input's ${height}×${width} is not a multiple of the patch size ${p}`);
    const [h, w] = [height / p, width / p];
    const tokens = tidy(() => {
      const patches = this.convProj
        .forward(x)
        .reshape(n, this.hiddenDim, h * w)
        .permute(0, 2, 1);
      return this.encoder.encode(cat([this.classToken.expand(n, -1, -1), patches], 1), h, w);
    });
    return { tokens, h, w };
  }

  forward(x: Tensor): Tensor {
    const { tokens } = this.tokens(x);
    return tidy(() => {
      const out = this.heads.forward(tokens.select(1, 0));
      tokens.dispose();
      return out;
    });
  }
}

/**
 * ViT's body for fast.ai's head: the encoded patch tokens as an (N, D, h, w) feature
 * map (the class token left out), which the head pools and Grad-CAM reads.
 */
export class ViTBody extends nn.Module {
  constructor(readonly vit: VisionTransformer) {
    super();
    this.registerModule('vit', vit);
  }
  forward(x: Tensor): Tensor {
    const { tokens, h, w } = this.vit.tokens(x);
    return tidy(() => {
      const out = tokens.slice(1, 1).permute(0, 2, 1).reshape(x.shape[0]!, this.vit.hiddenDim, h, w);
      tokens.dispose();
      return out;
    });
  }
}

/** Options of the published ViTs: the classifier's classes, and the input size the position embeddings are made for (default 224). */
export type ViTOptions = Pick<VisionTransformerOptions, 'numClasses' | 'imageSize'>;

/** ViT-B/16 (86M parameters). */
export const vit_b_16 = (o: ViTOptions = {}): VisionTransformer => new VisionTransformer({ patchSize: 16, numLayers: 12, numHeads: 12, hiddenDim: 768, mlpDim: 3072, ...o });
/** ViT-B/32 (88M parameters). */
export const vit_b_32 = (o: ViTOptions = {}): VisionTransformer => new VisionTransformer({ patchSize: 32, numLayers: 12, numHeads: 12, hiddenDim: 768, mlpDim: 3072, ...o });
/** ViT-L/16 (304M parameters). */
export const vit_l_16 = (o: ViTOptions = {}): VisionTransformer => new VisionTransformer({ patchSize: 16, numLayers: 24, numHeads: 16, hiddenDim: 1024, mlpDim: 4096, ...o });

/** Parameters that belong to another module, gathered so a layer group can hold them. */
class ParameterRefs extends nn.Module {
  constructor(entries: [string, Tensor][]) {
    super();
    for (const [name, t] of entries) this.registerParameter(name, t);
  }
  forward(x: Tensor): Tensor {
    return x.view(...x.shape);
  }
}

/**
 * ViT's two layer groups for differential rates: the embeddings (class token,
 * position embeddings, patch projection) and the first `split` encoder blocks; then
 * the remaining blocks and the final LayerNorm.
 */
export function vitBodyGroups(body: nn.Module, split: number): [nn.Module[], nn.Module[]] {
  if (!(body instanceof ViTBody)) throw new Error('vitBodyGroups: not a ViT body');
  const v = body.vit;
  const blocks = v.encoder.layers.children();
  return [
    [
      new ParameterRefs([
        ['class_token', v.classToken],
        ['pos_embedding', v.encoder.posEmbedding],
      ]),
      v.convProj,
      ...blocks.slice(0, split),
    ],
    [...blocks.slice(split), v.encoder.ln],
  ];
}
