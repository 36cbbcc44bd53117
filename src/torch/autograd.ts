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

/** The C heap as the allocator sees it, in bytes; -1 where it cannot tell (a C library other than glibc). */
export interface NativeHeapStats {
  /** Bytes allocated and not yet freed: what a leak makes grow. */
  inUse: number;
  /** Bytes freed but kept by the allocator for reuse: what warm-up makes grow. */
  free: number;
}

/**
 * The native heap's bytes in use and held free, from glibc's `mallinfo2`; for telling a
 * leak (bytes in use grow) from an allocator that keeps more memory for reuse (RSS grows).
 */
export function nativeHeapStats(): NativeHeapStats {
  return native.heapStats();
}

/** Whether this libtorch can use a CUDA device. */
export function cudaAvailable(): boolean {
  return native.cudaAvailable();
}

/** The libtorch version the addon was built against. */
export function libtorchVersion(): string {
  return native.version();
}
