// Shared test helpers: fixtures made by scripts/ with PyTorch, and tolerant comparison.
import assert from 'node:assert/strict';
import v8 from 'node:v8';
import vm from 'node:vm';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { main } from '../src/cli/main.js';
import { buildClassifier } from '../src/learn/head.js';
import { saveNetwork } from '../src/learn/saved-model.js';
import { loadPth, manualSeed, noGrad, rand, randn, Tensor, tidy, type nn, type PthValue } from '../src/index.js';

const here = dirname(fileURLToPath(import.meta.url));
/** The repository root (tests run from dist/test/). */
export const repoRoot = join(here, '..', '..');
/** Where committed fixtures live. */
export const fixturesDir = join(repoRoot, 'test', 'fixtures');
/** The committed photo fixture (made from pets-sample by scripts/make-photo-fixture.mjs): dogscats/ and breeds/. */
export const photos = join(fixturesDir, 'photos');

/** Loads a fixture `.pth` as a Map. */
export async function fixture(path: string): Promise<Map<string, PthValue>> {
  const v = await loadPth(join(fixturesDir, path));
  assert.ok(v instanceof Map, `${path} holds a dict`);
  return v as Map<string, PthValue>;
}

/** A tensor entry of a fixture dict. */
export function tensorAt(m: Map<string, PthValue> | Map<string, Tensor>, key: string): Tensor {
  const v = m.get(key);
  assert.ok(v instanceof Tensor, `fixture has tensor '${key}'`);
  return v;
}

/** A nested dict entry of a fixture dict. */
export function dictAt(m: Map<string, PthValue>, key: string): Map<string, Tensor> {
  const v = m.get(key);
  assert.ok(v instanceof Map, `fixture has dict '${key}'`);
  return v as Map<string, Tensor>;
}

/** Asserts |a - b| <= atol + rtol * |b| elementwise, with the worst element in the message. */
export function assertClose(actual: Tensor, expected: Tensor, { rtol = 1e-5, atol = 1e-6, what = 'tensor' } = {}): void {
  assert.deepEqual(actual.shape, expected.shape, `${what}: shape`);
  const a = actual.toArray();
  const b = expected.toArray();
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < a.length; i++) {
    const excess = Math.abs(a[i]! - b[i]!) - (atol + rtol * Math.abs(b[i]!));
    if (excess > worstExcess || Number.isNaN(a[i]!) !== Number.isNaN(b[i]!)) {
      worstExcess = Number.isNaN(excess) ? Infinity : excess;
      worst = i;
    }
  }
  if (worst >= 0) {
    assert.fail(`${what}: element ${worst} is ${a[worst]}, expected ${b[worst]} (rtol ${rtol}, atol ${atol})`);
  }
}

/** Asserts two state dicts have the same keys in the same order and close values. */
export function assertStateClose(actual: Map<string, Tensor>, expected: Map<string, Tensor>, opts: { rtol?: number; atol?: number; what?: string } = {}): void {
  assert.deepEqual([...actual.keys()], [...expected.keys()], `${opts.what ?? 'state'}: keys`);
  for (const [k, t] of expected) assertClose(actual.get(k)!, t, { ...opts, what: `${opts.what ?? 'state'} ${k}` });
}

/** A photo as an NHWC float array in [0, 1], center-cropped and resized to size×size (sharp). */
export async function photoNHWC(file: string, size: number): Promise<Float32Array> {
  const { default: sharp } = await import('sharp');
  const raw = await sharp(file).resize(size, size, { fit: 'cover' }).removeAlpha().raw().toBuffer();
  return Float32Array.from(raw, (v) => v / 255);
}

/** The same weights as scripts/make_model_fixtures.py's seeded_weights. */
export function seededWeights(model: nn.Module): void {
  noGrad(() => {
    [...model.stateDict()].forEach(([k, v], i) => {
      if (v.dtype !== 'float32') return;
      tidy(() => {
        manualSeed(i);
        let w;
        if (k.endsWith('running_var') || (v.ndim === 1 && k.endsWith('weight'))) w = rand(v.shape).mul(0.5).add(0.75);
        else if (v.ndim === 1) w = randn(v.shape).mul(0.1);
        else w = randn(v.shape).mul(Math.sqrt(2 / (v.numel / v.shape[0]!)));
        v.copy_(w);
      });
    });
  });
}

/** `fastvision predict --json --top <all>` run in this process: file → probability by label. */
export async function predictInProcess(model: string, files: string[], top = 1000): Promise<Map<string, Map<string, number>>> {
  const out: string[] = [];
  const log = console.log;
  console.log = (...a: unknown[]) => void out.push(a.join(' '));
  try {
    assert.equal(await main(['predict', model, ...files, '--json', '--top', String(top)]), 0);
  } finally {
    console.log = log;
  }
  const rows = JSON.parse(out.join('\n')) as { file: string; top: { label: string; p: number }[] }[];
  return new Map(rows.map((r) => [r.file, new Map(r.top.map((t) => [t.label, t.p]))]));
}

/**
 * Saves the offline MobileNetV2 with fast.ai's head (the head's weights seeded, so
 * its answers are not trivial) as a model fastvision can predict with, export and serve.
 */
export async function saveSeededModel(dir: string, classes: string[], size: number): Promise<void> {
  const { model, headSpec } = await buildClassifier('mobilenet_v2_nsfwjs', classes.length, { pretrained: true });
  seededWeights(model.getModule('head')!);
  await saveNetwork(dir, model, { format: 'fastvision-model', version: 1, arch: 'mobilenet_v2_nsfwjs', classes, size, xtraFc: headSpec!.xtraFc, ps: headSpec!.ps });
}

/** V8's full garbage collection, without --expose-gc on the test runner's command line. */
export function collector(): () => void {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

/**
 * Gives `model` the seeded weights, runs the fixture `models/<file>.pth`'s input in eval
 * mode and compares with torchvision's output (rtol 1e-4); disposes the model.
 */
export async function checkModelOutput(name: string, model: nn.Module, file = name): Promise<void> {
  const fx = await fixture(`models/${file}.pth`);
  seededWeights(model);
  model.eval();
  const y = noGrad(() => model.forward(tensorAt(fx, 'input')));
  const expected = tensorAt(fx, 'output');
  const scale = expected.abs().max().item();
  assertClose(y, expected, { rtol: 1e-4, atol: 1e-5 * scale, what: `${name} output` });
  model.dispose();
}
