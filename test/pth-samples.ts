// Deterministic values written by fastvision and checked by Python
// (scripts/check_fastvision_pth.py): the "fastvision → PyTorch" half of the round trip.
import { arange, tensor, type PthWritable, type Tensor } from '../src/index.js';

/** A state dict for torch.nn.Sequential(Conv2d(3,4,3), BatchNorm2d(4), Linear(4,2)), with a non-contiguous tensor among them. */
export function sampleStateDict(): Map<string, Tensor> {
  const ar = (n: number, scale: number): Tensor => arange(0, n).float().mul(scale);
  const lin = ar(8, 0.25).reshape(4, 2); // transposed below: stored non-contiguously
  return new Map<string, Tensor>([
    ['0.weight', ar(108, 0.01).reshape(4, 3, 3, 3)],
    ['0.bias', tensor([0.1, 0.2, 0.3, 0.4])],
    ['1.weight', tensor([1, 1.5, 2, 2.5])],
    ['1.bias', tensor([-0.5, 0, 0.5, 1])],
    ['1.running_mean', tensor([0.01, 0.02, 0.03, 0.04])],
    ['1.running_var', tensor([1.1, 1.2, 1.3, 1.4])],
    ['1.num_batches_tracked', tensor(BigInt64Array.of(7n), { shape: [] })],
    ['2.weight', lin.t()],
    ['2.bias', tensor([-1, 1])],
  ]);
}

/** A checkpoint-like dict mixing dtypes, numbers, strings and nesting. */
export function sampleMixed(): PthWritable {
  return {
    f64: tensor(Float64Array.of(Math.PI, -Math.E, 1e-300), { shape: [3] }),
    i32: tensor(Int32Array.of(-2147483648, 0, 2147483647), { shape: [3] }),
    u8: tensor(Uint8Array.of(0, 128, 255), { shape: [1, 3] }),
    flags: tensor([true, false, true]),
    epoch: 3,
    lr: 0.01,
    big: 2n ** 40n,
    name: 'résumé ✓',
    nested: { list: [1, 2.5, 'x', true, null] },
  };
}
