// The architectures against torchvision: identical state-dict keys and shapes for
// every one, and identical outputs for the same weights (fixtures from
// scripts/make_model_fixtures.py; weights regenerated from seeds, see there).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  Bottleneck,
  densenet121,
  inception_v3,
  mobilenet_v2,
  nn,
  noGrad,
  randn,
  ResNet,
  resnet101,
  resnet152,
  resnet18,
  resnet34,
  resnet50,
  resnext101_32x8d,
  resnext101_64x4d,
  resnext50_32x4d,
  VGG,
  vgg16_bn,
  wide_resnet50_2,
  renameLegacyDenseNetKeys,
  tidy,
} from '../src/index.js';
import { checkModelOutput, fixturesDir } from './helpers.js';

const shapes = JSON.parse(readFileSync(join(fixturesDir, 'models', 'state_dict_shapes.json'), 'utf8')) as Record<string, [string, number[]][]>;

const builders: Record<string, () => nn.Module> = {
  resnet18,
  resnet34,
  resnet50,
  resnet101,
  resnet152,
  resnext50_32x4d,
  resnext101_32x8d,
  resnext101_64x4d,
  wide_resnet50_2,
  vgg16_bn,
  densenet121,
  mobilenet_v2,
  inception_v3,
};

for (const [name, expected] of Object.entries(shapes)) {
  test(`${name}: state dict keys and shapes are torchvision's`, () => {
    const build = builders[name];
    assert.ok(build, `an architecture named ${name}`);
    const model = build();
    const actual = [...model.stateDict()].map(([k, t]) => [k, t.shape]);
    assert.deepEqual(actual, expected);
    model.dispose();
  });
}

const checkOutput = (name: string, model: nn.Module, file?: string): Promise<void> => checkModelOutput(name, model, file);

test('resnet18 gives torchvision outputs for the same weights', () => checkOutput('resnet18', resnet18({ numClasses: 10 })));
test('mobilenet_v2 gives torchvision outputs for the same weights', () => checkOutput('mobilenet_v2', mobilenet_v2({ numClasses: 10 })));
test('densenet121 gives torchvision outputs for the same weights', () => checkOutput('densenet121', densenet121({ numClasses: 10 })));
test('inception_v3 gives torchvision outputs for the same weights (75×75, its minimum)', () => checkOutput('inception_v3', inception_v3({ numClasses: 10 })));
test('a narrow ResNeXt (grouped bottlenecks) gives torchvision outputs', () => checkOutput('resnext_narrow', new ResNet(Bottleneck, [1, 1, 1, 1], { groups: 4, widthPerGroup: 4, numClasses: 10 })));
test('a narrow wide-ResNet gives torchvision outputs', () => checkOutput('wide_narrow', new ResNet(Bottleneck, [1, 2, 1, 1], { widthPerGroup: 16, numClasses: 10 })));
test('a narrow VGG with batch norm gives torchvision outputs', () => checkOutput('vgg_bn_narrow', new VGG([8, 'M', 16, 'M', 512, 'M'], { numClasses: 10 })));

test('torchvision DenseNet files with legacy key names are renamed on load', () => {
  const m = new Map([
    ['features.denseblock1.denselayer1.norm.1.weight', 1],
    ['features.denseblock1.denselayer1.conv.2.weight', 2],
    ['features.norm5.weight', 3],
  ]);
  assert.deepEqual([...renameLegacyDenseNetKeys(m).keys()], ['features.denseblock1.denselayer1.norm1.weight', 'features.denseblock1.denselayer1.conv2.weight', 'features.norm5.weight']);
});

test('architectures accept any input size (adaptive pooling)', () => {
  const m = resnet18({ numClasses: 3 }).eval();
  for (const s of [32, 57, 96]) tidy(() => assert.deepEqual(noGrad(() => m.forward(randn([1, 3, s, s]))).shape, [1, 3]));
  m.dispose();
});
