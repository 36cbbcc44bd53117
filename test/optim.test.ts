// A small CNN trained 5 steps from one init, against PyTorch's weights after
// (SGD with momentum and weight decay, Nesterov, Adam, AdamW, parameter groups).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { F, manualSeed, nn, optim, randint, randn, tidy, type Tensor } from '../src/index.js';
import { assertStateClose, dictAt, fixture, tensorAt } from './helpers.js';

class SmallCNN extends nn.Module {
  readonly conv1 = this.registerModule('conv1', new nn.Conv2d(3, 8, 3, { padding: 1, bias: false }));
  readonly bn1 = this.registerModule('bn1', new nn.BatchNorm2d(8));
  readonly conv2 = this.registerModule('conv2', new nn.Conv2d(8, 16, 3, { stride: 2, padding: 1, bias: false }));
  readonly bn2 = this.registerModule('bn2', new nn.BatchNorm2d(16));
  readonly pool = this.registerModule('pool', new nn.AdaptiveAvgPool2d(1));
  readonly fc = this.registerModule('fc', new nn.Linear(16, 4));

  forward(x: Tensor): Tensor {
    return tidy(() => {
      let h = this.bn1.forward(this.conv1.forward(x)).relu();
      h = F.maxPool2d(h, 2);
      h = this.bn2.forward(this.conv2.forward(h)).relu();
      return this.fc.forward(this.pool.forward(h).flatten(1));
    });
  }
}

async function checkTraining(name: string, makeOpt: (m: SmallCNN) => optim.Optimizer): Promise<void> {
  const fx = await fixture(`engine/${name}.pth`);
  const model = new SmallCNN();
  model.loadStateDict(dictAt(fx, 'init'));
  const opt = makeOpt(model);
  const xs = tensorAt(fx, 'xs');
  const ys = tensorAt(fx, 'ys');
  const losses = tensorAt(fx, 'losses').toArray();
  for (let i = 0; i < 5; i++) {
    opt.zeroGrad();
    const loss = tidy(() => {
      const l = F.crossEntropy(model.forward(xs.select(0, i)), ys.select(0, i));
      l.backward();
      return l.item();
    });
    opt.step();
    assert.ok(Math.abs(loss - losses[i]!) <= 1e-5 * Math.abs(losses[i]!) + 1e-6, `${name} step ${i}: loss ${loss}, PyTorch ${losses[i]}`);
  }
  assertStateClose(model.stateDict(), dictAt(fx, 'final'), { rtol: 1e-5, atol: 1e-6, what: `${name} weights after 5 steps` });
  opt.dispose();
  model.dispose();
}

test('SGD with momentum and weight decay matches PyTorch after 5 steps', () => checkTraining('train_sgd', (m) => new optim.SGD(m.parameters(), { lr: 0.05, momentum: 0.9, weightDecay: 1e-4 })));
test('SGD with Nesterov momentum matches PyTorch after 5 steps', () => checkTraining('train_sgd_nesterov', (m) => new optim.SGD(m.parameters(), { lr: 0.05, momentum: 0.9, nesterov: true })));
test('Adam matches PyTorch after 5 steps', () => checkTraining('train_adam', (m) => new optim.Adam(m.parameters(), { lr: 1e-2, weightDecay: 1e-4 })));
test('AdamW matches PyTorch after 5 steps', () => checkTraining('train_adamw', (m) => new optim.AdamW(m.parameters(), { lr: 1e-2, weightDecay: 1e-2 })));
test('parameter groups carry their own learning rate (differential rates) as in PyTorch', () =>
  checkTraining('train_sgd_groups', (m) => {
    const body = [...m.namedParameters()].filter(([n]) => !n.startsWith('fc')).map(([, p]) => p);
    return new optim.SGD(
      [
        { params: body, lr: 0.01 },
        { params: m.fc.parameters(), lr: 0.1 },
      ],
      { lr: 0.05, momentum: 0.9 },
    );
  }));

test('optimizer state dict round-trips and resumes identically', () => {
  const a = new SmallCNN();
  const b = new SmallCNN();
  b.loadStateDict(a.stateDict());
  const optA = new optim.Adam(a.parameters(), { lr: 1e-2 });
  const optB = new optim.Adam(b.parameters(), { lr: 1e-2 });
  const step = (m: SmallCNN, o: optim.Optimizer, seed: number): void => {
    o.zeroGrad();
    tidy(() => {
      manualSeed(seed);
      F.crossEntropy(m.forward(randn([4, 3, 8, 8])), randint(0, 4, [4])).backward();
    });
    o.step();
  };
  step(a, optA, 1);
  optB.loadStateDict(optA.stateDict());
  b.loadStateDict(a.stateDict());
  step(a, optA, 2);
  step(b, optB, 2);
  assertStateClose(b.stateDict(), a.stateDict(), { rtol: 0, atol: 0, what: 'resumed' });
  assert.equal(optB.paramGroups[0]!.lr, 1e-2);
  assert.equal(optB.state.get(b.fc.weight)!.step, 2);
});
