// The layers a convnet and fast.ai's head are built from, with PyTorch's
// parameter names and default initialization.
import { callTensorOp, callVoidOp } from '../ops.js';
import { cat, empty, ones, zeros, tensor } from '../creation.js';
import * as F from '../functional.js';
import { Tensor } from '../tensor.js';
import { kaimingUniform_, fanInAndFanOut, uniform_ } from './init.js';
import { Module } from './module.js';
import type { Pair } from '../pair.js';

function pairOf(v: Pair): [number, number] {
  return typeof v === 'number' ? [v, v] : v;
}

// PyTorch's reset_parameters for Conv and Linear: kaiming_uniform_(a=sqrt(5)),
// bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
function resetLikePytorch(weight: Tensor, bias: Tensor | null): void {
  kaimingUniform_(weight, { a: Math.sqrt(5) });
  if (bias !== null) {
    const { fanIn } = fanInAndFanOut(weight);
    const bound = fanIn > 0 ? 1 / Math.sqrt(fanIn) : 0;
    uniform_(bias, -bound, bound);
  }
}

/** Options of Conv2d. */
export interface Conv2dOptions {
  stride?: Pair;
  padding?: Pair;
  dilation?: Pair;
  groups?: number;
  bias?: boolean;
}

/** 2-d convolution layer: `weight` [out, in/groups, kh, kw], optional `bias` [out]. */
export class Conv2d extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;
  readonly stride: [number, number];
  readonly padding: [number, number];
  readonly dilation: [number, number];
  readonly groups: number;

  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    kernelSize: Pair,
    { stride = 1, padding = 0, dilation = 1, groups = 1, bias = true }: Conv2dOptions = {},
  ) {
    super();
    if (inChannels % groups !== 0 || outChannels % groups !== 0) {
      throw new Error(`Conv2d: in (${inChannels}) and out (${outChannels}) channels must be divisible by groups (${groups})`);
    }
    const [kh, kw] = pairOf(kernelSize);
    this.stride = pairOf(stride);
    this.padding = pairOf(padding);
    this.dilation = pairOf(dilation);
    this.groups = groups;
    this.weight = this.registerParameter('weight', empty([outChannels, inChannels / groups, kh, kw]));
    this.bias = bias ? this.registerParameter('bias', empty([outChannels])) : this.registerParameter('bias', null);
    resetLikePytorch(this.weight, this.bias);
  }

  forward(x: Tensor): Tensor {
    return F.conv2d(x, this.weight, this.bias, { stride: this.stride, padding: this.padding, dilation: this.dilation, groups: this.groups });
  }

  protected override extraRepr(): string {
    const [kh, kw] = this.weight.shape.slice(2);
    return (
      `${this.inChannels}, ${this.outChannels}, kernel_size=(${kh}, ${kw}), stride=(${this.stride.join(', ')})` +
      (this.padding.some((p) => p !== 0) ? `, padding=(${this.padding.join(', ')})` : '') +
      (this.groups !== 1 ? `, groups=${this.groups}` : '') +
      (this.bias === null ? ', bias=False' : '')
    );
  }
}

/** Fully connected layer: `weight` [out, in], optional `bias` [out]. */
export class Linear extends Module {
  readonly weight: Tensor;
  readonly bias: Tensor | null;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    { bias = true }: { bias?: boolean } = {},
  ) {
    super();
    this.weight = this.registerParameter('weight', empty([outFeatures, inFeatures]));
    this.bias = bias ? this.registerParameter('bias', empty([outFeatures])) : this.registerParameter('bias', null);
    resetLikePytorch(this.weight, this.bias);
  }

  forward(x: Tensor): Tensor {
    return F.linear(x, this.weight, this.bias);
  }

  protected override extraRepr(): string {
    return `in_features=${this.inFeatures}, out_features=${this.outFeatures}, bias=${this.bias !== null}`;
  }
}

/** Options of the batch-norm layers. */
export interface BatchNormOptions {
  eps?: number;
  /** Weight of the newest batch in the running statistics; null for a cumulative average. */
  momentum?: number | null;
  affine?: boolean;
  trackRunningStats?: boolean;
}

abstract class BatchNormBase extends Module {
  readonly weight: Tensor | null;
  readonly bias: Tensor | null;
  readonly runningMean: Tensor | null;
  readonly runningVar: Tensor | null;
  readonly numBatchesTracked: Tensor | null;
  readonly eps: number;
  readonly momentum: number | null;

  constructor(
    readonly numFeatures: number,
    { eps = 1e-5, momentum = 0.1, affine = true, trackRunningStats = true }: BatchNormOptions = {},
  ) {
    super();
    this.eps = eps;
    this.momentum = momentum;
    this.weight = affine ? this.registerParameter('weight', ones([numFeatures])) : this.registerParameter('weight', null);
    this.bias = affine ? this.registerParameter('bias', zeros([numFeatures])) : this.registerParameter('bias', null);
    this.runningMean = this.registerBuffer('running_mean', trackRunningStats ? zeros([numFeatures]) : null);
    this.runningVar = this.registerBuffer('running_var', trackRunningStats ? ones([numFeatures]) : null);
    this.numBatchesTracked = this.registerBuffer('num_batches_tracked', trackRunningStats ? tensor(BigInt64Array.of(0n), { shape: [] }) : null);
  }

  protected abstract checkInput(x: Tensor): void;

  forward(x: Tensor): Tensor {
    this.checkInput(x);
    let factor = this.momentum ?? 0;
    const updating = this.training && this.numBatchesTracked !== null;
    if (updating) {
      this.numBatchesTracked.add_(1);
      if (this.momentum === null) factor = 1 / this.numBatchesTracked.item();
    }
    // Like PyTorch: batch statistics in training mode or when no running statistics exist.
    const useBatchStats = this.training || this.runningMean === null;
    return F.batchNorm(x, !this.training || updating ? this.runningMean : null, !this.training || updating ? this.runningVar : null, {
      weight: this.weight,
      bias: this.bias,
      training: useBatchStats,
      momentum: factor,
      eps: this.eps,
    });
  }

  protected override extraRepr(): string {
    return `${this.numFeatures}, eps=${this.eps}, momentum=${this.momentum}, affine=${this.weight !== null}, track_running_stats=${this.runningMean !== null}`;
  }
}

/** Batch normalization over (N, C) or (N, C, L) input. */
export class BatchNorm1d extends BatchNormBase {
  protected checkInput(x: Tensor): void {
    const d = x.ndim;
    if (d !== 2 && d !== 3) throw new Error(`BatchNorm1d: expected 2D or 3D input (got ${d}D input)`);
  }
}

/** Batch normalization over (N, C, H, W) input. */
export class BatchNorm2d extends BatchNormBase {
  protected checkInput(x: Tensor): void {
    const d = x.ndim;
    if (d !== 4) throw new Error(`BatchNorm2d: expected 4D input (got ${d}D input)`);
  }
}

/** max(0, x); with `inplace`, overwrites its input as PyTorch's ReLU(inplace=True) does. */
export class ReLU extends Module {
  constructor(readonly inplace = false) {
    super();
  }
  forward(x: Tensor): Tensor {
    return this.inplace ? x.relu_() : x.relu();
  }
}

/** min(max(0, x), 6), as in MobileNet; with `inplace`, overwrites its input. */
export class ReLU6 extends Module {
  constructor(readonly inplace = false) {
    super();
  }
  forward(x: Tensor): Tensor {
    if (!this.inplace) return x.relu6();
    callVoidOp('aten::hardtanh_', [x.handle, 0, 6]);
    return x;
  }
}

/** Logistic sigmoid. */
export class Sigmoid extends Module {
  forward(x: Tensor): Tensor {
    return x.sigmoid();
  }
}

/** Randomly zeroes elements in training mode. */
export class Dropout extends Module {
  constructor(readonly p = 0.5) {
    super();
    if (p < 0 || p > 1) throw new RangeError(`Dropout: p must be in [0, 1], got ${p}`);
  }
  forward(x: Tensor): Tensor {
    return F.dropout(x, this.p, this.training);
  }
  protected override extraRepr(): string {
    return `p=${this.p}`;
  }
}

/** 2-d max pooling. */
export class MaxPool2d extends Module {
  constructor(
    readonly kernelSize: Pair,
    readonly options: { stride?: Pair; padding?: Pair; dilation?: Pair; ceilMode?: boolean } = {},
  ) {
    super();
  }
  forward(x: Tensor): Tensor {
    return F.maxPool2d(x, this.kernelSize, this.options);
  }
}

/** 2-d average pooling. */
export class AvgPool2d extends Module {
  constructor(
    readonly kernelSize: Pair,
    readonly options: { stride?: Pair; padding?: Pair; ceilMode?: boolean; countIncludePad?: boolean } = {},
  ) {
    super();
  }
  forward(x: Tensor): Tensor {
    return F.avgPool2d(x, this.kernelSize, this.options);
  }
}

/** Average pooling to a fixed output size. */
export class AdaptiveAvgPool2d extends Module {
  constructor(readonly outputSize: Pair) {
    super();
  }
  forward(x: Tensor): Tensor {
    return F.adaptiveAvgPool2d(x, this.outputSize);
  }
}

/** Max pooling to a fixed output size. */
export class AdaptiveMaxPool2d extends Module {
  constructor(readonly outputSize: Pair) {
    super();
  }
  forward(x: Tensor): Tensor {
    return F.adaptiveMaxPool2d(x, this.outputSize);
  }
}

/** fast.ai's pooling: max pool and average pool concatenated along channels (twice the features). */
export class AdaptiveConcatPool2d extends Module {
  readonly mp: AdaptiveMaxPool2d;
  readonly ap: AdaptiveAvgPool2d;
  constructor(readonly outputSize: Pair = 1) {
    super();
    this.ap = this.registerModule('ap', new AdaptiveAvgPool2d(outputSize));
    this.mp = this.registerModule('mp', new AdaptiveMaxPool2d(outputSize));
  }
  forward(x: Tensor): Tensor {
    const m = this.mp.forward(x);
    const a = this.ap.forward(x);
    const out = cat([m, a], 1);
    m.dispose();
    a.dispose();
    return out;
  }
}

/** Flattens dimensions startDim..endDim (default: all but the batch). */
export class Flatten extends Module {
  constructor(
    readonly startDim = 1,
    readonly endDim = -1,
  ) {
    super();
  }
  forward(x: Tensor): Tensor {
    return x.flatten(this.startDim, this.endDim);
  }
}

/** Returns its input. */
export class Identity extends Module {
  forward(x: Tensor): Tensor {
    return new Tensor(callTensorOp('aten::alias', [x.handle]));
  }
}

/** Log-softmax along a dimension. */
export class LogSoftmax extends Module {
  constructor(readonly dim = 1) {
    super();
  }
  forward(x: Tensor): Tensor {
    return x.logSoftmax(this.dim);
  }
}

/** Softmax along a dimension. */
export class Softmax extends Module {
  constructor(readonly dim = 1) {
    super();
  }
  forward(x: Tensor): Tensor {
    return x.softmax(this.dim);
  }
}

/** Pads height and width with zeros: (left, right, top, bottom). */
export class ZeroPad2d extends Module {
  readonly padding: [number, number, number, number];
  constructor(padding: number | [number, number, number, number]) {
    super();
    this.padding = typeof padding === 'number' ? [padding, padding, padding, padding] : padding;
  }
  forward(x: Tensor): Tensor {
    return F.pad(x, this.padding, 0);
  }
}

/** Children applied in order; named '0', '1', ... as in PyTorch, or by name (`Sequential.named`). */
export class Sequential extends Module {
  constructor(...layers: Module[]) {
    super();
    layers.forEach((m, i) => this.registerModule(String(i), m));
  }

  /** A Sequential whose children have names, as `nn.Sequential(OrderedDict(...))`. */
  static named(entries: [string, Module][]): Sequential {
    const s = new Sequential();
    for (const [name, m] of entries) s.registerModule(name, m);
    return s;
  }

  /** Appends a layer. Returns this. */
  append(m: Module): this {
    this.registerModule(String(this.children().length), m);
    return this;
  }

  /** The i-th layer. */
  at(i: number): Module {
    const all = this.children();
    const m = all[i < 0 ? all.length + i : i];
    if (m === undefined) throw new RangeError(`Sequential has no layer ${i}`);
    return m;
  }

  get length(): number {
    return this.children().length;
  }

  forward(x: Tensor): Tensor {
    const out = pipe(x, ...this.children());
    return out === x ? new Tensor(callTensorOp('aten::alias', [x.handle])) : out;
  }
}

/** A step of `pipe`: a module or a function of one tensor. */
export type PipeStep = Module | ((t: Tensor) => Tensor);

/**
 * Applies steps in order, freeing each intermediate result as soon as the next
 * exists (the input stays the caller's). Freed early, memory is reused by the
 * following layers, as Python's reference counting does for PyTorch.
 */
export function pipe(x: Tensor, ...steps: PipeStep[]): Tensor {
  let cur = x;
  for (const step of steps) {
    const next = typeof step === 'function' ? step(cur) : step.forward(cur);
    if (cur !== x && next !== cur) cur.dispose();
    cur = next;
  }
  return cur;
}
