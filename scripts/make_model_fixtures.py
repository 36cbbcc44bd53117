#!/usr/bin/env python3
"""Fixtures for the vision architectures, from torchvision 0.14 (Debian's python3-torchvision).

For every architecture: the state dict's keys and shapes (JSON), so the TypeScript
module tree must match torchvision's names exactly. For outputs, weights are not
committed: each state-dict entry i is drawn from libtorch's generator seeded with i
(recipe in `seeded_weights`, mirrored by test/models.test.ts; both sides use the same
libtorch generator), and the committed fixture holds the input and torchvision's
output in eval mode. Large architectures are checked through narrow variants built
from the same classes.

Run: /usr/bin/python3 scripts/make_model_fixtures.py
"""
import json
import math
import os

import torch
import torchvision.models as tvm
from torchvision.models.resnet import Bottleneck, ResNet
from torchvision.models.vgg import VGG, make_layers

OUT = os.path.join(os.path.dirname(__file__), '..', 'test', 'fixtures', 'models')
os.makedirs(OUT, exist_ok=True)

ARCHS = {
    'resnet18': tvm.resnet18, 'resnet34': tvm.resnet34, 'resnet50': tvm.resnet50,
    'resnet101': tvm.resnet101, 'resnet152': tvm.resnet152,
    'resnext50_32x4d': tvm.resnext50_32x4d, 'resnext101_32x8d': tvm.resnext101_32x8d,
    'resnext101_64x4d': tvm.resnext101_64x4d, 'wide_resnet50_2': tvm.wide_resnet50_2,
    'vgg16_bn': tvm.vgg16_bn, 'densenet121': tvm.densenet121, 'mobilenet_v2': tvm.mobilenet_v2,
    'inception_v3': lambda: tvm.inception_v3(init_weights=False, aux_logits=True),
}


def seeded_weights(model):
    """Deterministic weights: entry i of the state dict drawn after manual_seed(i)."""
    with torch.no_grad():
        for i, (k, v) in enumerate(model.state_dict().items()):
            if not v.is_floating_point():
                continue
            torch.manual_seed(i)
            if k.endswith('running_var'):
                v.copy_(torch.rand(v.shape) * 0.5 + 0.75)
            elif v.dim() == 1 and k.endswith('weight'):
                v.copy_(torch.rand(v.shape) * 0.5 + 0.75)
            elif v.dim() == 1:
                v.copy_(torch.randn(v.shape) * 0.1)
            else:
                v.copy_(torch.randn(v.shape) * math.sqrt(2.0 / v[0].numel()))


def output_case(name, model, size):
    seeded_weights(model)
    model.eval()
    torch.manual_seed(12345)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        y = model(x)
    torch.save({'input': x, 'output': y}, os.path.join(OUT, f'{name}.pth'))


def main():
    shapes = {}
    for name, ctor in ARCHS.items():
        sd = ctor().state_dict()
        shapes[name] = [[k, list(v.shape)] for k, v in sd.items()]
    with open(os.path.join(OUT, 'state_dict_shapes.json'), 'w') as f:
        json.dump(shapes, f, separators=(',', ':'))

    output_case('resnet18', tvm.resnet18(num_classes=10), 64)
    output_case('mobilenet_v2', tvm.mobilenet_v2(num_classes=10), 64)
    output_case('densenet121', tvm.densenet121(num_classes=10), 64)
    output_case('inception_v3', tvm.inception_v3(num_classes=10, init_weights=False, aux_logits=True), 75)
    # Narrow variants of the large families, from the same torchvision classes.
    output_case('resnext_narrow', ResNet(Bottleneck, [1, 1, 1, 1], groups=4, width_per_group=4, num_classes=10), 64)
    output_case('wide_narrow', ResNet(Bottleneck, [1, 2, 1, 1], width_per_group=16, num_classes=10), 64)
    output_case('vgg_bn_narrow', VGG(make_layers([8, 'M', 16, 'M', 512, 'M'], batch_norm=True), num_classes=10), 32)
    print('wrote', OUT)


if __name__ == '__main__':
    main()
