// libtorch 2's oneDNN convolutions read the channel padding of their blocked buffers
// (24 channels are padded to 32 on AVX-512) as the allocator left it: NaNs from a freed
// tensor there turned whole outputs NaN now and then (Debian's libtorch 2.6 on AVX-512;
// PyTorch 2.6 does the same). The addon has libtorch zero-fill CPU allocations there.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { environment, F, full, libtorchVersion, manualSeed, noGrad, randn, tidy } from '../src/index.js';
import { native } from '../src/torch/native.js';

test("libtorch 2's oneDNN convolutions stay finite when the memory they are given held NaNs", async () => {
  const env = await environment();
  const major = Number.parseInt(libtorchVersion(), 10);
  const oneDNN = /MKL-DNN|oneDNN/i.test(native.buildInfo().config);
  const optedOut = process.env.FASTVISION_CPU_ZERO_FILL === '0';
  if (major >= 2 && !optedOut && oneDNN) assert.equal(env.cpuZeroFill, true, 'CPU allocations are zero-filled on libtorch 2 with oneDNN');
  if (major < 2) assert.equal(env.cpuZeroFill, false, 'libtorch 1 is left as it is');
  manualSeed(0);
  const x = randn([5, 24, 32, 32]);
  const w = randn([24, 24, 3, 3]).mul_(0.1);
  let bad = 0;
  noGrad(() => {
    for (let i = 0; i < 100; i++) {
      tidy(() => {
        // Freed NaNs of the padded size, for the convolution's buffers to be carved from.
        full([5, 32, 32, 32], Number.NaN).dispose();
        if (!F.conv2d(x, w, null, { padding: 1 }).allFinite()) bad++;
      });
    }
  });
  x.dispose();
  w.dispose();
  assert.equal(bad, 0, `${bad} of 100 convolutions gave NaN`);
});
