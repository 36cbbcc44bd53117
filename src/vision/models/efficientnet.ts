// EfficientNet (Tan & Le 2019) and EfficientNetV2 (Tan & Le 2021) with torchvision's
// module tree and parameter names.
import { nn, tidy, type Tensor } from '../../torch/index.js';
import { convNormActivation, SqueezeExcitation, StochasticDepth, type BackboneOptions, type NormFactory } from './blocks.js';
import { makeDivisible } from './mobilenet.js';

/** One stage of an EfficientNet: MBConv or FusedMBConv blocks with their expansion, kernel, stride, channels and count. */
export interface MBStage {
  fused: boolean;
  expandRatio: number;
  kernel: number;
  stride: number;
  cin: number;
  cout: number;
  layers: number;
}

type Norm = NormFactory;
const silu = (): nn.Module => new nn.SiLU();

abstract class ResidualBlock extends nn.Module {
  abstract readonly block: nn.Sequential;
  readonly stochasticDepth: StochasticDepth;
  constructor(
    readonly useResConnect: boolean,
    stochasticDepthProb: number,
  ) {
    super();
    this.stochasticDepth = new StochasticDepth(stochasticDepthProb);
  }
  forward(x: Tensor): Tensor {
    if (!this.useResConnect) return this.block.forward(x);
    return tidy(() => this.stochasticDepth.forward(this.block.forward(x)).add_(x));
  }
}

/** The mobile inverted bottleneck: expand 1×1, depthwise k×k, squeeze-excitation, project 1×1. */
export class MBConv extends ResidualBlock {
  readonly block: nn.Sequential;
  constructor(s: MBStage, stochasticDepthProb: number, norm: Norm) {
    super(s.stride === 1 && s.cin === s.cout, stochasticDepthProb);
    const expanded = makeDivisible(s.cin * s.expandRatio);
    const layers: nn.Module[] = [];
    if (expanded !== s.cin) layers.push(convNormActivation(s.cin, expanded, 1, { norm, activation: silu }));
    layers.push(
      convNormActivation(expanded, expanded, s.kernel, { stride: s.stride, groups: expanded, norm, activation: silu }),
      new SqueezeExcitation(expanded, Math.max(1, Math.floor(s.cin / 4)), new nn.SiLU()),
      convNormActivation(expanded, s.cout, 1, { norm, activation: null }),
    );
    this.block = this.registerModule('block', new nn.Sequential(...layers));
    this.registerModule('stochastic_depth', this.stochasticDepth);
  }
}

/** EfficientNetV2's fused block: expand with a full k×k convolution, project 1×1. */
export class FusedMBConv extends ResidualBlock {
  readonly block: nn.Sequential;
  constructor(s: MBStage, stochasticDepthProb: number, norm: Norm) {
    super(s.stride === 1 && s.cin === s.cout, stochasticDepthProb);
    const expanded = makeDivisible(s.cin * s.expandRatio);
    const layers: nn.Module[] =
      expanded !== s.cin
        ? [convNormActivation(s.cin, expanded, s.kernel, { stride: s.stride, norm, activation: silu }), convNormActivation(expanded, s.cout, 1, { norm, activation: null })]
        : [convNormActivation(s.cin, s.cout, s.kernel, { stride: s.stride, norm, activation: silu })];
    this.block = this.registerModule('block', new nn.Sequential(...layers));
    this.registerModule('stochastic_depth', this.stochasticDepth);
  }
}

/** Options of EfficientNet. */
export interface EfficientNetOptions {
  numClasses?: number;
  dropout?: number;
  stochasticDepthProb?: number;
  /** Batch norm's eps (1e-5 for B0–B4, 1e-3 for B5–B7 and V2). */
  bnEps?: number;
  /** Channels of the last 1×1 convolution; default 4× the last stage's. */
  lastChannel?: number;
}

/** EfficientNet V1 and V2: a 3×3 stem, the stages, a 1×1 convolution, pooling and a linear classifier. */
export class EfficientNet extends nn.Module {
  readonly features: nn.Sequential;
  readonly classifier: nn.Sequential;
  readonly lastChannel: number;

  constructor(setting: MBStage[], { numClasses = 1000, dropout = 0.2, stochasticDepthProb = 0.2, bnEps = 1e-5, lastChannel }: EfficientNetOptions = {}) {
    super();
    const norm: Norm = (c) => new nn.BatchNorm2d(c, { eps: bnEps });
    const layers: nn.Module[] = [convNormActivation(3, setting[0]!.cin, 3, { stride: 2, norm, activation: silu })];
    const total = setting.reduce((a, s) => a + s.layers, 0);
    let id = 0;
    for (const s of setting) {
      const blocks: nn.Module[] = [];
      for (let i = 0; i < s.layers; i++, id++) {
        const b = i === 0 ? s : { ...s, cin: s.cout, stride: 1 };
        const p = (stochasticDepthProb * id) / total;
        blocks.push(s.fused ? new FusedMBConv(b, p, norm) : new MBConv(b, p, norm));
      }
      layers.push(new nn.Sequential(...blocks));
    }
    const lastIn = setting[setting.length - 1]!.cout;
    this.lastChannel = lastChannel ?? 4 * lastIn;
    layers.push(convNormActivation(lastIn, this.lastChannel, 1, { norm, activation: silu }));
    this.features = this.registerModule('features', new nn.Sequential(...layers));
    this.registerModule('avgpool', new nn.AdaptiveAvgPool2d(1));
    this.classifier = this.registerModule('classifier', new nn.Sequential(new nn.Dropout(dropout), new nn.Linear(this.lastChannel, numClasses)));
    for (const m of this.modules()) {
      if (m instanceof nn.Conv2d) {
        nn.init.kaimingNormal_(m.weight, { mode: 'fanOut' });
        if (m.bias) nn.init.zeros_(m.bias);
      } else if (m instanceof nn.Linear) {
        const r = 1 / Math.sqrt(m.outFeatures);
        nn.init.uniform_(m.weight, -r, r);
        nn.init.zeros_(m.bias!);
      }
    }
  }

  forward(x: Tensor): Tensor {
    return nn.pipe(x, this.features, this.getModule('avgpool')!, (t) => t.flatten(1), this.classifier);
  }
}

/** EfficientNet-B* stages for a width and depth multiplier. */
export function efficientnetV1Setting(widthMult: number, depthMult: number): MBStage[] {
  const base: [number, number, number, number, number, number][] = [
    [1, 3, 1, 32, 16, 1],
    [6, 3, 2, 16, 24, 2],
    [6, 5, 2, 24, 40, 2],
    [6, 3, 2, 40, 80, 3],
    [6, 5, 1, 80, 112, 3],
    [6, 5, 2, 112, 192, 4],
    [6, 3, 1, 192, 320, 1],
  ];
  return base.map(([e, k, s, i, o, n]) => ({
    fused: false,
    expandRatio: e,
    kernel: k,
    stride: s,
    cin: makeDivisible(i * widthMult),
    cout: makeDivisible(o * widthMult),
    layers: Math.ceil(n * depthMult),
  }));
}

const v2 = (rows: [boolean, number, number, number, number, number, number][]): MBStage[] =>
  rows.map(([fused, e, k, s, i, o, n]) => ({ fused, expandRatio: e, kernel: k, stride: s, cin: i, cout: o, layers: n }));

/** EfficientNetV2 stages (S, M, L). */
export const EFFICIENTNET_V2_SETTINGS: Record<'s' | 'm' | 'l', MBStage[]> = {
  s: v2([
    [true, 1, 3, 1, 24, 24, 2],
    [true, 4, 3, 2, 24, 48, 4],
    [true, 4, 3, 2, 48, 64, 4],
    [false, 4, 3, 2, 64, 128, 6],
    [false, 6, 3, 1, 128, 160, 9],
    [false, 6, 3, 2, 160, 256, 15],
  ]),
  m: v2([
    [true, 1, 3, 1, 24, 24, 3],
    [true, 4, 3, 2, 24, 48, 5],
    [true, 4, 3, 2, 48, 80, 5],
    [false, 4, 3, 2, 80, 160, 7],
    [false, 6, 3, 1, 160, 176, 14],
    [false, 6, 3, 2, 176, 304, 18],
    [false, 6, 3, 1, 304, 512, 5],
  ]),
  l: v2([
    [true, 1, 3, 1, 32, 32, 4],
    [true, 4, 3, 2, 32, 64, 7],
    [true, 4, 3, 2, 64, 96, 7],
    [false, 4, 3, 2, 96, 192, 10],
    [false, 6, 3, 1, 192, 224, 19],
    [false, 6, 3, 2, 224, 384, 25],
    [false, 6, 3, 1, 384, 640, 7],
  ]),
};

// [width, depth, dropout, bn eps] of B0…B7, as torchvision builds them.
const V1: [number, number, number, number][] = [
  [1.0, 1.0, 0.2, 1e-5],
  [1.0, 1.1, 0.2, 1e-5],
  [1.1, 1.2, 0.3, 1e-5],
  [1.2, 1.4, 0.3, 1e-5],
  [1.4, 1.8, 0.4, 1e-5],
  [1.6, 2.2, 0.4, 1e-3],
  [1.8, 2.6, 0.5, 1e-3],
  [2.0, 3.1, 0.5, 1e-3],
];
const v1 = (b: number, o: BackboneOptions): EfficientNet => {
  const [w, d, dropout, bnEps] = V1[b]!;
  return new EfficientNet(efficientnetV1Setting(w, d), { dropout, bnEps, ...o });
};

/** EfficientNet-B0 (5.3M parameters, 224 px). */
export const efficientnet_b0 = (o: BackboneOptions = {}): EfficientNet => v1(0, o);
/** EfficientNet-B1 (7.8M parameters, 240 px). */
export const efficientnet_b1 = (o: BackboneOptions = {}): EfficientNet => v1(1, o);
/** EfficientNet-B2 (9.1M parameters, 288 px). */
export const efficientnet_b2 = (o: BackboneOptions = {}): EfficientNet => v1(2, o);
/** EfficientNet-B3 (12.2M parameters, 300 px). */
export const efficientnet_b3 = (o: BackboneOptions = {}): EfficientNet => v1(3, o);
/** EfficientNet-B4 (19.3M parameters, 380 px). */
export const efficientnet_b4 = (o: BackboneOptions = {}): EfficientNet => v1(4, o);
/** EfficientNet-B5 (30.4M parameters, 456 px). */
export const efficientnet_b5 = (o: BackboneOptions = {}): EfficientNet => v1(5, o);
/** EfficientNet-B6 (43.0M parameters, 528 px). */
export const efficientnet_b6 = (o: BackboneOptions = {}): EfficientNet => v1(6, o);
/** EfficientNet-B7 (66.3M parameters, 600 px). */
export const efficientnet_b7 = (o: BackboneOptions = {}): EfficientNet => v1(7, o);
/** EfficientNetV2-S (21.5M parameters, 384 px). */
export const efficientnet_v2_s = (o: BackboneOptions = {}): EfficientNet => new EfficientNet(EFFICIENTNET_V2_SETTINGS.s, { dropout: 0.2, bnEps: 1e-3, lastChannel: 1280, ...o });
/** EfficientNetV2-M (54.1M parameters, 480 px). */
export const efficientnet_v2_m = (o: BackboneOptions = {}): EfficientNet => new EfficientNet(EFFICIENTNET_V2_SETTINGS.m, { dropout: 0.3, bnEps: 1e-3, lastChannel: 1280, ...o });
/** EfficientNetV2-L (118.5M parameters, 480 px). */
export const efficientnet_v2_l = (o: BackboneOptions = {}): EfficientNet => new EfficientNet(EFFICIENTNET_V2_SETTINGS.l, { dropout: 0.4, bnEps: 1e-3, lastChannel: 1280, ...o });
