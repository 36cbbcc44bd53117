#!/usr/bin/env python3
"""Checks that PyTorch reads what fastvision writes.

Loads test/fixtures/engine/{written,mixed}_by_fastvision.pth (made by
scripts/write-fastvision-pth.mjs) with torch.load, loads the state dict into a
real torch.nn model with strict=True, compares every value with the same values
computed here, and records a digest in written_by_fastvision.json. The TypeScript
test checks that fastvision still writes these exact bytes, so this verification
keeps holding without Python in CI.
"""
import hashlib
import json
import math
import os

import torch
import torch.nn as nn

D = os.path.join(os.path.dirname(__file__), '..', 'test', 'fixtures', 'engine')


def main():
    sd = torch.load(os.path.join(D, 'written_by_fastvision.pth'))
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Linear(4, 2))
    model.load_state_dict(sd, strict=True)
    expect = {
        '0.weight': (torch.arange(108).float() * 0.01).reshape(4, 3, 3, 3),
        '0.bias': torch.tensor([0.1, 0.2, 0.3, 0.4]),
        '1.weight': torch.tensor([1, 1.5, 2, 2.5]),
        '1.bias': torch.tensor([-0.5, 0, 0.5, 1]),
        '1.running_mean': torch.tensor([0.01, 0.02, 0.03, 0.04]),
        '1.running_var': torch.tensor([1.1, 1.2, 1.3, 1.4]),
        '1.num_batches_tracked': torch.tensor(7),
        '2.weight': (torch.arange(8).float() * 0.25).reshape(4, 2).t(),
        '2.bias': torch.tensor([-1.0, 1.0]),
    }
    assert list(sd.keys()) == list(expect.keys()), list(sd.keys())
    for k, v in expect.items():
        assert sd[k].dtype == v.dtype and torch.equal(sd[k], v), k

    mixed = torch.load(os.path.join(D, 'mixed_by_fastvision.pth'))
    assert mixed['f64'].dtype == torch.float64 and torch.equal(mixed['f64'], torch.tensor([math.pi, -math.e, 1e-300], dtype=torch.float64))
    assert torch.equal(mixed['i32'], torch.tensor([-2147483648, 0, 2147483647], dtype=torch.int32))
    assert torch.equal(mixed['u8'], torch.tensor([[0, 128, 255]], dtype=torch.uint8))
    assert torch.equal(mixed['flags'], torch.tensor([True, False, True]))
    assert mixed['epoch'] == 3 and mixed['lr'] == 0.01 and mixed['big'] == 2 ** 40
    assert mixed['name'] == 'résumé ✓'
    assert mixed['nested'] == {'list': [1, 2.5, 'x', True, None]}

    digest = {}
    for name in ('written_by_fastvision.pth', 'mixed_by_fastvision.pth'):
        with open(os.path.join(D, name), 'rb') as f:
            digest[name] = hashlib.sha256(f.read()).hexdigest()
    digest['torch_version'] = torch.__version__
    with open(os.path.join(D, 'written_by_fastvision.json'), 'w') as f:
        json.dump(digest, f, indent=2)
    print('PyTorch', torch.__version__, 'read both files; digests recorded')


if __name__ == '__main__':
    main()
