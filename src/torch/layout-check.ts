// Whether this libtorch computes channels-last convolutions correctly. Debian 13's
// libtorch 2.6 (oneDNN 3.7.2) on an AVX-512 machine with two or more threads gives
// wrong results for 1×1 convolutions of many channels over a small image (MobileNetV2's
// and Inception's last layers: errors of order 1), in channels-last layout only, and
// Python's torch does the same there. A small probe of those shapes tells, before a
// learner chooses its layout; the answer depends on the thread count, so it is kept per count.
import { getNumThreads, noGrad } from './autograd.js';
import { tensor } from './creation.js';
import * as F from './functional.js';
import { tidy } from './scope.js';

const verdicts = new Map<number, boolean>();

/** Values in [-1, 1] from a fixed formula: the probe must not draw from the random generator. */
function pattern(shape: number[], salt: number): Float32Array {
  const n = shape.reduce((a, b) => a * b, 1);
  return Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.7301 + salt * 1.37));
}

/** The probe's shapes: [batch, in, side, out], 1×1 kernels, where the fault shows. */
const PROBES: [number, number, number, number][] = [
  [2, 960, 2, 320],
  [2, 512, 3, 512],
  [2, 320, 2, 1280],
];

/**
 * Whether channels-last convolutions give the same results as NCHW ones on this
 * libtorch, machine and thread count (checked once per thread count, in a millisecond
 * or two). ConvLearner lays its network out channels-last only when they do.
 * @example
 * const layout = channelsLastConvIsSound() ? 'channelsLast' : 'contiguous';
 */
export function channelsLastConvIsSound(): boolean {
  const threads = getNumThreads();
  const known = verdicts.get(threads);
  if (known !== undefined) return known;
  const sound = noGrad(() =>
    tidy(() =>
      PROBES.every(([n, cin, side, cout], k) => {
        const x = tensor(pattern([n, cin, side, side], k), { shape: [n, cin, side, side] });
        const w = tensor(pattern([cout, cin, 1, 1], k + 7), { shape: [cout, cin, 1, 1] }).mul(1 / Math.sqrt(cin));
        const nchw = F.conv2d(x, w);
        const nhwc = F.conv2d(x.contiguous('channelsLast'), w.contiguous('channelsLast'));
        return nchw.sub(nhwc).abs().max().item() <= 1e-3;
      }),
    ),
  );
  verdicts.set(threads, sound);
  return sound;
}
