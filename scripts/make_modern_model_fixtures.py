#!/usr/bin/env python3
"""Fixtures for today's backbones (ConvNeXt, EfficientNet V1/V2, RegNet, ViT, Swin),
from torchvision 0.14 (Debian's python3-torchvision), in the way of make_model_fixtures.py:

- modern_shapes.json: every published architecture's state-dict keys and shapes;
- for outputs, seeded weights (make_model_fixtures.seeded_weights, mirrored by
  test/helpers.ts) and torchvision's output in eval mode for a fixed input, on small
  members of each family built from torchvision's own classes;
- vit_interpolated.pth: a ViT's output at a larger input, its position embeddings
  resized by torchvision's interpolate_embeddings;
- regnet_stages.json: every RegNet's design parameters and the stages torchvision's
  BlockParams computes from them (regnet_y_128gf included, too large to build in the tests).

Run: /usr/bin/python3 scripts/make_modern_model_fixtures.py
"""
import json
import os
import sys
from functools import partial

import torch
import torchvision.models as tvm
from torch import nn
from torchvision.models.convnext import CNBlockConfig, ConvNeXt
from torchvision.models.efficientnet import EfficientNet, FusedMBConvConfig, MBConvConfig
from torchvision.models.regnet import BlockParams, RegNet
from torchvision.models.swin_transformer import SwinTransformer
from torchvision.models.vision_transformer import VisionTransformer, interpolate_embeddings

sys.path.insert(0, os.path.dirname(__file__))
from make_model_fixtures import OUT, seeded_weights  # noqa: E402

NAMES = (
    ['convnext_tiny', 'convnext_small', 'convnext_base', 'convnext_large']
    + [f'efficientnet_b{i}' for i in range(8)]
    + ['efficientnet_v2_s', 'efficientnet_v2_m', 'efficientnet_v2_l']
    + [f'regnet_y_{s}' for s in ['400mf', '800mf', '1_6gf', '3_2gf', '8gf', '16gf', '32gf']]
    + [f'regnet_x_{s}' for s in ['400mf', '800mf', '1_6gf', '3_2gf', '8gf', '16gf', '32gf']]
    + ['vit_b_16', 'vit_b_32', 'vit_l_16', 'swin_t', 'swin_s', 'swin_b']
)


def output_case(name, model, size, batch=2):
    seeded_weights(model)
    model.eval()
    torch.manual_seed(12345)
    x = torch.randn(batch, 3, size, size)
    with torch.no_grad():
        y = model(x)
    torch.save({'input': x, 'output': y}, os.path.join(OUT, f'{name}.pth'))
    return model


def tiny_vit(image_size):
    return VisionTransformer(image_size=image_size, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=10)


def regnet_stages():
    import inspect
    import re
    import torchvision.models.regnet as R
    out = {}
    for name in [n for n in NAMES if n.startswith('regnet')] + ['regnet_y_128gf']:
        src = inspect.getsource(getattr(R, name))
        args = eval('dict(' + re.search(r'from_init_params\((.*?)\*\*kwargs', src, re.S).group(1).strip().rstrip(',') + ')')
        p = BlockParams.from_init_params(**args)
        out[name] = {'args': args, 'depths': p.depths, 'widths': p.widths, 'group_widths': p.group_widths, 'se_ratio': p.se_ratio}
    with open(os.path.join(OUT, 'regnet_stages.json'), 'w') as f:
        json.dump(out, f)


def main():
    regnet_stages()
    shapes = {}
    for name in NAMES:
        sd = getattr(tvm, name)().state_dict()
        shapes[name] = [[k, list(v.shape)] for k, v in sd.items()]
        print(name, len(sd), flush=True)
    with open(os.path.join(OUT, 'modern_shapes.json'), 'w') as f:
        json.dump(shapes, f, separators=(',', ':'))

    output_case('convnext_narrow', ConvNeXt([CNBlockConfig(16, 32, 1), CNBlockConfig(32, 48, 2), CNBlockConfig(48, None, 1)], layer_scale=0.5, num_classes=10), 32)
    output_case('efficientnet_b0', tvm.efficientnet_b0(num_classes=10), 64)
    v2 = [FusedMBConvConfig(1, 3, 1, 8, 8, 2), FusedMBConvConfig(4, 3, 2, 8, 16, 1), MBConvConfig(4, 3, 2, 16, 24, 2)]
    output_case('efficientnet_v2_narrow', EfficientNet(v2, 0.2, num_classes=10, last_channel=64, norm_layer=partial(nn.BatchNorm2d, eps=1e-3)), 32)
    output_case('regnet_y_400mf', tvm.regnet_y_400mf(num_classes=10), 64)
    output_case('regnet_x_narrow', RegNet(BlockParams.from_init_params(depth=6, w_0=16, w_a=12.5, w_m=2.2, group_width=8), num_classes=10), 32)
    vit = output_case('vit_narrow', tiny_vit(32), 32)
    # The same weights at 48×48: torchvision's interpolate_embeddings, then a model built for 48.
    state = interpolate_embeddings(48, 8, vit.state_dict())
    big = tiny_vit(48)
    big.load_state_dict(state)
    big.eval()
    torch.manual_seed(12345)
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        torch.save({'input': x, 'output': big(x)}, os.path.join(OUT, 'vit_interpolated.pth'))
    swin = partial(SwinTransformer, patch_size=[4, 4], embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=[4, 4], num_classes=10)
    output_case('swin_narrow', swin(), 32)
    # 40 px: a 10×10 map, padded to windows of 4, and merged from an odd-free but unaligned grid.
    output_case('swin_narrow_padded', swin(), 40)
    print('wrote', OUT)


if __name__ == '__main__':
    main()
