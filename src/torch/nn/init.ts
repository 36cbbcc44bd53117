// Weight initialization, as torch.nn.init (all in place, outside autograd).
import { noGrad } from '../autograd.js';
import type { Tensor } from '../tensor.js';

/** Nonlinearities whose recommended gain `calculateGain` knows. */
export type Nonlinearity = 'linear' | 'conv2d' | 'sigmoid' | 'tanh' | 'relu' | 'leaky_relu' | 'selu';

/** The recommended gain for a nonlinearity (torch.nn.init.calculate_gain). */
export function calculateGain(nonlinearity: Nonlinearity, param?: number): number {
  switch (nonlinearity) {
    case 'linear':
    case 'conv2d':
    case 'sigmoid':
      return 1;
    case 'tanh':
      return 5 / 3;
    case 'relu':
      return Math.SQRT2;
    case 'leaky_relu': {
      const slope = param ?? 0.01;
      return Math.sqrt(2 / (1 + slope * slope));
    }
    case 'selu':
      return 3 / 4;
  }
}

/** fan_in and fan_out of a weight tensor (torch.nn.init._calculate_fan_in_and_fan_out). */
export function fanInAndFanOut(t: Tensor): { fanIn: number; fanOut: number } {
  const shape = t.shape;
  if (shape.length < 2) throw new Error('fan in and fan out need a tensor with at least 2 dimensions');
  const receptive = shape.slice(2).reduce((a, b) => a * b, 1);
  return { fanIn: shape[1]! * receptive, fanOut: shape[0]! * receptive };
}

/** Options of the Kaiming (He) initializers. */
export interface KaimingOptions {
  /** Negative slope of the rectifier after this layer (0 for ReLU). */
  a?: number;
  /** Preserve the variance of the forward pass ('fanIn') or of the backward pass ('fanOut'). */
  mode?: 'fanIn' | 'fanOut';
  nonlinearity?: Nonlinearity;
}

function kaimingStd(t: Tensor, { a = 0, mode = 'fanIn', nonlinearity = 'leaky_relu' }: KaimingOptions): number {
  const { fanIn, fanOut } = fanInAndFanOut(t);
  const fan = mode === 'fanIn' ? fanIn : fanOut;
  return calculateGain(nonlinearity, a) / Math.sqrt(fan);
}

/** Fills with N(0, std²), std = gain / sqrt(fan) (He et al. 2015). */
export function kaimingNormal_(t: Tensor, options: KaimingOptions = {}): Tensor {
  const std = kaimingStd(t, options);
  return noGrad(() => t.normal_(0, std));
}

/** Fills with U(-bound, bound), bound = gain * sqrt(3 / fan). */
export function kaimingUniform_(t: Tensor, options: KaimingOptions = {}): Tensor {
  const bound = Math.sqrt(3) * kaimingStd(t, options);
  return noGrad(() => t.uniform_(-bound, bound));
}

/** Fills with U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio 2010). */
export function xavierUniform_(t: Tensor, gain = 1): Tensor {
  const { fanIn, fanOut } = fanInAndFanOut(t);
  const a = gain * Math.sqrt(6 / (fanIn + fanOut));
  return noGrad(() => t.uniform_(-a, a));
}

/** Fills with N(0, std²), std = gain * sqrt(2 / (fan_in + fan_out)). */
export function xavierNormal_(t: Tensor, gain = 1): Tensor {
  const { fanIn, fanOut } = fanInAndFanOut(t);
  return noGrad(() => t.normal_(0, gain * Math.sqrt(2 / (fanIn + fanOut))));
}

/** Fills with U(a, b). */
export function uniform_(t: Tensor, a = 0, b = 1): Tensor {
  return noGrad(() => t.uniform_(a, b));
}

/** Fills with N(mean, std²). */
export function normal_(t: Tensor, mean = 0, std = 1): Tensor {
  return noGrad(() => t.normal_(mean, std));
}

/** Fills with a constant. */
export function constant_(t: Tensor, value: number): Tensor {
  return noGrad(() => t.fill_(value));
}

/** Fills with zeros. */
export function zeros_(t: Tensor): Tensor {
  return noGrad(() => t.zero_());
}

/** Fills with ones. */
export function ones_(t: Tensor): Tensor {
  return noGrad(() => t.fill_(1));
}

/**
 * Fills with N(mean, std²) truncated to [a, b] (torch.nn.init.trunc_normal_'s
 * defaults a = −2, b = 2, absolute bounds): drawn, then clamped, which for the
 * small deviations models use changes next to nothing.
 */
export function truncNormal_(t: Tensor, { mean = 0, std = 1, a = -2, b = 2 }: { mean?: number; std?: number; a?: number; b?: number } = {}): Tensor {
  return noGrad(() => t.normal_(mean, std).clamp_(a, b));
}
