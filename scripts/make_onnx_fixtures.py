#!/usr/bin/env python3
"""PyTorch's own ONNX export of fastvision's resnet18 classifier, for comparison.

The network is fastvision's, built from torchvision's resnet18 with the same module
names: body (conv1 ... layer4), pool (concat pooling + flatten), fast.ai's head with
a softmax. `torch.onnx.export` writes it (opset 13, a dynamic batch, no constant
folding, so that every initializer keeps its state-dict name). The weights are not
committed: the file is stripped of their data, and the test fills each initializer
back in from the same seeded weights fastvision generates (see seeded_weights in
make_model_fixtures.py), then runs both files in onnxruntime.

Run: /usr/bin/python3 scripts/make_onnx_fixtures.py   (Debian's python3-torch, python3-onnx)
"""
import io
import os
from collections import OrderedDict

import onnx
import torch
import torch.nn as nn
import torchvision.models as tvm

from make_model_fixtures import seeded_weights  # the weights test/helpers.ts seededWeights mirrors

OUT = os.path.join(os.path.dirname(__file__), '..', 'test', 'fixtures', 'onnx')
os.makedirs(OUT, exist_ok=True)


class AdaptiveConcatPool2d(nn.Module):
    """fast.ai's pooling: max then average, concatenated along channels."""

    def __init__(self):
        super().__init__()
        self.ap = nn.AdaptiveAvgPool2d(1)
        self.mp = nn.AdaptiveMaxPool2d(1)

    def forward(self, x):
        return torch.cat([self.mp(x), self.ap(x)], 1)


def classifier(classes):
    full = tvm.resnet18()
    body = nn.Sequential(OrderedDict((n, getattr(full, n)) for n in ['conv1', 'bn1', 'relu', 'maxpool', 'layer1', 'layer2', 'layer3', 'layer4']))
    pool = nn.Sequential(AdaptiveConcatPool2d(), nn.Flatten())
    head = nn.Sequential(nn.BatchNorm1d(1024), nn.Dropout(0.25), nn.Linear(1024, 512), nn.ReLU(), nn.BatchNorm1d(512), nn.Dropout(0.5), nn.Linear(512, classes), nn.Softmax(1))
    return nn.Sequential(OrderedDict(body=body, pool=pool, head=head))


def main():
    model = classifier(3).eval()
    seeded_weights(model)
    x = torch.randn(2, 3, 64, 64)
    buf = io.BytesIO()
    torch.onnx.export(model, x, buf, input_names=['image'], output_names=['probabilities'], dynamic_axes={'image': {0: 'N'}, 'probabilities': {0: 'N'}},
                      opset_version=13, do_constant_folding=False, training=torch.onnx.TrainingMode.PRESERVE)
    m = onnx.load_from_string(buf.getvalue())
    names = set(model.state_dict().keys())
    stripped = 0
    for t in m.graph.initializer:
        if t.name in names:
            t.ClearField('raw_data')
            stripped += 1
    onnx.save(m, os.path.join(OUT, 'resnet18_pytorch.onnx'))
    print(f'resnet18_pytorch.onnx: {len(m.graph.node)} nodes, {stripped} initializers stripped of their data, opset {m.opset_import[0].version}')


if __name__ == '__main__':
    main()
