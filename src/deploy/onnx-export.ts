// A fastvision module tree written as an ONNX graph, layer by layer — no tracing:
// each module type that fastvision's architectures and fast.ai's head are made of
// has a rule here that emits the ONNX nodes computing what its `forward` computes
// (in evaluation mode), with static shapes, so TensorFlow's "same" padding of the
// converted Keras bodies becomes explicit pads.
import { nn, type Pair, type Tensor } from '../torch/index.js';
import { KerasConv2d, KerasDense, KerasModel, KerasOp, samePadding } from '../vision/keras/convert.js';
import { DenseBlock, DenseLayer } from '../vision/models/densenet.js';
import { BasicConv2d, InceptionA, InceptionB, InceptionC, InceptionD, InceptionE } from '../vision/models/inception.js';
import { InvertedResidual } from '../vision/models/mobilenet.js';
import { BasicBlock, Bottleneck } from '../vision/models/resnet.js';
import type { Normalization } from '../vision/warp.js';
import { FloatAttr, OnnxGraph, type TypedValue, type Value } from './onnx-graph.js';
import { addPreprocessing } from './onnx-preprocess.js';
import { emitModern } from './onnx-modern.js';
import { OPSET, PREPROCESS_OPSET } from './onnx-proto.js';
import { FastvisionError } from '../util/errors.js';

const pair = (p: Pair | undefined, dflt: number): [number, number] => (p === undefined ? [dflt, dflt] : typeof p === 'number' ? [p, p] : p);

/** A module type the exporter has no rule for. */
export class OnnxExportError extends FastvisionError {}

function data(t: Tensor): Float32Array {
  const d = t.detach().float().contiguous();
  const out = d.dataSync() as Float32Array;
  d.dispose();
  return out;
}

/** Output side of a convolution or pooling window. */
function outSide(size: number, kernel: number, stride: number, padBefore: number, padAfter: number, dilation = 1, ceil = false): number {
  const span = size + padBefore + padAfter - dilation * (kernel - 1) - 1;
  let out = (ceil ? Math.ceil(span / stride) : Math.floor(span / stride)) + 1;
  // PyTorch's rule: with ceil_mode, the last window must start inside the input or its left padding.
  if (ceil && (out - 1) * stride >= size + padBefore) out--;
  return out;
}

/** Emits ONNX nodes for modules, tracking each value's static shape. */
class Emitter {
  constructor(readonly g: OnnxGraph) {}

  emit(m: nn.Module, x: Value, path: string): Value {
    const modern = emitModern(this, m, x, path, (message) => {
      throw new OnnxExportError(message);
    });
    if (modern !== undefined) return modern;
    if (m instanceof KerasModel) return this.keras(m, x, path);
    if (m instanceof KerasConv2d) return this.kerasConv(m, x, path);
    if (m instanceof KerasDense) return this.activation(m.activation, this.linear(m, x, path), path);
    if (m instanceof KerasOp) return this.kerasOp(m, x, path);
    if (m instanceof BasicBlock || m instanceof Bottleneck) return this.resBlock(m, x, path);
    if (m instanceof InvertedResidual) {
      const y = this.emit(m.conv, x, `${path}.conv`);
      return m.useResConnect ? this.add([y, x], path) : y;
    }
    if (m instanceof DenseBlock) return this.denseBlock(m, x, path);
    if (m instanceof DenseLayer) return this.seq([m.norm1, m.relu1, m.conv1, m.norm2, m.relu2, m.conv2], ['norm1', 'relu1', 'conv1', 'norm2', 'relu2', 'conv2'], x, path);
    if (m instanceof BasicConv2d) return this.relu(this.emit(m.bn, this.emit(m.conv, x, `${path}.conv`), `${path}.bn`), path);
    if (m instanceof InceptionA || m instanceof InceptionB || m instanceof InceptionC || m instanceof InceptionD || m instanceof InceptionE) return this.inception(m, x, path);
    if (m instanceof nn.Sequential)
      return this.seq(
        m.children(),
        [...m.namedChildren()].map(([n]) => n),
        x,
        path,
      );
    if (m instanceof nn.Conv2d) return this.conv(m, x, path);
    if (m instanceof nn.BatchNorm2d) return this.bn2d(m, x, path);
    if (m instanceof nn.BatchNorm1d) return this.bn1d(m, x, path);
    if (m instanceof nn.Linear) return this.linear(m, x, path);
    if (m instanceof nn.ReLU) return this.relu(x, path);
    if (m instanceof nn.ReLU6) return this.clip(x, 0, 6, path);
    if (m instanceof nn.Sigmoid) return { name: this.g.node('Sigmoid', [x.name], {}, path), shape: x.shape };
    if (m instanceof nn.Dropout || m instanceof nn.Identity) return x;
    if (m instanceof nn.MaxPool2d) {
      const o = m.options;
      return this.pool('MaxPool', x, pair(m.kernelSize, 1), pair(o.stride ?? m.kernelSize, 1), pair(o.padding, 0), path, { ceil: o.ceilMode, dilation: pair(o.dilation, 1) });
    }
    if (m instanceof nn.AvgPool2d) {
      const o = m.options;
      return this.pool('AveragePool', x, pair(m.kernelSize, 1), pair(o.stride ?? m.kernelSize, 1), pair(o.padding, 0), path, { ceil: o.ceilMode, countIncludePad: o.countIncludePad ?? true });
    }
    if (m instanceof nn.AdaptiveAvgPool2d) return this.adaptive('Average', pair(m.outputSize, 1), x, path);
    if (m instanceof nn.AdaptiveMaxPool2d) return this.adaptive('Max', pair(m.outputSize, 1), x, path);
    if (m instanceof nn.AdaptiveConcatPool2d) {
      const size = pair(m.outputSize, 1);
      const mp = this.adaptive('Max', size, x, `${path}.mp`);
      const ap = this.adaptive('Average', size, x, `${path}.ap`);
      return this.concat([mp, ap], path);
    }
    if (m instanceof nn.Flatten) {
      if (m.startDim !== 1 || m.endDim !== -1) throw new OnnxExportError(`${path}: Flatten(${m.startDim}, ${m.endDim}) is not supported`);
      return this.flatten(x, path);
    }
    if (m instanceof nn.LogSoftmax) return { name: this.g.node('LogSoftmax', [x.name], { axis: m.dim }, path), shape: x.shape };
    if (m instanceof nn.Softmax) return { name: this.g.node('Softmax', [x.name], { axis: m.dim }, path), shape: x.shape };
    if (m instanceof nn.ZeroPad2d) {
      const [l, r, t, b] = m.padding;
      return this.pad(x, [t, l, b, r], path);
    }
    throw new OnnxExportError(`ONNX export: no rule for ${m.constructor.name} (at ${path || 'the top'})`);
  }

  private seq(mods: nn.Module[], names: string[], x: Value, path: string): Value {
    return mods.reduce((v, m, i) => this.emit(m, v, path ? `${path}.${names[i]}` : names[i]!), x);
  }

  conv(m: nn.Conv2d, x: Value, path: string, pads?: [number, number, number, number]): Value {
    const [cout, , kh, kw] = m.weight.shape as [number, number, number, number];
    const [sh, sw] = m.stride;
    const [dh, dw] = m.dilation;
    const p = pads ?? [m.padding[0], m.padding[1], m.padding[0], m.padding[1]];
    const inputs = [x.name, this.g.floats(`${path}.weight`, m.weight.shape, data(m.weight))];
    if (m.bias) inputs.push(this.g.floats(`${path}.bias`, [cout], data(m.bias)));
    const name = this.g.node('Conv', inputs, { kernel_shape: [kh, kw], strides: [sh, sw], pads: p, dilations: [dh, dw], group: m.groups }, path);
    const [, h, w] = x.shape as [number, number, number];
    return { name, shape: [cout, outSide(h, kh, sh, p[0], p[2], dh), outSide(w, kw, sw, p[1], p[3], dw)] };
  }

  private kerasConv(m: KerasConv2d, x: Value, path: string): Value {
    let pads: [number, number, number, number] = [0, 0, 0, 0];
    if (m.tf.same) {
      const [, h, w] = x.shape as [number, number, number];
      const [kh, kw] = m.weight.shape.slice(2) as [number, number];
      const ph = samePadding(h, kh, m.tf.stride[0], m.tf.dilation[0]);
      const pw = samePadding(w, kw, m.tf.stride[1], m.tf.dilation[1]);
      pads = [ph[0], pw[0], ph[1], pw[1]];
    }
    return this.activation(m.tf.activation, this.conv(m, x, path, pads), path);
  }

  private bn2d(m: nn.BatchNorm2d, x: Value, path: string): Value {
    const c = m.numFeatures;
    const ones = new Float32Array(c).fill(1);
    const inputs = [
      x.name,
      this.g.floats(`${path}.weight`, [c], m.weight ? data(m.weight) : ones),
      this.g.floats(`${path}.bias`, [c], m.bias ? data(m.bias) : new Float32Array(c)),
      this.g.floats(`${path}.running_mean`, [c], m.runningMean ? data(m.runningMean) : new Float32Array(c)),
      this.g.floats(`${path}.running_var`, [c], m.runningVar ? data(m.runningVar) : ones),
    ];
    return { name: this.g.node('BatchNormalization', inputs, { epsilon: new FloatAttr(m.eps) }, path), shape: x.shape };
  }

  /** Batch norm over features (N × F), evaluated: x·a + b with a = γ/√(σ²+ε), b = β − μ·a. */
  private bn1d(m: nn.BatchNorm1d, x: Value, path: string): Value {
    const c = m.numFeatures;
    const gamma = m.weight ? data(m.weight) : new Float32Array(c).fill(1);
    const beta = m.bias ? data(m.bias) : new Float32Array(c);
    const mean = m.runningMean ? data(m.runningMean) : new Float32Array(c);
    const variance = m.runningVar ? data(m.runningVar) : new Float32Array(c).fill(1);
    const a = new Float32Array(c);
    const b = new Float32Array(c);
    for (let i = 0; i < c; i++) {
      a[i] = gamma[i]! / Math.sqrt(variance[i]! + m.eps);
      b[i] = beta[i]! - mean[i]! * a[i]!;
    }
    const scaled = this.g.node('Mul', [x.name, this.g.floats(`${path}.scale`, [c], a)], {}, `${path}.mul`);
    return { name: this.g.node('Add', [scaled, this.g.floats(`${path}.shift`, [c], b)], {}, `${path}.add`), shape: x.shape };
  }

  private linear(m: nn.Linear, x: Value, path: string): Value {
    const [out, inF] = m.weight.shape as [number, number];
    if (x.shape.length !== 1 || x.shape[0] !== inF) throw new OnnxExportError(`${path}: Linear(${inF} → ${out}) on a value of shape [${x.shape.join(', ')}]`);
    const inputs = [x.name, this.g.floats(`${path}.weight`, [out, inF], data(m.weight))];
    if (m.bias) inputs.push(this.g.floats(`${path}.bias`, [out], data(m.bias)));
    return { name: this.g.node('Gemm', inputs, { transB: 1 }, path), shape: [out] };
  }

  private relu(x: Value, path: string): Value {
    return { name: this.g.node('Relu', [x.name], {}, `${path}.relu`), shape: x.shape };
  }

  private clip(x: Value, lo: number, hi: number, path: string): Value {
    const min = this.g.floats(`${path}.min`, [], Float32Array.of(lo));
    const max = this.g.floats(`${path}.max`, [], Float32Array.of(hi));
    return { name: this.g.node('Clip', [x.name, min, max], {}, `${path}.clip`), shape: x.shape };
  }

  /** A Keras activation by name (null: none). */
  private activation(name: string | null, x: Value, path: string): Value {
    switch (name) {
      case null:
        return x;
      case 'relu':
        return this.relu(x, path);
      case 'relu6':
        return this.clip(x, 0, 6, path);
      case 'sigmoid':
        return { name: this.g.node('Sigmoid', [x.name], {}, `${path}.sigmoid`), shape: x.shape };
      case 'tanh':
        return { name: this.g.node('Tanh', [x.name], {}, `${path}.tanh`), shape: x.shape };
      case 'softmax':
        return { name: this.g.node('Softmax', [x.name], { axis: 1 }, `${path}.softmax`), shape: x.shape };
      default:
        throw new OnnxExportError(`${path}: no ONNX rule for the activation '${name}'`);
    }
  }

  pool(
    op: 'MaxPool' | 'AveragePool',
    x: Value,
    k: [number, number],
    s: [number, number],
    p: [number, number] | [number, number, number, number],
    path: string,
    { ceil = false, dilation = [1, 1] as [number, number], countIncludePad = true } = {},
  ): Value {
    const pads = p.length === 2 ? [p[0], p[1], p[0], p[1]] : p;
    const attrs: Record<string, number | number[]> = { kernel_shape: k, strides: s, pads, ceil_mode: ceil ? 1 : 0 };
    if (op === 'MaxPool') attrs.dilations = dilation;
    else attrs.count_include_pad = countIncludePad ? 1 : 0;
    const [c, h, w] = x.shape as [number, number, number];
    return { name: this.g.node(op, [x.name], attrs, path), shape: [c, outSide(h, k[0], s[0], pads[0]!, pads[2]!, dilation[0], ceil), outSide(w, k[1], s[1], pads[1]!, pads[3]!, dilation[1], ceil)] };
  }

  private adaptive(kind: 'Average' | 'Max', size: [number, number], x: Value, path: string): Value {
    const [c, h, w] = x.shape as [number, number, number];
    if (size[0] === 1 && size[1] === 1) return { name: this.g.node(`Global${kind}Pool`, [x.name], {}, path), shape: [c, 1, 1] };
    if (h === size[0] && w === size[1]) return x;
    if (h % size[0] === 0 && w % size[1] === 0) {
      const k: [number, number] = [h / size[0], w / size[1]];
      return this.pool(kind === 'Max' ? 'MaxPool' : 'AveragePool', x, k, k, [0, 0], path);
    }
    throw new OnnxExportError(`${path}: adaptive pooling of ${h}×${w} to ${size[0]}×${size[1]} has uneven windows; export at a size that divides evenly`);
  }

  private flatten(x: Value, path: string): Value {
    return { name: this.g.node('Flatten', [x.name], { axis: 1 }, `${path}.flatten`), shape: [x.shape.reduce((a, b) => a * b, 1)] };
  }

  private pad(x: Value, [t, l, b, r]: [number, number, number, number], path: string): Value {
    const pads = this.g.ints(`${path}.pads`, [0, 0, t, l, 0, 0, b, r]);
    const [c, h, w] = x.shape as [number, number, number];
    return { name: this.g.node('Pad', [x.name, pads], { mode: 'constant' }, `${path}.pad`), shape: [c, h + t + b, w + l + r] };
  }

  private add(xs: Value[], path: string): Value {
    return xs.slice(1).reduce((acc, v) => ({ name: this.g.node('Add', [acc.name, v.name], {}, `${path}.add`), shape: acc.shape }), xs[0]!);
  }

  private concat(xs: Value[], path: string): Value {
    const shape = [...xs[0]!.shape];
    shape[0] = xs.reduce((n, v) => n + v.shape[0]!, 0);
    return {
      name: this.g.node(
        'Concat',
        xs.map((v) => v.name),
        { axis: 1 },
        `${path}.concat`,
      ),
      shape,
    };
  }

  private resBlock(m: BasicBlock | Bottleneck, x: Value, path: string): Value {
    let y = this.relu(this.emit(m.bn1, this.emit(m.conv1, x, `${path}.conv1`), `${path}.bn1`), `${path}.1`);
    y = this.emit(m.bn2, this.emit(m.conv2, y, `${path}.conv2`), `${path}.bn2`);
    if (m instanceof Bottleneck) y = this.emit(m.bn3, this.emit(m.conv3, this.relu(y, `${path}.2`), `${path}.conv3`), `${path}.bn3`);
    const shortcut = m.downsample ? this.emit(m.downsample, x, `${path}.downsample`) : x;
    return this.relu(this.add([y, shortcut], path), path);
  }

  private denseBlock(m: DenseBlock, x: Value, path: string): Value {
    const features = [x];
    for (const [name, layer] of m.namedChildren()) {
      const input = features.length === 1 ? x : this.concat(features, `${path}.${name}.in`);
      features.push(this.emit(layer, input, `${path}.${name}`));
    }
    return this.concat(features, path);
  }

  private inception(m: InceptionA | InceptionB | InceptionC | InceptionD | InceptionE, x: Value, path: string): Value {
    const run = (n: string, v: Value = x): Value => this.emit(m.getModule(n)!, v, `${path}.${n}`);
    const chain = (...names: string[]): Value => names.reduce((v, n) => run(n, v), x);
    const avg = (): Value => this.pool('AveragePool', x, [3, 3], [1, 1], [1, 1], `${path}.avg`, { countIncludePad: true });
    const max = (): Value => this.pool('MaxPool', x, [3, 3], [2, 2], [0, 0], `${path}.max`);
    let parts: Value[];
    if (m instanceof InceptionA) parts = [run('branch1x1'), chain('branch5x5_1', 'branch5x5_2'), chain('branch3x3dbl_1', 'branch3x3dbl_2', 'branch3x3dbl_3'), run('branch_pool', avg())];
    else if (m instanceof InceptionB) parts = [run('branch3x3'), chain('branch3x3dbl_1', 'branch3x3dbl_2', 'branch3x3dbl_3'), max()];
    else if (m instanceof InceptionC)
      parts = [
        run('branch1x1'),
        chain('branch7x7_1', 'branch7x7_2', 'branch7x7_3'),
        chain('branch7x7dbl_1', 'branch7x7dbl_2', 'branch7x7dbl_3', 'branch7x7dbl_4', 'branch7x7dbl_5'),
        run('branch_pool', avg()),
      ];
    else if (m instanceof InceptionD) parts = [chain('branch3x3_1', 'branch3x3_2'), chain('branch7x7x3_1', 'branch7x7x3_2', 'branch7x7x3_3', 'branch7x7x3_4'), max()];
    else {
      const b3 = run('branch3x3_1');
      const bd = chain('branch3x3dbl_1', 'branch3x3dbl_2');
      parts = [
        run('branch1x1'),
        this.concat([run('branch3x3_2a', b3), run('branch3x3_2b', b3)], `${path}.b3`),
        this.concat([run('branch3x3dbl_3a', bd), run('branch3x3dbl_3b', bd)], `${path}.bd`),
        run('branch_pool', avg()),
      ];
    }
    return this.concat(parts, path);
  }

  private kerasOp(m: KerasOp, x: Value, path: string): Value {
    const c = m.config;
    switch (m.kind) {
      case 'ReLU':
        return c.max_value === null || c.max_value === undefined ? this.relu(x, path) : this.clip(x, 0, Number(c.max_value), path);
      case 'ZeroPadding2D': {
        const [t, b, l, r] = c.pads as [number, number, number, number];
        return this.pad(x, [t, l, b, r], path);
      }
      case 'MaxPooling2D':
      case 'AveragePooling2D': {
        const k = c.pool as [number, number];
        const s = c.strides as [number, number];
        let pads: [number, number, number, number] = [0, 0, 0, 0];
        if (c.same === true) {
          const ph = samePadding(x.shape[1]!, k[0], s[0]);
          const pw = samePadding(x.shape[2]!, k[1], s[1]);
          pads = [ph[0], pw[0], ph[1], pw[1]];
        }
        // TensorFlow's average ignores the padding; its max never picks it (as ONNX's MaxPool).
        return this.pool(m.kind === 'MaxPooling2D' ? 'MaxPool' : 'AveragePool', x, k, s, pads, path, { countIncludePad: false });
      }
      case 'GlobalAveragePooling2D':
        return this.flatten({ name: this.g.node('GlobalAveragePool', [x.name], {}, path), shape: [x.shape[0]!, 1, 1] }, path);
      case 'GlobalMaxPooling2D':
        return this.flatten({ name: this.g.node('GlobalMaxPool', [x.name], {}, path), shape: [x.shape[0]!, 1, 1] }, path);
      case 'Flatten': {
        if (x.shape.length !== 3) return this.flatten(x, path);
        // Keras flattens channels-last: H, W, C.
        const t = this.g.node('Transpose', [x.name], { perm: [0, 2, 3, 1] }, `${path}.nhwc`);
        return this.flatten({ name: t, shape: [x.shape[1]!, x.shape[2]!, x.shape[0]!] }, path);
      }
      default:
        if (m.kind.startsWith('Activation(')) return this.activation(c.activation === 'linear' ? null : String(c.activation), x, path);
        throw new OnnxExportError(`${path}: no ONNX rule for the Keras layer ${m.kind}`);
    }
  }

  private keras(m: KerasModel, x: Value, path: string): Value {
    const values = new Map<string, Value>();
    for (const n of m.graph()) {
      const at = path ? `${path}.${n.name}` : n.name;
      let y: Value;
      if (n.className === 'InputLayer') y = x;
      else {
        const xs = n.inputs.map((i) => values.get(i)!);
        if (n.className === 'Add') y = this.add(xs, at);
        else if (n.className === 'Concatenate') y = this.concat(xs, at);
        else if (n.module === null) throw new OnnxExportError(`${at}: no ONNX rule for the Keras layer ${n.className}`);
        else y = this.emit(n.module, xs[0]!, at);
      }
      values.set(n.name, y);
      if (n.name === m.outputName) return y;
    }
    throw new OnnxExportError(`${path}: the Keras graph never reaches ${m.outputName}`);
  }
}

/** Options of `exportOnnx`. */
export interface OnnxExportOptions {
  /** The input's channels, height and width (the batch stays dynamic). */
  inputShape: [number, number, number];
  /** Fold each batch norm into the convolution before it (fewer nodes; the default). */
  foldBatchNorm?: boolean;
  /**
   * Turn the model's outputs into probabilities: true (the default) makes a final
   * LogSoftmax a Softmax (or appends one); 'sigmoid' appends a Sigmoid (multi-label
   * logits); false leaves the outputs as they are.
   */
  probabilities?: boolean | 'sigmoid';
  /** Key-value facts for the file's metadata_props. */
  metadata?: Record<string, string>;
  inputName?: string;
  outputName?: string;
  docString?: string;
  /**
   * Put the validation transform inside the graph: the input is then uint8 RGB pixels
   * [1, H, W, 3] of any size (named `pixels`), resized, cropped and normalized as
   * `validationInput` does (opset 18).
   */
  preprocess?: Normalization;
}

/**
 * Writes a module (in evaluation mode: batch norm with its running statistics,
 * no dropout) as an ONNX model (IR 8, opset 17): one float input `image`
 * [N, C, H, W] with a dynamic batch, one output `probabilities` [N, classes].
 * Throws an OnnxExportError naming any module it has no rule for.
 */
export function exportOnnx(
  model: nn.Module,
  { inputShape, foldBatchNorm = true, probabilities = true, metadata = {}, inputName, outputName = 'probabilities', docString = '', preprocess }: OnnxExportOptions,
): { bytes: Uint8Array; nodes: number; foldedBatchNorms: number } {
  const g = new OnnxGraph();
  let input: Value | TypedValue;
  let first: Value;
  if (preprocess !== undefined) {
    if (inputShape[1] !== inputShape[2] || inputShape[0] !== 3) throw new OnnxExportError(`preprocessing inside the graph needs a square RGB input, not [${inputShape.join(', ')}]`);
    const pre = addPreprocessing(g, inputShape[1], preprocess, inputName ?? 'pixels');
    input = pre.input;
    first = pre.output;
  } else {
    input = { name: g.unique(inputName ?? 'image'), shape: inputShape };
    first = input;
  }
  let out = new Emitter(g).emit(model, first, '');
  const last = g.nodes[g.nodes.length - 1];
  if (probabilities === 'sigmoid') {
    out = { name: g.node('Sigmoid', [out.name], {}, 'probabilities'), shape: out.shape };
  } else if (probabilities) {
    if (last !== undefined && last.op === 'LogSoftmax' && last.outputs[0] === out.name) last.op = 'Softmax';
    else out = { name: g.node('Softmax', [out.name], { axis: 1 }, 'probabilities'), shape: out.shape };
  }
  // The graph's output takes the public name.
  const producer = g.nodes.find((n) => n.outputs[0] === out.name);
  if (producer === undefined) throw new OnnxExportError('the model computes nothing from its input');
  producer.outputs[0] = outputName;
  for (const n of g.nodes) n.inputs = n.inputs.map((i) => (i === out.name ? outputName : i));
  out = { name: outputName, shape: out.shape };
  const folded = foldBatchNorm ? g.foldBatchNorms([out.name]) : 0;
  const bytes = g.encode({ input, output: out, metadata, docString, opset: preprocess !== undefined ? PREPROCESS_OPSET : OPSET });
  return { bytes, nodes: g.nodes.length, foldedBatchNorms: folded };
}
