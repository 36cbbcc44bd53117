// Building an ONNX graph: values with their static shapes (the batch left
// dynamic), initializers, nodes; then the optional folding of batch norms into
// the convolutions before them, and the encoding as a ModelProto.
import { AttributeType, DataType, IR_VERSION, ModelProto, OPSET } from './onnx-proto.js';

/** A value of the graph: its name and its shape without the batch dimension. */
export interface Value {
  name: string;
  shape: number[];
}

/** A graph input or output other than a float tensor with a dynamic batch: its element type and dims (a string is a named dynamic dim). */
export interface TypedValue {
  name: string;
  elemType: number;
  dims: (number | string)[];
}

/** A float attribute (plain numbers are ints). */
export class FloatAttr {
  constructor(readonly value: number) {}
}

/** An attribute value: an int, a float, a list of ints, a string. */
export type Attr = number | FloatAttr | number[] | string;

interface NodeSpec {
  op: string;
  inputs: string[];
  outputs: string[];
  attrs: Record<string, Attr>;
  name: string;
}

interface Initializer {
  dims: number[];
  float?: Float32Array;
  int64?: number[];
}

/** A graph under construction. */
export class OnnxGraph {
  readonly nodes: NodeSpec[] = [];
  readonly initializers = new Map<string, Initializer>();
  private readonly used = new Set<string>();

  /** A name not used yet, from `base`. */
  unique(base: string): string {
    let name = base;
    for (let k = 1; this.used.has(name); k++) name = `${base}_${k}`;
    this.used.add(name);
    return name;
  }

  /** Adds a float initializer (copied); returns its name. */
  floats(name: string, dims: number[], data: Float32Array): string {
    const n = this.unique(name);
    if (data.length !== dims.reduce((a, b) => a * b, 1)) throw new Error(`initializer ${name}: ${data.length} values for dims [${dims.join(', ')}]`);
    this.initializers.set(n, { dims, float: Float32Array.from(data) });
    return n;
  }

  /** Adds an int64 initializer; returns its name. */
  ints(name: string, values: number[]): string {
    const n = this.unique(name);
    this.initializers.set(n, { dims: [values.length], int64: values });
    return n;
  }

  /** Adds a node; returns its (single) output's name. */
  node(op: string, inputs: string[], attrs: Record<string, Attr> = {}, name = op): string {
    const out = this.unique(`${name}:out`);
    this.nodes.push({ op, inputs, outputs: [out], attrs, name: this.unique(name) });
    return out;
  }

  /** How many nodes read each value. */
  private consumers(): Map<string, number> {
    const c = new Map<string, number>();
    for (const n of this.nodes) for (const i of n.inputs) c.set(i, (c.get(i) ?? 0) + 1);
    return c;
  }

  /**
   * Folds every BatchNormalization whose input is a Conv's output read by nothing
   * else into that Conv's weights and bias: W' = W·γ/√(σ²+ε), b' = (b − μ)·γ/√(σ²+ε) + β.
   * Returns how many were folded.
   */
  foldBatchNorms(outputs: string[]): number {
    const consumers = this.consumers();
    for (const o of outputs) consumers.set(o, (consumers.get(o) ?? 0) + 1);
    const producer = new Map<string, NodeSpec>();
    for (const n of this.nodes) for (const o of n.outputs) producer.set(o, n);
    let folded = 0;
    const dropped = new Set<NodeSpec>();
    for (const bn of this.nodes) {
      if (bn.op !== 'BatchNormalization') continue;
      const conv = producer.get(bn.inputs[0]!);
      if (conv === undefined || conv.op !== 'Conv' || consumers.get(bn.inputs[0]!) !== 1) continue;
      const [, gName, bName, mName, vName] = bn.inputs;
      const [gamma, beta, mean, variance] = [gName, bName, mName, vName].map((k) => this.initializers.get(k!)?.float);
      const w = this.initializers.get(conv.inputs[1]!);
      if (!gamma || !beta || !mean || !variance || !w?.float) continue;
      const eps = (bn.attrs.epsilon as FloatAttr | undefined)?.value ?? 1e-5;
      const cout = w.dims[0]!;
      const per = w.float.length / cout;
      const oldBias = conv.inputs[2] !== undefined ? this.initializers.get(conv.inputs[2])!.float! : new Float32Array(cout);
      const weight = new Float32Array(w.float.length);
      const bias = new Float32Array(cout);
      for (let o = 0; o < cout; o++) {
        const a = gamma[o]! / Math.sqrt(variance[o]! + eps);
        for (let i = 0; i < per; i++) weight[o * per + i] = w.float[o * per + i]! * a;
        bias[o] = (oldBias[o]! - mean[o]!) * a + beta[o]!;
      }
      w.float = weight;
      const biasName = conv.inputs[2] ?? this.unique(`${conv.inputs[1]!.replace(/weight$/, '')}bias`);
      this.initializers.set(biasName, { dims: [cout], float: bias });
      conv.inputs = [conv.inputs[0]!, conv.inputs[1]!, biasName];
      conv.outputs = bn.outputs;
      dropped.add(bn);
      for (const k of [gName, bName, mName, vName]) this.initializers.delete(k!);
      folded++;
    }
    const kept = this.nodes.filter((n) => !dropped.has(n));
    this.nodes.length = 0;
    this.nodes.push(...kept);
    return folded;
  }

  /** The graph as the bytes of an ONNX model with one input (a Value is float [N, ...shape]) and one output. */
  encode({
    input,
    output,
    metadata,
    name = 'fastvision',
    producerVersion = '0.1.0',
    docString = '',
    opset = OPSET,
  }: {
    input: Value | TypedValue;
    output: Value;
    metadata: Record<string, string>;
    name?: string;
    producerVersion?: string;
    docString?: string;
    opset?: number;
  }): Uint8Array {
    const attr = (key: string, v: Attr): Record<string, unknown> => {
      if (v instanceof FloatAttr) return { name: key, type: AttributeType.FLOAT, f: v.value };
      if (typeof v === 'number') return { name: key, type: AttributeType.INT, i: v };
      if (typeof v === 'string') return { name: key, type: AttributeType.STRING, s: new TextEncoder().encode(v) };
      return { name: key, type: AttributeType.INTS, ints: v };
    };
    const valueInfo = (v: Value | TypedValue): Record<string, unknown> => {
      const [elemType, dims] = 'elemType' in v ? [v.elemType, v.dims] : [DataType.FLOAT, ['N', ...v.shape]];
      return { name: v.name, type: { tensor_type: { elem_type: elemType, shape: { dim: dims.map((d) => (typeof d === 'string' ? { dim_param: d } : { dim_value: d })) } } } };
    };
    const initializer = [...this.initializers].map(([n, t]) =>
      t.float
        ? { name: n, dims: t.dims, data_type: DataType.FLOAT, raw_data: new Uint8Array(t.float.buffer, t.float.byteOffset, t.float.byteLength) }
        : { name: n, dims: t.dims, data_type: DataType.INT64, int64_data: t.int64 },
    );
    const model = ModelProto.fromObject({
      ir_version: IR_VERSION,
      producer_name: 'fastvision',
      producer_version: producerVersion,
      doc_string: docString,
      opset_import: [{ domain: '', version: opset }],
      metadata_props: Object.entries(metadata).map(([key, value]) => ({ key, value })),
      graph: {
        name,
        node: this.nodes.map((n) => ({ name: n.name, op_type: n.op, input: n.inputs, output: n.outputs, attribute: Object.entries(n.attrs).map(([k, v]) => attr(k, v)) })),
        initializer,
        input: [valueInfo(input)],
        output: [valueInfo(output)],
      },
    });
    return ModelProto.encode(model).finish();
  }
}
