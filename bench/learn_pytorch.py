#!/usr/bin/env python3
"""The PyTorch side of bench/learn: fast.ai's recipe by hand in PyTorch +
torchvision: resnet18 body (random weights; the arithmetic is the same) with
fast.ai's head, unfrozen, one epoch of SGD (momentum 0.9) on ImageFolder photos
with side-on augmentation at 224 (DataLoader num_workers=2), then validation.
Prints JSON: epoch seconds (training and validation)."""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
import torchvision.transforms as T
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from fastai_transforms import IMAGENET_NORM, side_on


class ConcatPool(nn.Module):
    def forward(self, x):
        return torch.cat([F.adaptive_max_pool2d(x, 1), F.adaptive_avg_pool2d(x, 1)], 1).flatten(1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--data', required=True)
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--bs', type=int, default=32)
    p.add_argument('--threads', type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    trn_tfm = side_on(args.size)
    val_tfm = T.Compose([T.Resize(args.size), T.CenterCrop(args.size), T.ToTensor(), IMAGENET_NORM])
    trn = DataLoader(ImageFolder(args.data + '/train', trn_tfm), batch_size=args.bs, shuffle=True, num_workers=2)
    val = DataLoader(ImageFolder(args.data + '/valid', val_tfm), batch_size=args.bs, num_workers=2)
    body = nn.Sequential(*list(torchvision.models.resnet18().children())[:-2])
    head = nn.Sequential(ConcatPool(), nn.BatchNorm1d(1024), nn.Dropout(0.25), nn.Linear(1024, 512), nn.ReLU(),
                         nn.BatchNorm1d(512), nn.Dropout(0.5), nn.Linear(512, 2), nn.LogSoftmax(1))
    model = nn.Sequential(body, head)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    t0 = time.perf_counter()
    model.train()
    for x, y in trn:
        opt.zero_grad(set_to_none=True)
        F.nll_loss(model(x), y).backward()
        opt.step()
    t1 = time.perf_counter()
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in val:
            correct += (model(x).argmax(1) == y).sum().item()
    t2 = time.perf_counter()
    print(json.dumps({'train': t1 - t0, 'valid': t2 - t1, 'torch': torch.__version__}))


if __name__ == '__main__':
    main()
