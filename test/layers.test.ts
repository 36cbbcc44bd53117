// Each layer and loss against PyTorch: outputs, input and weight gradients,
// running statistics (fixtures from scripts/make_engine_fixtures.py).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { F, manualSeed, nn, randn, tidy, type Tensor } from '../src/index.js';
import { assertClose, assertStateClose, dictAt, fixture, tensorAt } from './helpers.js';

async function checkLayer(name: string, module: nn.Module): Promise<void> {
  const fx = await fixture(`engine/${name}.pth`);
  module.loadStateDict(dictAt(fx, 'state_before'));
  module.train(fx.get('train') === true);
  tidy(() => {
    const x = tensorAt(fx, 'input').clone().requiresGrad_(true);
    const y = module.forward(x);
    assertClose(y, tensorAt(fx, 'output'), { what: `${name} output` });
    y.mul(tensorAt(fx, 'grad_output')).sum().backward();
    assertClose(x.grad!, tensorAt(fx, 'grad_input'), { what: `${name} input gradient` });
    for (const [k, g] of dictAt(fx, 'grads')) {
      const p = [...module.namedParameters()].find(([n]) => n === k)?.[1];
      assert.ok(p, `${name} has parameter ${k}`);
      assertClose(p.grad!, g, { what: `${name} gradient of ${k}` });
    }
    assertStateClose(module.stateDict(), dictAt(fx, 'state_after'), { what: `${name} state after` });
  });
}

test('Conv2d matches PyTorch (stride, padding, bias)', () => checkLayer('conv2d', new nn.Conv2d(3, 4, 3, { stride: 2, padding: 1 })));
test('Conv2d matches PyTorch (groups, dilation, no bias)', () => checkLayer('conv2d_grouped', new nn.Conv2d(4, 6, 3, { padding: 2, dilation: 2, groups: 2, bias: false })));
test('Linear matches PyTorch', () => checkLayer('linear', new nn.Linear(10, 5)));
test('BatchNorm2d in training mode matches PyTorch, running stats included', () => checkLayer('batchnorm2d_train', new nn.BatchNorm2d(3)));
test('BatchNorm2d in eval mode uses running stats as PyTorch does', () => checkLayer('batchnorm2d_eval', new nn.BatchNorm2d(3)));
test('BatchNorm1d in training mode matches PyTorch', () => checkLayer('batchnorm1d_train', new nn.BatchNorm1d(6)));
test('ReLU matches PyTorch', () => checkLayer('relu', new nn.ReLU()));
test('MaxPool2d matches PyTorch', () => checkLayer('maxpool2d', new nn.MaxPool2d(3, { stride: 2, padding: 1 })));
test('AvgPool2d matches PyTorch', () => checkLayer('avgpool2d', new nn.AvgPool2d(2)));
test('AdaptiveAvgPool2d matches PyTorch on an odd size', () => checkLayer('adaptive_avgpool2d', new nn.AdaptiveAvgPool2d(3)));
test('AdaptiveMaxPool2d matches PyTorch on an odd size', () => checkLayer('adaptive_maxpool2d', new nn.AdaptiveMaxPool2d(3)));
test('LogSoftmax matches PyTorch', () => checkLayer('logsoftmax', new nn.LogSoftmax(1)));
test('Dropout with the same seed draws the same mask as PyTorch', async () => {
  // The fixture drew its input with randn right after seeding; draw the same to reach the same generator state.
  manualSeed(0);
  randn([6, 8]).dispose();
  await checkLayer('dropout', new nn.Dropout(0.3));
});

async function checkLoss(name: string, fn: (x: Tensor, t: Tensor) => Tensor): Promise<void> {
  const fx = await fixture(`engine/${name}.pth`);
  tidy(() => {
    const x = tensorAt(fx, 'input').clone().requiresGrad_(true);
    const loss = fn(x, tensorAt(fx, 'target'));
    assertClose(loss, tensorAt(fx, 'loss'), { what: `${name} loss` });
    loss.backward();
    assertClose(x.grad!, tensorAt(fx, 'grad_input'), { what: `${name} input gradient` });
  });
}

test('cross entropy matches PyTorch', () => checkLoss('cross_entropy', (x, t) => new nn.CrossEntropyLoss().forward(x, t)));
test('NLL on log-softmax matches PyTorch', () => checkLoss('nll', (x, t) => new nn.NLLLoss().forward(x.logSoftmax(1), t)));
test('BCE with logits matches PyTorch', () => checkLoss('bce_with_logits', (x, t) => new nn.BCEWithLogitsLoss().forward(x, t)));

test('default initialization draws the same weights as PyTorch under the same seed', async () => {
  const fx = await fixture('engine/init_default.pth');
  manualSeed(123);
  const conv = new nn.Conv2d(3, 4, 3);
  const lin = new nn.Linear(10, 5);
  assertStateClose(conv.stateDict(), dictAt(fx, 'conv'), { rtol: 0, atol: 0, what: 'conv init' });
  assertStateClose(lin.stateDict(), dictAt(fx, 'linear'), { rtol: 0, atol: 0, what: 'linear init' });
  conv.dispose();
  lin.dispose();
});

test('AdaptiveConcatPool2d concatenates max then average pooling', () => {
  tidy(() => {
    const x = randn([2, 3, 5, 5]);
    const y = new nn.AdaptiveConcatPool2d().forward(x);
    assert.deepEqual(y.shape, [2, 6, 1, 1]);
    assertClose(y.slice(1, 0, 3), F.adaptiveMaxPool2d(x, 1), { what: 'max half' });
    assertClose(y.slice(1, 3, 6), F.adaptiveAvgPool2d(x, 1), { what: 'avg half' });
  });
});
