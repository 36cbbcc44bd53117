// Autograd switches and global engine settings.
import { native } from './native.js';
import { Tensor } from './tensor.js';

function withGradMode<T>(enabled: boolean, fn: () => T): T {
  const prev = native.setGradEnabled(enabled);
  try {
    return fn();
  } finally {
    native.setGradEnabled(prev);
  }
}

/** Runs `fn` with gradient recording off (torch.no_grad), restoring the previous mode after. */
export function noGrad<T>(fn: () => T): T {
  return withGradMode(false, fn);
}

/** Runs `fn` with gradient recording on (torch.enable_grad). */
export function enableGrad<T>(fn: () => T): T {
  return withGradMode(true, fn);
}

/** Whether operations are being recorded for autograd. */
export function isGradEnabled(): boolean {
  return native.isGradEnabled();
}

/** Seeds libtorch's random generator (torch.manual_seed). */
export function manualSeed(seed: number): void {
  native.manualSeed(seed);
}

/** The CPU generator's state (torch.get_rng_state): a uint8 tensor, owned by the caller. */
export function getRngState(): Tensor {
  return new Tensor(native.getRngState());
}

/** Restores a state from `getRngState` (torch.set_rng_state): the same random draws follow. */
export function setRngState(state: Tensor): void {
  native.setRngState(state.handle);
}

/** Sets the number of threads libtorch's operators use. */
export function setNumThreads(n: number): void {
  native.setNumThreads(n);
}

/** The number of threads libtorch's operators use. */
export function getNumThreads(): number {
  return native.getNumThreads();
}

/** Tensor handles alive in native memory (not yet disposed or collected); for leak checks. */
export function liveTensorCount(): number {
  return native.liveHandles();
}

/** Whether this libtorch can use a CUDA device. */
export function cudaAvailable(): boolean {
  return native.cudaAvailable();
}

/** The libtorch version the addon was built against. */
export function libtorchVersion(): string {
  return native.version();
}
