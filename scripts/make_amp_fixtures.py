"""Fixture for fastvision's GradScaler: PyTorch's torch.amp.GradScaler on the CPU
(PyTorch >= 2.3), step for step, with inf and NaN injected into the scaled gradients.

Run with a PyTorch 2.x (the Debian 13 root has 2.6), which writes into the root's copy:
    node scripts/torch2-root.mjs run -- python3 scripts/make_amp_fixtures.py
    cp ~/.cache/fastvision/torch2-root/root/fastvision/test/fixtures/amp/grad-scaler.json test/fixtures/amp/
"""
import json
import math
import os

import torch

torch.manual_seed(0)
w = torch.tensor([0.5, -1.0, 2.0, 0.25], dtype=torch.float32, requires_grad=True)
opt = torch.optim.SGD([w], lr=0.1, momentum=0.9)
scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_factor=2.0, backoff_factor=0.5, growth_interval=3)
# step -> (value, index) written into the scaled gradient after backward
inject = {2: ("inf", 1), 3: ("nan", 0), 7: ("-inf", 2), 8: ("inf", 3)}
steps = []
for i in range(14):
    c = torch.tensor([0.1 * (i + 1), -0.2, 0.3, 0.05 * (i % 3)], dtype=torch.float32)
    opt.zero_grad()
    loss = (w * c).sum()
    scaler.scale(loss).backward()
    if i in inject:
        v, k = inject[i]
        with torch.no_grad():
            w.grad[k] = float(v)
    before = w.detach().clone()
    scaler.step(opt)
    scaler.update()
    steps.append({
        "c": c.tolist(),
        "inject": None if i not in inject else {"value": inject[i][0], "index": inject[i][1]},
        "skipped": bool(torch.equal(before, w.detach())),
        "scale": scaler.get_scale(),
        "growthTracker": int(scaler._growth_tracker.item()),
        "w": w.detach().tolist(),
    })

out = {
    "torch": torch.__version__,
    "w0": [0.5, -1.0, 2.0, 0.25],
    "sgd": {"lr": 0.1, "momentum": 0.9},
    "scaler": {"initScale": 1024.0, "growthFactor": 2.0, "backoffFactor": 0.5, "growthInterval": 3},
    "steps": steps,
}
path = os.path.join(os.path.dirname(__file__), "..", "test", "fixtures", "amp", "grad-scaler.json")
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path, "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
print("wrote", path, [s["scale"] for s in steps])
