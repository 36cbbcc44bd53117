#!/usr/bin/env python3
"""Makes the engine's PyTorch fixtures: per layer and loss the inputs, weights,
outputs and gradients; a small CNN trained 5 steps with SGD-momentum and with
Adam/AdamW from one init; default initializations under a fixed seed.

Run with Debian's PyTorch:  /usr/bin/python3 scripts/make_engine_fixtures.py
Writes test/fixtures/engine/*.pth (loaded by test/*.test.ts through fastvision's own .pth reader).
"""
import os
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(__file__), '..', 'test', 'fixtures', 'engine')
os.makedirs(OUT, exist_ok=True)


def save(name, obj):
    torch.save(obj, os.path.join(OUT, name + '.pth'))


def layer_case(name, module, input_shape, train=True, seed=0, input_fn=None):
    torch.manual_seed(seed)
    module.train(train)
    x = (input_fn() if input_fn else torch.randn(*input_shape)).requires_grad_(True)
    state_before = OrderedDict((k, v.clone()) for k, v in module.state_dict().items())
    y = module(x)
    # A fixed random projection makes every output element matter in the gradient.
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed + 1))
    (y * g).sum().backward()
    grads = OrderedDict((k, p.grad.clone()) for k, p in module.named_parameters() if p.grad is not None)
    save(name, {
        'input': x.detach(), 'output': y.detach(), 'grad_output': g, 'grad_input': x.grad,
        'state_before': state_before, 'state_after': module.state_dict(), 'grads': grads,
        'train': train,
    })


def loss_case(name, fn, logits, target):
    x = logits.clone().requires_grad_(True)
    loss = fn(x, target)
    loss.backward()
    save(name, {'input': logits, 'target': target, 'loss': loss.detach(), 'grad_input': x.grad})


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(x, 2)
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def training_case(name, make_opt):
    torch.manual_seed(42)
    model = SmallCNN()
    init = OrderedDict((k, v.clone()) for k, v in model.state_dict().items())
    xs = torch.randn(5, 6, 3, 12, 12)
    ys = torch.randint(0, 4, (5, 6))
    opt = make_opt(model)
    losses = []
    for i in range(5):
        opt.zero_grad()
        loss = F.cross_entropy(model(xs[i]), ys[i])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    save(name, {'init': init, 'xs': xs, 'ys': ys, 'losses': torch.tensor(losses, dtype=torch.float64),
                'final': model.state_dict()})


def main():
    layer_case('conv2d', nn.Conv2d(3, 4, 3, stride=2, padding=1), (2, 3, 9, 9))
    layer_case('conv2d_grouped', nn.Conv2d(4, 6, 3, padding=2, dilation=2, groups=2, bias=False), (2, 4, 7, 7))
    layer_case('linear', nn.Linear(10, 5), (4, 10))
    layer_case('batchnorm2d_train', nn.BatchNorm2d(3), (4, 3, 5, 5))
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.1, -0.2, 0.3]))
        bn.running_var.copy_(torch.tensor([1.5, 0.5, 2.0]))
        bn.weight.copy_(torch.tensor([1.2, 0.8, -0.5]))
        bn.bias.copy_(torch.tensor([0.1, 0.2, 0.3]))
    layer_case('batchnorm2d_eval', bn, (4, 3, 5, 5), train=False)
    layer_case('batchnorm1d_train', nn.BatchNorm1d(6), (8, 6))
    layer_case('relu', nn.ReLU(), (3, 7))
    layer_case('maxpool2d', nn.MaxPool2d(3, stride=2, padding=1), (2, 3, 9, 9))
    layer_case('avgpool2d', nn.AvgPool2d(2), (2, 3, 8, 8))
    layer_case('adaptive_avgpool2d', nn.AdaptiveAvgPool2d(3), (2, 3, 7, 7))
    layer_case('adaptive_maxpool2d', nn.AdaptiveMaxPool2d(3), (2, 3, 7, 7))
    layer_case('logsoftmax', nn.LogSoftmax(dim=1), (4, 5))
    layer_case('dropout', nn.Dropout(0.3), (6, 8))

    torch.manual_seed(0)
    logits = torch.randn(6, 5)
    target = torch.tensor([0, 4, 2, 2, 1, 3])
    loss_case('cross_entropy', F.cross_entropy, logits, target)
    loss_case('nll', lambda x, t: F.nll_loss(F.log_softmax(x, 1), t), logits, target)
    loss_case('bce_with_logits', F.binary_cross_entropy_with_logits, logits, (torch.rand(6, 5) > 0.5).float())

    # Default initialization: same seed, same libtorch generator, same values.
    torch.manual_seed(123)
    conv = nn.Conv2d(3, 4, 3)
    lin = nn.Linear(10, 5)
    save('init_default', {'conv': conv.state_dict(), 'linear': lin.state_dict()})

    training_case('train_sgd', lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4))
    training_case('train_sgd_nesterov', lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, nesterov=True))
    training_case('train_adam', lambda m: torch.optim.Adam(m.parameters(), lr=1e-2, weight_decay=1e-4))
    training_case('train_adamw', lambda m: torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=1e-2))
    # Differential learning rates: two parameter groups with their own lr.
    training_case('train_sgd_groups', lambda m: torch.optim.SGD(
        [{'params': [p for n, p in m.named_parameters() if not n.startswith('fc')], 'lr': 0.01},
         {'params': m.fc.parameters(), 'lr': 0.1}], lr=0.05, momentum=0.9))


def legacy_case():
    # Older torchvision weights (vgg16_bn, densenet121, ...) are in the pre-1.6 format.
    sd = OrderedDict([('conv.weight', torch.arange(24.).reshape(2, 3, 2, 2)), ('bn.num_batches_tracked', torch.tensor(5)),
                      ('fc.weight', torch.arange(6.).reshape(2, 3).t()), ('h', torch.arange(4, dtype=torch.float64))])
    torch.save(sd, os.path.join(OUT, 'legacy_format.pth'), _use_new_zipfile_serialization=False)


if __name__ == '__main__':
    legacy_case()
    main()
