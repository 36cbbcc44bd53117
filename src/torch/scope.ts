// Deterministic freeing of native memory. The garbage collector cannot see how
// large a libtorch tensor is, so intermediates are freed when their scope ends,
// in the spirit of tfjs' `tidy`.

/** Anything that holds native memory and can free it. */
export interface Disposable {
  dispose(): void;
  readonly isDisposed: boolean;
}

const scopes: Set<Disposable>[] = [];
const kept = new WeakSet<Disposable>();

/** Records a newly created tensor in the innermost open scope (called by Tensor's constructor). */
export function track(t: Disposable): void {
  const top = scopes[scopes.length - 1];
  if (top !== undefined) top.add(t);
}

/** Exempts a tensor from every enclosing `tidy`, e.g. a parameter created inside one. Returns it. */
export function keep<T extends Disposable>(t: T): T {
  kept.add(t);
  for (const s of scopes) s.delete(t);
  return t;
}

function collect(value: unknown, into: Set<Disposable>, depth = 0): void {
  if (value === null || typeof value !== 'object' || depth > 4) return;
  if (isDisposable(value)) {
    into.add(value);
    return;
  }
  if (Array.isArray(value)) {
    for (const v of value) collect(v, into, depth + 1);
    return;
  }
  if (value instanceof Map) {
    for (const v of value.values()) collect(v, into, depth + 1);
    return;
  }
  if (Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value)) collect(v, into, depth + 1);
  }
}

function isDisposable(v: object): v is Disposable {
  return typeof (v as Partial<Disposable>).dispose === 'function' && 'isDisposed' in v;
}

/**
 * Runs `fn` and frees every tensor it created except those it returns (a tensor,
 * or tensors inside a returned array, Map or plain object) and those passed to
 * `keep`. Returned tensors belong to the enclosing scope. `fn` must be synchronous.
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Disposable>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    scopes.pop();
    for (const t of scope) if (!t.isDisposed) t.dispose();
    throw e;
  }
  scopes.pop();
  if (result instanceof Promise) {
    throw new TypeError('tidy: the function must be synchronous (it returned a Promise)');
  }
  const survivors = new Set<Disposable>();
  collect(result, survivors);
  const parent = scopes[scopes.length - 1];
  for (const t of scope) {
    if (survivors.has(t)) {
      if (parent !== undefined) parent.add(t);
    } else if (!t.isDisposed) {
      t.dispose();
    }
  }
  return result;
}

/** Frees every tensor found in `value` (a tensor, or an array, Map or plain object of them). */
export function dispose(value: unknown): void {
  const found = new Set<Disposable>();
  collect(value, found);
  for (const t of found) if (!t.isDisposed) t.dispose();
}
