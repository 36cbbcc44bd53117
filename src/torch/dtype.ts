// Element types by their PyTorch names, and the codes libtorch uses for them.

/** A tensor element type, named as in PyTorch (`torch.float32` is `'float32'`). */
export type DType = 'uint8' | 'int8' | 'int16' | 'int32' | 'int64' | 'float16' | 'float32' | 'float64' | 'bool' | 'bfloat16';

const CODES: Record<DType, number> = {
  uint8: 0,
  int8: 1,
  int16: 2,
  int32: 3,
  int64: 4,
  float16: 5,
  float32: 6,
  float64: 7,
  bool: 11,
  bfloat16: 15,
};

const NAMES = new Map<number, DType>(Object.entries(CODES).map(([k, v]) => [v, k as DType]));

/** libtorch's c10::ScalarType code for a dtype. */
export function dtypeCode(d: DType): number {
  const code = CODES[d];
  if (code === undefined) throw new TypeError(`unknown dtype '${String(d)}'; expected one of ${Object.keys(CODES).join(', ')}`);
  return code;
}

/** The dtype for a libtorch c10::ScalarType code. */
export function dtypeName(code: number): DType {
  const name = NAMES.get(code);
  if (name === undefined) throw new TypeError(`unsupported libtorch scalar type ${code}`);
  return name;
}

/** Bytes per element. */
export function dtypeSize(d: DType): number {
  switch (d) {
    case 'uint8':
    case 'int8':
    case 'bool':
      return 1;
    case 'int16':
    case 'float16':
    case 'bfloat16':
      return 2;
    case 'int32':
    case 'float32':
      return 4;
    case 'int64':
    case 'float64':
      return 8;
  }
}

/** Whether values of this dtype are floating point. */
export function isFloatingPoint(d: DType): boolean {
  return d === 'float16' || d === 'float32' || d === 'float64' || d === 'bfloat16';
}

/** The memory layouts a 4-d tensor can have (`torch.contiguous_format`, `torch.channels_last`). */
export type MemoryFormat = 'contiguous' | 'channelsLast' | 'preserve';

/** libtorch's c10::MemoryFormat code. */
export function memoryFormatCode(f: MemoryFormat): number {
  switch (f) {
    case 'contiguous':
      return 0;
    case 'preserve':
      return 1;
    case 'channelsLast':
      return 2;
  }
}

/** The TypedArray that holds the values of a dtype when read back to JavaScript. */
export type TypedArrayFor<D extends DType> = D extends 'float32'
  ? Float32Array
  : D extends 'float64'
    ? Float64Array
    : D extends 'int32'
      ? Int32Array
      : D extends 'int64'
        ? BigInt64Array
        : D extends 'int8'
          ? Int8Array
          : D extends 'int16'
            ? Int16Array
            : Uint8Array;

/** Any TypedArray a tensor can be made from or read into. */
export type TensorData = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | Int8Array | Int16Array;
