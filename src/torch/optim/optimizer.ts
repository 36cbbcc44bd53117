// Optimizer: parameter groups that each carry their own hyperparameters
// (differential learning rates set one lr per group), and per-parameter state.
import { noGrad } from '../autograd.js';
import { dispose, keep, tidy } from '../scope.js';
import type { Tensor } from '../tensor.js';

/** Hyperparameters a group may carry; each optimizer reads the ones it uses. */
export interface Hyperparameters {
  lr: number;
  weightDecay: number;
  momentum: number;
  dampening: number;
  nesterov: boolean;
  betas: [number, number];
  eps: number;
  amsgrad: boolean;
}

/** A group of parameters sharing hyperparameters. */
export interface ParamGroup extends Hyperparameters {
  params: Tensor[];
}

/** How a caller describes a group: its parameters and any hyperparameters that differ from the defaults. */
export type ParamGroupSpec = { params: Tensor[] } & Partial<Hyperparameters>;

/** Per-parameter state: tensors (momentum buffers, moments) and counters. */
export type ParamState = Record<string, Tensor | number>;

/** An optimizer's state in PyTorch's layout: state by parameter index, groups listing indices. */
export interface OptimizerStateDict {
  state: Map<number, ParamState>;
  paramGroups: (Omit<ParamGroup, 'params'> & { params: number[] })[];
}

const BASE_DEFAULTS: Hyperparameters = {
  lr: 1e-3,
  weightDecay: 0,
  momentum: 0,
  dampening: 0,
  nesterov: false,
  betas: [0.9, 0.999],
  eps: 1e-8,
  amsgrad: false,
};

/** Base class of optimizers: groups, state, zeroGrad, state dicts. Subclasses implement `update`. */
export abstract class Optimizer {
  readonly paramGroups: ParamGroup[] = [];
  readonly state = new Map<Tensor, ParamState>();
  readonly defaults: Hyperparameters;

  constructor(params: Tensor[] | ParamGroupSpec[], defaults: Partial<Hyperparameters>) {
    this.defaults = { ...BASE_DEFAULTS, ...defaults };
    const specs: ParamGroupSpec[] = params.length > 0 && isSpec(params[0]) ? (params as ParamGroupSpec[]) : [{ params: params as Tensor[] }];
    if (specs.length === 0) throw new Error('optimizer got an empty parameter list');
    for (const s of specs) this.addParamGroup(s);
  }

  /** Adds a group; hyperparameters it does not give come from the defaults. */
  addParamGroup(spec: ParamGroupSpec): void {
    const seen = new Set(this.paramGroups.flatMap((g) => g.params));
    for (const p of spec.params) {
      if (seen.has(p)) throw new Error('some parameters appear in more than one parameter group');
    }
    const group: ParamGroup = { ...this.defaults, ...stripUndefined(spec), params: [...spec.params] };
    if (!(group.lr >= 0)) throw new RangeError(`invalid learning rate: ${group.lr}`);
    if (!(group.weightDecay >= 0)) throw new RangeError(`invalid weight decay: ${group.weightDecay}`);
    this.paramGroups.push(group);
  }

  /** Clears gradients; by default sets them to null, which saves a pass over memory. */
  zeroGrad({ setToNone = true }: { setToNone?: boolean } = {}): void {
    for (const g of this.paramGroups) {
      for (const p of g.params) {
        if (setToNone) {
          p.grad = null;
        } else {
          const grad = p.grad;
          if (grad !== null) {
            grad.zero_();
            grad.dispose();
          }
        }
      }
    }
  }

  /** Updates every parameter that has a gradient. */
  step(): void {
    tidy(() =>
      noGrad(() => {
        for (const group of this.paramGroups) {
          for (const p of group.params) {
            const grad = p.grad;
            if (grad === null) continue;
            let st = this.state.get(p);
            if (st === undefined) {
              st = {};
              this.state.set(p, st);
            }
            this.update(p, grad, st, group);
            grad.dispose();
          }
        }
      }),
    );
  }

  /** Updates one parameter in place from its gradient; tensors put in `state` must be passed to `keepState`. */
  protected abstract update(param: Tensor, grad: Tensor, state: ParamState, group: ParamGroup): void;

  /** Marks a tensor as optimizer state, so the step's scope does not free it. */
  protected keepState(t: Tensor): Tensor {
    return keep(t);
  }

  /** The state in PyTorch's layout (tensors are live, not copies). */
  stateDict(): OptimizerStateDict {
    const index = new Map<Tensor, number>();
    const paramGroups = this.paramGroups.map((g) => {
      const { params, ...hyper } = g;
      return {
        ...hyper,
        params: params.map((p) => {
          if (!index.has(p)) index.set(p, index.size);
          return index.get(p)!;
        }),
      };
    });
    const state = new Map<number, ParamState>();
    for (const [p, s] of this.state) {
      const i = index.get(p);
      if (i !== undefined) state.set(i, s);
    }
    return { state, paramGroups };
  }

  /** Restores hyperparameters and state saved by `stateDict` for the same parameter layout. */
  loadStateDict(sd: OptimizerStateDict): void {
    if (sd.paramGroups.length !== this.paramGroups.length) {
      throw new Error(`optimizer state has ${sd.paramGroups.length} parameter groups, this optimizer ${this.paramGroups.length}`);
    }
    const byIndex = new Map<number, Tensor>();
    sd.paramGroups.forEach((saved, gi) => {
      const group = this.paramGroups[gi]!;
      if (saved.params.length !== group.params.length) {
        throw new Error(`parameter group ${gi} has ${saved.params.length} parameters in the saved state, ${group.params.length} here`);
      }
      saved.params.forEach((idx, j) => byIndex.set(idx, group.params[j]!));
    });
    sd.paramGroups.forEach((saved, gi) => {
      const { params: _ignored, ...hyper } = saved;
      Object.assign(this.paramGroups[gi]!, hyper);
    });
    for (const s of this.state.values()) dispose(s);
    this.state.clear();
    noGrad(() => {
      for (const [idx, s] of sd.state) {
        const p = byIndex.get(idx);
        if (p === undefined) continue;
        const copy: ParamState = {};
        // As PyTorch's load_state_dict: the state goes to its parameter's device (a CPU checkpoint resumes on CUDA, and back).
        for (const [k, v] of Object.entries(s)) copy[k] = typeof v === 'number' ? v : keep(v.device === p.device ? v.clone() : v.toDevice(p.device));
        this.state.set(p, copy);
      }
    });
  }

  /** Frees all optimizer state. */
  dispose(): void {
    for (const s of this.state.values()) dispose(s);
    this.state.clear();
  }
}

function isSpec(x: unknown): x is ParamGroupSpec {
  return typeof x === 'object' && x !== null && 'params' in x && Array.isArray(x.params);
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
