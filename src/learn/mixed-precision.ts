// Mixed precision, as fastai's `to_fp16` and PyTorch's AMP: the forward pass and the
// loss run under libtorch's autocast (matrix products and convolutions in bf16 or fp16,
// the rest in float32, the weights staying float32), and for fp16 a GradScaler keeps
// small gradients from underflowing: the loss is multiplied by a scale before backward,
// the gradients divided by it before the step, a step whose gradients are not finite is
// skipped and the scale halved, and after `growthInterval` good steps it doubles.
import { autocast, DeviceUnavailableError, deviceType, full, libtorchVersion, noGrad, Tensor, zeros, type AutocastDtype, type optim } from '../torch/index.js';
import { callVoidOp, callTensorOp } from '../torch/ops.js';
import { CancelStepError, type Callback, type Loop } from './loop.js';

/** The precisions a user may ask for: bf16 (no scaler needed) or fp16 (with a GradScaler). */
export type MixedPrecisionMode = 'bf16' | 'fp16';

/** GradScaler's settings, with PyTorch's defaults. */
export interface GradScalerOptions {
  /** The first scale (default 2^16). */
  initScale?: number;
  /** What the scale is multiplied by after `growthInterval` steps without inf or NaN (default 2). */
  growthFactor?: number;
  /** What the scale is multiplied by after a step with inf or NaN gradients (default 0.5). */
  backoffFactor?: number;
  /** Good steps in a row before the scale grows (default 2000). */
  growthInterval?: number;
  /**
   * Use ATen's `_amp_foreach_non_finite_check_and_unscale_` and `_amp_update_scale_` (the
   * default where this libtorch has them for the device: CUDA, and the CPU from 2.3), or
   * the same arithmetic in separate tensor operations ('ops'), as libtorch 1.13's CPU needs.
   */
  kernels?: 'aten' | 'ops' | 'auto';
}

/** Whether ATen's AMP kernels run on this device kind with this libtorch (CUDA always; the CPU from 2.3). */
function atenKernelsFor(device: string): boolean {
  if (deviceType(device) === 'cuda') return true;
  const [major, minor] = libtorchVersion()
    .split('.')
    .map((v) => Number.parseInt(v, 10)) as [number, number];
  return major > 2 || (major === 2 && minor >= 3);
}

/**
 * Dynamic loss scaling, step for step as PyTorch's `torch.amp.GradScaler`:
 * `scale(loss)` before backward, `unscale(opt)` before the step (true when the
 * gradients hold inf or NaN and the step must be skipped), `update()` after it.
 */
export class GradScaler {
  readonly growthFactor: number;
  readonly backoffFactor: number;
  readonly growthInterval: number;
  /** Whether ATen's kernels do the work (else separate tensor operations). */
  readonly aten: boolean;
  private readonly scaleT: Tensor;
  private readonly tracker: Tensor;
  private readonly foundInf: Tensor;

  constructor(
    readonly device: string,
    { initScale = 2 ** 16, growthFactor = 2, backoffFactor = 0.5, growthInterval = 2000, kernels = 'auto' }: GradScalerOptions = {},
  ) {
    if (!(initScale > 0 && Number.isFinite(initScale))) throw new RangeError(`GradScaler: initScale must be a positive number, got ${initScale}`);
    if (!(growthFactor > 1)) throw new RangeError(`GradScaler: growthFactor must be above 1, got ${growthFactor}`);
    if (!(backoffFactor > 0 && backoffFactor < 1)) throw new RangeError(`GradScaler: backoffFactor must be between 0 and 1, got ${backoffFactor}`);
    if (!(Number.isInteger(growthInterval) && growthInterval >= 1)) throw new RangeError(`GradScaler: growthInterval must be a positive integer, got ${growthInterval}`);
    this.growthFactor = growthFactor;
    this.backoffFactor = backoffFactor;
    this.growthInterval = growthInterval;
    this.aten = kernels === 'aten' || (kernels === 'auto' && atenKernelsFor(device));
    this.scaleT = full([1], initScale, { device });
    this.tracker = zeros([1], { dtype: 'int32', device });
    this.foundInf = zeros([1], { device });
  }

  /** The current scale. */
  get scale(): number {
    return this.scaleT.item();
  }

  /** Good steps since the scale last changed. */
  get growthTracker(): number {
    return this.tracker.item();
  }

  /** `loss` times the scale (what backward runs on). */
  scaleLoss(loss: Tensor): Tensor {
    return loss.mul(this.scaleT);
  }

  /**
   * Divides every gradient of `opt`'s parameters by the scale, in place, and returns
   * whether any of them held inf or NaN (then the step must be skipped).
   */
  unscale(opt: optim.Optimizer): boolean {
    const grads = opt.paramGroups.flatMap((g) => g.params.map((p) => p.grad).filter((t): t is Tensor => t !== null));
    noGrad(() => {
      this.foundInf.zero_();
      // PyTorch computes the inverse in double, then rounds it to float.
      const inv = this.scaleT.to('float64').reciprocal();
      const invScale = inv.to('float32');
      inv.dispose();
      try {
        if (grads.length > 0 && this.aten) callVoidOp('aten::_amp_foreach_non_finite_check_and_unscale_', [grads.map((g) => g.handle), this.foundInf.handle, invScale.handle]);
        else if (grads.length > 0) this.unscaleWithOps(grads, invScale);
      } finally {
        invScale.dispose();
      }
    });
    for (const g of grads) g.dispose();
    return this.foundInf.item() !== 0;
  }

  private unscaleWithOps(grads: Tensor[], invScale: Tensor): void {
    for (const g of grads) {
      const finite = new Tensor(callTensorOp('aten::isfinite', [g.handle]));
      const all = new Tensor(callTensorOp('aten::all', [finite.handle]));
      if (!all.item()) this.foundInf.fill_(1);
      all.dispose();
      finite.dispose();
      g.mul_(invScale);
    }
  }

  /** After a step (taken or skipped): backs the scale off when inf or NaN was found, or grows it after `growthInterval` good steps. */
  update(): void {
    noGrad(() => {
      if (this.aten) {
        callVoidOp('aten::_amp_update_scale_', [this.scaleT.handle, this.tracker.handle, this.foundInf.handle, this.growthFactor, this.backoffFactor, this.growthInterval]);
        return;
      }
      // ATen's rule: back off on inf or NaN; else count, and grow (if still finite) at the interval.
      let scale = this.scaleT.item();
      let good = this.tracker.item();
      if (this.foundInf.item() !== 0) {
        scale = Math.fround(scale * this.backoffFactor);
        good = 0;
      } else if (good + 1 === this.growthInterval) {
        const grown = Math.fround(scale * this.growthFactor);
        if (Number.isFinite(grown)) scale = grown;
        good = 0;
      } else good += 1;
      this.scaleT.fill_(scale);
      this.tracker.fill_(good);
    });
  }

  /** The scale and the good-step count, for a checkpoint. */
  state(): { scale: number; growthTracker: number } {
    return { scale: this.scale, growthTracker: this.growthTracker };
  }

  /** Continues from `state()`. */
  restore(s: { scale: number; growthTracker: number }): void {
    if (!(typeof s?.scale === 'number' && s.scale > 0 && Number.isInteger(s.growthTracker) && s.growthTracker >= 0)) throw new Error('GradScaler: the checkpoint holds no scale');
    this.scaleT.fill_(s.scale);
    this.tracker.fill_(s.growthTracker);
  }

  /** Frees the scaler's tensors. */
  dispose(): void {
    for (const t of [this.scaleT, this.tracker, this.foundInf]) t.dispose();
  }
}

/** The dtype autocast computes in for a mode. */
export function autocastDtype(mode: MixedPrecisionMode): AutocastDtype {
  if (mode === 'bf16') return 'bfloat16';
  if (mode === 'fp16') return 'float16';
  throw new RangeError(`mixed precision must be 'bf16' or 'fp16', got '${String(mode)}'`);
}

/** Throws (a DeviceUnavailableError: exit code 2 on the command line) when this libtorch cannot run `mode` on `device`; returns autocast's dtype for it. */
export function checkMixedPrecision(mode: MixedPrecisionMode, device: string): AutocastDtype {
  const dtype = autocastDtype(mode);
  if (mode === 'fp16' && deviceType(device) === 'cpu' && Number.parseInt(libtorchVersion(), 10) < 2) {
    throw new DeviceUnavailableError(`mixed precision fp16 on the CPU needs libtorch 2.x (this is ${libtorchVersion()}, whose CPU autocast knows only bf16): use bf16`);
  }
  return dtype;
}

/**
 * The loop callback of mixed precision (fastai's MixedPrecision): the forward pass
 * and loss under autocast on `device` in `mode`'s dtype; for fp16, a GradScaler around
 * backward and the step. Runs after distributed training's gradient reduction, so that
 * every rank sees the same inf or NaN and skips the same steps.
 */
export class MixedPrecision implements Callback {
  readonly order = 8;
  readonly name = 'MixedPrecision';
  readonly dtype: AutocastDtype;
  /** The loss scaler (fp16 only). */
  scaler: GradScaler | null = null;
  /** Steps skipped because the scaled gradients were not finite. */
  skipped = 0;
  private stepping = false;
  private pending: { scale: number; growthTracker: number } | null = null;

  constructor(
    readonly mode: MixedPrecisionMode,
    readonly device: string,
    private readonly scalerOptions: GradScalerOptions = {},
  ) {
    this.dtype = checkMixedPrecision(mode, device);
  }

  beforeFit(loop: Loop): void {
    loop.forwardContext = <T>(fn: () => T): T => autocast(this.device, this.dtype, fn);
    if (this.mode === 'fp16') {
      this.scaler = new GradScaler(this.device, this.scalerOptions);
      if (this.pending) this.scaler.restore(this.pending);
    }
  }

  afterLoss(loop: Loop): void {
    if (!this.scaler) return;
    const scaled = this.scaler.scaleLoss(loop.loss!);
    loop.loss!.dispose();
    loop.loss = scaled;
  }

  beforeStep(loop: Loop): void {
    if (!this.scaler) return;
    this.stepping = true;
    if (this.scaler.unscale(loop.opt)) {
      // PyTorch's scaler.step skips the optimizer; the gradients are dropped as zero_grad would.
      this.skipped++;
      loop.opt.zeroGrad();
      throw new CancelStepError();
    }
  }

  afterBatch(): void {
    // Only where a step was due: under gradient accumulation the scale stays put between micro-batches.
    if (!this.scaler || !this.stepping) return;
    this.stepping = false;
    this.scaler.update();
  }

  afterFit(loop: Loop): void {
    loop.forwardContext = null;
    if (this.scaler) this.pending = this.scaler.state();
    this.scaler?.dispose();
    this.scaler = null;
  }

  state(): unknown {
    return this.scaler ? { ...this.scaler.state(), skipped: this.skipped } : null;
  }

  restore(s: unknown): void {
    const r = s as { scale: number; growthTracker: number; skipped?: number } | null;
    if (!r) return;
    this.pending = { scale: r.scale, growthTracker: r.growthTracker };
    this.skipped = r.skipped ?? 0;
    this.scaler?.restore(this.pending);
  }
}
