#!/usr/bin/env python3
"""The PyTorch side of bench/engine: torchvision's ResNet-18, one SGD-momentum
training step (forward, backward, update) on a fixed batch, NCHW and
channels-last (and, with --compile, the same under torch.compile's default
inductor backend, its compilation left to the warm-up steps); prints JSON with the
step times of each."""
import argparse
import json
import time

import torch
import torch.nn.functional as F
import torchvision


def run(fmt, args):
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=args.classes)
    x = torch.randn(args.batch, 3, args.size, args.size)
    y = torch.randint(0, args.classes, (args.batch,))
    if fmt == 'channels_last':
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    model.train()
    forward = torch.compile(model) if args.compile else model
    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(forward(x), y)
        loss.backward()
        opt.step()
        t = time.perf_counter() - t0
        if i >= args.warmup:
            times.append(t)
    return times


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--batch', type=int, default=32)
    p.add_argument('--size', type=int, default=128)
    p.add_argument('--steps', type=int, default=10)
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--classes', type=int, default=10)
    p.add_argument('--threads', type=int, default=0)
    p.add_argument('--formats', default='nchw,channels_last')
    p.add_argument('--compile', action='store_true', help='torch.compile the model (PyTorch 2)')
    args = p.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    out = {'torch': torch.__version__, 'threads': torch.get_num_threads()}
    for fmt in args.formats.split(','):
        out[fmt] = run(fmt, args)
    print(json.dumps(out))


if __name__ == '__main__':
    main()
