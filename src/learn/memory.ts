// Will a batch fit? fast.ai's advice for running out of memory — use a smaller
// batch — automated: before training starts, estimate the memory one training
// step takes (the activations autograd keeps, measured on one image, and the
// weights with their gradients and optimizer state) against what the machine
// has, and stop early with the batch size that fits.
import { readFileSync } from 'node:fs';
import { freemem } from 'node:os';
import { deviceMemory, noGrad, randn, type nn } from '../torch/index.js';
import { FastvisionError, InputError } from '../util/errors.js';

/** Activation elements one image produces: in all (what backward keeps) and in the largest layer. */
export function activationsPerImage(model: nn.Module, size: number): { total: number; largest: number } {
  let total = 0;
  let largest = 0;
  const leaves = model.modules().filter((m) => m.children().length === 0);
  const patched = leaves.map((m) => {
    const forward = m.forward.bind(m);
    Object.defineProperty(m, 'forward', {
      configurable: true,
      value: (x: Parameters<typeof forward>[0]) => {
        const y = forward(x);
        total += y.numel;
        largest = Math.max(largest, y.numel);
        return y;
      },
    });
    return m;
  });
  const wasTraining = model.training;
  model.eval();
  try {
    const x = randn([1, 3, size, size], { device: model.parameters()[0]?.device ?? 'cpu' });
    noGrad(() => model.forward(x).dispose());
    x.dispose();
  } finally {
    for (const m of patched) delete (m as { forward?: unknown }).forward;
    if (wasTraining) model.train();
  }
  return { total, largest };
}

/**
 * Memory this process may still use, in bytes. On a CUDA device, the device's free
 * memory (and FASTVISION_MEMORY_LIMIT). On the CPU, the smallest of the kernel's
 * MemAvailable, the cgroup's limit less its usage, and FASTVISION_MEMORY_LIMIT.
 */
export function availableMemory(device = 'cpu'): number {
  const candidates: number[] = [];
  const env = Number(process.env.FASTVISION_MEMORY_LIMIT);
  if (Number.isFinite(env) && env > 0) candidates.push(env);
  if (device !== 'cpu') {
    const gpu = deviceMemory(device);
    if (gpu) candidates.push(gpu.free);
    return candidates.length > 0 ? Math.max(0, Math.min(...candidates)) : Number.POSITIVE_INFINITY;
  }
  try {
    const m = /MemAvailable:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'));
    if (m) candidates.push(Number(m[1]) * 1024);
  } catch {
    candidates.push(freemem());
  }
  try {
    const max = readFileSync('/sys/fs/cgroup/memory.max', 'utf8').trim();
    const current = Number(readFileSync('/sys/fs/cgroup/memory.current', 'utf8').trim());
    if (max !== 'max') candidates.push(Number(max) - current);
  } catch {
    // no cgroup v2 limit
  }
  return Math.max(0, Math.min(...candidates));
}

/** A batch size too large for this machine's memory, with the one to use instead. */
export class BatchTooLargeError extends InputError {
  constructor(
    message: string,
    /** The largest power-of-two batch size that fits (0 when not even one image does). */
    readonly suggestedBs: number,
  ) {
    super(message);
  }
}

/**
 * The device ran out of memory during training (CUDA's "out of memory", or the CPU
 * allocator's): fast.ai's advice, a smaller batch, with the batch size to try.
 */
export class OutOfMemoryError extends FastvisionError {
  constructor(
    message: string,
    /** Half the batch size that ran out, as a power of two (0 when it was already 1). */
    readonly suggestedBs: number,
  ) {
    super(message);
  }
}

/** The OutOfMemoryError for `cause`, raised while training at batch size `bs` on `device`. */
export function outOfMemory(cause: unknown, bs: number, device: string): OutOfMemoryError {
  const first = (cause instanceof Error ? cause.message : String(cause)).split('\n')[0]!.slice(0, 300);
  const suggested = bs > 1 ? 2 ** Math.floor(Math.log2(bs / 2)) : 0;
  const advice = suggested > 0 ? `the lesson's advice is a smaller batch: try --bs ${suggested}` : 'not even a batch of one image fits: try a smaller --size or a smaller architecture';
  return new OutOfMemoryError(`out of memory on ${device} while training at batch size ${bs} (${first}); ${advice}`, suggested);
}

const GiB = 2 ** 30;
/** Bytes of a training step per activation element one image produces: float32, plus what backward holds at its peak (measured: 1.1–1.7×). */
const BYTES_PER_ELEMENT_TRAINING = 4 * 1.75;

/**
 * The bytes a training step at `bs` takes, roughly: with `unfrozen`, every layer's
 * activations are kept for backward; frozen, only a few layers' at a time.
 */
export function trainingStepBytes(model: nn.Module, size: number, bs: number, unfrozen: boolean): { total: number; perImage: number; fixed: number } {
  const act = activationsPerImage(model, size);
  const params = model.parameters().reduce((n, p) => n + p.numel, 0);
  // Weights, gradients, momentum, and the guard's copy of the last good weights.
  const fixed = 4 * 4 * params;
  const perImage = unfrozen ? act.total * BYTES_PER_ELEMENT_TRAINING : act.largest * 4 * 3;
  return { total: fixed + bs * perImage, perImage, fixed };
}

/**
 * Throws a BatchTooLargeError when a training step at `bs` would need more than
 * 90% of the memory available on the model's device (the machine's, or the GPU's
 * free memory), naming the batch size that fits.
 */
export function checkBatchFits(model: nn.Module, { arch, size, bs, unfrozen }: { arch: string; size: number; bs: number; unfrozen: boolean }): void {
  const { total, perImage, fixed } = trainingStepBytes(model, size, bs, unfrozen);
  const device = model.parameters()[0]?.device ?? 'cpu';
  const budget = 0.9 * availableMemory(device);
  if (total <= budget) return;
  const fits = Math.floor((budget - fixed) / perImage);
  const suggested = fits >= 1 ? 2 ** Math.floor(Math.log2(fits)) : 0;
  const need = `batch size ${bs} at ${size} px needs about ${(total / GiB).toFixed(1)} GiB to train ${arch}${unfrozen ? ' unfrozen' : ''}, and ${(budget / 0.9 / GiB).toFixed(1)} GiB is available${device === 'cpu' ? '' : ` on ${device}`}`;
  throw new BatchTooLargeError(suggested > 0 ? `${need}: try --bs ${suggested}` : `${need}, not enough for even one image: try a smaller --size`, suggested);
}
