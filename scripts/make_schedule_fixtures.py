#!/usr/bin/env python3
"""Makes the schedule fixtures: PyTorch's OneCycleLR rates and momenta, step by
step, for the settings fastvision's fitOneCycle and fineTune use, and the
label-smoothing cross entropy of a few logits.

Run with Debian's PyTorch:  /usr/bin/python3 scripts/make_schedule_fixtures.py
Writes test/fixtures/schedule/onecycle.json (read by test/loop.test.ts).
"""
import json
import os

import torch
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(__file__), '..', 'test', 'fixtures', 'schedule')
os.makedirs(OUT, exist_ok=True)


def one_cycle(total, lr_max, pct_start, div, final_div, moms, optimizer):
    """fastai's parameters mapped onto OneCycleLR: its final_div_factor divides
    the initial rate (lr_max/div), fastai's div_final divides lr_max."""
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in lr_max]
    groups = [{'params': [p], 'lr': lr} for p, lr in zip(params, lr_max)]
    if optimizer == 'sgd':
        opt = torch.optim.SGD(groups, lr=lr_max[-1], momentum=0.9)
    else:
        opt = torch.optim.AdamW(groups, lr=lr_max[-1])
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr_max, total_steps=total, pct_start=pct_start, anneal_strategy='cos',
        div_factor=div, final_div_factor=final_div / div, base_momentum=moms[1], max_momentum=moms[0],
        cycle_momentum=True, three_phase=False)
    lrs, momenta = [], []
    for _ in range(total):
        lrs.append([g['lr'] for g in opt.param_groups])
        momenta.append(opt.param_groups[0]['momentum'] if optimizer == 'sgd' else opt.param_groups[0]['betas'][0])
        opt.step()
        sched.step()
    return {'total': total, 'lrMax': lr_max, 'pctStart': pct_start, 'divFactor': div, 'finalDiv': final_div,
            'moms': list(moms), 'optimizer': optimizer, 'lrs': lrs, 'momenta': momenta}


cases = [
    one_cycle(40, [1e-2], 0.25, 25.0, 1e5, (0.95, 0.85, 0.95), 'sgd'),
    # fineTune's frozen stage: pctStart 0.99.
    one_cycle(12, [2e-4, 2e-4, 2e-3], 0.99, 25.0, 1e5, (0.95, 0.85, 0.95), 'adamw'),
    # fineTune's unfrozen stage: slice(lr/100, lr), pctStart 0.3, div 5.
    one_cycle(37, [1e-5, 1e-4, 1e-3], 0.3, 5.0, 1e5, (0.95, 0.85, 0.95), 'sgd'),
]

torch.manual_seed(0)
logits = torch.randn(6, 5)
target = torch.tensor([0, 4, 2, 2, 1, 3])
smoothing = {'logits': logits.tolist(), 'target': target.tolist(),
             'loss': {str(eps): F.cross_entropy(logits, target, label_smoothing=eps).item() for eps in (0.0, 0.1, 0.3)}}

with open(os.path.join(OUT, 'onecycle.json'), 'w') as f:
    json.dump({'torch': torch.__version__, 'oneCycle': cases, 'labelSmoothing': smoothing}, f, indent=1)
print('wrote', os.path.join(OUT, 'onecycle.json'))
