// Loads the C++ addon and describes its functions. Everything above this file
// talks to libtorch through these few generic entry points.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { FastvisionError } from '../util/errors.js';
import { packageRoot } from '../util/package-files.js';

export { packageRoot };

/** The native addon has not been built in this installation: `npx fastvision setup` builds it. */
export class AddonMissingError extends FastvisionError {}

/** An opaque reference to a libtorch tensor owned by JavaScript. */
export type Handle = { readonly __tensorHandle: unique symbol };

/** Values the generic operator call accepts for an argument. */
export type OpArg = Handle | Handle[] | (Handle | null)[] | number | number[] | bigint | boolean | boolean[] | string | null | undefined;

/** Values the generic operator call returns. */
export type OpResult = Handle | null | number | boolean | string | OpResult[];

type IntTypedArray = Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | Int8Array | Int16Array;

/** The addon's exports. */
export interface NativeAddon {
  op(name: string, overload: string): number;
  schema(id: number): string;
  call(id: number, args: OpArg[]): OpResult;
  callVoid(id: number, args: OpArg[]): void;
  fromTypedArray(data: IntTypedArray, shape: number[], asBool?: boolean): Handle;
  toTypedArray(h: Handle): IntTypedArray;
  shape(h: Handle): number[];
  strides(h: Handle): number[];
  dtype(h: Handle): number;
  device(h: Handle): string;
  item(h: Handle): number | boolean;
  isContiguous(h: Handle, memoryFormat?: number): boolean;
  dispose(h: Handle): void;
  isDisposed(h: Handle): boolean;
  requiresGrad(h: Handle): boolean;
  setRequiresGrad(h: Handle, value: boolean): void;
  grad(h: Handle): Handle | null;
  setGrad(h: Handle, g: Handle | null): void;
  isLeaf(h: Handle): boolean;
  setData(h: Handle, source: Handle): void;
  backward(h: Handle, gradient?: Handle | null, retainGraph?: boolean): void;
  setGradEnabled(enabled: boolean): boolean;
  isGradEnabled(): boolean;
  manualSeed(seed: number | bigint): void;
  getRngState(): Handle;
  setRngState(state: Handle): void;
  setNumThreads(n: number): void;
  getNumThreads(): number;
  liveHandles(): number;
  heapStats(): { inUse: number; free: number };
  cudaAvailable(): boolean;
  cudaInfo(): { available: boolean; deviceCount: number; devices: { name: string }[]; cudnn: number; cudaRuntime: number; config: string };
  cudaMemory(index: number): { free: number; total: number } | null;
  cudaSynchronize(index: number): void;
  autocastEnter(deviceType: 'cpu' | 'cuda', dtype: number): [boolean, number];
  autocastExit(deviceType: 'cpu' | 'cuda', wasEnabled: boolean, previousDtype: number): void;
  buildInfo(): { torchVersion: string; cudaLinked: boolean; napiVersion: number; config: string; parallel: string; cpuZeroFillAvailable: boolean };
  cpuZeroFill(on?: boolean): boolean;
  loadedLibraries(): string[];
  version(): string;
  sameStorage(a: Handle, b: Handle): boolean;
}

function load(): NativeAddon {
  // Lets a deployment prove that a path (serving through onnxruntime) never needs libtorch.
  if (process.env.FASTVISION_NO_LIBTORCH === '1') throw new Error('fastvision: libtorch is disabled here (FASTVISION_NO_LIBTORCH=1)');
  const root = packageRoot();
  const file = join(root, 'build', 'Release', 'fastvision.node');
  if (!existsSync(file)) {
    throw new AddonMissingError(
      `fastvision: the native addon is not built (${file} is missing): npm's install scripts did not run, or found no libtorch. Run \`npx fastvision setup\` (or \`npm rebuild fastvision\`) in your project; it needs libtorch (docs/INSTALL.md).`,
    );
  }
  const require = createRequire(import.meta.url);
  const addon = require(file) as NativeAddon;
  const fromEnv = Number(process.env.FASTVISION_NUM_THREADS ?? process.env.OMP_NUM_THREADS);
  // Debian's libtorch starts with a single thread; use every core unless told otherwise.
  addon.setNumThreads(Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : availableParallelism());
  return addon;
}

let loaded: NativeAddon | null = null;

/**
 * The addon, loaded on first use rather than on import: commands that never touch
 * a tensor (serving an ONNX file) run on machines without libtorch.
 */
export const native: NativeAddon = new Proxy({} as NativeAddon, {
  // The addon's functions are plain N-API functions: they do not use `this`.
  // eslint-disable-next-line @typescript-eslint/unbound-method
  get: (_, key) => (loaded ??= load())[key as keyof NativeAddon],
});
