#!/usr/bin/env python3
"""The PyTorch side of bench/parity: trains torchvision's resnet18 from the given
initial state dict on the given Fashion-MNIST subset, in the given batch order,
with the given per-iteration learning rates (SGD, momentum 0.9), and prints the
test accuracy as JSON. Everything that could differ is decided by bench/parity.ts."""
import gzip
import json
import sys

import numpy as np
import torch
import torch.nn.functional as F
import torchvision


def idx(path):
    with gzip.open(path, 'rb') as f:
        data = f.read()
    rank = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(rank)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


def images(split, n):
    d = '/usr/share/datasets/fashion-mnist/'
    pre = 'train' if split == 'train' else 't10k'
    x = idx(d + pre + '-images-idx3-ubyte.gz')[:n].astype(np.float32) / 255.0
    y = idx(d + pre + '-labels-idx1-ubyte.gz')[:n].astype(np.int64)
    x = (x - 0.286) / 0.353
    x = np.pad(x, ((0, 0), (2, 2), (2, 2)))
    x = np.repeat(x[:, None], 3, axis=1)
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y)


def main():
    plan = json.load(open(sys.argv[1]))
    torch.set_num_threads(plan['threads'])
    xtr, ytr = images('train', plan['train'])
    xte, yte = images('test', plan['test'])
    model = torchvision.models.resnet18(num_classes=10)
    model.load_state_dict(torch.load(plan['init']))
    opt = torch.optim.SGD(model.parameters(), lr=plan['lr'], momentum=0.9, weight_decay=plan['wd'])
    it = 0
    for order in plan['orders']:
        model.train()
        for b in range(0, len(order) - plan['bs'] + 1, plan['bs']):
            ix = torch.tensor(order[b:b + plan['bs']])
            for g in opt.param_groups:
                g['lr'] = plan['lr'] * plan['multipliers'][it]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(xtr[ix]), ytr[ix]).backward()
            opt.step()
            it += 1
    model.eval()
    with torch.no_grad():
        correct = sum((model(xte[i:i + 250]).argmax(1) == yte[i:i + 250]).sum().item() for i in range(0, len(yte), 250))
    print(json.dumps({'accuracy': correct / len(yte), 'iterations': it}))


if __name__ == '__main__':
    main()
