#!/usr/bin/env python3
"""The PyTorch side of bench/learn: fast.ai's recipe by hand in PyTorch +
torchvision: resnet18 body (random weights; the arithmetic is the same) with
fast.ai's head, unfrozen, one epoch of SGD (momentum 0.9) on ImageFolder photos
with side-on augmentation at 224 (DataLoader num_workers=2), then validation.
Prints JSON: epoch seconds (training and validation)."""
import argparse
import json
import random
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
import torchvision.transforms as T
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder


class RandomScale:
    def __init__(self, sz, max_zoom):
        self.sz, self.max_zoom = sz, max_zoom

    def __call__(self, img):
        return T.functional.resize(img, int(self.sz * random.uniform(1, self.max_zoom)))


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
    norm = T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    trn_tfm = T.Compose([RandomScale(args.size, 1.1), T.RandomApply([T.RandomRotation(10)], p=0.75),
                         T.ColorJitter(brightness=0.05, contrast=0.05), T.RandomHorizontalFlip(), T.RandomCrop(args.size), T.ToTensor(), norm])
    val_tfm = T.Compose([T.Resize(args.size), T.CenterCrop(args.size), T.ToTensor(), norm])
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
