// Keras functional models as fastvision modules: each Keras layer becomes a
// module named after it, weights are transposed from Keras' NHWC layouts to
// PyTorch's, and the graph runs in NCHW with TensorFlow's padding rules, so the
// converted network computes what Keras computes.
import { cat, F, nn, noGrad, tensor, tidy, type Tensor } from '../../torch/index.js';
import type { KerasLayer, KerasWeights } from './tfjs-format.js';

/** An activation a converted Keras layer applies after its weights. */
export type Activation = (x: Tensor) => Tensor;

/** A Keras activation's name, null for none ('linear'). */
function activationName(name: unknown): string | null {
  return name === undefined || name === null || name === 'linear' ? null : typeof name === 'string' ? name : JSON.stringify(name);
}

function activation(name: unknown, layer: string): Activation | null {
  switch (name) {
    case undefined:
    case null:
    case 'linear':
      return null;
    case 'relu':
      return (x) => x.relu();
    case 'relu6':
      return (x) => x.relu6();
    case 'sigmoid':
      return (x) => x.sigmoid();
    case 'tanh':
      return (x) => x.tanh();
    case 'softmax':
      return (x) => x.softmax(1);
    default:
      throw new Error(`Keras layer ${layer}: unsupported activation '${String(name)}'`);
  }
}

/** TensorFlow's 'same' padding for one dimension: (before, after). */
export function samePadding(size: number, kernel: number, stride: number, dilation = 1): [number, number] {
  const out = Math.ceil(size / stride);
  const total = Math.max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0);
  const before = Math.floor(total / 2);
  return [before, total - before];
}

function pair(v: unknown, what: string): [number, number] {
  if (Array.isArray(v) && v.length === 2) return [Number(v[0]), Number(v[1])];
  if (typeof v === 'number') return [v, v];
  throw new Error(`${what}: expected a pair, got ${JSON.stringify(v)}`);
}

/** Conv2D / DepthwiseConv2D with Keras' padding modes and fused activation. */
export class KerasConv2d extends nn.Conv2d {
  constructor(
    cin: number,
    cout: number,
    kernel: [number, number],
    readonly tf: { stride: [number, number]; dilation: [number, number]; same: boolean; groups: number; bias: boolean; act: Activation | null; activation: string | null },
  ) {
    super(cin, cout, kernel, { stride: tf.stride, dilation: tf.dilation, groups: tf.groups, bias: tf.bias });
  }

  override forward(x: Tensor): Tensor {
    return tidy(() => {
      let input = x;
      let padding: [number, number] = [0, 0];
      if (this.tf.same) {
        const [h, w] = x.shape.slice(2) as [number, number];
        const [kh, kw] = this.weight.shape.slice(2) as [number, number];
        const ph = samePadding(h, kh, this.tf.stride[0], this.tf.dilation[0]);
        const pw = samePadding(w, kw, this.tf.stride[1], this.tf.dilation[1]);
        if (ph[0] === ph[1] && pw[0] === pw[1]) padding = [ph[0], pw[0]];
        else input = F.pad(x, [pw[0], pw[1], ph[0], ph[1]]);
      }
      const y = F.conv2d(input, this.weight, this.bias, { stride: this.tf.stride, padding, dilation: this.tf.dilation, groups: this.tf.groups });
      return this.tf.act ? this.tf.act(y) : y;
    });
  }
}

/** Dense with fused activation. */
export class KerasDense extends nn.Linear {
  constructor(
    cin: number,
    cout: number,
    bias: boolean,
    readonly act: Activation | null,
    /** The fused activation's Keras name (null: linear). */
    readonly activation: string | null = null,
  ) {
    super(cin, cout, { bias });
  }
  override forward(x: Tensor): Tensor {
    return tidy(() => {
      const y = super.forward(x);
      return this.act ? this.act(y) : y;
    });
  }
}

/** A parameter-free Keras layer (pooling, activation, padding, flatten), with its Keras config (what an exporter reads). */
export class KerasOp extends nn.Module {
  constructor(
    readonly kind: string,
    readonly fn: (x: Tensor) => Tensor,
    readonly config: Record<string, unknown> = {},
  ) {
    super();
  }
  forward(x: Tensor): Tensor {
    return this.fn(x);
  }
  protected override extraRepr(): string {
    return this.kind;
  }
}

function pooling(layer: KerasLayer, max: boolean): KerasOp {
  const c = layer.config;
  const k = pair(c.pool_size, layer.config.name);
  const s = c.strides === null || c.strides === undefined ? k : pair(c.strides, layer.config.name);
  const same = c.padding === 'same';
  return new KerasOp(
    layer.class_name,
    (x) => {
      if (!same) return max ? F.maxPool2d(x, k, { stride: s }) : F.avgPool2d(x, k, { stride: s });
      const [h, w] = x.shape.slice(2) as [number, number];
      const ph = samePadding(h, k[0], s[0]);
      const pw = samePadding(w, k[1], s[1]);
      if (ph[0] === ph[1] && pw[0] === pw[1]) {
        // TensorFlow's average ignores the padding; its max never picks it.
        return max ? F.maxPool2d(x, k, { stride: s, padding: [ph[0], pw[0]] }) : F.avgPool2d(x, k, { stride: s, padding: [ph[0], pw[0]], countIncludePad: false });
      }
      return tidy(() => {
        if (max) return F.maxPool2d(F.pad(x, [pw[0], pw[1], ph[0], ph[1]], -Infinity), k, { stride: s });
        const ones = x.select(1, 0).unsqueeze(1).mul(0).add(1);
        const sum = F.avgPool2d(F.pad(x, [pw[0], pw[1], ph[0], ph[1]]), k, { stride: s });
        const count = F.avgPool2d(F.pad(ones, [pw[0], pw[1], ph[0], ph[1]]), k, { stride: s });
        return sum.div(count);
      });
    },
    { pool: k, strides: s, same },
  );
}

/** A node of a converted Keras graph: its layer, inputs, module (null for inputs and merges) and Keras class. */
export interface KerasNode {
  name: string;
  className: string;
  inputs: string[];
  module: nn.Module | null;
  merge?: (xs: Tensor[]) => Tensor;
}

type Node = KerasNode;

function weightOf(weights: KerasWeights, layer: string, key: string): { shape: number[]; data: Float32Array } {
  const w = weights.get(`${layer}/${key}`);
  if (w === undefined) throw new Error(`Keras weights: ${layer}/${key} is missing`);
  return w;
}

function toTensor(w: { shape: number[]; data: Float32Array }): Tensor {
  return tensor(w.data, { shape: w.shape });
}

/** Copies Keras weights into a module's parameters (with layout changes), outside autograd. */
function load(target: Tensor, source: Tensor): void {
  noGrad(() => target.copy_(source));
  source.dispose();
}

function buildLayer(layer: KerasLayer, weights: KerasWeights, channels: Map<string, number>, inputs: string[]): { module: nn.Module | null; merge?: (xs: Tensor[]) => Tensor; outChannels: number } {
  const c = layer.config;
  const name = c.name;
  const cin = inputs.length > 0 ? (channels.get(inputs[0]!) ?? 0) : 3;
  switch (layer.class_name) {
    case 'InputLayer':
      return { module: null, outChannels: 3 };
    case 'Conv2D':
    case 'DepthwiseConv2D': {
      const depthwise = layer.class_name === 'DepthwiseConv2D';
      const k = pair(c.kernel_size, name);
      const mult = depthwise ? Number(c.depth_multiplier ?? 1) : 1;
      const cout = depthwise ? cin * mult : Number(c.filters);
      const bias = c.use_bias === true;
      const m = new KerasConv2d(cin, cout, k, {
        stride: pair(c.strides ?? 1, name),
        dilation: pair(c.dilation_rate ?? 1, name),
        same: c.padding === 'same',
        groups: depthwise ? cin : 1,
        bias,
        act: activation(c.activation, name),
        activation: activationName(c.activation),
      });
      // Keras kernels: [kh, kw, in, out] (depthwise: [kh, kw, in, mult]); PyTorch: [out, in/groups, kh, kw].
      tidy(() => {
        const kernel = toTensor(weightOf(weights, name, depthwise ? 'depthwise_kernel' : 'kernel'));
        const w = depthwise ? kernel.permute(2, 3, 0, 1).reshape(cout, 1, k[0], k[1]) : kernel.permute(3, 2, 0, 1);
        noGrad(() => m.weight.copy_(w));
      });
      if (bias) load(m.bias!, toTensor(weightOf(weights, name, 'bias')));
      return { module: m, outChannels: cout };
    }
    case 'BatchNormalization': {
      // Keras' momentum (0.99-0.999) is a training setting: with it, running statistics would
      // barely move during fine-tuning while the weights adapt to batch statistics. Use PyTorch's 0.1.
      const m = new nn.BatchNorm2d(cin, { eps: Number(c.epsilon ?? 1e-3), momentum: 0.1 });
      if (c.scale !== false) load(m.weight!, toTensor(weightOf(weights, name, 'gamma')));
      if (c.center !== false) load(m.bias!, toTensor(weightOf(weights, name, 'beta')));
      load(m.runningMean!, toTensor(weightOf(weights, name, 'moving_mean')));
      load(m.runningVar!, toTensor(weightOf(weights, name, 'moving_variance')));
      return { module: m, outChannels: cin };
    }
    case 'Dense': {
      const kernel = weightOf(weights, name, 'kernel');
      const [fin, fout] = kernel.shape as [number, number];
      const bias = c.use_bias === true;
      const m = new KerasDense(fin, fout, bias, activation(c.activation, name), activationName(c.activation));
      tidy(() => noGrad(() => m.weight.copy_(toTensor(kernel).t())));
      if (bias) load(m.bias!, toTensor(weightOf(weights, name, 'bias')));
      return { module: m, outChannels: fout };
    }
    case 'ReLU': {
      const max = c.max_value === null || c.max_value === undefined ? null : Number(c.max_value);
      if (Number(c.negative_slope ?? 0) !== 0 || Number(c.threshold ?? 0) !== 0) throw new Error(`Keras layer ${name}: ReLU with a slope or threshold is not supported`);
      return { module: new KerasOp('ReLU', max === null ? (x) => x.relu() : (x) => x.clamp(0, max), c), outChannels: cin };
    }
    case 'Activation':
      return { module: new KerasOp(`Activation(${String(c.activation)})`, activation(c.activation, name) ?? ((x) => x.clone()), c), outChannels: cin };
    case 'ZeroPadding2D': {
      const p = c.padding as number | [number, number] | [[number, number], [number, number]];
      const [[t, b], [l, r]] =
        typeof p === 'number'
          ? [
              [p, p],
              [p, p],
            ]
          : Array.isArray(p[0])
            ? (p as [[number, number], [number, number]])
            : [
                [p[0], p[0]],
                [p[1] as number, p[1] as number],
              ];
      return { module: new KerasOp('ZeroPadding2D', (x) => F.pad(x, [l, r, t, b]), { ...c, pads: [t, b, l, r] }), outChannels: cin };
    }
    case 'MaxPooling2D':
      return { module: pooling(layer, true), outChannels: cin };
    case 'AveragePooling2D':
      return { module: pooling(layer, false), outChannels: cin };
    case 'GlobalAveragePooling2D':
      return { module: new KerasOp('GlobalAveragePooling2D', (x) => x.mean([2, 3]), c), outChannels: cin };
    case 'GlobalMaxPooling2D':
      return { module: new KerasOp('GlobalMaxPooling2D', (x) => tidy(() => x.flatten(2).maxDim(2).values), c), outChannels: cin };
    case 'Flatten':
      // Keras flattens channels-last: H, W, C order.
      return { module: new KerasOp('Flatten', (x) => tidy(() => (x.ndim === 4 ? x.permute(0, 2, 3, 1).flatten(1) : x.flatten(1))), c), outChannels: cin };
    case 'Dropout':
      return { module: new nn.Dropout(Number(c.rate)), outChannels: cin };
    case 'Add':
      return { module: null, merge: (xs) => tidy(() => xs.slice(1).reduce((a, b) => a.add(b), xs[0]!.mul(1))), outChannels: cin };
    case 'Concatenate': {
      const axis = Number(c.axis ?? -1);
      if (axis !== -1 && axis !== 3) throw new Error(`Keras layer ${name}: concatenation along axis ${axis} is not supported`);
      return { module: null, merge: (xs) => cat(xs, 1), outChannels: inputs.reduce((s, i) => s + (channels.get(i) ?? 0), 0) };
    }
    default:
      throw new Error(`Keras layer ${name}: unsupported layer type ${layer.class_name}`);
  }
}

/** A Keras functional model converted to a module; `forward` takes NCHW input. */
export class KerasModel extends nn.Module {
  private readonly nodes: Node[];
  readonly inputName: string;
  readonly outputName: string;

  constructor(nodes: Node[], inputName: string, outputName: string) {
    super();
    this.nodes = nodes;
    this.inputName = inputName;
    this.outputName = outputName;
    for (const n of nodes) if (n.module !== null && this.getModule(n.name) === undefined) this.registerModule(n.name, n.module);
  }

  /** Builds the module graph from a Keras config and its weights. */
  static fromKeras(layers: KerasLayer[], weights: KerasWeights, inputName: string, outputName: string): KerasModel {
    const channels = new Map<string, number>();
    const nodes: Node[] = [];
    for (const layer of layers) {
      const name = layer.config.name;
      if (layer.inbound_nodes.length > 1) throw new Error(`Keras layer ${name} is shared between several calls, which is not supported`);
      const inputs = (layer.inbound_nodes[0] ?? []).map((n) => n[0]);
      const built = buildLayer(layer, weights, channels, inputs);
      channels.set(name, built.outChannels);
      nodes.push({ name, className: layer.class_name, inputs, module: built.module, merge: built.merge });
    }
    return new KerasModel(nodes, inputName, outputName);
  }

  /** The graph, in the model's order (what an exporter walks). */
  graph(): readonly KerasNode[] {
    return this.nodes;
  }

  /** The names of the layers, in the model's order. */
  layerNames(): string[] {
    return this.nodes.map((n) => n.name);
  }

  /** The same network ending at `layer`'s output (sharing modules and weights). */
  cut(layer: string): KerasModel {
    const byName = new Map(this.nodes.map((n) => [n.name, n]));
    if (!byName.has(layer)) throw new Error(`this Keras model has no layer '${layer}'`);
    const needed = new Set<string>();
    const visit = (name: string): void => {
      if (needed.has(name)) return;
      needed.add(name);
      for (const i of byName.get(name)!.inputs) visit(i);
    };
    visit(layer);
    return new KerasModel(
      this.nodes.filter((n) => needed.has(n.name)),
      this.inputName,
      layer,
    );
  }

  /**
   * The layers after which the rest of the network reads nothing earlier: cutting
   * there, the network is `cut(layer)` followed by `suffixFrom(layer)`. In the model's order.
   */
  cutPoints(): string[] {
    const index = new Map(this.nodes.map((n, i) => [n.name, i]));
    // For each position, the earliest layer read by any layer after it.
    const points: string[] = [];
    let earliest = Infinity;
    for (let i = this.nodes.length - 1; i >= 0; i--) {
      const n = this.nodes[i]!;
      if (earliest >= i && n.name !== this.outputName && n.className !== 'InputLayer' && i < this.nodes.length - 1) points.push(n.name);
      for (const inp of n.inputs) earliest = Math.min(earliest, index.get(inp) ?? -1);
    }
    return points.reverse();
  }

  /** The rest of the network after `layer` (one of `cutPoints()`), taking that layer's output as its input. */
  suffixFrom(layer: string): KerasModel {
    if (!this.cutPoints().includes(layer)) throw new Error(`this Keras model cannot be cut after '${layer}': later layers read earlier ones`);
    const i = this.nodes.findIndex((n) => n.name === layer);
    return new KerasModel([{ name: layer, className: 'InputLayer', inputs: [], module: null }, ...this.nodes.slice(i + 1)], layer, this.outputName);
  }

  /** Modules of the layers before `layer` and from `layer` on (for layer groups). */
  splitAt(layer: string): [nn.Module[], nn.Module[]] {
    const i = this.nodes.findIndex((n) => n.name === layer);
    if (i < 0) throw new Error(`this Keras model has no layer '${layer}'`);
    const mods = (ns: Node[]): nn.Module[] => ns.map((n) => n.module).filter((m): m is nn.Module => m !== null);
    return [mods(this.nodes.slice(0, i)), mods(this.nodes.slice(i))];
  }

  forward(x: Tensor): Tensor {
    return tidy(() => {
      const remaining = new Map<string, number>();
      for (const n of this.nodes) for (const i of n.inputs) remaining.set(i, (remaining.get(i) ?? 0) + 1);
      const values = new Map<string, Tensor>();
      for (const n of this.nodes) {
        let y: Tensor;
        if (n.className === 'InputLayer') y = x;
        else {
          const xs = n.inputs.map((i) => values.get(i)!);
          y = n.merge ? n.merge(xs) : n.module!.forward(xs[0]!);
          // Free each input once its last consumer has run.
          for (const i of n.inputs) {
            const left = remaining.get(i)! - 1;
            remaining.set(i, left);
            if (left === 0 && i !== this.outputName && values.get(i) !== x) {
              values.get(i)!.dispose();
              values.delete(i);
            }
          }
        }
        values.set(n.name, y);
        if (n.name === this.outputName) return y;
      }
      throw new Error(`output layer ${this.outputName} was never reached`);
    });
  }
}
