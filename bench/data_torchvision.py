#!/usr/bin/env python3
"""The torchvision side of bench/data: ImageFolder + PIL doing fast.ai's side-on
training transforms at 224 (scale with random zoom up to 1.1, rotation up to 10°,
brightness/contrast 0.05, horizontal flip, random crop, normalization), batches of
64 from DataLoader(num_workers=2). Prints JSON: seconds per epoch and images."""
import argparse
import json
import time

import torch
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from fastai_transforms import side_on


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--data', required=True)
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--bs', type=int, default=64)
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--epochs', type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    tfm = side_on(args.size)
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
