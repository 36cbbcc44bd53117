#!/usr/bin/env python3
"""One rank of the interop check (scripts/ddp-interop.mjs): joins a Gloo group
with torch.distributed (init_method env://) next to fastvision ranks and runs the
same collectives as test/ddp-worker.ts's 'collectives' mode, printing what arrived
as JSON. Run with Debian's PyTorch (/usr/bin/python3, torch 1.13)."""
import json
import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist

dist.init_process_group('gloo', init_method='env://', timeout=timedelta(seconds=30))
rank, size = dist.get_rank(), dist.get_world_size()
a = torch.tensor([rank + 1.0, 10.0 * (rank + 1)])
dist.all_reduce(a)
b = torch.tensor([42.0, 7.0]) if rank == 0 else torch.tensor([-1.0, -1.0])
dist.broadcast(b, 0)
g = [torch.zeros(1) for _ in range(size)]
dist.all_gather(g, torch.tensor([float(rank)]))
res = {'rank': rank, 'allReduce': a.tolist(), 'broadcast': b.tolist(), 'allGather': [t.item() for t in g], 'torch': torch.__version__}
with open(os.environ['DDP_OUT'] + '.' + str(rank), 'w') as f:
    json.dump(res, f)
# The collectives are what is checked. PyTorch 2.6's teardown, as rank 0 serving the store,
# sometimes waited past the harness's minute once the fastvision rank had left: exit at once.
sys.stdout.flush()
os._exit(0)
