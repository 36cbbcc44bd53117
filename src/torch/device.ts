// Devices: which ones this libtorch can use, turning a user's `--device` into one,
// CUDA's memory and synchronisation, and autocast regions (mixed precision).
import { native } from './native.js';
import { dtypeCode, dtypeName, type DType } from './dtype.js';
import { InputError } from '../util/errors.js';

/** What a user may ask for: `auto` (CUDA when there is one), `cpu`, `cuda` or `cuda:N`. */
export type DeviceSpec = 'auto' | 'cpu' | 'cuda' | `cuda:${number}`;

/** A device was asked for that this machine or this libtorch does not have; names `fastvision doctor`. */
export class DeviceUnavailableError extends InputError {}

/** One CUDA device as the CUDA runtime describes it. */
export interface CudaDevice {
  index: number;
  /** e.g. 'NVIDIA H100 80GB HBM3' ('' when the runtime could not be asked). */
  name: string;
}

/** CUDA as this process's libtorch sees it. */
export interface CudaInfo {
  /** Whether libtorch has CUDA and sees at least one device. */
  available: boolean;
  devices: CudaDevice[];
  /** cuDNN's version as libtorch reports it (e.g. 91002), or null. */
  cudnn: number | null;
  /** The CUDA runtime's version (e.g. 13000), or null. */
  cudaRuntime: number | null;
}

/** The CUDA devices this libtorch can use (none with a CPU libtorch). */
export function cudaInfo(): CudaInfo {
  const i = native.cudaInfo();
  return {
    available: i.available,
    devices: i.devices.map((d, index) => ({ index, name: d.name })),
    cudnn: i.cudnn >= 0 ? i.cudnn : null,
    cudaRuntime: i.cudaRuntime >= 0 ? i.cudaRuntime : null,
  };
}

const CUDA_INDEX = /^cuda:(0|[1-9][0-9]{0,3})$/;

/** Whether `s` is a device a user may ask for (without checking that it is there). */
export function isDeviceSpec(s: string): s is DeviceSpec {
  return s === 'auto' || s === 'cpu' || s === 'cuda' || CUDA_INDEX.test(s);
}

/**
 * The device to run on for what the user asked: `'cpu'` or `'cuda:N'`. `auto` is CUDA
 * when this libtorch has a device and the CPU otherwise; `cuda` is device `localRank`
 * (one rank per GPU under `--nproc`, as torchrun's LOCAL_RANK). Anything this machine
 * lacks is a DeviceUnavailableError in one line, naming `fastvision doctor`.
 */
export function resolveDevice(spec: string | undefined, localRank = 0): string {
  const s = spec ?? 'auto';
  if (!isDeviceSpec(s)) throw new DeviceUnavailableError(`--device must be auto, cpu, cuda or cuda:N, got '${s}'`);
  if (s === 'cpu') return 'cpu';
  const info = cudaInfo();
  if (s === 'auto') return info.available ? `cuda:${localRank % info.devices.length}` : 'cpu';
  if (!info.available) {
    const why = native.buildInfo().cudaLinked ? 'this libtorch has CUDA but sees no GPU (driver, CUDA_VISIBLE_DEVICES)' : `this libtorch (${native.version()}) is built without CUDA`;
    throw new DeviceUnavailableError(`--device ${s}: no CUDA device here: ${why}; run \`fastvision doctor\` to see what was found`);
  }
  const index = s === 'cuda' ? localRank : Number(s.slice(5));
  if (index >= info.devices.length)
    throw new DeviceUnavailableError(
      `--device ${s === 'cuda' ? `cuda (local rank ${localRank})` : s}: this machine has ${info.devices.length} CUDA device${info.devices.length === 1 ? '' : 's'} (cuda:0${info.devices.length > 1 ? `…cuda:${info.devices.length - 1}` : ''}); run \`fastvision doctor\` to list them`,
    );
  return `cuda:${index}`;
}

/** `'cpu'` or `'cuda'`: the kind of a device string such as `'cuda:1'`. */
export function deviceType(device: string): 'cpu' | 'cuda' {
  if (device === 'cpu') return 'cpu';
  if (device === 'cuda' || device.startsWith('cuda:')) return 'cuda';
  throw new DeviceUnavailableError(`unknown device '${device}' (expected cpu, cuda or cuda:N)`);
}

/** The index of a CUDA device string (`'cuda'` is 0), or null for the CPU. */
export function deviceIndex(device: string): number | null {
  if (deviceType(device) === 'cpu') return null;
  return device === 'cuda' ? 0 : Number(device.slice(5));
}

/** A CUDA device's free and total memory in bytes (the CUDA runtime's cudaMemGetInfo), or null on the CPU or where it cannot be read. */
export function deviceMemory(device: string): { free: number; total: number } | null {
  const index = deviceIndex(device);
  return index === null ? null : native.cudaMemory(index);
}

/** Waits for the device's queued work (timing on CUDA); nothing on the CPU. */
export function synchronize(device: string): void {
  const index = deviceIndex(device);
  if (index !== null) native.cudaSynchronize(index);
}

/** The dtypes autocast can compute in. */
export type AutocastDtype = 'bfloat16' | 'float16';

/**
 * Runs `fn` with libtorch's autocast on for the device's kind (PyTorch's
 * `torch.autocast(device_type, dtype)`): matrix products and convolutions in `dtype`,
 * reductions and losses in float32. Regions nest; the previous setting comes back after.
 */
export function autocast<T>(device: string, dtype: AutocastDtype, fn: () => T): T {
  const kind = deviceType(device);
  const [was, prev] = native.autocastEnter(kind, dtypeCode(dtype));
  try {
    return fn();
  } finally {
    native.autocastExit(kind, was, prev);
  }
}

/** Whether autocast would change dtypes on this device kind now, and to what (for tests and diagnostics). */
export function autocastState(device: string): { enabled: boolean; dtype: DType } {
  const kind = deviceType(device);
  const [was, prev] = native.autocastEnter(kind, dtypeCode('bfloat16'));
  native.autocastExit(kind, was, prev);
  return { enabled: was, dtype: dtypeName(prev) };
}

/** Whether an error is an out-of-memory failure of a device allocation (CUDA's, or the CPU allocator's). */
export function isOutOfMemory(e: unknown): boolean {
  const m = e instanceof Error ? e.message : String(e);
  return /CUDA out of memory|out of memory|DefaultCPUAllocator: can't allocate memory|not enough memory/i.test(m);
}
