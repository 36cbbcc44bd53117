// libtorch 2's oneDNN convolutions round channels up to the vector width in their blocked
// buffers (24 become 32 on AVX-512) and multiply the padding in, as the allocator left it:
// a freed tensor's NaNs there turned whole outputs NaN now and then (native/addon.cc,
// FindZeroFillFlag). Zero-filling every CPU allocation closes it, but costs 8-14% of a
// ResNet-18 step, whose channels are all multiples of 16 and never padded. So it is turned
// on before the first convolution whose channels may be padded, and stays on.
import { native } from './native.js';
import type { Tensor } from './tensor.js';

/** How CPU memory is filled: `FASTVISION_CPU_ZERO_FILL=1` always zero, `=0` never, unset: from the first padded convolution. */
export type ZeroFillMode = 'auto' | 'always' | 'off';

/** Where CPU memory stands: the mode, whether this libtorch can zero-fill at all, and whether it does now. */
export interface ZeroFillState {
  mode: ZeroFillMode;
  available: boolean;
  active: boolean;
}

// AVX-512 holds 16 floats; AVX2's 8 divides it.
const BLOCK = 16;
// A first layer's 3 (or 4) input channels are read in plain layout, never padded.
const PLAIN_INPUT = 4;
// Groups of up to 8 channels are blocked by 4 or 8, or not blocked at all.
const SMALL_GROUP = 8;

function modeFromEnv(): ZeroFillMode {
  const v = process.env.FASTVISION_CPU_ZERO_FILL;
  return v === '0' ? 'off' : v === '1' ? 'always' : 'auto';
}

let watching: boolean | null = null;
let available: boolean | null = null;

/** Whether this libtorch can zero-fill at all (read once: buildInfo also renders libtorch's whole configuration). */
function canZeroFill(): boolean {
  return (available ??= native.buildInfo().cpuZeroFillAvailable);
}

/** Sets the mode up once: `always` turns zero-filling on at once; returns whether convolutions must be watched. */
function start(): boolean {
  if (!canZeroFill()) return false;
  const mode = modeFromEnv();
  if (mode === 'always') native.cpuZeroFill(true);
  return mode === 'auto';
}

/**
 * Whether oneDNN may pad a convolution's channels, as its verbose log shows them on AVX-512
 * (libtorch 2.6): a count that is not a multiple of 16, except a first layer's 3 or 4 input
 * channels (read plain) and groups of at most 8 channels (blocked by 4 or 8, or plain).
 */
export function channelsPadded(outChannels: number, inChannelsPerGroup: number, groups: number): boolean {
  if (groups === 1) return outChannels % BLOCK !== 0 || (inChannelsPerGroup > PLAIN_INPUT && inChannelsPerGroup % BLOCK !== 0);
  const outPerGroup = outChannels / groups;
  if (inChannelsPerGroup === 1 && outPerGroup === 1) return outChannels % BLOCK !== 0;
  return [outPerGroup, inChannelsPerGroup].some((c) => c > SMALL_GROUP && c % BLOCK !== 0);
}

/** Called before each convolution: turns zero-filling on before the first one on the CPU whose channels may be padded. */
export function beforeConvolution(weight: Tensor, groups: number): void {
  if (watching === false) return;
  watching ??= start();
  if (!watching) return;
  const [out, inPerGroup] = weight.shape as [number, number];
  if (!channelsPadded(out, inPerGroup, groups) || weight.device !== 'cpu') return;
  native.cpuZeroFill(true);
  watching = false;
}

/** Whether CPU allocations are zero-filled now, and why (what `fastvision doctor` prints). */
export function cpuZeroFillState(): ZeroFillState {
  return { mode: modeFromEnv(), available: canZeroFill(), active: native.cpuZeroFill() };
}
