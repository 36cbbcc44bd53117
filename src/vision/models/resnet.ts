// ResNet and ResNeXt with torchvision's module tree and parameter names, so
// torchvision's state dicts load as they are.
import { nn, type Tensor } from '../../torch/index.js';
import { initLikeTorchvision } from './init.js';

const relu_ = (t: Tensor): Tensor => t.relu_();
const flatten1 = (t: Tensor): Tensor => t.flatten(1);

/** out += shortcut(x); relu in place. */
function residual(out: Tensor, x: Tensor, downsample: nn.Module | null): Tensor {
  if (downsample === null) return out.add_(x).relu_();
  const identity = downsample.forward(x);
  out.add_(identity).relu_();
  identity.dispose();
  return out;
}

function conv3x3(cin: number, cout: number, stride = 1, groups = 1, dilation = 1): nn.Conv2d {
  return new nn.Conv2d(cin, cout, 3, { stride, padding: dilation, groups, dilation, bias: false });
}

function conv1x1(cin: number, cout: number, stride = 1): nn.Conv2d {
  return new nn.Conv2d(cin, cout, 1, { stride, bias: false });
}

/** The two-convolution residual block of ResNet-18/34. */
export class BasicBlock extends nn.Module {
  static readonly expansion = 1;
  readonly conv1: nn.Conv2d;
  readonly bn1: nn.BatchNorm2d;
  readonly relu: nn.ReLU;
  readonly conv2: nn.Conv2d;
  readonly bn2: nn.BatchNorm2d;
  readonly downsample: nn.Module | null;

  constructor(inplanes: number, planes: number, stride = 1, downsample: nn.Module | null = null, groups = 1, baseWidth = 64) {
    super();
    if (groups !== 1 || baseWidth !== 64) throw new Error('BasicBlock only supports groups=1 and baseWidth=64');
    this.conv1 = this.registerModule('conv1', conv3x3(inplanes, planes, stride));
    this.bn1 = this.registerModule('bn1', new nn.BatchNorm2d(planes));
    this.relu = this.registerModule('relu', new nn.ReLU(true));
    this.conv2 = this.registerModule('conv2', conv3x3(planes, planes));
    this.bn2 = this.registerModule('bn2', new nn.BatchNorm2d(planes));
    this.downsample = downsample === null ? null : this.registerModule('downsample', downsample);
  }

  forward(x: Tensor): Tensor {
    return residual(nn.pipe(x, this.conv1, this.bn1, relu_, this.conv2, this.bn2), x, this.downsample);
  }
}

/** The 1×1 → 3×3 → 1×1 residual block of ResNet-50 and deeper, and of ResNeXt (grouped 3×3). */
export class Bottleneck extends nn.Module {
  static readonly expansion = 4;
  readonly conv1: nn.Conv2d;
  readonly bn1: nn.BatchNorm2d;
  readonly conv2: nn.Conv2d;
  readonly bn2: nn.BatchNorm2d;
  readonly conv3: nn.Conv2d;
  readonly bn3: nn.BatchNorm2d;
  readonly relu: nn.ReLU;
  readonly downsample: nn.Module | null;

  constructor(inplanes: number, planes: number, stride = 1, downsample: nn.Module | null = null, groups = 1, baseWidth = 64) {
    super();
    const width = Math.floor(planes * (baseWidth / 64)) * groups;
    this.conv1 = this.registerModule('conv1', conv1x1(inplanes, width));
    this.bn1 = this.registerModule('bn1', new nn.BatchNorm2d(width));
    this.conv2 = this.registerModule('conv2', conv3x3(width, width, stride, groups));
    this.bn2 = this.registerModule('bn2', new nn.BatchNorm2d(width));
    this.conv3 = this.registerModule('conv3', conv1x1(width, planes * Bottleneck.expansion));
    this.bn3 = this.registerModule('bn3', new nn.BatchNorm2d(planes * Bottleneck.expansion));
    this.relu = this.registerModule('relu', new nn.ReLU(true));
    this.downsample = downsample === null ? null : this.registerModule('downsample', downsample);
  }

  forward(x: Tensor): Tensor {
    return residual(nn.pipe(x, this.conv1, this.bn1, relu_, this.conv2, this.bn2, relu_, this.conv3, this.bn3), x, this.downsample);
  }
}

/** A ResNet block class (BasicBlock or Bottleneck) with its channel expansion. */
export type BlockClass = (typeof BasicBlock | typeof Bottleneck) & { expansion: number };

/** Options of the ResNet family. */
export interface ResNetOptions {
  numClasses?: number;
  groups?: number;
  widthPerGroup?: number;
}

/** ResNet (He et al. 2016) exactly as torchvision builds it, for any input size. */
export class ResNet extends nn.Module {
  readonly conv1: nn.Conv2d;
  readonly bn1: nn.BatchNorm2d;
  readonly relu: nn.ReLU;
  readonly maxpool: nn.MaxPool2d;
  readonly layer1: nn.Sequential;
  readonly layer2: nn.Sequential;
  readonly layer3: nn.Sequential;
  readonly layer4: nn.Sequential;
  readonly avgpool: nn.AdaptiveAvgPool2d;
  readonly fc: nn.Linear;
  private inplanes = 64;

  constructor(
    readonly block: BlockClass,
    layers: [number, number, number, number],
    { numClasses = 1000, groups = 1, widthPerGroup = 64 }: ResNetOptions = {},
  ) {
    super();
    this.conv1 = this.registerModule('conv1', new nn.Conv2d(3, 64, 7, { stride: 2, padding: 3, bias: false }));
    this.bn1 = this.registerModule('bn1', new nn.BatchNorm2d(64));
    this.relu = this.registerModule('relu', new nn.ReLU(true));
    this.maxpool = this.registerModule('maxpool', new nn.MaxPool2d(3, { stride: 2, padding: 1 }));
    this.layer1 = this.registerModule('layer1', this.makeLayer(64, layers[0], 1, groups, widthPerGroup));
    this.layer2 = this.registerModule('layer2', this.makeLayer(128, layers[1], 2, groups, widthPerGroup));
    this.layer3 = this.registerModule('layer3', this.makeLayer(256, layers[2], 2, groups, widthPerGroup));
    this.layer4 = this.registerModule('layer4', this.makeLayer(512, layers[3], 2, groups, widthPerGroup));
    this.avgpool = this.registerModule('avgpool', new nn.AdaptiveAvgPool2d(1));
    this.fc = this.registerModule('fc', new nn.Linear(512 * block.expansion, numClasses));
    initLikeTorchvision(this);
  }

  private makeLayer(planes: number, blocks: number, stride: number, groups: number, baseWidth: number): nn.Sequential {
    const expansion = this.block.expansion;
    let downsample: nn.Module | null = null;
    if (stride !== 1 || this.inplanes !== planes * expansion) {
      downsample = new nn.Sequential(conv1x1(this.inplanes, planes * expansion, stride), new nn.BatchNorm2d(planes * expansion));
    }
    const layers: nn.Module[] = [new this.block(this.inplanes, planes, stride, downsample, groups, baseWidth)];
    this.inplanes = planes * expansion;
    for (let i = 1; i < blocks; i++) layers.push(new this.block(this.inplanes, planes, 1, null, groups, baseWidth));
    return new nn.Sequential(...layers);
  }

  forward(x: Tensor): Tensor {
    return nn.pipe(x, this.conv1, this.bn1, relu_, this.maxpool, this.layer1, this.layer2, this.layer3, this.layer4, this.avgpool, flatten1, this.fc);
  }
}

/** ResNet-18. */
export function resnet18(options: ResNetOptions = {}): ResNet {
  return new ResNet(BasicBlock, [2, 2, 2, 2], options);
}
/** ResNet-34. */
export function resnet34(options: ResNetOptions = {}): ResNet {
  return new ResNet(BasicBlock, [3, 4, 6, 3], options);
}
/** ResNet-50. */
export function resnet50(options: ResNetOptions = {}): ResNet {
  return new ResNet(Bottleneck, [3, 4, 6, 3], options);
}
/** ResNet-101. */
export function resnet101(options: ResNetOptions = {}): ResNet {
  return new ResNet(Bottleneck, [3, 4, 23, 3], options);
}
/** ResNet-152. */
export function resnet152(options: ResNetOptions = {}): ResNet {
  return new ResNet(Bottleneck, [3, 8, 36, 3], options);
}
/** ResNeXt-50 32×4d. */
export function resnext50_32x4d(options: ResNetOptions = {}): ResNet {
  return new ResNet(Bottleneck, [3, 4, 6, 3], { groups: 32, widthPerGroup: 4, ...options });
}
/** ResNeXt-101 32×8d. */
export function resnext101_32x8d(options: ResNetOptions = {}): ResNet {
  return new ResNet(Bottleneck, [3, 4, 23, 3], { groups: 32, widthPerGroup: 8, ...options });
}
/** ResNeXt-101 64×4d (fast.ai's resnext101_64). */
export function resnext101_64x4d(options: ResNetOptions = {}): ResNet {
  return new ResNet(Bottleneck, [3, 4, 23, 3], { groups: 64, widthPerGroup: 4, ...options });
}
/** Wide ResNet-50-2. */
export function wide_resnet50_2(options: ResNetOptions = {}): ResNet {
  return new ResNet(Bottleneck, [3, 4, 6, 3], { widthPerGroup: 128, ...options });
}
