// The probe that decides whether channels-last convolutions can be trusted: it must
// agree with a direct comparison of both layouts on the shapes where a faulty libtorch
// goes wrong, at every thread count, and never touch the random generator.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { channelsLastConvIsSound, F, getNumThreads, getRngState, noGrad, randn, setNumThreads, tidy } from '../src/index.js';

test('channelsLastConvIsSound agrees with both layouts compared directly, per thread count, and leaves the random generator alone', () => {
  const threads = getNumThreads();
  try {
    for (const n of [1, 2]) {
      setNumThreads(n);
      const rng = getRngState().toArray();
      const verdict = channelsLastConvIsSound();
      assert.deepEqual(getRngState().toArray(), rng, 'the probe draws no random numbers');
      // MobileNetV2's last 1×1 convolution over a 2×2 map, batch 4: NCHW against channels-last.
      const worst = noGrad(() =>
        tidy(() => {
          const x = randn([4, 960, 2, 2]);
          const w = randn([320, 960, 1, 1]).mul(0.03);
          return F.conv2d(x, w)
            .sub(F.conv2d(x.contiguous('channelsLast'), w.contiguous('channelsLast')))
            .abs()
            .max()
            .item();
        }),
      );
      assert.equal(verdict, worst <= 1e-3, `${n} thread(s): the probe says ${verdict ? 'sound' : 'unsound'}, the layouts differ by ${worst}`);
      console.log(`${n} thread(s): channels-last ${verdict ? 'sound' : 'UNSOUND'} (difference ${worst.toExponential(1)})`);
    }
  } finally {
    setNumThreads(threads);
  }
});
