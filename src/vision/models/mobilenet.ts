// MobileNetV2 in torchvision's layout (features.N.conv..., classifier.1).
import { F, nn, type Tensor } from '../../torch/index.js';
import { initLikeTorchvision } from './init.js';

export function makeDivisible(v: number, divisor = 8): number {
  let n = Math.max(divisor, Math.floor((v + divisor / 2) / divisor) * divisor);
  if (n < 0.9 * v) n += divisor;
  return n;
}

function convBnReLU6(cin: number, cout: number, kernel = 3, stride = 1, groups = 1): nn.Sequential {
  return new nn.Sequential(new nn.Conv2d(cin, cout, kernel, { stride, padding: (kernel - 1) >> 1, groups, bias: false }), new nn.BatchNorm2d(cout), new nn.ReLU6(true));
}

/** The inverted residual block: expand 1×1, depthwise 3×3, project 1×1 (linear). */
export class InvertedResidual extends nn.Module {
  readonly conv: nn.Sequential;
  readonly useResConnect: boolean;

  constructor(cin: number, cout: number, stride: number, expandRatio: number) {
    super();
    const hidden = Math.round(cin * expandRatio);
    this.useResConnect = stride === 1 && cin === cout;
    const layers: nn.Module[] = [];
    if (expandRatio !== 1) layers.push(convBnReLU6(cin, hidden, 1));
    layers.push(convBnReLU6(hidden, hidden, 3, stride, hidden), new nn.Conv2d(hidden, cout, 1, { bias: false }), new nn.BatchNorm2d(cout));
    this.conv = this.registerModule('conv', new nn.Sequential(...layers));
  }

  forward(x: Tensor): Tensor {
    return this.useResConnect ? this.conv.forward(x).add_(x) : this.conv.forward(x);
  }
}

/** MobileNetV2 (Sandler et al. 2018), as torchvision builds it. */
export class MobileNetV2 extends nn.Module {
  readonly features: nn.Sequential;
  readonly classifier: nn.Sequential;
  readonly lastChannel: number;

  constructor({ numClasses = 1000, widthMult = 1, dropout = 0.2 }: { numClasses?: number; widthMult?: number; dropout?: number } = {}) {
    super();
    const setting = [
      [1, 16, 1, 1],
      [6, 24, 2, 2],
      [6, 32, 3, 2],
      [6, 64, 4, 2],
      [6, 96, 3, 1],
      [6, 160, 3, 2],
      [6, 320, 1, 1],
    ] as const;
    let cin = makeDivisible(32 * widthMult);
    this.lastChannel = makeDivisible(1280 * Math.max(1, widthMult));
    const features: nn.Module[] = [convBnReLU6(3, cin, 3, 2)];
    for (const [t, c, n, s] of setting) {
      const cout = makeDivisible(c * widthMult);
      for (let i = 0; i < n; i++) {
        features.push(new InvertedResidual(cin, cout, i === 0 ? s : 1, t));
        cin = cout;
      }
    }
    features.push(convBnReLU6(cin, this.lastChannel, 1));
    this.features = this.registerModule('features', new nn.Sequential(...features));
    this.classifier = this.registerModule('classifier', new nn.Sequential(new nn.Dropout(dropout), new nn.Linear(this.lastChannel, numClasses)));
    initLikeTorchvision(this, { linearStd: 0.01 });
  }

  forward(x: Tensor): Tensor {
    return nn.pipe(
      x,
      this.features,
      (t) => F.adaptiveAvgPool2d(t, 1),
      (t) => t.flatten(1),
      this.classifier,
    );
  }
}

/** MobileNetV2 with torchvision's layout. */
export function mobilenet_v2(options: { numClasses?: number; widthMult?: number } = {}): MobileNetV2 {
  return new MobileNetV2(options);
}
