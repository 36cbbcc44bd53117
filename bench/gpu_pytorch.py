#!/usr/bin/env python3
"""The PyTorch side of bench/gpu: torchvision's ResNet, one SGD-momentum training step
on a fixed batch already on the device, eager, in float32 (NCHW) and in AMP (autocast
fp16 with torch.amp.GradScaler, or bf16; channels-last). Each step ends with a device
synchronisation. Prints JSON with the step times of each mode."""
import argparse
import json
import time

import torch
import torch.nn.functional as F
import torchvision


def sync(device):
    if device.startswith('cuda'):
        torch.cuda.synchronize(device)


def run(mode, args):
    torch.manual_seed(0)
    build = torchvision.models.resnet18 if args.arch == 'resnet18' else torchvision.models.resnet50
    model = build(num_classes=args.classes).to(args.device)
    x = torch.randn(args.batch, 3, args.size, args.size, device=args.device)
    y = torch.randint(0, args.classes, (args.batch,), device=args.device)
    amp = torch.float16 if args.amp == 'fp16' else torch.bfloat16
    if mode == 'amp':
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    scaler = torch.amp.GradScaler(args.device.split(':')[0]) if mode == 'amp' and amp == torch.float16 else None
    model.train()
    times = []
    kind = args.device.split(':')[0]
    for i in range(args.warmup + args.steps):
        sync(args.device)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        if mode == 'amp':
            with torch.autocast(kind, dtype=amp):
                loss = F.cross_entropy(model(x), y)
        else:
            loss = F.cross_entropy(model(x), y)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        sync(args.device)
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    return times


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--device', default='cuda:0')
    p.add_argument('--arch', default='resnet50')
    p.add_argument('--batch', type=int, default=64)
    p.add_argument('--size', type=int, default=224)
    p.add_argument('--steps', type=int, default=20)
    p.add_argument('--warmup', type=int, default=5)
    p.add_argument('--classes', type=int, default=1000)
    p.add_argument('--amp', default='fp16')
    p.add_argument('--modes', default='fp32,amp')
    args = p.parse_args()
    out = {'torch': torch.__version__, 'device': args.device}
    if args.device.startswith('cuda'):
        out['gpu'] = torch.cuda.get_device_name(args.device)
    for mode in args.modes.split(','):
        out[mode] = run(mode, args)
    print(json.dumps(out))


if __name__ == '__main__':
    main()
