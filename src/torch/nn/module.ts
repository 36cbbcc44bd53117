// Module: the base of every layer and model, shaped like torch.nn.Module so
// that state-dict keys match PyTorch's (`layer1.0.conv1.weight`).
import { noGrad } from '../autograd.js';
import type { MemoryFormat } from '../dtype.js';
import { keep } from '../scope.js';
import type { Tensor } from '../tensor.js';

/** A state dict: parameter and buffer names, in PyTorch's order, mapped to tensors. */
export type StateDict = Map<string, Tensor>;

/** What `loadStateDict` found out of place. */
export interface LoadResult {
  missingKeys: string[];
  unexpectedKeys: string[];
}

/**
 * A layer or a model: holds parameters, buffers and child modules, each by name.
 * Subclasses register them in their constructor and implement `forward`.
 */
export abstract class Module {
  /** Training mode (dropout active, batch norm updating statistics) or evaluation mode. */
  training = true;
  private readonly params = new Map<string, Tensor | null>();
  private readonly buffers_ = new Map<string, { tensor: Tensor | null; persistent: boolean }>();
  private readonly modules_ = new Map<string, Module>();

  /** The computation: output for an input batch. */
  abstract forward(input: Tensor): Tensor;

  /** Registers a parameter (it requires grad and survives `tidy`). Returns it. */
  protected registerParameter(name: string, t: Tensor): Tensor;
  protected registerParameter(name: string, t: null): null;
  protected registerParameter(name: string, t: Tensor | null): Tensor | null {
    this.checkName(name);
    if (t !== null) {
      keep(t);
      if (!t.requiresGrad) t.requiresGrad_(true);
    }
    this.params.set(name, t);
    return t;
  }

  /** Registers a buffer: state that is saved but not trained (running statistics). Returns it. */
  protected registerBuffer(name: string, t: Tensor | null, persistent = true): Tensor | null {
    this.checkName(name);
    if (t !== null) keep(t);
    this.buffers_.set(name, { tensor: t, persistent });
    return t;
  }

  /** Registers a child module under a name. Returns it. */
  registerModule<M extends Module>(name: string, m: M): M {
    this.checkName(name);
    this.modules_.set(name, m);
    return m;
  }

  private checkName(name: string): void {
    if (name === '' || name.includes('.')) throw new Error(`invalid module attribute name '${name}'`);
    if (this.params.has(name) || this.buffers_.has(name) || this.modules_.has(name)) {
      throw new Error(`'${name}' is already registered on ${this.constructor.name}`);
    }
  }

  /** The child module registered under `name`, or undefined. */
  getModule(name: string): Module | undefined {
    return this.modules_.get(name);
  }

  /** Replaces the child registered under `name` (keeping its position). */
  setModule(name: string, m: Module): void {
    if (!this.modules_.has(name)) throw new Error(`${this.constructor.name} has no child '${name}'`);
    this.modules_.set(name, m);
  }

  /** The parameter registered on this module under `name`, or undefined. */
  getParameter(name: string): Tensor | null | undefined {
    return this.params.get(name);
  }

  /** The buffer registered on this module under `name`, or undefined. */
  getBuffer(name: string): Tensor | null | undefined {
    return this.buffers_.get(name)?.tensor;
  }

  /** Direct children with their names, in registration order. */
  *namedChildren(): Generator<[string, Module]> {
    yield* this.modules_.entries();
  }

  /** Direct children, in registration order. */
  children(): Module[] {
    return [...this.modules_.values()];
  }

  /** This module and all its descendants with dotted names (this one is ''). */
  *namedModules(prefix = ''): Generator<[string, Module]> {
    yield [prefix, this];
    for (const [name, m] of this.modules_) yield* m.namedModules(prefix ? `${prefix}.${name}` : name);
  }

  /** This module and all its descendants. */
  modules(): Module[] {
    return [...this.namedModules()].map(([, m]) => m);
  }

  /** Parameters with dotted names, this module's first, then each child's. */
  *namedParameters(prefix = '', recurse = true): Generator<[string, Tensor]> {
    for (const [name, p] of this.params) if (p !== null) yield [prefix ? `${prefix}.${name}` : name, p];
    if (!recurse) return;
    for (const [name, m] of this.modules_) yield* m.namedParameters(prefix ? `${prefix}.${name}` : name);
  }

  /** All parameters. */
  parameters(recurse = true): Tensor[] {
    return [...this.namedParameters('', recurse)].map(([, p]) => p);
  }

  /** Buffers with dotted names. */
  *namedBuffers(prefix = '', recurse = true): Generator<[string, Tensor]> {
    for (const [name, b] of this.buffers_) if (b.tensor !== null) yield [prefix ? `${prefix}.${name}` : name, b.tensor];
    if (!recurse) return;
    for (const [name, m] of this.modules_) yield* m.namedBuffers(prefix ? `${prefix}.${name}` : name);
  }

  /** All buffers. */
  buffers(recurse = true): Tensor[] {
    return [...this.namedBuffers('', recurse)].map(([, b]) => b);
  }

  /** Sets training mode on this module and its descendants. Returns this. */
  train(mode = true): this {
    for (const m of this.modules()) m.training = mode;
    return this;
  }

  /** Sets evaluation mode. Returns this. */
  eval(): this {
    return this.train(false);
  }

  /** Calls `fn` on every descendant, children first, then this module (as PyTorch's apply). Returns this. */
  apply(fn: (m: Module) => void): this {
    for (const m of this.modules_.values()) m.apply(fn);
    fn(this);
    return this;
  }

  /** Turns gradient tracking of all parameters on or off (freezing). Returns this. */
  requiresGrad_(value = true): this {
    for (const p of this.parameters()) p.requiresGrad_(value);
    return this;
  }

  /** Live parameters and persistent buffers by PyTorch key name (no copies). */
  stateDict(prefix = ''): StateDict {
    const out: StateDict = new Map();
    this.collectState(prefix, out);
    return out;
  }

  private collectState(prefix: string, out: StateDict): void {
    for (const [name, p] of this.params) if (p !== null) out.set(prefix + name, p);
    for (const [name, b] of this.buffers_) if (b.tensor !== null && b.persistent) out.set(prefix + name, b.tensor);
    for (const [name, m] of this.modules_) m.collectState(`${prefix}${name}.`, out);
  }

  /**
   * Copies values from a state dict into this module's parameters and buffers.
   * Everything is checked before anything is copied: with `strict` (the default)
   * missing or unexpected keys are an error, and a shape mismatch always is.
   */
  loadStateDict(state: StateDict | Record<string, Tensor>, { strict = true }: { strict?: boolean } = {}): LoadResult {
    const source = state instanceof Map ? state : new Map(Object.entries(state));
    const own = this.stateDict();
    const missingKeys = [...own.keys()].filter((k) => !source.has(k));
    const unexpectedKeys = [...source.keys()].filter((k) => !own.has(k));
    const problems: string[] = [];
    for (const [k, t] of own) {
      const src = source.get(k);
      if (src === undefined) continue;
      const a = t.shape;
      const b = src.shape;
      if (a.length !== b.length || a.some((d, i) => d !== b[i])) {
        problems.push(`size mismatch for ${k}: the checkpoint has [${b.join(', ')}], the model [${a.join(', ')}]`);
      }
    }
    // The first few keys of a list, and how many there are: a whole model's keys would bury the message.
    const some = (keys: string[]): string => `${keys.slice(0, 8).join(', ')}${keys.length > 8 ? `, … (${keys.length} in all)` : ''}`;
    if (strict && missingKeys.length > 0) problems.push(`missing keys: ${some(missingKeys)}`);
    if (strict && unexpectedKeys.length > 0) problems.push(`unexpected keys: ${some(unexpectedKeys)}`);
    if (problems.length > 0) {
      // One line: command-line tools show the first line of an error.
      const shown = problems.length > 6 ? [...problems.slice(0, 6), `… ${problems.length - 6} more`] : problems;
      throw new Error(`Error(s) in loading state dict for ${this.constructor.name}: ${shown.join('; ')}`);
    }
    noGrad(() => {
      for (const [k, t] of own) {
        const src = source.get(k);
        if (src !== undefined) t.copy_(src);
      }
    });
    return { missingKeys, unexpectedKeys };
  }

  /** Changes the memory layout of 4-d parameters and buffers in place (e.g. 'channelsLast'). Returns this. */
  toMemoryFormat(format: MemoryFormat): this {
    noGrad(() => {
      for (const t of [...this.parameters(), ...this.buffers()]) {
        if (t.ndim !== 4) continue;
        const moved = t.contiguous(format);
        t.set_(moved);
        moved.dispose();
      }
    });
    return this;
  }

  /**
   * Moves every parameter and buffer to `device` (`'cpu'`, `'cuda:0'`) in place, as
   * PyTorch's `module.to(device)`: they keep their identity, so do it before an optimizer
   * is made or after, alike. Gradients move with them.
   */
  to(device: string): this {
    noGrad(() => {
      for (const t of [...this.parameters(), ...this.buffers()]) {
        if (t.device === device) continue;
        const moved = t.toDevice(device);
        t.setData_(moved);
        moved.dispose();
      }
    });
    return this;
  }

  /** The device of the first parameter (or buffer); `'cpu'` for a module with neither. */
  get device(): string {
    const first = this.parameters()[0] ?? this.buffers()[0];
    return first ? first.device : 'cpu';
  }

  /** Frees every parameter and buffer; the module is unusable afterwards. */
  dispose(): void {
    for (const t of [...this.parameters(), ...this.buffers()]) if (!t.isDisposed) t.dispose();
  }

  /** An indented tree of the module, as PyTorch prints it. */
  toString(): string {
    const lines = [...this.modules_].map(([name, m]) => `  (${name}): ${m.toString().replace(/\n/g, '\n  ')}`);
    const extra = this.extraRepr();
    if (lines.length === 0) return `${this.constructor.name}(${extra})`;
    return `${this.constructor.name}(${extra}\n${lines.join('\n')}\n)`;
  }

  /** Describes this module's settings for `toString`. */
  protected extraRepr(): string {
    return '';
  }
}
