// ConvNeXt (Liu et al. 2022) with torchvision's module tree and parameter names.
import { F, nn, ones, tidy, type Tensor } from '../../torch/index.js';
import { convNormActivation, Permute, StochasticDepth, type BackboneOptions } from './blocks.js';

/** ConvNeXt's block: depthwise 7×7, LayerNorm, 4× MLP with GELU, layer scale, stochastic depth, residual. */
export class CNBlock extends nn.Module {
  readonly layerScale: Tensor;
  readonly block: nn.Sequential;
  readonly stochasticDepth: StochasticDepth;

  constructor(dim: number, layerScale: number, stochasticDepthProb: number) {
    super();
    this.layerScale = this.registerParameter('layer_scale', ones([dim, 1, 1]).mul_(layerScale));
    this.block = this.registerModule(
      'block',
      new nn.Sequential(
        new nn.Conv2d(dim, dim, 7, { padding: 3, groups: dim }),
        new Permute([0, 2, 3, 1]),
        new nn.LayerNorm(dim, 1e-6),
        new nn.Linear(dim, 4 * dim),
        new nn.GELU(),
        new nn.Linear(4 * dim, dim),
        new Permute([0, 3, 1, 2]),
      ),
    );
    this.stochasticDepth = this.registerModule('stochastic_depth', new StochasticDepth(stochasticDepthProb));
  }

  forward(x: Tensor): Tensor {
    return tidy(() => this.stochasticDepth.forward(this.block.forward(x).mul_(this.layerScale)).add_(x));
  }
}

/** A stage of ConvNeXt: channels in, channels out (null: the last stage), blocks. */
export type CNStage = [number, number | null, number];

/** ConvNeXt: a 4×4 patchify stem, stages of CNBlocks with 2×2 downsampling between, a LayerNorm head. */
export class ConvNeXt extends nn.Module {
  readonly features: nn.Sequential;
  readonly classifier: nn.Sequential;

  constructor(stages: CNStage[], { stochasticDepthProb = 0, layerScale = 1e-6, numClasses = 1000 }: { stochasticDepthProb?: number; layerScale?: number; numClasses?: number } = {}) {
    super();
    const norm = (c: number): nn.Module => new nn.LayerNorm2d(c, 1e-6);
    const layers: nn.Module[] = [convNormActivation(3, stages[0]![0], 4, { stride: 4, padding: 0, norm, activation: null, bias: true })];
    const total = stages.reduce((a, s) => a + s[2], 0);
    let id = 0;
    for (const [cin, cout, n] of stages) {
      const blocks: nn.Module[] = [];
      for (let i = 0; i < n; i++, id++) blocks.push(new CNBlock(cin, layerScale, (stochasticDepthProb * id) / (total - 1)));
      layers.push(new nn.Sequential(...blocks));
      if (cout !== null) layers.push(new nn.Sequential(norm(cin), new nn.Conv2d(cin, cout, 2, { stride: 2 })));
    }
    const last = stages[stages.length - 1]!;
    const channels = last[1] ?? last[0];
    this.features = this.registerModule('features', new nn.Sequential(...layers));
    this.registerModule('avgpool', new nn.AdaptiveAvgPool2d(1));
    this.classifier = this.registerModule('classifier', new nn.Sequential(norm(channels), new nn.Flatten(1), new nn.Linear(channels, numClasses)));
    for (const m of this.modules()) {
      if (m instanceof nn.Conv2d || m instanceof nn.Linear) {
        nn.init.truncNormal_(m.weight, { std: 0.02 });
        if (m.bias) nn.init.zeros_(m.bias);
      }
    }
  }

  forward(x: Tensor): Tensor {
    return nn.pipe(x, this.features, (t) => F.adaptiveAvgPool2d(t, 1), this.classifier);
  }
}

const stages = (c: [number, number, number, number], d: [number, number, number, number]): CNStage[] => [
  [c[0], c[1], d[0]],
  [c[1], c[2], d[1]],
  [c[2], c[3], d[2]],
  [c[3], null, d[3]],
];

/** ConvNeXt-T (28M parameters). */
export function convnext_tiny(o: BackboneOptions = {}): ConvNeXt {
  return new ConvNeXt(stages([96, 192, 384, 768], [3, 3, 9, 3]), { stochasticDepthProb: 0.1, ...o });
}
/** ConvNeXt-S (50M parameters). */
export function convnext_small(o: BackboneOptions = {}): ConvNeXt {
  return new ConvNeXt(stages([96, 192, 384, 768], [3, 3, 27, 3]), { stochasticDepthProb: 0.4, ...o });
}
/** ConvNeXt-B (89M parameters). */
export function convnext_base(o: BackboneOptions = {}): ConvNeXt {
  return new ConvNeXt(stages([128, 256, 512, 1024], [3, 3, 27, 3]), { stochasticDepthProb: 0.5, ...o });
}
/** ConvNeXt-L (198M parameters). */
export function convnext_large(o: BackboneOptions = {}): ConvNeXt {
  return new ConvNeXt(stages([192, 384, 768, 1536], [3, 3, 27, 3]), { stochasticDepthProb: 0.5, ...o });
}
