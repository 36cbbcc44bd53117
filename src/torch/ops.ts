// Calling ATen operators by their schema name ("aten::add.Tensor"). Names are
// resolved through the dispatcher once and cached by id.
import { native, type Handle, type OpArg, type OpResult } from './native.js';

const ids = new Map<string, number>();

function resolve(qualified: string): number {
  let id = ids.get(qualified);
  if (id === undefined) {
    const dot = qualified.indexOf('.', qualified.indexOf('::') + 2);
    const name = dot < 0 ? qualified : qualified.slice(0, dot);
    const overload = dot < 0 ? '' : qualified.slice(dot + 1);
    id = native.op(name, overload);
    ids.set(qualified, id);
  }
  return id;
}

/** Calls an ATen operator, e.g. `callOp('aten::add.Tensor', [a, b, 1])`; arguments follow the schema's order. */
export function callOp(qualified: string, args: OpArg[]): OpResult {
  return native.call(resolve(qualified), args);
}

/** Calls an operator that returns one tensor. */
export function callTensorOp(qualified: string, args: OpArg[]): Handle {
  return native.call(resolve(qualified), args) as Handle;
}

/** Calls an operator and drops its result (in-place ops return the tensor the caller holds). */
export function callVoidOp(qualified: string, args: OpArg[]): void {
  native.callVoid(resolve(qualified), args);
}

/** The schema of an operator as libtorch prints it, for error messages and exploration. */
export function opSchema(qualified: string): string {
  return native.schema(resolve(qualified));
}
