// RegNetX and RegNetY (Radosavovic et al. 2020) with torchvision's module tree and
// parameter names; the stages come from the design space's parameters as torchvision
// computes them.
import { F, nn, tidy, type Tensor } from '../../torch/index.js';
import { convNormActivation, SqueezeExcitation, type BackboneOptions } from './blocks.js';
import { makeDivisible } from './mobilenet.js';
import { roundHalfEven } from '../warp.js';

/** A RegNet's stages: depth, width and group width of each (stride 2 and bottleneck 1 throughout). */
export interface RegNetStages {
  depths: number[];
  widths: number[];
  groupWidths: number[];
  /** Squeeze-excitation ratio (RegNetY), or undefined (RegNetX). */
  seRatio?: number;
}

/**
 * The stages from RegNet's parameters (depth, w₀, wₐ, wₘ, group width), as
 * torchvision's BlockParams.from_init_params: widths w₀ + wₐ·i quantized in log
 * steps of wₘ to multiples of 8, consecutive equal widths forming a stage. Computed in
 * float32, as torchvision does, so that rounding agrees at the boundaries.
 */
export function regnetStages(depth: number, w0: number, wa: number, wm: number, groupWidth: number, seRatio?: number): RegNetStages {
  const f = Math.fround;
  const widths = Array.from({ length: depth }, (_, i) => {
    const cont = f(f(i * f(wa)) + w0);
    const capacity = roundHalfEven(f(f(Math.log(f(cont / w0))) / f(Math.log(wm))));
    return roundHalfEven(f(f(w0 * f(f(wm) ** capacity)) / 8)) * 8;
  });
  const depths: number[] = [];
  const stageWidths: number[] = [];
  for (const w of widths) {
    if (stageWidths[stageWidths.length - 1] === w) depths[depths.length - 1]!++;
    else {
      stageWidths.push(w);
      depths.push(1);
    }
  }
  const groupWidths = stageWidths.map((w) => Math.min(groupWidth, w));
  return { depths, widths: stageWidths.map((w, i) => makeDivisible(w, groupWidths[i])), groupWidths, ...(seRatio === undefined ? {} : { seRatio }) };
}

/** RegNet's residual bottleneck: 1×1, grouped 3×3 (with squeeze-excitation in RegNetY), 1×1, and a projection where the shape changes. */
export class ResBottleneckBlock extends nn.Module {
  readonly proj: nn.Sequential | null;
  readonly f: nn.Sequential;

  constructor(cin: number, cout: number, stride: number, groupWidth: number, seRatio?: number) {
    super();
    this.proj = cin !== cout || stride !== 1 ? this.registerModule('proj', convNormActivation(cin, cout, 1, { stride, activation: null })) : null;
    const groups = Math.floor(cout / groupWidth);
    const f = nn.Sequential.named([
      ['a', convNormActivation(cin, cout, 1)],
      ['b', convNormActivation(cout, cout, 3, { stride, groups })],
      ...(seRatio ? [['se', new SqueezeExcitation(cout, Math.round(seRatio * cin), new nn.ReLU())] as [string, nn.Module]] : []),
      ['c', convNormActivation(cout, cout, 1, { activation: null })],
    ]);
    this.f = this.registerModule('f', f);
    this.registerModule('activation', new nn.ReLU(true));
  }

  forward(x: Tensor): Tensor {
    return tidy(() => {
      const shortcut = this.proj === null ? x : this.proj.forward(x);
      return this.f.forward(x).add_(shortcut).relu_();
    });
  }
}

/** RegNet: a 3×3 stem of 32 channels, the stages ('block1'…, blocks 'block1-0'…), pooling and `fc`. */
export class RegNet extends nn.Module {
  readonly stem: nn.Sequential;
  readonly trunkOutput: nn.Sequential;
  readonly fc: nn.Linear;
  readonly outChannels: number;

  constructor(stages: RegNetStages, { numClasses = 1000 }: { numClasses?: number } = {}) {
    super();
    this.stem = this.registerModule('stem', convNormActivation(3, 32, 3, { stride: 2 }));
    let width = 32;
    const trunk: [string, nn.Module][] = [];
    stages.depths.forEach((depth, i) => {
      const out = stages.widths[i]!;
      const stage = new nn.Sequential();
      for (let j = 0; j < depth; j++) stage.registerModule(`block${i + 1}-${j}`, new ResBottleneckBlock(j === 0 ? width : out, out, j === 0 ? 2 : 1, stages.groupWidths[i]!, stages.seRatio));
      trunk.push([`block${i + 1}`, stage]);
      width = out;
    });
    this.outChannels = width;
    this.trunkOutput = this.registerModule('trunk_output', nn.Sequential.named(trunk));
    this.registerModule('avgpool', new nn.AdaptiveAvgPool2d(1));
    this.fc = this.registerModule('fc', new nn.Linear(width, numClasses));
    for (const m of this.modules()) {
      if (m instanceof nn.Conv2d) {
        const [kh, kw] = m.weight.shape.slice(2) as [number, number];
        nn.init.normal_(m.weight, 0, Math.sqrt(2 / (kh * kw * m.outChannels)));
      } else if (m instanceof nn.Linear) {
        nn.init.normal_(m.weight, 0, 0.01);
        nn.init.zeros_(m.bias!);
      }
    }
  }

  forward(x: Tensor): Tensor {
    return nn.pipe(
      x,
      this.stem,
      this.trunkOutput,
      (t) => F.adaptiveAvgPool2d(t, 1),
      (t) => t.flatten(1),
      this.fc,
    );
  }
}

const regnet =
  (...p: Parameters<typeof regnetStages>) =>
  (o: Pick<BackboneOptions, 'numClasses'> = {}): RegNet =>
    new RegNet(regnetStages(...p), o);

/** RegNetY-400MF. */
export const regnet_y_400mf = regnet(16, 48, 27.89, 2.09, 8, 0.25);
/** RegNetY-800MF. */
export const regnet_y_800mf = regnet(14, 56, 38.84, 2.4, 16, 0.25);
/** RegNetY-1.6GF. */
export const regnet_y_1_6gf = regnet(27, 48, 20.71, 2.65, 24, 0.25);
/** RegNetY-3.2GF. */
export const regnet_y_3_2gf = regnet(21, 80, 42.63, 2.66, 24, 0.25);
/** RegNetY-8GF. */
export const regnet_y_8gf = regnet(17, 192, 76.82, 2.19, 56, 0.25);
/** RegNetY-16GF. */
export const regnet_y_16gf = regnet(18, 200, 106.23, 2.48, 112, 0.25);
/** RegNetY-32GF. */
export const regnet_y_32gf = regnet(20, 232, 115.89, 2.53, 232, 0.25);
/** RegNetY-128GF (644M parameters; torchvision publishes SWAG weights at 384 px). */
export const regnet_y_128gf = regnet(27, 456, 160.83, 2.52, 264, 0.25);
/** RegNetX-400MF. */
export const regnet_x_400mf = regnet(22, 24, 24.48, 2.54, 16);
/** RegNetX-800MF. */
export const regnet_x_800mf = regnet(16, 56, 35.73, 2.28, 16);
/** RegNetX-1.6GF. */
export const regnet_x_1_6gf = regnet(18, 80, 34.01, 2.25, 24);
/** RegNetX-3.2GF. */
export const regnet_x_3_2gf = regnet(25, 88, 26.31, 2.25, 48);
/** RegNetX-8GF. */
export const regnet_x_8gf = regnet(23, 80, 49.56, 2.88, 120);
/** RegNetX-16GF. */
export const regnet_x_16gf = regnet(22, 216, 55.59, 2.1, 128);
/** RegNetX-32GF. */
export const regnet_x_32gf = regnet(23, 320, 69.86, 2.0, 168);
