// DenseNet-121 in torchvision's layout (features.denseblockN.denselayerM...).
import { cat, F, nn, tidy, type Tensor } from '../../torch/index.js';

const relu_ = (t: Tensor): Tensor => t.relu_();

export class DenseLayer extends nn.Module {
  readonly norm1: nn.BatchNorm2d;
  readonly relu1: nn.ReLU;
  readonly conv1: nn.Conv2d;
  readonly norm2: nn.BatchNorm2d;
  readonly relu2: nn.ReLU;
  readonly conv2: nn.Conv2d;

  constructor(cin: number, growthRate: number, bnSize: number) {
    super();
    this.norm1 = this.registerModule('norm1', new nn.BatchNorm2d(cin));
    this.relu1 = this.registerModule('relu1', new nn.ReLU(true));
    this.conv1 = this.registerModule('conv1', new nn.Conv2d(cin, bnSize * growthRate, 1, { bias: false }));
    this.norm2 = this.registerModule('norm2', new nn.BatchNorm2d(bnSize * growthRate));
    this.relu2 = this.registerModule('relu2', new nn.ReLU(true));
    this.conv2 = this.registerModule('conv2', new nn.Conv2d(bnSize * growthRate, growthRate, 3, { padding: 1, bias: false }));
  }

  forward(x: Tensor): Tensor {
    return nn.pipe(x, this.norm1, relu_, this.conv1, this.norm2, relu_, this.conv2);
  }
}

/** A dense block: each layer sees the concatenation of all earlier outputs. */
export class DenseBlock extends nn.Module {
  constructor(numLayers: number, cin: number, bnSize: number, growthRate: number) {
    super();
    for (let i = 0; i < numLayers; i++) this.registerModule(`denselayer${i + 1}`, new DenseLayer(cin + i * growthRate, growthRate, bnSize));
  }

  forward(x: Tensor): Tensor {
    return tidy(() => {
      const features = [x];
      for (const layer of this.children()) {
        const input = features.length === 1 ? x : cat(features, 1);
        features.push(layer.forward(input));
        if (input !== x) input.dispose();
      }
      return cat(features, 1);
    });
  }
}

export class Transition extends nn.Sequential {
  constructor(cin: number, cout: number) {
    super();
    this.registerModule('norm', new nn.BatchNorm2d(cin));
    this.registerModule('relu', new nn.ReLU(true));
    this.registerModule('conv', new nn.Conv2d(cin, cout, 1, { bias: false }));
    this.registerModule('pool', new nn.AvgPool2d(2, { stride: 2 }));
  }
}

/** DenseNet-BC (Huang et al. 2017). */
export class DenseNet extends nn.Module {
  readonly features: nn.Sequential;
  readonly classifier: nn.Linear;

  constructor({
    growthRate = 32,
    blockConfig = [6, 12, 24, 16],
    numInitFeatures = 64,
    bnSize = 4,
    numClasses = 1000,
  }: { growthRate?: number; blockConfig?: number[]; numInitFeatures?: number; bnSize?: number; numClasses?: number } = {}) {
    super();
    const features = nn.Sequential.named([
      ['conv0', new nn.Conv2d(3, numInitFeatures, 7, { stride: 2, padding: 3, bias: false })],
      ['norm0', new nn.BatchNorm2d(numInitFeatures)],
      ['relu0', new nn.ReLU(true)],
      ['pool0', new nn.MaxPool2d(3, { stride: 2, padding: 1 })],
    ]);
    let n = numInitFeatures;
    blockConfig.forEach((numLayers, i) => {
      features.registerModule(`denseblock${i + 1}`, new DenseBlock(numLayers, n, bnSize, growthRate));
      n += numLayers * growthRate;
      if (i !== blockConfig.length - 1) {
        features.registerModule(`transition${i + 1}`, new Transition(n, Math.floor(n / 2)));
        n = Math.floor(n / 2);
      }
    });
    features.registerModule('norm5', new nn.BatchNorm2d(n));
    this.features = this.registerModule('features', features);
    this.classifier = this.registerModule('classifier', new nn.Linear(n, numClasses));
    for (const m of this.modules()) {
      if (m instanceof nn.Conv2d) nn.init.kaimingNormal_(m.weight);
      else if (m instanceof nn.BatchNorm2d) {
        nn.init.ones_(m.weight!);
        nn.init.zeros_(m.bias!);
      } else if (m instanceof nn.Linear && m.bias) nn.init.zeros_(m.bias);
    }
  }

  forward(x: Tensor): Tensor {
    return nn.pipe(
      x,
      this.features,
      relu_,
      (t) => F.adaptiveAvgPool2d(t, 1),
      (t) => t.flatten(1),
      this.classifier,
    );
  }
}

/** DenseNet-121. */
export function densenet121(options: { numClasses?: number } = {}): DenseNet {
  return new DenseNet({ growthRate: 32, blockConfig: [6, 12, 24, 16], numInitFeatures: 64, ...options });
}

/**
 * torchvision's published DenseNet files use old key names (`denselayer1.norm.1.weight`);
 * this renames them to the module tree's (`denselayer1.norm1.weight`), as torchvision does on load.
 */
export function renameLegacyDenseNetKeys<T>(state: Map<string, T>): Map<string, T> {
  const pattern = /^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$/;
  const out = new Map<string, T>();
  for (const [k, v] of state) {
    const m = pattern.exec(k);
    out.set(m ? m[1]! + m[2]! : k, v);
  }
  return out;
}
