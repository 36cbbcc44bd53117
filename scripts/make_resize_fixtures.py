#!/usr/bin/python3
"""Writes test/fixtures/resize/: for a few fixture photos, the pixels Pillow decodes
(upright, as PNG) and what other people's code makes of them for a model of side S:
Pillow via torchvision's transforms (Resize(S) then CenterCrop(S) on a PIL image) and
torchvision on a uint8 tensor (Resize(S, antialias=True), CenterCrop(S)). fastvision's
validation transform must reproduce these. Run with /usr/bin/python3 (python3-torch,
python3-torchvision, python3-pil)."""
import json
import os

import torch
import torchvision
from PIL import Image, ImageOps
from torchvision import transforms as T

here = os.path.dirname(os.path.abspath(__file__))
photos = os.path.join(here, '..', 'test', 'fixtures', 'photos', 'dogscats')
out = os.path.join(here, '..', 'test', 'fixtures', 'resize')
os.makedirs(out, exist_ok=True)
names = [
    ('train/cats', 0), ('train/cats', 3), ('train/dogs', 1), ('valid/dogs', 0), ('test', 2), ('valid/cats', 1),
]
sizes = [48, 100, 224]
index = []
for folder, k in names:
    files = sorted(os.listdir(os.path.join(photos, folder)))
    src = os.path.join(photos, folder, files[k])
    img = ImageOps.exif_transpose(Image.open(src)).convert('RGB')
    base = os.path.splitext(files[k])[0]
    img.save(os.path.join(out, f'{base}.png'))
    entry = {'photo': f'{folder}/{files[k]}', 'decoded': f'{base}.png', 'width': img.width, 'height': img.height, 'sizes': {}}
    tensor = torch.from_numpy(__import__('numpy').asarray(img).copy()).permute(2, 0, 1)
    for s in sizes:
        pil = T.Compose([T.Resize(s, interpolation=T.InterpolationMode.BILINEAR), T.CenterCrop(s)])(img)
        pil.save(os.path.join(out, f'{base}_{s}_pil.png'))
        tv = T.CenterCrop(s)(T.Resize(s, interpolation=T.InterpolationMode.BILINEAR, antialias=True)(tensor))
        Image.fromarray(tv.permute(1, 2, 0).numpy()).save(os.path.join(out, f'{base}_{s}_tv.png'))
        entry['sizes'][str(s)] = {'pil': f'{base}_{s}_pil.png', 'torchvision': f'{base}_{s}_tv.png'}
    index.append(entry)
json.dump({'torch': torch.__version__, 'torchvision': torchvision.__version__, 'photos': index}, open(os.path.join(out, 'index.json'), 'w'), indent=1)
print('wrote', len(index), 'photos x', len(sizes), 'sizes to', out)
