#!/usr/bin/env python3
"""Fixtures for the safetensors reader and timm's key names, written by the reference
libraries: safetensors 0.8.0 and timm 1.0.29 (wheels in /opt/pypi/files; with Debian's
torch 1.13 in a venv that sees the system's packages:
  /usr/bin/python3 -m venv --system-site-packages /tmp/tv
  /tmp/tv/bin/pip install --no-index --find-links /opt/pypi/files timm safetensors
  /tmp/tv/bin/python scripts/make_safetensors_fixtures.py)

- dtypes.safetensors: one tensor of each dtype safetensors and fastvision share, with
  metadata; dtypes.pth: the same tensors, written by torch.save.
- timm_convnext.safetensors / timm_vit.safetensors: small timm networks' state dicts
  (seeded as make_model_fixtures.seeded_weights does, timm's own names), and
  timm_convnext.pth / timm_vit.pth: a fixed input and timm's output in eval mode.
"""
import os
import sys

import timm
import torch
from safetensors.torch import save_file
from timm.models.convnext import ConvNeXt
from timm.models.vision_transformer import VisionTransformer

sys.path.insert(0, os.path.dirname(__file__))
from make_model_fixtures import seeded_weights  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), '..', 'test', 'fixtures', 'safetensors')
os.makedirs(OUT, exist_ok=True)


def main():
    torch.manual_seed(0)
    tensors = {
        'f32': torch.randn(2, 3),
        'f64': torch.randn(4, dtype=torch.float64),
        'f16': torch.randn(3, 2).half(),
        'bf16': torch.randn(5).bfloat16(),
        'i64': torch.arange(-3, 3, dtype=torch.int64).reshape(2, 3),
        'i32': torch.tensor([7, -8], dtype=torch.int32),
        'i16': torch.tensor([300, -301], dtype=torch.int16),
        'i8': torch.tensor([-5, 6], dtype=torch.int8),
        'u8': torch.tensor([0, 255, 17], dtype=torch.uint8),
        'bool': torch.tensor([True, False, True]),
        'scalar': torch.tensor(2.5),
        'empty': torch.zeros(0, 4),
    }
    save_file(tensors, os.path.join(OUT, 'dtypes.safetensors'), metadata={'format': 'pt', 'by': 'safetensors 0.8.0'})
    torch.save({k: v for k, v in tensors.items()}, os.path.join(OUT, 'dtypes.pth'))

    for name, model, size in [
        ('timm_convnext', ConvNeXt(depths=(1, 1, 2, 1), dims=(8, 16, 24, 32), num_classes=10, ls_init_value=0.5), 32),
        ('timm_vit', VisionTransformer(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, mlp_ratio=2.0, num_classes=10), 32),
    ]:
        seeded_weights(model)
        model.eval()
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(OUT, f'{name}.safetensors'))
        torch.manual_seed(12345)
        x = torch.randn(2, 3, size, size)
        with torch.no_grad():
            torch.save({'input': x, 'output': model(x)}, os.path.join(OUT, f'{name}.pth'))
        print(name, list(model.state_dict())[:6])
    print('wrote', OUT, 'with timm', timm.__version__)


if __name__ == '__main__':
    main()
