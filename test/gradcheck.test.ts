// Autograd checked against finite differences in float64, independently of PyTorch.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { F, manualSeed, noGrad, randn, tidy, type Tensor } from '../src/index.js';

/** Compares autograd's gradient of sum(f(x) * w) with central differences. */
function gradcheck(name: string, f: (x: Tensor) => Tensor, shape: number[], eps = 1e-6, tol = 1e-6): void {
  tidy(() => {
    const x = randn(shape, { dtype: 'float64' }).requiresGrad_(true);
    const w = noGrad(() => randn(f(x).shape, { dtype: 'float64' }));
    f(x).mul(w).sum().backward();
    const analytic = x.grad!.toArray();
    const base = x.detach().clone();
    const flat = base.view(-1);
    const n = flat.numel;
    for (let i = 0; i < n; i++) {
      const orig = flat.select(0, i).item();
      const at = (v: number): number =>
        tidy(() => {
          flat.select(0, i).fill_(v);
          return noGrad(() => f(base).mul(w).sum().item());
        });
      const numeric = (at(orig + eps) - at(orig - eps)) / (2 * eps);
      flat.select(0, i).fill_(orig);
      assert.ok(Math.abs(numeric - analytic[i]!) <= tol * (1 + Math.abs(numeric)), `${name}: d/dx[${i}] autograd ${analytic[i]}, finite difference ${numeric}`);
    }
  });
}

test('finite differences agree with autograd in float64', () => {
  manualSeed(7);
  const w = randn([3, 2, 3, 3], { dtype: 'float64' });
  gradcheck('conv2d', (x) => F.conv2d(x, w, null, { padding: 1 }), [1, 2, 4, 4]);
  gradcheck('log_softmax', (x) => x.logSoftmax(1), [3, 4]);
  gradcheck('batch_norm (training)', (x) => F.batchNorm(x, null, null, { training: true }), [4, 3]);
  gradcheck('adaptive_avg_pool2d', (x) => F.adaptiveAvgPool2d(x, 2), [1, 2, 5, 5]);
  gradcheck('matmul + tanh', (x) => x.matmul(x.t()).tanh(), [3, 4]);
  w.dispose();
});

test('the new layers’ gradients agree with finite differences in float64: layer norm, GELU, SiLU, attention with a bias, roll, bicubic resampling', () => {
  manualSeed(11);
  const g = randn([4], { dtype: 'float64' });
  const b = randn([4], { dtype: 'float64' });
  gradcheck('layer_norm', (x) => F.layerNorm(x, [4], g, b, 1e-6), [3, 4]);
  gradcheck('gelu', (x) => F.gelu(x), [2, 5]);
  gradcheck('gelu (tanh)', (x) => F.gelu(x, 'tanh'), [2, 5]);
  gradcheck('silu', (x) => F.silu(x), [2, 5]);
  const k = randn([1, 2, 3, 4], { dtype: 'float64' });
  const v = randn([1, 2, 3, 4], { dtype: 'float64' });
  const bias = randn([1, 2, 3, 3], { dtype: 'float64' });
  gradcheck('attention (queries)', (q) => F.attention(q, k, v, bias), [1, 2, 3, 4]);
  gradcheck('attention (keys)', (kk) => F.attention(v, kk, k, bias), [1, 2, 3, 4]);
  gradcheck('roll', (x) => F.roll(x, [1, -2], [1, 2]).mul(x), [1, 3, 4, 2]);
  gradcheck('upsample_bicubic2d', (x) => F.interpolateBicubic(x, [5, 3], true), [1, 2, 3, 3]);
  for (const t of [g, b, k, v, bias]) t.dispose();
});
