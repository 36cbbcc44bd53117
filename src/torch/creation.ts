// Making tensors: from JavaScript data, and by the usual factories.
import { dtypeCode, type DType, type TensorData } from './dtype.js';
import { native } from './native.js';
import { callTensorOp } from './ops.js';
import { Tensor } from './tensor.js';

/** Options shared by the factories. */
export interface FactoryOptions {
  /** Element type (default float32, or int64 for integer factories). */
  dtype?: DType;
  /** Device (default 'cpu'). */
  device?: string;
  /** Whether autograd should track the new tensor. */
  requiresGrad?: boolean;
}

/** Data for `tensor()`: a number, a boolean, or nested arrays of them. */
export type Nested = number | boolean | Nested[];

function shapeOf(data: Nested): number[] {
  const shape: number[] = [];
  let cur: Nested = data;
  while (Array.isArray(cur)) {
    shape.push(cur.length);
    cur = cur[0] as Nested;
  }
  return shape;
}

function flattenInto(data: Nested, shape: number[], depth: number, out: number[]): void {
  if (depth === shape.length) {
    if (Array.isArray(data)) throw new RangeError('tensor(): ragged nested array');
    out.push(typeof data === 'boolean' ? (data ? 1 : 0) : data);
    return;
  }
  if (!Array.isArray(data) || data.length !== shape[depth]) throw new RangeError('tensor(): ragged nested array');
  for (const d of data) flattenInto(d, shape, depth + 1, out);
}

function typedArrayFor(values: ArrayLike<number>, dtype: DType): TensorData {
  switch (dtype) {
    case 'float32':
      return Float32Array.from(values);
    case 'float64':
      return Float64Array.from(values);
    case 'int32':
      return Int32Array.from(values);
    case 'int64':
      return BigInt64Array.from(Array.from(values, (v) => BigInt(Math.trunc(v))));
    case 'int16':
      return Int16Array.from(values);
    case 'int8':
      return Int8Array.from(values);
    case 'uint8':
    case 'bool':
      return Uint8Array.from(values);
    default:
      throw new TypeError(`tensor(): cannot create a ${dtype} tensor from JavaScript numbers; create float32 and convert`);
  }
}

function defaultDtypeOf(data: TensorData): DType {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof BigInt64Array) return 'int64';
  if (data instanceof Int16Array) return 'int16';
  if (data instanceof Int8Array) return 'int8';
  return 'uint8';
}

function finish(t: Tensor, options: FactoryOptions): Tensor {
  if (options.device !== undefined && options.device !== 'cpu') {
    const moved = t.toDevice(options.device);
    t.dispose();
    t = moved;
  }
  if (options.requiresGrad) t.requiresGrad_(true);
  return t;
}

/**
 * A tensor holding a copy of `data`: a TypedArray (with `shape`, default 1-d), or
 * nested arrays of numbers or booleans. dtype defaults to the TypedArray's own, or float32.
 */
export function tensor(data: TensorData | Nested, options: FactoryOptions & { shape?: number[] } = {}): Tensor {
  let typed: TensorData;
  let shape: number[];
  let dtype: DType;
  if (ArrayBuffer.isView(data)) {
    typed = data;
    shape = options.shape ?? [data.length];
    dtype = options.dtype ?? defaultDtypeOf(data);
    if (dtype !== defaultDtypeOf(data) && !(dtype === 'bool' && data instanceof Uint8Array)) {
      const t = new Tensor(native.fromTypedArray(typed, shape));
      const converted = t.to(dtype);
      t.dispose();
      return finish(converted, options);
    }
  } else {
    shape = options.shape ?? shapeOf(data);
    const flat: number[] = [];
    if (typeof data === 'number' || typeof data === 'boolean') flat.push(typeof data === 'boolean' ? (data ? 1 : 0) : data);
    else flattenInto(data, shapeOf(data), 0, flat);
    dtype = options.dtype ?? (typeof (Array.isArray(data) ? firstLeaf(data) : data) === 'boolean' ? 'bool' : 'float32');
    typed = typedArrayFor(flat, dtype);
  }
  return finish(new Tensor(native.fromTypedArray(typed, shape, dtype === 'bool')), options);
}

function firstLeaf(data: Nested): number | boolean | undefined {
  let cur: Nested | undefined = data;
  while (Array.isArray(cur)) cur = cur[0];
  return cur;
}

function factory(op: string, leading: (number | number[])[], options: FactoryOptions, dtype: DType = 'float32'): Tensor {
  const t = new Tensor(callTensorOp(op, [...leading, dtypeCode(options.dtype ?? dtype), null, options.device ?? 'cpu', null]));
  if (options.requiresGrad) t.requiresGrad_(true);
  return t;
}

/** A tensor of zeros. */
export function zeros(shape: number[], options: FactoryOptions = {}): Tensor {
  return factory('aten::zeros', [shape], options);
}

/** A tensor of ones. */
export function ones(shape: number[], options: FactoryOptions = {}): Tensor {
  return factory('aten::ones', [shape], options);
}

/** A tensor filled with one value. */
export function full(shape: number[], value: number, options: FactoryOptions = {}): Tensor {
  return factory('aten::full', [shape, value], options);
}

/** An uninitialized tensor. */
export function empty(shape: number[], options: FactoryOptions = {}): Tensor {
  const t = new Tensor(callTensorOp('aten::empty.memory_format', [shape, dtypeCode(options.dtype ?? 'float32'), null, options.device ?? 'cpu', null, null]));
  if (options.requiresGrad) t.requiresGrad_(true);
  return t;
}

/** Samples from the standard normal distribution. */
export function randn(shape: number[], options: FactoryOptions = {}): Tensor {
  return factory('aten::randn', [shape], options);
}

/** Samples from U(0, 1). */
export function rand(shape: number[], options: FactoryOptions = {}): Tensor {
  return factory('aten::rand', [shape], options);
}

/** Random integers in [low, high). */
export function randint(low: number, high: number, shape: number[], options: FactoryOptions = {}): Tensor {
  return factory('aten::randint.low', [low, high, shape], options, 'int64');
}

/** A random permutation of 0..n-1. */
export function randperm(n: number, options: FactoryOptions = {}): Tensor {
  return factory('aten::randperm', [n], options, 'int64');
}

/** Values start, start+step, ... below end. */
export function arange(start: number, end?: number, step = 1, options: FactoryOptions = {}): Tensor {
  const [s, e] = end === undefined ? [0, start] : [start, end];
  const allInt = Number.isInteger(s) && Number.isInteger(e) && Number.isInteger(step);
  return factory('aten::arange.start_step', [s, e, step], options, allInt ? 'int64' : 'float32');
}

/** `steps` evenly spaced values from start to end inclusive. */
export function linspace(start: number, end: number, steps: number, options: FactoryOptions = {}): Tensor {
  return factory('aten::linspace', [start, end, steps], options);
}

/** The n×n identity matrix. */
export function eye(n: number, options: FactoryOptions = {}): Tensor {
  return factory('aten::eye', [n], options);
}

/** Zeros shaped, typed and placed like `t`. */
export function zerosLike(t: Tensor): Tensor {
  return new Tensor(callTensorOp('aten::zeros_like', [t.handle, null, null, null, null, null]));
}

/** Ones shaped, typed and placed like `t`. */
export function onesLike(t: Tensor): Tensor {
  return new Tensor(callTensorOp('aten::ones_like', [t.handle, null, null, null, null, null]));
}

/** Concatenates tensors along an existing dimension. */
export function cat(tensors: Tensor[], dim = 0): Tensor {
  return new Tensor(callTensorOp('aten::cat', [tensors.map((t) => t.handle), dim]));
}

/** Stacks tensors along a new dimension. */
export function stack(tensors: Tensor[], dim = 0): Tensor {
  return new Tensor(callTensorOp('aten::stack', [tensors.map((t) => t.handle), dim]));
}
