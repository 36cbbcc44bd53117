#!/usr/bin/env python3
"""The torchvision side of bench/data: ImageFolder + PIL doing fast.ai's side-on
training transforms at 224 (scale with random zoom up to 1.1, rotation up to 10°,
brightness/contrast 0.05, horizontal flip, random crop, normalization), batches of
64 from DataLoader(num_workers=2). Prints JSON: seconds per epoch and images."""
import argparse
import json
import random
import time

import torch
import torchvision.transforms as T
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder


class RandomScale:
    """Shorter side to sz * U(1, max_zoom), as fast.ai's RandomScale."""

    def __init__(self, sz, max_zoom):
        self.sz, self.max_zoom = sz, max_zoom

    def __call__(self, img):
        return T.functional.resize(img, int(self.sz * random.uniform(1, self.max_zoom)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--data', required=True)
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--bs', type=int, default=64)
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--epochs', type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    tfm = T.Compose([
        RandomScale(args.size, 1.1),
        T.RandomApply([T.RandomRotation(10)], p=0.75),
        T.ColorJitter(brightness=0.05, contrast=0.05),
        T.RandomHorizontalFlip(),
        T.RandomCrop(args.size),
        T.ToTensor(),
        T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    ds = ImageFolder(args.data, transform=tfm)
    dl = DataLoader(ds, batch_size=args.bs, shuffle=True, num_workers=args.workers, persistent_workers=True)
    epochs = []
    for _ in range(args.epochs):
        t0 = time.perf_counter()
        n = 0
        for x, y in dl:
            n += x.shape[0]
        epochs.append(time.perf_counter() - t0)
    print(json.dumps({'epochs': epochs, 'images': n, 'torch': torch.__version__}))


if __name__ == '__main__':
    main()
