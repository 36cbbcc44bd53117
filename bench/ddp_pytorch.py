#!/usr/bin/env python3
"""One PyTorch rank of bench/ddp: ResNet-18 at 128^2, per-rank batch --bs, SGD
with momentum, DistributedDataParallel over Gloo (torch.distributed, env://),
one thread per process. Rank 0 prints one JSON line: the median step time."""
import argparse
import json
import os
import statistics
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F
import torchvision

p = argparse.ArgumentParser()
p.add_argument('--bs', type=int, default=16)
p.add_argument('--steps', type=int, default=10)
p.add_argument('--threads', type=int, default=1)
a = p.parse_args()
torch.set_num_threads(a.threads)
dist.init_process_group('gloo', init_method='env://')
rank, size = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)
model = torch.nn.parallel.DistributedDataParallel(torchvision.models.resnet18(num_classes=10))
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
x = torch.randn(a.bs, 3, 128, 128)
y = torch.arange(a.bs) % 10
times = []
for i in range(a.steps + 2):
    t0 = time.perf_counter()
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    if i >= 2:
        times.append(time.perf_counter() - t0)
if rank == 0:
    print(json.dumps({'step': statistics.median(times), 'steps': len(times), 'torch': torch.__version__}))
dist.destroy_process_group()
