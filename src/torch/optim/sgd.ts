// Stochastic gradient descent with momentum, as torch.optim.SGD.
import { Optimizer, type ParamGroup, type ParamGroupSpec, type ParamState } from './optimizer.js';
import type { Tensor } from '../tensor.js';

/** SGD options: lr, momentum, dampening, weightDecay, nesterov. */
export interface SGDOptions {
  lr: number;
  momentum?: number;
  dampening?: number;
  weightDecay?: number;
  nesterov?: boolean;
}

/** SGD with optional momentum, Nesterov momentum and L2 weight decay, identical in arithmetic to PyTorch's. */
export class SGD extends Optimizer {
  constructor(params: Tensor[] | ParamGroupSpec[], { lr, momentum = 0, dampening = 0, weightDecay = 0, nesterov = false }: SGDOptions) {
    if (nesterov && (momentum <= 0 || dampening !== 0)) throw new Error('Nesterov momentum requires a momentum and zero dampening');
    super(params, { lr, momentum, dampening, weightDecay, nesterov });
  }

  protected update(p: Tensor, grad: Tensor, state: ParamState, g: ParamGroup): void {
    // Temporaries are freed as soon as they are used, so the allocator reuses
    // their memory within the step instead of faulting in fresh pages.
    const d = g.weightDecay !== 0 ? grad.add(p, g.weightDecay) : grad;
    if (g.momentum === 0) {
      p.add_(d, -g.lr);
    } else {
      let buf = state.momentum_buffer as Tensor | undefined;
      if (buf === undefined) {
        buf = this.keepState(d.clone().detach());
        state.momentum_buffer = buf;
      } else {
        buf.mul_(g.momentum).add_(d, 1 - g.dampening);
      }
      if (g.nesterov) {
        const n = d.add(buf, g.momentum);
        p.add_(n, -g.lr);
        n.dispose();
      } else {
        p.add_(buf, -g.lr);
      }
    }
    if (d !== grad) d.dispose();
  }
}
