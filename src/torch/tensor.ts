// The Tensor class: a JavaScript face on a libtorch tensor, with typed methods
// for the operators the project uses. Anything else is one `callOp` away.
import { dtypeCode, dtypeName, memoryFormatCode, type DType, type MemoryFormat, type TensorData } from './dtype.js';
import { native, type Handle } from './native.js';
import { callOp, callTensorOp, callVoidOp } from './ops.js';
import { track, type Disposable } from './scope.js';

/** A tensor operand or a plain number. */
export type TensorOrScalar = Tensor | number;

/** Reduction modes of losses, as in PyTorch. */
export type Reduction = 'none' | 'mean' | 'sum';

/** libtorch's at::Reduction code. */
export function reductionCode(r: Reduction): number {
  return r === 'none' ? 0 : r === 'mean' ? 1 : 2;
}

/**
 * An n-dimensional array on a device, backed by libtorch, with autograd.
 *
 * Tensors hold native memory: free them with `dispose()`, or create them inside
 * `tidy()`, which frees what the function does not return.
 */
export class Tensor implements Disposable {
  /** The native handle; for the torch layer's own use. */
  readonly handle: Handle;

  /** Wraps a native handle (library-internal; users create tensors with `tensor()`, `zeros()`, ...). */
  constructor(handle: Handle) {
    this.handle = handle;
    track(this);
  }

  // ---- properties --------------------------------------------------------

  /** The size of each dimension. */
  get shape(): number[] {
    return native.shape(this.handle);
  }

  /** The number of dimensions. */
  get ndim(): number {
    return native.shape(this.handle).length;
  }

  /** The number of elements. */
  get numel(): number {
    return native.shape(this.handle).reduce((a, b) => a * b, 1);
  }

  /** The element type. */
  get dtype(): DType {
    return dtypeName(native.dtype(this.handle));
  }

  /** The device, e.g. `'cpu'` or `'cuda:0'`. */
  get device(): string {
    return native.device(this.handle);
  }

  /** Strides of each dimension, in elements. */
  get strides(): number[] {
    return native.strides(this.handle);
  }

  /** Whether the native memory has been freed. */
  get isDisposed(): boolean {
    return native.isDisposed(this.handle);
  }

  /** Frees this handle's reference to the native tensor (views and autograd keep their own). */
  dispose(): void {
    native.dispose(this.handle);
  }

  /** Whether autograd records operations on this tensor. */
  get requiresGrad(): boolean {
    return native.requiresGrad(this.handle);
  }

  set requiresGrad(value: boolean) {
    native.setRequiresGrad(this.handle, value);
  }

  /** Sets `requiresGrad` and returns this tensor. */
  requiresGrad_(value = true): this {
    native.setRequiresGrad(this.handle, value);
    return this;
  }

  /** The accumulated gradient, or null. Each read returns a new handle to the same memory. */
  get grad(): Tensor | null {
    const g = native.grad(this.handle);
    return g === null ? null : new Tensor(g);
  }

  set grad(g: Tensor | null) {
    native.setGrad(this.handle, g === null ? null : g.handle);
  }

  /** Whether this tensor is a leaf of the autograd graph. */
  get isLeaf(): boolean {
    return native.isLeaf(this.handle);
  }

  /** Computes gradients of this tensor with respect to the leaves that require them. */
  backward(gradient?: Tensor, options: { retainGraph?: boolean } = {}): void {
    native.backward(this.handle, gradient?.handle ?? null, options.retainGraph ?? false);
  }

  /** Whether the memory is dense in the given layout. */
  isContiguous(memoryFormat: MemoryFormat = 'contiguous'): boolean {
    return native.isContiguous(this.handle, memoryFormatCode(memoryFormat));
  }

  /** Whether both tensors view the same memory. */
  sharesStorageWith(other: Tensor): boolean {
    return native.sameStorage(this.handle, other.handle);
  }

  // ---- reading values ------------------------------------------------------

  /** The single value of a one-element tensor. */
  item(): number {
    const v = native.item(this.handle);
    return typeof v === 'boolean' ? (v ? 1 : 0) : v;
  }

  /** A copy of the values, in row-major order, as a TypedArray of the tensor's dtype. */
  dataSync(): TensorData {
    return native.toTypedArray(this.handle);
  }

  /** The values as a flat array of numbers (int64 converted to number). */
  toArray(): number[] {
    const data = native.toTypedArray(this.handle);
    if (data instanceof BigInt64Array) return Array.from(data, (v) => Number(v));
    return Array.from(data as ArrayLike<number>);
  }

  /** A short description, for debugging. */
  toString(): string {
    return `Tensor(shape=[${this.shape.join(', ')}], dtype=${this.dtype}, device=${this.device})`;
  }

  // ---- helpers -------------------------------------------------------------

  private unary(op: string): Tensor {
    return new Tensor(callTensorOp(op, [this.handle]));
  }

  private binary(tensorOp: string, scalarOp: string, other: TensorOrScalar, ...rest: (number | undefined)[]): Tensor {
    return typeof other === 'number' ? new Tensor(callTensorOp(scalarOp, [this.handle, other, ...rest])) : new Tensor(callTensorOp(tensorOp, [this.handle, other.handle, ...rest]));
  }

  private binaryInplace(tensorOp: string, scalarOp: string, other: TensorOrScalar, ...rest: (number | undefined)[]): this {
    if (typeof other === 'number') callVoidOp(scalarOp, [this.handle, other, ...rest]);
    else callVoidOp(tensorOp, [this.handle, other.handle, ...rest]);
    return this;
  }

  // ---- arithmetic ----------------------------------------------------------

  /** this + alpha * other */
  add(other: TensorOrScalar, alpha = 1): Tensor {
    return this.binary('aten::add.Tensor', 'aten::add.Scalar', other, alpha);
  }
  /** this - alpha * other */
  sub(other: TensorOrScalar, alpha = 1): Tensor {
    return this.binary('aten::sub.Tensor', 'aten::sub.Scalar', other, alpha);
  }
  /** Elementwise product. */
  mul(other: TensorOrScalar): Tensor {
    return this.binary('aten::mul.Tensor', 'aten::mul.Scalar', other);
  }
  /** Elementwise true division. */
  div(other: TensorOrScalar): Tensor {
    return this.binary('aten::div.Tensor', 'aten::div.Scalar', other);
  }
  /** Elementwise power. */
  pow(exponent: TensorOrScalar): Tensor {
    return this.binary('aten::pow.Tensor_Tensor', 'aten::pow.Tensor_Scalar', exponent);
  }
  /** Elementwise maximum of two tensors. */
  maximum(other: Tensor): Tensor {
    return new Tensor(callTensorOp('aten::maximum', [this.handle, other.handle]));
  }
  /** Elementwise minimum of two tensors. */
  minimum(other: Tensor): Tensor {
    return new Tensor(callTensorOp('aten::minimum', [this.handle, other.handle]));
  }
  /** -this */
  neg(): Tensor {
    return this.unary('aten::neg');
  }
  /** |this| */
  abs(): Tensor {
    return this.unary('aten::abs');
  }
  /** Square root. */
  sqrt(): Tensor {
    return this.unary('aten::sqrt');
  }
  /** 1 / sqrt(this) */
  rsqrt(): Tensor {
    return this.unary('aten::rsqrt');
  }
  /** e^this */
  exp(): Tensor {
    return this.unary('aten::exp');
  }
  /** Natural logarithm. */
  log(): Tensor {
    return this.unary('aten::log');
  }
  /** Sign: -1, 0 or 1. */
  sign(): Tensor {
    return this.unary('aten::sign');
  }
  /** 1 / this */
  reciprocal(): Tensor {
    return this.unary('aten::reciprocal');
  }
  /** this * this */
  square(): Tensor {
    return this.unary('aten::square');
  }
  /** Clamps to [min, max]; either bound may be omitted. */
  clamp(min?: number | null, max?: number | null): Tensor {
    return new Tensor(callTensorOp('aten::clamp', [this.handle, min ?? null, max ?? null]));
  }
  /** Matrix product with broadcasting (torch.matmul). */
  matmul(other: Tensor): Tensor {
    return new Tensor(callTensorOp('aten::matmul', [this.handle, other.handle]));
  }
  /** 2-d matrix product. */
  mm(other: Tensor): Tensor {
    return new Tensor(callTensorOp('aten::mm', [this.handle, other.handle]));
  }
  /** Batched matrix product. */
  bmm(other: Tensor): Tensor {
    return new Tensor(callTensorOp('aten::bmm', [this.handle, other.handle]));
  }

  // ---- activations ---------------------------------------------------------

  /** max(0, x) */
  relu(): Tensor {
    return this.unary('aten::relu');
  }
  /** min(max(0, x), 6) */
  relu6(): Tensor {
    return new Tensor(callTensorOp('aten::hardtanh', [this.handle, 0, 6]));
  }
  /** Logistic sigmoid. */
  sigmoid(): Tensor {
    return this.unary('aten::sigmoid');
  }
  /** Hyperbolic tangent. */
  tanh(): Tensor {
    return this.unary('aten::tanh');
  }
  /** Leaky ReLU. */
  leakyRelu(negativeSlope = 0.01): Tensor {
    return new Tensor(callTensorOp('aten::leaky_relu', [this.handle, negativeSlope]));
  }
  /** Softmax along a dimension. */
  softmax(dim: number): Tensor {
    return new Tensor(callTensorOp('aten::softmax.int', [this.handle, dim]));
  }
  /** Log-softmax along a dimension. */
  logSoftmax(dim: number): Tensor {
    return new Tensor(callTensorOp('aten::log_softmax.int', [this.handle, dim]));
  }

  // ---- reductions ----------------------------------------------------------

  /** Whether every element is finite (no NaN, no ±Infinity); integer tensors always are. */
  allFinite(): boolean {
    const finite = new Tensor(callTensorOp('aten::isfinite', [this.handle]));
    const all = new Tensor(callTensorOp('aten::all', [finite.handle]));
    finite.dispose();
    const ok = all.item() !== 0;
    all.dispose();
    return ok;
  }

  /** Sum of all elements, or along `dim`. */
  sum(dim?: number | number[], keepdim = false): Tensor {
    if (dim === undefined) return new Tensor(callTensorOp('aten::sum', [this.handle]));
    return new Tensor(callTensorOp('aten::sum.dim_IntList', [this.handle, typeof dim === 'number' ? [dim] : dim, keepdim]));
  }
  /** Mean of all elements, or along `dim`. */
  mean(dim?: number | number[], keepdim = false): Tensor {
    if (dim === undefined) return new Tensor(callTensorOp('aten::mean', [this.handle]));
    return new Tensor(callTensorOp('aten::mean.dim', [this.handle, typeof dim === 'number' ? [dim] : dim, keepdim]));
  }
  /** Product of all elements. */
  prod(): Tensor {
    return this.unary('aten::prod');
  }
  /** Variance (unbiased by default) of all elements, or along `dim`. */
  var(dim?: number | number[], { unbiased = true, keepdim = false } = {}): Tensor {
    return new Tensor(callTensorOp('aten::var.dim', [this.handle, dim === undefined ? null : typeof dim === 'number' ? [dim] : dim, unbiased, keepdim]));
  }
  /** Standard deviation (unbiased by default) of all elements, or along `dim`. */
  std(dim?: number | number[], { unbiased = true, keepdim = false } = {}): Tensor {
    return new Tensor(callTensorOp('aten::std.dim', [this.handle, dim === undefined ? null : typeof dim === 'number' ? [dim] : dim, unbiased, keepdim]));
  }
  /** Largest element. */
  max(): Tensor {
    return this.unary('aten::max');
  }
  /** Smallest element. */
  min(): Tensor {
    return this.unary('aten::min');
  }
  /** Largest values along a dimension, with their indices. */
  maxDim(dim: number, keepdim = false): { values: Tensor; indices: Tensor } {
    const [v, i] = callOp('aten::max.dim', [this.handle, dim, keepdim]) as Handle[];
    return { values: new Tensor(v!), indices: new Tensor(i!) };
  }
  /** Smallest values along a dimension, with their indices. */
  minDim(dim: number, keepdim = false): { values: Tensor; indices: Tensor } {
    const [v, i] = callOp('aten::min.dim', [this.handle, dim, keepdim]) as Handle[];
    return { values: new Tensor(v!), indices: new Tensor(i!) };
  }
  /** Index of the largest element (flattened), or along `dim`. */
  argmax(dim?: number, keepdim = false): Tensor {
    return new Tensor(callTensorOp('aten::argmax', [this.handle, dim ?? null, keepdim]));
  }
  /** Index of the smallest element (flattened), or along `dim`. */
  argmin(dim?: number, keepdim = false): Tensor {
    return new Tensor(callTensorOp('aten::argmin', [this.handle, dim ?? null, keepdim]));
  }
  /** The k largest (or smallest) values along a dimension, with their indices. */
  topk(k: number, { dim = -1, largest = true, sorted = true } = {}): { values: Tensor; indices: Tensor } {
    const [v, i] = callOp('aten::topk', [this.handle, k, dim, largest, sorted]) as Handle[];
    return { values: new Tensor(v!), indices: new Tensor(i!) };
  }
  /** Sorts along a dimension. */
  sort({ dim = -1, descending = false } = {}): { values: Tensor; indices: Tensor } {
    const [v, i] = callOp('aten::sort', [this.handle, dim, descending]) as Handle[];
    return { values: new Tensor(v!), indices: new Tensor(i!) };
  }
  /** p-norm of all elements. */
  norm(p = 2): Tensor {
    return new Tensor(callTensorOp('aten::norm.Scalar', [this.handle, p]));
  }
  /** log(sum(exp(x))) along dimensions. */
  logsumexp(dim: number | number[], keepdim = false): Tensor {
    return new Tensor(callTensorOp('aten::logsumexp', [this.handle, typeof dim === 'number' ? [dim] : dim, keepdim]));
  }
  /** Cumulative sum along a dimension. */
  cumsum(dim: number): Tensor {
    return new Tensor(callTensorOp('aten::cumsum', [this.handle, dim]));
  }

  // ---- comparisons ---------------------------------------------------------

  /** Elementwise ==, as a bool tensor. */
  eq(other: TensorOrScalar): Tensor {
    return this.binary('aten::eq.Tensor', 'aten::eq.Scalar', other);
  }
  /** Elementwise !=. */
  ne(other: TensorOrScalar): Tensor {
    return this.binary('aten::ne.Tensor', 'aten::ne.Scalar', other);
  }
  /** Elementwise <. */
  lt(other: TensorOrScalar): Tensor {
    return this.binary('aten::lt.Tensor', 'aten::lt.Scalar', other);
  }
  /** Elementwise <=. */
  le(other: TensorOrScalar): Tensor {
    return this.binary('aten::le.Tensor', 'aten::le.Scalar', other);
  }
  /** Elementwise >. */
  gt(other: TensorOrScalar): Tensor {
    return this.binary('aten::gt.Tensor', 'aten::gt.Scalar', other);
  }
  /** Elementwise >=. */
  ge(other: TensorOrScalar): Tensor {
    return this.binary('aten::ge.Tensor', 'aten::ge.Scalar', other);
  }
  /** Whether all elements are close: |a - b| <= atol + rtol * |b|. */
  allclose(other: Tensor, rtol = 1e-5, atol = 1e-8): boolean {
    return callOp('aten::allclose', [this.handle, other.handle, rtol, atol, false]) as boolean;
  }
  /** Elementwise choice: where(cond, this, other). */
  where(condition: Tensor, other: TensorOrScalar): Tensor {
    return typeof other === 'number'
      ? new Tensor(callTensorOp('aten::where.ScalarOther', [condition.handle, this.handle, other]))
      : new Tensor(callTensorOp('aten::where.self', [condition.handle, this.handle, other.handle]));
  }
  /** Sets elements where `mask` is true to `value`. */
  maskedFill(mask: Tensor, value: number): Tensor {
    return new Tensor(callTensorOp('aten::masked_fill.Scalar', [this.handle, mask.handle, value]));
  }

  // ---- shape and layout ----------------------------------------------------

  /** A view with a new shape (one entry may be -1). */
  view(...shape: number[]): Tensor {
    return new Tensor(callTensorOp('aten::view', [this.handle, shape]));
  }
  /** A tensor with a new shape, a view when possible. */
  reshape(...shape: number[]): Tensor {
    return new Tensor(callTensorOp('aten::reshape', [this.handle, shape]));
  }
  /** Flattens dimensions startDim..endDim into one. */
  flatten(startDim = 0, endDim = -1): Tensor {
    return new Tensor(callTensorOp('aten::flatten.using_ints', [this.handle, startDim, endDim]));
  }
  /** Reorders dimensions. */
  permute(...dims: number[]): Tensor {
    return new Tensor(callTensorOp('aten::permute', [this.handle, dims]));
  }
  /** Swaps two dimensions. */
  transpose(dim0: number, dim1: number): Tensor {
    return new Tensor(callTensorOp('aten::transpose.int', [this.handle, dim0, dim1]));
  }
  /** Transpose of a 2-d tensor. */
  t(): Tensor {
    return this.unary('aten::t');
  }
  /** Removes a size-1 dimension (or all of them). */
  squeeze(dim?: number): Tensor {
    if (dim === undefined) return this.unary('aten::squeeze');
    return new Tensor(callTensorOp('aten::squeeze.dim', [this.handle, dim]));
  }
  /** Inserts a size-1 dimension. */
  unsqueeze(dim: number): Tensor {
    return new Tensor(callTensorOp('aten::unsqueeze', [this.handle, dim]));
  }
  /** Broadcasts to a larger shape without copying (-1 keeps a size). */
  expand(...shape: number[]): Tensor {
    return new Tensor(callTensorOp('aten::expand', [this.handle, shape, false]));
  }
  /** Tiles the tensor. */
  repeat(...repeats: number[]): Tensor {
    return new Tensor(callTensorOp('aten::repeat', [this.handle, repeats]));
  }
  /** Reverses the order along the given dimensions. */
  flip(...dims: number[]): Tensor {
    return new Tensor(callTensorOp('aten::flip', [this.handle, dims]));
  }
  /** Rotates by 90° k times in the plane of dims. */
  rot90(k = 1, dims: [number, number] = [0, 1]): Tensor {
    return new Tensor(callTensorOp('aten::rot90', [this.handle, k, dims]));
  }
  /** A tensor dense in the given memory format (a no-op view if it already is). */
  contiguous(memoryFormat: MemoryFormat = 'contiguous'): Tensor {
    return new Tensor(callTensorOp('aten::contiguous', [this.handle, memoryFormatCode(memoryFormat)]));
  }
  /** A copy with its own memory. */
  clone(memoryFormat: MemoryFormat = 'preserve'): Tensor {
    return new Tensor(callTensorOp('aten::clone', [this.handle, memoryFormatCode(memoryFormat)]));
  }
  /** A view outside the autograd graph. */
  detach(): Tensor {
    return this.unary('aten::detach');
  }
  /** Converts to another dtype (a copy unless it already has it). */
  to(dtype: DType, { copy = false, memoryFormat }: { copy?: boolean; memoryFormat?: MemoryFormat } = {}): Tensor {
    return new Tensor(callTensorOp('aten::to.dtype', [this.handle, dtypeCode(dtype), false, copy, memoryFormat ? memoryFormatCode(memoryFormat) : null]));
  }
  /**
   * Moves to a device (`'cpu'`, `'cuda'`, `'cuda:1'`); the same tensor when it is already there.
   * `nonBlocking` lets a copy from pinned host memory overlap with the device's work.
   */
  toDevice(device: string, { nonBlocking = false }: { nonBlocking?: boolean } = {}): Tensor {
    return new Tensor(callTensorOp('aten::to.device', [this.handle, device, native.dtype(this.handle), nonBlocking, false, null]));
  }
  /** A copy in page-locked host memory, which a CUDA device copies from asynchronously (CPU tensors only). */
  pinMemory(): Tensor {
    return this.unary('aten::pin_memory');
  }
  /** Makes this tensor's data `source`'s (any device or layout), keeping its identity: how a module moves between devices. */
  setData_(source: Tensor): this {
    native.setData(this.handle, source.handle);
    return this;
  }
  /** Converts to float32. */
  float(): Tensor {
    return this.to('float32');
  }
  /** Converts to int64. */
  long(): Tensor {
    return this.to('int64');
  }

  // ---- indexing ------------------------------------------------------------

  /** The sub-tensor at `index` along `dim` (the dimension disappears). */
  select(dim: number, index: number): Tensor {
    return new Tensor(callTensorOp('aten::select.int', [this.handle, dim, index]));
  }
  /** The view of `start..end` (exclusive) along `dim`, with a step. Negative bounds count from the end. */
  slice(dim: number, start = 0, end?: number, step = 1): Tensor {
    return new Tensor(callTensorOp('aten::slice.Tensor', [this.handle, dim, start, end ?? null, step]));
  }
  /** A narrowed view: `length` elements from `start` along `dim`. */
  narrow(dim: number, start: number, length: number): Tensor {
    return new Tensor(callTensorOp('aten::narrow', [this.handle, dim, start, length]));
  }
  /** Gathers rows (or slices along `dim`) by an int64 index tensor. */
  indexSelect(dim: number, index: Tensor): Tensor {
    return new Tensor(callTensorOp('aten::index_select', [this.handle, dim, index.handle]));
  }
  /** Advanced indexing, `this[i0, i1, ...]`, with null for a full slice. */
  index(indices: (Tensor | null)[]): Tensor {
    return new Tensor(callTensorOp('aten::index.Tensor', [this.handle, indices.map((t) => (t === null ? null : t.handle))]));
  }
  /** Values at `index` along `dim` (torch.gather). */
  gather(dim: number, index: Tensor): Tensor {
    return new Tensor(callTensorOp('aten::gather', [this.handle, dim, index.handle, false]));
  }
  /** Splits into chunks of `size` along `dim`. */
  split(size: number, dim = 0): Tensor[] {
    return (callOp('aten::split.Tensor', [this.handle, size, dim]) as Handle[]).map((h) => new Tensor(h));
  }
  /** Splits into `chunks` nearly equal pieces along `dim`. */
  chunk(chunks: number, dim = 0): Tensor[] {
    return (callOp('aten::chunk', [this.handle, chunks, dim]) as Handle[]).map((h) => new Tensor(h));
  }

  // ---- in-place ------------------------------------------------------------

  /** this += alpha * other, in place. */
  add_(other: TensorOrScalar, alpha = 1): this {
    return this.binaryInplace('aten::add_.Tensor', 'aten::add_.Scalar', other, alpha);
  }
  /** this -= alpha * other, in place. */
  sub_(other: TensorOrScalar, alpha = 1): this {
    return this.binaryInplace('aten::sub_.Tensor', 'aten::sub_.Scalar', other, alpha);
  }
  /** this *= other, in place. */
  mul_(other: TensorOrScalar): this {
    return this.binaryInplace('aten::mul_.Tensor', 'aten::mul_.Scalar', other);
  }
  /** this /= other, in place. */
  div_(other: TensorOrScalar): this {
    return this.binaryInplace('aten::div_.Tensor', 'aten::div_.Scalar', other);
  }
  /** this += value * t1 * t2, in place. */
  addcmul_(t1: Tensor, t2: Tensor, value = 1): this {
    callVoidOp('aten::addcmul_', [this.handle, t1.handle, t2.handle, value]);
    return this;
  }
  /** this += value * t1 / t2, in place. */
  addcdiv_(t1: Tensor, t2: Tensor, value = 1): this {
    callVoidOp('aten::addcdiv_', [this.handle, t1.handle, t2.handle, value]);
    return this;
  }
  /** this += weight * (end - this), in place. */
  lerp_(end: Tensor, weight: number): this {
    callVoidOp('aten::lerp_.Scalar', [this.handle, end.handle, weight]);
    return this;
  }
  /** Copies values from `src` (broadcast), in place. */
  copy_(src: Tensor): this {
    callVoidOp('aten::copy_', [this.handle, src.handle, false]);
    return this;
  }
  /** Fills with zeros, in place. */
  zero_(): this {
    callVoidOp('aten::zero_', [this.handle]);
    return this;
  }
  /** Fills with a value, in place. */
  fill_(value: number): this {
    callVoidOp('aten::fill_.Scalar', [this.handle, value]);
    return this;
  }
  /** Clamps in place. */
  clamp_(min?: number | null, max?: number | null): this {
    callVoidOp('aten::clamp_', [this.handle, min ?? null, max ?? null]);
    return this;
  }
  /** ReLU in place. */
  relu_(): this {
    callVoidOp('aten::relu_', [this.handle]);
    return this;
  }
  /** Fills with samples from U(from, to), in place. */
  uniform_(from = 0, to = 1): this {
    callVoidOp('aten::uniform_', [this.handle, from, to, null]);
    return this;
  }
  /** Fills with samples from Bernoulli(p) (ones with probability p, else zeros), in place. */
  bernoulli_(p: number): this {
    callVoidOp('aten::bernoulli_.float', [this.handle, p, null]);
    return this;
  }
  /** Fills with samples from N(mean, std²), in place. */
  normal_(mean = 0, std = 1): this {
    callVoidOp('aten::normal_', [this.handle, mean, std, null]);
    return this;
  }
  /** Makes this tensor use `source`'s memory, shape and strides (outside autograd; used to change layouts of parameters). */
  set_(source: Tensor): this {
    callVoidOp('aten::set_.source_Tensor', [this.handle, source.handle]);
    return this;
  }
}
