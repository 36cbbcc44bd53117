#!/usr/bin/env python3
"""Fixtures for TrivialAugmentWide's and RandAugment's operations, from torchvision 0.14
(Debian's python3-torchvision): a 48x40 photo crop as a uint8 tensor, and
torchvision.transforms.autoaugment._apply_op's output on it (nearest, no fill) for each
operation at a few magnitudes, plus the two policies' magnitude tables.

Run: /usr/bin/python3 scripts/make_autoaugment_fixtures.py
"""
import json
import os

import torch
from PIL import Image
from torchvision.transforms import InterpolationMode, autoaugment
from torchvision.transforms.functional import pil_to_tensor

ROOT = os.path.join(os.path.dirname(__file__), '..')
OUT = os.path.join(ROOT, 'test', 'fixtures', 'autoaugment')
os.makedirs(OUT, exist_ok=True)

CASES = [
    ('Identity', 0.0), ('ShearX', 0.3), ('ShearX', -0.51), ('ShearY', 0.66), ('TranslateX', 10.0), ('TranslateX', -7.4),
    ('TranslateY', 13.0), ('Rotate', 30.0), ('Rotate', -121.5), ('Brightness', 0.5), ('Brightness', -0.66), ('Color', 0.9),
    ('Color', -0.5), ('Contrast', 0.45), ('Contrast', -0.8), ('Sharpness', 0.7), ('Sharpness', -0.9), ('Posterize', 4.0),
    ('Posterize', 2.0), ('Solarize', 128.0), ('Solarize', 17.0), ('AutoContrast', 0.0), ('Equalize', 0.0),
]


def main():
    photo = os.path.join(ROOT, 'test', 'fixtures', 'photos', 'dogscats', 'valid', 'cats', 'Bengal_167.jpg')
    img = pil_to_tensor(Image.open(photo).convert('RGB').resize((48, 40), Image.BILINEAR))
    out = {'input': img}
    for i, (op, m) in enumerate(CASES):
        out[f'{i}'] = autoaugment._apply_op(img, op, m, interpolation=InterpolationMode.NEAREST, fill=None)
    torch.save(out, os.path.join(OUT, 'ops.pth'))
    trivial = autoaugment.TrivialAugmentWide()._augmentation_space(31)
    rand = autoaugment.RandAugment()._augmentation_space(31, (40, 48))
    table = lambda space: [[k, (v.tolist() if v.ndim > 0 else None), s] for k, (v, s) in space.items()]  # noqa: E731
    with open(os.path.join(OUT, 'cases.json'), 'w') as f:
        json.dump({'cases': CASES, 'trivial': table(trivial), 'randaug': table(rand)}, f)
    print('wrote', OUT)


if __name__ == '__main__':
    main()
