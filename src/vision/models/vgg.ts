// VGG-16 with batch norm, in torchvision's layout.
import { nn, type Tensor } from '../../torch/index.js';
import { initLikeTorchvision } from './init.js';

const CFG_D: (number | 'M')[] = [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M', 512, 512, 512, 'M'];

/** VGG (Simonyan & Zisserman 2014): `features`, `avgpool` to 7×7, `classifier`. */
export class VGG extends nn.Module {
  readonly features: nn.Sequential;
  readonly avgpool: nn.AdaptiveAvgPool2d;
  readonly classifier: nn.Sequential;

  constructor(cfg: (number | 'M')[], { numClasses = 1000, batchNorm = true, dropout = 0.5 }: { numClasses?: number; batchNorm?: boolean; dropout?: number } = {}) {
    super();
    const layers: nn.Module[] = [];
    let cin = 3;
    for (const v of cfg) {
      if (v === 'M') layers.push(new nn.MaxPool2d(2, { stride: 2 }));
      else {
        layers.push(new nn.Conv2d(cin, v, 3, { padding: 1 }));
        if (batchNorm) layers.push(new nn.BatchNorm2d(v));
        layers.push(new nn.ReLU(true));
        cin = v;
      }
    }
    this.features = this.registerModule('features', new nn.Sequential(...layers));
    this.avgpool = this.registerModule('avgpool', new nn.AdaptiveAvgPool2d(7));
    this.classifier = this.registerModule(
      'classifier',
      new nn.Sequential(
        new nn.Linear(cin * 7 * 7, 4096),
        new nn.ReLU(true),
        new nn.Dropout(dropout),
        new nn.Linear(4096, 4096),
        new nn.ReLU(true),
        new nn.Dropout(dropout),
        new nn.Linear(4096, numClasses),
      ),
    );
    initLikeTorchvision(this, { linearStd: 0.01 });
  }

  forward(x: Tensor): Tensor {
    return nn.pipe(x, this.features, this.avgpool, (t) => t.flatten(1), this.classifier);
  }
}

/** VGG-16 with batch normalization. */
export function vgg16_bn(options: { numClasses?: number } = {}): VGG {
  return new VGG(CFG_D, { ...options, batchNorm: true });
}
