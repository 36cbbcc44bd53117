// Module mechanics: PyTorch key names, children, train/eval, apply, freezing,
// strict state-dict loading that checks before it copies.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { nn, randn, tensor, tidy, type Tensor } from '../src/index.js';

class Block extends nn.Module {
  readonly conv = this.registerModule('conv', new nn.Conv2d(3, 4, 3, { padding: 1, bias: false }));
  readonly bn = this.registerModule('bn', new nn.BatchNorm2d(4));
  forward(x: Tensor): Tensor {
    return tidy(() => this.bn.forward(this.conv.forward(x)).relu());
  }
}

function makeNet(): nn.Sequential {
  return new nn.Sequential(new Block(), new nn.AdaptiveConcatPool2d(), new nn.Flatten(), new nn.Dropout(0.5), new nn.Linear(8, 3));
}

test('state dict keys follow PyTorch naming and order', () => {
  const net = makeNet();
  assert.deepEqual([...net.stateDict().keys()], ['0.conv.weight', '0.bn.weight', '0.bn.bias', '0.bn.running_mean', '0.bn.running_var', '0.bn.num_batches_tracked', '4.weight', '4.bias']);
  assert.deepEqual(
    [...net.namedParameters()].map(([n]) => n),
    ['0.conv.weight', '0.bn.weight', '0.bn.bias', '4.weight', '4.bias'],
  );
  assert.deepEqual(
    [...net.namedModules()].map(([n]) => n),
    ['', '0', '0.conv', '0.bn', '1', '1.ap', '1.mp', '2', '3', '4'],
  );
  assert.equal(net.at(-1).constructor.name, 'Linear');
});

test('train/eval reach every descendant; dropout and batch norm follow them', () => {
  const net = makeNet();
  net.eval();
  assert.ok(net.modules().every((m) => !m.training));
  tidy(() => {
    const x = randn([2, 3, 6, 6]);
    const a = net.forward(x);
    const b = net.forward(x);
    assert.ok(a.allclose(b), 'eval mode is deterministic');
  });
  const bn = (net.at(0) as Block).bn;
  assert.equal(bn.numBatchesTracked!.item(), 0, 'eval does not update statistics');
  net.train();
  tidy(() => net.forward(randn([2, 3, 6, 6])));
  assert.equal(bn.numBatchesTracked!.item(), 1);
});

test('freezing by requiresGrad keeps frozen weights out of backward', () => {
  const net = makeNet();
  (net.at(0) as Block).requiresGrad_(false);
  tidy(() =>
    net
      .forward(randn([2, 3, 6, 6]))
      .sum()
      .backward(),
  );
  assert.equal((net.at(0) as Block).conv.weight.grad, null);
  assert.notEqual((net.at(4) as nn.Linear).weight.grad, null);
});

test('apply visits children before parents', () => {
  const names: string[] = [];
  makeNet().apply((m) => names.push(m.constructor.name));
  assert.deepEqual(names, ['Conv2d', 'BatchNorm2d', 'Block', 'AdaptiveAvgPool2d', 'AdaptiveMaxPool2d', 'AdaptiveConcatPool2d', 'Flatten', 'Dropout', 'Linear', 'Sequential']);
});

test('loadStateDict checks everything before copying anything', () => {
  const net = makeNet();
  const before = (net.at(4) as nn.Linear).weight.toArray();
  const other = makeNet().stateDict();
  other.set('4.bias', tensor([1, 2]));
  assert.throws(() => net.loadStateDict(other), /size mismatch for 4\.bias: the checkpoint has \[2\], the model \[3\]/);
  assert.deepEqual((net.at(4) as nn.Linear).weight.toArray(), before, 'nothing was copied');
  const partial = new Map(makeNet().stateDict());
  partial.delete('4.weight');
  partial.set('extra', tensor([0]));
  assert.throws(() => net.loadStateDict(partial), /missing keys: 4\.weight[\s\S]*unexpected keys: extra/);
  const res = net.loadStateDict(partial, { strict: false });
  assert.deepEqual(res, { missingKeys: ['4.weight'], unexpectedKeys: ['extra'] });
});

test('toMemoryFormat moves 4-d parameters to channels-last in place, keeping values', () => {
  const net = makeNet();
  const w = (net.at(0) as Block).conv.weight;
  const before = w.toArray();
  net.toMemoryFormat('channelsLast');
  assert.ok(w.isContiguous('channelsLast'));
  assert.deepEqual(w.toArray(), before);
  assert.ok(w.requiresGrad);
});

test('modules print like PyTorch', () => {
  assert.match(makeNet().toString(), /\(0\): Block\(\n {4}\(conv\): Conv2d\(3, 4, kernel_size=\(3, 3\), stride=\(1, 1\), padding=\(1, 1\), bias=False\)/);
});
