#!/usr/bin/env python3
"""The PyTorch side of bench/serve: batched inference (eval, no_grad) of fastvision's
classifier built from torchvision (body, concat pooling, fast.ai's head), on a fixed
batch of random images; prints JSON with images/s per model."""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn as nn
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'scripts'))
from make_onnx_fixtures import AdaptiveConcatPool2d  # noqa: E402

BODIES = {
    'resnet34': (lambda m: nn.Sequential(*[getattr(m, n) for n in ['conv1', 'bn1', 'relu', 'maxpool', 'layer1', 'layer2', 'layer3', 'layer4']]), 512),
    'mobilenet_v2': (lambda m: m.features, 1280),
}


def classifier(name, classes):
    cut, nf = BODIES[name]
    body = cut(getattr(torchvision.models, name)())
    head = nn.Sequential(nn.BatchNorm1d(2 * nf), nn.Dropout(0.25), nn.Linear(2 * nf, 512), nn.ReLU(), nn.BatchNorm1d(512), nn.Dropout(0.5), nn.Linear(512, classes), nn.Softmax(1))
    return nn.Sequential(body, AdaptiveConcatPool2d(), nn.Flatten(), head).eval()


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--batch', type=int, default=32)
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--steps', type=int, default=4)
    p.add_argument('--threads', type=int, default=0)
    p.add_argument('--classes', type=int, default=37)
    p.add_argument('--models', default='resnet34,mobilenet_v2')
    args = p.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    out = {'torch': torch.__version__}
    for name in args.models.split(','):
        torch.manual_seed(0)
        model = classifier(name, args.classes)
        x = torch.randn(args.batch, 3, args.size, args.size)
        with torch.no_grad():
            model(x)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                model(x)
            out[name] = args.batch * args.steps / (time.perf_counter() - t0)
    print(json.dumps(out))


if __name__ == '__main__':
    main()
