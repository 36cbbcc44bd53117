// Inception v3 in torchvision's layout (Conv2d_1a_3x3 ... Mixed_7c, AuxLogits, fc).
import { cat, F, nn, noGrad, tidy, type Pair, type Tensor } from '../../torch/index.js';

/** Convolution without bias, batch norm (eps 1e-3), ReLU. */
export class BasicConv2d extends nn.Module {
  readonly conv: nn.Conv2d;
  readonly bn: nn.BatchNorm2d;
  constructor(cin: number, cout: number, kernel: Pair, { stride = 1, padding = 0 }: { stride?: Pair; padding?: Pair } = {}) {
    super();
    this.conv = this.registerModule('conv', new nn.Conv2d(cin, cout, kernel, { stride, padding, bias: false }));
    this.bn = this.registerModule('bn', new nn.BatchNorm2d(cout, { eps: 0.001 }));
  }
  forward(x: Tensor): Tensor {
    return nn.pipe(x, this.conv, this.bn, (t) => t.relu_());
  }
}

/** A module whose forward runs named branches and concatenates them along channels. */
export abstract class Branches extends nn.Module {
  protected conv(name: string, cin: number, cout: number, kernel: Pair, opts: { stride?: Pair; padding?: Pair } = {}): BasicConv2d {
    return this.registerModule(name, new BasicConv2d(cin, cout, kernel, opts));
  }
  protected run(name: string, x: Tensor): Tensor {
    return this.getModule(name)!.forward(x);
  }
  protected chain(x: Tensor, ...names: string[]): Tensor {
    return nn.pipe(x, ...names.map((n) => this.getModule(n)!));
  }
}

export class InceptionA extends Branches {
  constructor(cin: number, poolFeatures: number) {
    super();
    this.conv('branch1x1', cin, 64, 1);
    this.conv('branch5x5_1', cin, 48, 1);
    this.conv('branch5x5_2', 48, 64, 5, { padding: 2 });
    this.conv('branch3x3dbl_1', cin, 64, 1);
    this.conv('branch3x3dbl_2', 64, 96, 3, { padding: 1 });
    this.conv('branch3x3dbl_3', 96, 96, 3, { padding: 1 });
    this.conv('branch_pool', cin, poolFeatures, 1);
  }
  forward(x: Tensor): Tensor {
    return tidy(() =>
      cat(
        [
          this.run('branch1x1', x),
          this.chain(x, 'branch5x5_1', 'branch5x5_2'),
          this.chain(x, 'branch3x3dbl_1', 'branch3x3dbl_2', 'branch3x3dbl_3'),
          this.run('branch_pool', F.avgPool2d(x, 3, { stride: 1, padding: 1 })),
        ],
        1,
      ),
    );
  }
}

export class InceptionB extends Branches {
  constructor(cin: number) {
    super();
    this.conv('branch3x3', cin, 384, 3, { stride: 2 });
    this.conv('branch3x3dbl_1', cin, 64, 1);
    this.conv('branch3x3dbl_2', 64, 96, 3, { padding: 1 });
    this.conv('branch3x3dbl_3', 96, 96, 3, { stride: 2 });
  }
  forward(x: Tensor): Tensor {
    return tidy(() => cat([this.run('branch3x3', x), this.chain(x, 'branch3x3dbl_1', 'branch3x3dbl_2', 'branch3x3dbl_3'), F.maxPool2d(x, 3, { stride: 2 })], 1));
  }
}

export class InceptionC extends Branches {
  constructor(cin: number, c7: number) {
    super();
    this.conv('branch1x1', cin, 192, 1);
    this.conv('branch7x7_1', cin, c7, 1);
    this.conv('branch7x7_2', c7, c7, [1, 7], { padding: [0, 3] });
    this.conv('branch7x7_3', c7, 192, [7, 1], { padding: [3, 0] });
    this.conv('branch7x7dbl_1', cin, c7, 1);
    this.conv('branch7x7dbl_2', c7, c7, [7, 1], { padding: [3, 0] });
    this.conv('branch7x7dbl_3', c7, c7, [1, 7], { padding: [0, 3] });
    this.conv('branch7x7dbl_4', c7, c7, [7, 1], { padding: [3, 0] });
    this.conv('branch7x7dbl_5', c7, 192, [1, 7], { padding: [0, 3] });
    this.conv('branch_pool', cin, 192, 1);
  }
  forward(x: Tensor): Tensor {
    return tidy(() =>
      cat(
        [
          this.run('branch1x1', x),
          this.chain(x, 'branch7x7_1', 'branch7x7_2', 'branch7x7_3'),
          this.chain(x, 'branch7x7dbl_1', 'branch7x7dbl_2', 'branch7x7dbl_3', 'branch7x7dbl_4', 'branch7x7dbl_5'),
          this.run('branch_pool', F.avgPool2d(x, 3, { stride: 1, padding: 1 })),
        ],
        1,
      ),
    );
  }
}

export class InceptionD extends Branches {
  constructor(cin: number) {
    super();
    this.conv('branch3x3_1', cin, 192, 1);
    this.conv('branch3x3_2', 192, 320, 3, { stride: 2 });
    this.conv('branch7x7x3_1', cin, 192, 1);
    this.conv('branch7x7x3_2', 192, 192, [1, 7], { padding: [0, 3] });
    this.conv('branch7x7x3_3', 192, 192, [7, 1], { padding: [3, 0] });
    this.conv('branch7x7x3_4', 192, 192, 3, { stride: 2 });
  }
  forward(x: Tensor): Tensor {
    return tidy(() => cat([this.chain(x, 'branch3x3_1', 'branch3x3_2'), this.chain(x, 'branch7x7x3_1', 'branch7x7x3_2', 'branch7x7x3_3', 'branch7x7x3_4'), F.maxPool2d(x, 3, { stride: 2 })], 1));
  }
}

export class InceptionE extends Branches {
  constructor(cin: number) {
    super();
    this.conv('branch1x1', cin, 320, 1);
    this.conv('branch3x3_1', cin, 384, 1);
    this.conv('branch3x3_2a', 384, 384, [1, 3], { padding: [0, 1] });
    this.conv('branch3x3_2b', 384, 384, [3, 1], { padding: [1, 0] });
    this.conv('branch3x3dbl_1', cin, 448, 1);
    this.conv('branch3x3dbl_2', 448, 384, 3, { padding: 1 });
    this.conv('branch3x3dbl_3a', 384, 384, [1, 3], { padding: [0, 1] });
    this.conv('branch3x3dbl_3b', 384, 384, [3, 1], { padding: [1, 0] });
    this.conv('branch_pool', cin, 192, 1);
  }
  forward(x: Tensor): Tensor {
    return tidy(() => {
      const b3 = this.run('branch3x3_1', x);
      const bd = this.chain(x, 'branch3x3dbl_1', 'branch3x3dbl_2');
      return cat(
        [
          this.run('branch1x1', x),
          cat([this.run('branch3x3_2a', b3), this.run('branch3x3_2b', b3)], 1),
          cat([this.run('branch3x3dbl_3a', bd), this.run('branch3x3dbl_3b', bd)], 1),
          this.run('branch_pool', F.avgPool2d(x, 3, { stride: 1, padding: 1 })),
        ],
        1,
      );
    });
  }
}

export class InceptionAux extends nn.Module {
  readonly conv0: BasicConv2d;
  readonly conv1: BasicConv2d;
  readonly fc: nn.Linear;
  constructor(cin: number, numClasses: number) {
    super();
    this.conv0 = this.registerModule('conv0', new BasicConv2d(cin, 128, 1));
    this.conv1 = this.registerModule('conv1', new BasicConv2d(128, 768, 5));
    this.fc = this.registerModule('fc', new nn.Linear(768, numClasses));
  }
  forward(x: Tensor): Tensor {
    return tidy(() => this.fc.forward(F.adaptiveAvgPool2d(this.conv1.forward(this.conv0.forward(F.avgPool2d(x, 5, { stride: 3 }))), 1).flatten(1)));
  }
}

/** Options of Inception v3. */
export interface InceptionOptions {
  numClasses?: number;
  auxLogits?: boolean;
  /** Re-normalize ImageNet-normalized input the way Google's weights expect (torchvision sets it for pretrained weights). */
  transformInput?: boolean;
  dropout?: number;
}

/** Inception v3 (Szegedy et al. 2016), torchvision's layout; `forward` returns the main logits only. */
export class Inception3 extends nn.Module {
  readonly transformInput: boolean;
  private readonly stem: string[] = [];
  private readonly mixed: string[] = [];
  readonly AuxLogits: InceptionAux | null;
  readonly avgpool: nn.AdaptiveAvgPool2d;
  readonly dropout: nn.Dropout;
  readonly fc: nn.Linear;

  constructor({ numClasses = 1000, auxLogits = true, transformInput = false, dropout = 0.5 }: InceptionOptions = {}) {
    super();
    this.transformInput = transformInput;
    const stem: [string, nn.Module][] = [
      ['Conv2d_1a_3x3', new BasicConv2d(3, 32, 3, { stride: 2 })],
      ['Conv2d_2a_3x3', new BasicConv2d(32, 32, 3)],
      ['Conv2d_2b_3x3', new BasicConv2d(32, 64, 3, { padding: 1 })],
      ['maxpool1', new nn.MaxPool2d(3, { stride: 2 })],
      ['Conv2d_3b_1x1', new BasicConv2d(64, 80, 1)],
      ['Conv2d_4a_3x3', new BasicConv2d(80, 192, 3)],
      ['maxpool2', new nn.MaxPool2d(3, { stride: 2 })],
      ['Mixed_5b', new InceptionA(192, 32)],
      ['Mixed_5c', new InceptionA(256, 64)],
      ['Mixed_5d', new InceptionA(288, 64)],
      ['Mixed_6a', new InceptionB(288)],
      ['Mixed_6b', new InceptionC(768, 128)],
      ['Mixed_6c', new InceptionC(768, 160)],
      ['Mixed_6d', new InceptionC(768, 160)],
      ['Mixed_6e', new InceptionC(768, 192)],
    ];
    for (const [n, m] of stem) {
      this.registerModule(n, m);
      this.stem.push(n);
    }
    this.AuxLogits = auxLogits ? this.registerModule('AuxLogits', new InceptionAux(768, numClasses)) : null;
    for (const [n, m] of [
      ['Mixed_7a', new InceptionD(768)],
      ['Mixed_7b', new InceptionE(1280)],
      ['Mixed_7c', new InceptionE(2048)],
    ] as [string, nn.Module][]) {
      this.registerModule(n, m);
      this.mixed.push(n);
    }
    this.avgpool = this.registerModule('avgpool', new nn.AdaptiveAvgPool2d(1));
    this.dropout = this.registerModule('dropout', new nn.Dropout(dropout));
    this.fc = this.registerModule('fc', new nn.Linear(2048, numClasses));
    for (const m of this.modules()) {
      if (m instanceof nn.Conv2d || m instanceof nn.Linear) truncNormal_(m.weight, 0.1);
      else if (m instanceof nn.BatchNorm2d) {
        nn.init.ones_(m.weight!);
        nn.init.zeros_(m.bias!);
      }
    }
  }

  /** The body's feature map (N×2048×h×w) before pooling. */
  features(x: Tensor): Tensor {
    return tidy(() => {
      let h = this.transformInput ? transformInput(x) : x;
      for (const n of [...this.stem, ...this.mixed]) h = this.getModule(n)!.forward(h);
      return h;
    });
  }

  forward(x: Tensor): Tensor {
    return tidy(() => this.fc.forward(this.dropout.forward(this.avgpool.forward(this.features(x))).flatten(1)));
  }
}

function transformInput(x: Tensor): Tensor {
  const scale = [0.229 / 0.5, 0.224 / 0.5, 0.225 / 0.5];
  const shift = [(0.485 - 0.5) / 0.5, (0.456 - 0.5) / 0.5, (0.406 - 0.5) / 0.5];
  return cat(
    [0, 1, 2].map((c) => x.select(1, c).unsqueeze(1).mul(scale[c]!).add(shift[c]!)),
    1,
  );
}

// N(0, std²) truncated to [-2, 2], as torchvision calls trunc_normal_ (with std 0.1 the bounds are 20σ away).
function truncNormal_(t: Tensor, std: number): void {
  nn.init.normal_(t, 0, std);
  noGrad(() => t.clamp_(-2, 2));
}

/** Inception v3 with torchvision's layout. */
export function inception_v3(options: InceptionOptions = {}): Inception3 {
  return new Inception3(options);
}
