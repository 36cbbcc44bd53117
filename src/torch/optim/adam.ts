// Adam and AdamW, as torch.optim.Adam / AdamW (PyTorch 1.13's single-tensor path).
import { zerosLike } from '../creation.js';
import { Optimizer, type ParamGroup, type ParamGroupSpec, type ParamState } from './optimizer.js';
import type { Tensor } from '../tensor.js';

/** Adam options. */
export interface AdamOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
  amsgrad?: boolean;
}

function adamStep(opt: { keep(t: Tensor): Tensor }, p: Tensor, grad: Tensor, state: ParamState, g: ParamGroup, decoupled: boolean): void {
  const [beta1, beta2] = g.betas;
  if (state.step === undefined) {
    state.step = 0;
    state.exp_avg = opt.keep(zerosLike(p));
    state.exp_avg_sq = opt.keep(zerosLike(p));
    if (g.amsgrad) state.max_exp_avg_sq = opt.keep(zerosLike(p));
  }
  const step = (state.step as number) + 1;
  state.step = step;
  const decayed = !decoupled && g.weightDecay !== 0 ? grad.add(p, g.weightDecay) : grad;
  if (decoupled) p.mul_(1 - g.lr * g.weightDecay);
  const expAvg = state.exp_avg as Tensor;
  const expAvgSq = state.exp_avg_sq as Tensor;
  expAvg.mul_(beta1).add_(decayed, 1 - beta1);
  expAvgSq.mul_(beta2).addcmul_(decayed, decayed, 1 - beta2);
  if (decayed !== grad) decayed.dispose();
  const bias1 = 1 - beta1 ** step;
  const bias2 = 1 - beta2 ** step;
  const stepSize = g.lr / bias1;
  let second = expAvgSq;
  if (g.amsgrad) {
    const maxSq = state.max_exp_avg_sq as Tensor;
    const m = maxSq.maximum(expAvgSq);
    maxSq.copy_(m);
    m.dispose();
    second = maxSq;
  }
  const denom = second.sqrt().div_(Math.sqrt(bias2)).add_(g.eps);
  p.addcdiv_(expAvg, denom, -stepSize);
  denom.dispose();
}

/** Adam (Kingma & Ba) with L2 weight decay added to the gradient. */
export class Adam extends Optimizer {
  constructor(params: Tensor[] | ParamGroupSpec[], { lr = 1e-3, betas = [0.9, 0.999], eps = 1e-8, weightDecay = 0, amsgrad = false }: AdamOptions = {}) {
    super(params, { lr, betas, eps, weightDecay, amsgrad });
  }
  protected update(p: Tensor, grad: Tensor, state: ParamState, g: ParamGroup): void {
    adamStep({ keep: (t) => this.keepState(t) }, p, grad, state, g, false);
  }
}

/** AdamW (Loshchilov & Hutter): weight decay applied to the weights, decoupled from the gradient. */
export class AdamW extends Optimizer {
  constructor(params: Tensor[] | ParamGroupSpec[], { lr = 1e-3, betas = [0.9, 0.999], eps = 1e-8, weightDecay = 1e-2, amsgrad = false }: AdamOptions = {}) {
    super(params, { lr, betas, eps, weightDecay, amsgrad });
  }
  protected update(p: Tensor, grad: Tensor, state: ParamState, g: ParamGroup): void {
    adamStep({ keep: (t) => this.keepState(t) }, p, grad, state, g, true);
  }
}
