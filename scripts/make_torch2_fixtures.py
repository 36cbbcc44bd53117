#!/usr/bin/env python3
"""A fixture written by PyTorch 2's torch.save, for test/torch2.test.ts.

PyTorch 2.x writes .pth zips that 1.13 did not: a `byteorder` record, a
`.data/serialization_id`, 64-byte aligned storages. This writes, with whatever
PyTorch runs it (2.6 in the project's Debian 13 root):

  test/fixtures/torch2/saved_by_torch2.pth
    state_dict  a small convnet's weights, after a few training-mode batches
                (so the batch norms' running statistics are not their defaults)
    input       a fixed input
    output      the model's output for it in eval mode
    version     torch.__version__

The model is torchvision's vocabulary (Conv2d, BatchNorm2d, ReLU, MaxPool2d,
AdaptiveAvgPool2d, Flatten, Linear in a Sequential), which fastvision's nn mirrors
key for key; torchvision's own resnet18 is checked live in the root's suite
(test/torch2.test.ts), since its 45 MB of weights are not worth committing.

Run: node scripts/torch2-root.mjs run -- python3 scripts/make_torch2_fixtures.py
(then copy test/fixtures/torch2/ out of the root's copy, or run it in a checkout on a
machine with PyTorch 2).
"""
import os
import zipfile

import torch
import torch.nn as nn

OUT = os.path.join(os.path.dirname(__file__), '..', 'test', 'fixtures', 'torch2')


def small_convnet():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 5),
    )


def main():
    major = int(torch.__version__.split('.')[0])
    assert major >= 2, f'this fixture is for PyTorch 2 files; this is {torch.__version__}'
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(2026)
    model = small_convnet()
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(6, 3, 12, 12) * 2 + 0.5)
    model.eval()
    x = torch.randn(4, 3, 12, 12)
    with torch.no_grad():
        y = model(x)
    path = os.path.join(OUT, 'saved_by_torch2.pth')
    torch.save({'state_dict': model.state_dict(), 'input': x, 'output': y, 'version': str(torch.__version__)}, path)
    names = zipfile.ZipFile(path).namelist()
    assert any(n.endswith('/byteorder') for n in names), names
    # What the TypeScript test reads back, checked here with 2.x's own safe loader.
    back = torch.load(path, weights_only=True)
    assert torch.equal(back['output'], y)
    print('wrote', path, 'with PyTorch', torch.__version__, 'records:', ', '.join(n.split('/', 1)[1] for n in names if '/data/' not in n))


if __name__ == '__main__':
    main()
