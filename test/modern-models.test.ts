// Today's backbones against torchvision 0.14: identical state-dict keys and shapes for
// every published architecture, and identical outputs for the same (seeded) weights on
// small members of each family (fixtures from scripts/make_modern_model_fixtures.py).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import * as models from '../src/vision/models/index.js';
import { ConvNeXt, EfficientNet, RegNet, regnetStages, StochasticDepth, SwinTransformer, VisionTransformer, type MBStage } from '../src/vision/models/index.js';
import { archOf, manualSeed, nn, ones } from '../src/index.js';
import { checkModelOutput, fixturesDir } from './helpers.js';

const shapes = JSON.parse(readFileSync(join(fixturesDir, 'models', 'modern_shapes.json'), 'utf8')) as Record<string, [string, number[]][]>;

test("every published ConvNeXt, EfficientNet, RegNet, ViT and Swin has torchvision's state-dict keys and shapes", () => {
  const builders = models as unknown as Record<string, (() => nn.Module) | undefined>;
  for (const [name, expected] of Object.entries(shapes)) {
    const build = builders[name];
    assert.ok(typeof build === 'function', `an architecture named ${name}`);
    const model = build();
    const actual = [...model.stateDict()].map(([k, t]) => [k, t.shape]);
    assert.deepEqual(actual, expected, name);
    // The classifier's input is the body's output: its width is what the arch declares.
    const linears = model.modules().filter((m): m is nn.Linear => m instanceof nn.Linear);
    assert.equal(archOf(name).bodyFeatures, linears[linears.length - 1]!.inFeatures, `${name}'s body features`);
    model.dispose();
  }
});

const checkOutput = (name: string, model: nn.Module, file?: string): Promise<void> => checkModelOutput(name, model, file);

const v2Narrow: MBStage[] = [
  { fused: true, expandRatio: 1, kernel: 3, stride: 1, cin: 8, cout: 8, layers: 2 },
  { fused: true, expandRatio: 4, kernel: 3, stride: 2, cin: 8, cout: 16, layers: 1 },
  { fused: false, expandRatio: 4, kernel: 3, stride: 2, cin: 16, cout: 24, layers: 2 },
];
const tinyVit = (imageSize: number): VisionTransformer => new VisionTransformer({ imageSize, patchSize: 8, numLayers: 2, numHeads: 2, hiddenDim: 16, mlpDim: 32, numClasses: 10 });
const tinySwin = (): SwinTransformer => new SwinTransformer({ patchSize: 4, embedDim: 16, depths: [2, 2], numHeads: [2, 4], windowSize: [4, 4], numClasses: 10 });

test('a narrow ConvNeXt (layer scale, LayerNorm2d, GELU) gives torchvision outputs', () =>
  checkOutput(
    'convnext_narrow',
    new ConvNeXt(
      [
        [16, 32, 1],
        [32, 48, 2],
        [48, null, 1],
      ],
      { layerScale: 0.5, numClasses: 10 },
    ),
  ));
test('efficientnet_b0 gives torchvision outputs', () => checkOutput('efficientnet_b0', models.efficientnet_b0({ numClasses: 10 })));
test('a narrow EfficientNetV2 (fused blocks, eps 1e-3) gives torchvision outputs', () =>
  checkOutput('efficientnet_v2_narrow', new EfficientNet(v2Narrow, { numClasses: 10, lastChannel: 64, bnEps: 1e-3 })));
test('regnet_y_400mf (squeeze-excitation) gives torchvision outputs', () => checkOutput('regnet_y_400mf', models.regnet_y_400mf({ numClasses: 10 })));
test('a narrow RegNetX from its design parameters gives torchvision outputs', () => checkOutput('regnet_x_narrow', new RegNet(regnetStages(6, 16, 12.5, 2.2, 8), { numClasses: 10 })));
test('a narrow ViT gives torchvision outputs', () => checkOutput('vit_narrow', tinyVit(32)));
test('a ViT at a larger input interpolates its position embeddings as torchvision does', () => checkOutput('vit at 48', tinyVit(32), 'vit_interpolated'));
test('a narrow Swin (shifted windows, relative position bias, patch merging) gives torchvision outputs', () => checkOutput('swin_narrow', tinySwin()));
test('a narrow Swin at an input that needs padding to whole windows gives torchvision outputs', () => checkOutput('swin_narrow_padded', tinySwin()));

test('stochastic depth drops whole samples in training with probability p and scales the rest by 1/(1−p); the identity in eval', () => {
  const sd = new StochasticDepth(0.25);
  manualSeed(3);
  const x = ones([4000, 2, 3]);
  const y = sd.forward(x);
  const perSample = y.view(4000, -1);
  const values = new Set(perSample.toArray().map((v) => v.toFixed(5)));
  assert.deepEqual([...values].sort(), ['0.00000', (1 / 0.75).toFixed(5)], 'each element is dropped or scaled by 1/(1−p)');
  // A sample is dropped or kept as a whole.
  const rows = perSample.maxDim(1).values.sub(perSample.minDim(1).values).abs().max().item();
  assert.equal(rows, 0);
  const kept = perSample.select(1, 0).gt(0).float().mean().item();
  assert.ok(Math.abs(kept - 0.75) < 0.03, `kept ${kept} of the samples, expected 0.75`);
  sd.eval();
  const e = sd.forward(x);
  assert.deepEqual(e.toArray(), x.toArray());
  for (const t of [x, y, perSample, e]) t.dispose();
});

test("every RegNet's stages (depths, widths, group widths) are torchvision's, regnet_y_128gf's too (too large to build here)", () => {
  const want = JSON.parse(readFileSync(join(fixturesDir, 'models', 'regnet_stages.json'), 'utf8')) as Record<
    string,
    { args: { depth: number; w_0: number; w_a: number; w_m: number; group_width: number; se_ratio?: number }; depths: number[]; widths: number[]; group_widths: number[]; se_ratio: number | null }
  >;
  assert.equal(Object.keys(want).length, 15);
  for (const [name, w] of Object.entries(want)) {
    const got = regnetStages(w.args.depth, w.args.w_0, w.args.w_a, w.args.w_m, w.args.group_width, w.args.se_ratio);
    assert.deepEqual([got.depths, got.widths, got.groupWidths, got.seRatio ?? null], [w.depths, w.widths, w.group_widths, w.se_ratio], name);
    assert.ok(archOf(name).weights === name && archOf(name).bodyFeatures === w.widths.at(-1), `${name}: its arch, zoo entry and body width`);
  }
});
