// libtorch 2's oneDNN convolutions read the channel padding of their blocked buffers
// (24 channels are padded to 32 on AVX-512) as the allocator left it: NaNs from a freed
// tensor there turned whole outputs NaN now and then (Debian's libtorch 2.6 on AVX-512;
// PyTorch 2.6 does the same). libtorch zero-fills CPU allocations from the first
// convolution whose channels may be padded; a ResNet's never are, and it keeps its speed.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cpuZeroFillState, F, full, libtorchVersion, manualSeed, noGrad, randn, tidy } from '../src/index.js';
import { channelsPadded } from '../src/torch/onednn-padding.js';
import { native } from '../src/torch/native.js';

// As ONEDNN_VERBOSE=1 showed them with PyTorch 2.6 on AVX-512: "ap" marks a padded buffer.
test('which convolutions may have their channels padded: counts per group that are not multiples of 16', () => {
  assert.equal(channelsPadded(64, 3, 1), false, "a first layer's 3 input channels are read plain");
  assert.equal(channelsPadded(64, 64, 1), false);
  assert.equal(channelsPadded(512, 256, 1), false);
  assert.equal(channelsPadded(24, 24, 1), true, "EfficientNet's 24 channels");
  assert.equal(channelsPadded(40, 24, 1), true);
  assert.equal(channelsPadded(32, 24, 1), true, 'padded inputs are enough');
  assert.equal(channelsPadded(144, 1, 144), false, 'a depthwise convolution of 144 channels');
  assert.equal(channelsPadded(120, 1, 120), true, 'a depthwise convolution of 120 channels');
  assert.equal(channelsPadded(24, 3, 1), true, 'padded outputs are enough');
  assert.equal(channelsPadded(128, 4, 32), false, "ResNeXt's 4 channels per group are blocked by 4");
  assert.equal(channelsPadded(256, 8, 32), false, "ResNeXt 32x8d's 8 are blocked by 8");
  assert.equal(channelsPadded(512, 16, 32), false);
  assert.equal(channelsPadded(240, 24, 10), true, 'groups of 24');
});

test("libtorch 2's oneDNN convolutions stay finite when the memory they are given held NaNs", () => {
  const major = Number.parseInt(libtorchVersion(), 10);
  const oneDNN = /MKL-DNN|oneDNN/i.test(native.buildInfo().config);
  const state = cpuZeroFillState();
  assert.equal(state.available, major >= 2 && oneDNN, 'libtorch 2 with oneDNN can zero-fill; libtorch 1 is left as it is');
  const auto = state.available && state.mode === 'auto';
  if (auto) assert.equal(state.active, false, 'nothing is zero-filled before a convolution');
  manualSeed(0);
  noGrad(() => {
    tidy(() => F.conv2d(F.conv2d(randn([2, 3, 16, 16]), randn([64, 3, 3, 3]), null, { padding: 1 }), randn([64, 64, 3, 3]), null, { padding: 1 }));
    if (auto) assert.equal(cpuZeroFillState().active, false, "a ResNet's channels leave memory as it is");
    const x = randn([5, 24, 32, 32]);
    const w = randn([24, 24, 3, 3]).mul_(0.1);
    let bad = 0;
    for (let i = 0; i < 100; i++) {
      tidy(() => {
        // Freed NaNs of the padded size, for the convolution's buffers to be carved from.
        full([5, 32, 32, 32], Number.NaN).dispose();
        if (!F.conv2d(x, w, null, { padding: 1 }).allFinite()) bad++;
      });
    }
    if (auto) assert.equal(cpuZeroFillState().active, true, '24 channels turn zero-filling on');
    x.dispose();
    w.dispose();
    assert.equal(bad, 0, `${bad} of 100 convolutions gave NaN`);
  });
});
