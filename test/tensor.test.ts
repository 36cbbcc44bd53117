// The Tensor API over libtorch: creation, dtypes, arithmetic, shapes, indexing,
// reductions, layouts, autograd basics and error messages.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { arange, callOp, cat, F, full, noGrad, ones, opSchema, randn, stack, Tensor, tensor, tidy, zeros, isGradEnabled, type Handle } from '../src/index.js';

test('TypedArrays go in and come out with their dtype', () => {
  const cases: [Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array, string][] = [
    [Float32Array.of(1.5, -2), 'float32'],
    [Float64Array.of(1e-300, 2), 'float64'],
    [Int32Array.of(-7, 7), 'int32'],
    [BigInt64Array.of(-(2n ** 40n), 3n), 'int64'],
    [Uint8Array.of(0, 255), 'uint8'],
  ];
  for (const [data, dtype] of cases) {
    const t = tensor(data);
    assert.equal(t.dtype, dtype);
    assert.deepEqual(t.dataSync(), data);
    t.dispose();
  }
  const b = tensor(Uint8Array.of(1, 0, 1), { dtype: 'bool' });
  assert.equal(b.dtype, 'bool');
  assert.deepEqual(b.toArray(), [1, 0, 1]);
});

test('nested arrays give shape and values; shape must match the data', () => {
  const t = tensor([
    [1, 2, 3],
    [4, 5, 6],
  ]);
  assert.deepEqual(t.shape, [2, 3]);
  assert.deepEqual(t.toArray(), [1, 2, 3, 4, 5, 6]);
  assert.throws(() => tensor(Float32Array.of(1, 2, 3), { shape: [2, 2] }), /shape holds 4 elements but the array has 3/);
  assert.throws(() => tensor([[1, 2], [3]]), /ragged/);
});

test('arithmetic with tensors and scalars, broadcasting, integer results stay integer', () => {
  tidy(() => {
    const a = tensor([
      [1, 2],
      [3, 4],
    ]);
    const b = tensor([10, 20]);
    assert.deepEqual(a.add(b).toArray(), [11, 22, 13, 24]);
    assert.deepEqual(a.sub(b, 0.5).toArray(), [-4, -8, -2, -6]);
    assert.deepEqual(a.mul(2).div(4).toArray(), [0.5, 1, 1.5, 2]);
    assert.deepEqual(a.pow(2).toArray(), [1, 4, 9, 16]);
    assert.deepEqual(a.matmul(a).toArray(), [7, 10, 15, 22]);
    const i = arange(0, 4);
    assert.equal(i.dtype, 'int64');
    assert.equal(i.add(1).dtype, 'int64');
    assert.equal(i.add(0.5).dtype, 'float32');
    assert.deepEqual(a.clamp(2, 3).toArray(), [2, 2, 3, 3]);
    assert.deepEqual(tensor([-1, 0, 2]).relu().toArray(), [0, 0, 2]);
    assert.deepEqual(tensor([-1, 3, 8]).relu6().toArray(), [0, 3, 6]);
  });
});

test('reductions, argmax, topk and comparisons', () => {
  tidy(() => {
    const a = tensor([
      [1, 5, 3],
      [9, 2, 7],
    ]);
    assert.equal(a.sum().item(), 27);
    assert.deepEqual(a.sum(0).toArray(), [10, 7, 10]);
    assert.deepEqual(a.mean(1, true).shape, [2, 1]);
    assert.deepEqual(a.argmax(1).toArray(), [1, 0]);
    assert.equal(a.max().item(), 9);
    const { values, indices } = a.topk(2, { dim: 1 });
    assert.deepEqual(values.toArray(), [5, 3, 9, 7]);
    assert.deepEqual(indices.toArray(), [1, 2, 0, 2]);
    assert.deepEqual(a.gt(4).toArray(), [0, 1, 0, 1, 0, 1]);
    assert.equal(a.eq(a).dtype, 'bool');
    assert.ok(Math.abs(a.std().item() - Math.sqrt(47.5 / 5)) < 1e-5);
    assert.ok(a.allclose(a.add(1e-9)));
  });
});

test('shapes, views, slicing and indexing', () => {
  tidy(() => {
    const a = arange(0, 24).reshape(2, 3, 4);
    assert.deepEqual(a.permute(2, 0, 1).shape, [4, 2, 3]);
    assert.deepEqual(a.view(6, -1).shape, [6, 4]);
    assert.deepEqual(a.flatten(1).shape, [2, 12]);
    assert.deepEqual(a.select(0, 1).slice(1, 1, 3).toArray(), [13, 14, 17, 18, 21, 22]);
    assert.deepEqual(a.narrow(2, 3, 1).squeeze().toArray(), [3, 7, 11, 15, 19, 23]);
    assert.deepEqual(a.unsqueeze(0).shape, [1, 2, 3, 4]);
    assert.deepEqual(
      a
        .indexSelect(1, tensor(BigInt64Array.of(2n, 0n)))
        .select(0, 0)
        .toArray(),
      [8, 9, 10, 11, 0, 1, 2, 3],
    );
    assert.deepEqual(arange(0, 4).flip(0).toArray(), [3, 2, 1, 0]);
    assert.deepEqual(cat([zeros([1, 2]), ones([2, 2])]).shape, [3, 2]);
    assert.deepEqual(stack([zeros([2]), ones([2])], 1).toArray(), [0, 1, 0, 1]);
    const v = a.view(24);
    assert.ok(v.sharesStorageWith(a));
    assert.deepEqual(a.split(1, 0).length, 2);
  });
});

test('channels-last layout: same values, different strides', () => {
  tidy(() => {
    const x = randn([2, 3, 4, 5]);
    const cl = x.contiguous('channelsLast');
    assert.ok(cl.isContiguous('channelsLast'));
    assert.ok(!cl.isContiguous());
    assert.deepEqual(cl.strides, [60, 1, 15, 3]);
    assert.ok(cl.allclose(x));
    const w = randn([4, 3, 3, 3]);
    const y1 = F.conv2d(x, w);
    const y2 = F.conv2d(cl, w.contiguous('channelsLast'));
    assert.ok(y2.isContiguous('channelsLast'));
    assert.ok(y1.allclose(y2, 1e-4, 1e-5));
  });
});

test('in-place ops change the tensor and return it', () => {
  const t = full([3], 2);
  assert.equal(t.mul_(3).add_(1), t);
  assert.deepEqual(t.toArray(), [7, 7, 7]);
  t.addcmul_(tensor([1, 2, 3]), tensor([1, 1, 1]), 2);
  assert.deepEqual(t.toArray(), [9, 11, 13]);
  t.zero_();
  assert.deepEqual(t.toArray(), [0, 0, 0]);
  t.dispose();
});

test('autograd: gradients, noGrad, detach', () => {
  const x = tensor([1, 2, 3], { requiresGrad: true });
  const y = x.mul(x).sum();
  y.backward();
  assert.deepEqual(x.grad!.toArray(), [2, 4, 6]);
  assert.ok(x.isLeaf);
  const z = noGrad(() => x.mul(2));
  assert.equal(z.requiresGrad, false);
  assert.equal(isGradEnabled(), true);
  assert.equal(x.detach().requiresGrad, false);
  x.grad = null;
  assert.equal(x.grad, null);
});

test("libtorch's own error messages reach JavaScript", () => {
  tidy(() => {
    assert.throws(() => zeros([2, 3]).matmul(zeros([4, 5])), /mat1 and mat2 shapes cannot be multiplied \(2x3 and 4x5\)/);
    assert.throws(() => callOp('aten::not_an_op', []), /unknown operator aten::not_an_op/);
    assert.throws(() => callOp('aten::add.Tensor', []), /missing argument 'self'/);
    const t = zeros([1]);
    t.dispose();
    assert.throws(() => t.add(1), /disposed/);
  });
});

test('the generic call reaches any operator by schema, with defaults and keyword-only arguments', () => {
  tidy(() => {
    const a = tensor([1, 2, 3, 4]);
    assert.deepEqual(new Tensor(callOp('aten::cumprod', [a.handle, 0]) as Handle).toArray(), [1, 2, 6, 24]);
    const [v, i] = (callOp('aten::kthvalue', [a.handle, 2]) as Handle[]).map((h) => new Tensor(h));
    assert.equal(v!.item(), 2);
    assert.equal(i!.item(), 1);
    const s = new Tensor(callOp('aten::sum', [a.handle, 7]) as Handle);
    assert.equal(s.dtype, 'float64');
    assert.match(opSchema('aten::sum'), /ScalarType\? dtype=None/);
  });
});
