// Building blocks that torchvision's newer architectures share (torchvision.ops):
// convolution + norm + activation, squeeze-excitation, stochastic depth and a
// permutation layer, with torchvision's module names.
import { empty, F, nn, tidy, type Tensor } from '../../torch/index.js';

/** Options of the published architectures' constructors: the classifier's classes, and stochastic depth's largest rate where the family has it. */
export interface BackboneOptions {
  numClasses?: number;
  stochasticDepthProb?: number;
}

/** Builds the norm layer for a number of channels. */
export type NormFactory = (channels: number) => nn.Module;

/** Reorders dimensions (torchvision's Permute), e.g. [0, 2, 3, 1] for channels last. */
export class Permute extends nn.Module {
  constructor(readonly dims: number[]) {
    super();
  }
  forward(x: Tensor): Tensor {
    return x.permute(...this.dims);
  }
}

/**
 * Drops a residual branch per sample in training with probability `p`, scaling
 * the survivors by 1/(1−p) (stochastic depth, Huang et al. 2016; torchvision's
 * StochasticDepth in 'row' mode). The identity in eval mode or with p = 0.
 */
export class StochasticDepth extends nn.Module {
  constructor(readonly p: number) {
    super();
    if (!(p >= 0 && p <= 1)) throw new RangeError(`StochasticDepth: p must be in [0, 1], got ${p}`);
  }
  forward(x: Tensor): Tensor {
    if (!this.training || this.p === 0) return x.view(...x.shape);
    return tidy(() => {
      const keep = 1 - this.p;
      const noise = empty([x.shape[0]!, ...x.shape.slice(1).map(() => 1)], { dtype: x.dtype, device: x.device });
      noise.bernoulli_(keep);
      if (keep > 0) noise.div_(keep);
      return x.mul(noise);
    });
  }
  protected override extraRepr(): string {
    return `p=${this.p}, mode=row`;
  }
}

/** Squeeze-and-excitation (Hu et al. 2018): x · σ(fc2(act(fc1(avgpool(x))))), 1×1 convolutions `fc1`, `fc2`. */
export class SqueezeExcitation extends nn.Module {
  readonly fc1: nn.Conv2d;
  readonly fc2: nn.Conv2d;
  readonly activation: nn.Module;

  constructor(inputChannels: number, squeezeChannels: number, activation: nn.Module = new nn.ReLU()) {
    super();
    this.registerModule('avgpool', new nn.AdaptiveAvgPool2d(1));
    this.fc1 = this.registerModule('fc1', new nn.Conv2d(inputChannels, squeezeChannels, 1));
    this.fc2 = this.registerModule('fc2', new nn.Conv2d(squeezeChannels, inputChannels, 1));
    this.activation = this.registerModule('activation', activation);
    this.registerModule('scale_activation', new nn.Sigmoid());
  }

  /** The per-channel scale, σ(fc2(act(fc1(avgpool(x))))). */
  scale(x: Tensor): Tensor {
    return nn.pipe(
      x,
      (t) => F.adaptiveAvgPool2d(t, 1),
      this.fc1,
      this.activation,
      this.fc2,
      (t) => t.sigmoid(),
    );
  }

  forward(x: Tensor): Tensor {
    const s = this.scale(x);
    const out = x.mul(s);
    s.dispose();
    return out;
  }
}

/** Options of `convNormActivation`. */
export interface ConvNormActivationOptions {
  stride?: number;
  groups?: number;
  /** Default (kernel − 1) / 2. */
  padding?: number;
  /** The norm layer for the output channels; null for none. Default BatchNorm2d. */
  norm?: ((channels: number) => nn.Module) | null;
  /** The activation; null for none. Default ReLU. */
  activation?: (() => nn.Module) | null;
  /** Default: a bias only without a norm layer. */
  bias?: boolean;
}

/** torchvision's Conv2dNormActivation: a Sequential of the convolution ('0'), its norm ('1') and activation. */
export function convNormActivation(cin: number, cout: number, kernel: number, o: ConvNormActivationOptions = {}): nn.Sequential {
  const norm = o.norm === undefined ? (c: number) => new nn.BatchNorm2d(c) : o.norm;
  const activation = o.activation === undefined ? () => new nn.ReLU(true) : o.activation;
  const layers: nn.Module[] = [new nn.Conv2d(cin, cout, kernel, { stride: o.stride ?? 1, padding: o.padding ?? (kernel - 1) >> 1, groups: o.groups ?? 1, bias: o.bias ?? norm === null })];
  if (norm !== null) layers.push(norm(cout));
  if (activation !== null) layers.push(activation());
  return new nn.Sequential(...layers);
}

/**
 * The transformers' MLP (torchvision's MLPBlock): Linear, GELU, Dropout, Linear,
 * Dropout, the linear layers Glorot-uniform with biases from N(0, 10⁻¹²).
 */
export function transformerMlp(dim: number, hidden: number, dropout: number): nn.Sequential {
  const mlp = new nn.Sequential(new nn.Linear(dim, hidden), new nn.GELU(), new nn.Dropout(dropout), new nn.Linear(hidden, dim), new nn.Dropout(dropout));
  for (const m of mlp.modules()) {
    if (m instanceof nn.Linear) {
      nn.init.xavierUniform_(m.weight);
      nn.init.normal_(m.bias!, 0, 1e-6);
    }
  }
  return mlp;
}
