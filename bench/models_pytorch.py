#!/usr/bin/env python3
"""The PyTorch side of bench/models: torchvision resnet34 and mobilenet_v2 inference
(eval mode, no_grad) on a fixed batch, NCHW and (with --formats) channels-last;
prints JSON with every timed batch per model ("name", and "name channels_last")."""
import argparse
import json
import time

import torch
import torchvision


def run(name, fmt, args):
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)().eval()
    x = torch.randn(args.batch, 3, args.size, args.size)
    if fmt == 'channels_last':
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    times = []
    with torch.no_grad():
        for i in range(args.warmup + args.steps):
            t0 = time.perf_counter()
            model(x)
            if i >= args.warmup:
                times.append(time.perf_counter() - t0)
    return times


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--batch', type=int, default=32)
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--steps', type=int, default=5)
    p.add_argument('--warmup', type=int, default=2)
    p.add_argument('--threads', type=int, default=0)
    p.add_argument('--models', default='resnet34,mobilenet_v2')
    p.add_argument('--formats', default='nchw')
    args = p.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    out = {'torch': torch.__version__}
    for name in args.models.split(','):
        for fmt in args.formats.split(','):
            out[name if fmt == 'nchw' else f'{name} {fmt}'] = run(name, fmt, args)
    print(json.dumps(out))


if __name__ == '__main__':
    main()
