// --device and --mixed-precision, shared by every command that runs a network.
import { resolveDevice } from '../torch/index.js';
import type { MixedPrecisionMode } from '../learn/mixed-precision.js';
import { choice, str, type OptionSpec, type ParsedArgs } from './args.js';

/** `--device`: where the network runs. */
export const DEVICE_OPTIONS: Record<string, OptionSpec> = {
  device: { type: 'string', arg: 'DEV', help: 'auto, cpu, cuda or cuda:N: where the network runs (auto: CUDA when this libtorch has a GPU; see fastvision doctor)', default: 'auto' },
};

/** `--device` and `--mixed-precision`, for the commands that train. */
export const TRAINING_DEVICE_OPTIONS: Record<string, OptionSpec> = {
  ...DEVICE_OPTIONS,
  'mixed-precision': {
    type: 'string',
    arg: 'bf16|fp16',
    help: "train in mixed precision (fastai's to_fp16): autocast in bf16, or in fp16 with dynamic loss scaling",
    value: { kind: 'choice', choices: ['bf16', 'fp16'] },
  },
};

/**
 * The device `--device` names, checked against this machine: `'cpu'` or `'cuda:N'`.
 * A rank of `--nproc` asking for `cuda` gets GPU LOCAL_RANK. A GPU that is not here
 * is a DeviceUnavailableError (exit code 2) naming `fastvision doctor`.
 */
export function deviceArg(args: ParsedArgs, env: NodeJS.ProcessEnv = process.env): string {
  const localRank = Number(env.LOCAL_RANK ?? 0);
  return resolveDevice(str(args, 'device', 'auto'), Number.isInteger(localRank) && localRank >= 0 ? localRank : 0);
}

/** `--mixed-precision`, or null for float32. */
export function mixedPrecisionArg(args: ParsedArgs): MixedPrecisionMode | null {
  if (args.values['mixed-precision'] === undefined) return null;
  return choice(args, 'mixed-precision', ['bf16', 'fp16'] as const, 'bf16');
}
