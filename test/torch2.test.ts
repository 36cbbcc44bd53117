// Files move both ways with PyTorch 2: a state dict that PyTorch 2's torch.save
// wrote (committed, from scripts/make_torch2_fixtures.py) loads with PyTorch's
// outputs; and, where this machine's Python has torch (the Debian 13 root's suite,
// npm run test:torch2), torchvision's resnet18 saved there loads with no missing or
// unexpected key, and fastvision's model.pth loads with torch.load(weights_only=True)
// through the documented snippet to the probabilities `fastvision predict` prints, and
// fastvision's c10d ranks and torch.distributed's run collectives together.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { buildClassifier } from '../src/learn/head.js';
import { saveNetwork } from '../src/learn/saved-model.js';
import { archOf, loadPth, loadStateDictFile, nn, noGrad, parsePth, PthError, resnet18, rngFor, savePth, Tensor, tensor, tfmsFromModel, loadTransformed } from '../src/index.js';
import { readZip, writeZip } from '../src/torch/serialization/zip.js';
import { assertClose, fixture, fixturesDir, photos, predictInProcess, repoRoot, seededWeights, tensorAt } from './helpers.js';

const PYTHON = process.env.FASTVISION_TEST_PYTHON ?? '/usr/bin/python3';
const made: string[] = [];
const tmp = async (): Promise<string> => {
  const d = await mkdtemp(join(tmpdir(), 'fastvision-torch2-'));
  made.push(d);
  return d;
};
after(async () => {
  for (const d of made) await rm(d, { recursive: true, force: true });
});

/** The torch version of this machine's Python, or null when it has none. */
function pythonTorch(): string | null {
  const r = spawnSync(PYTHON, ['-c', 'import torch, torchvision; print(torch.__version__)'], { encoding: 'utf8', timeout: 120_000 });
  return r.status === 0 ? r.stdout.trim() : null;
}
const torchVersion = pythonTorch();
// Inside the project's Debian 13 root these tests are the point: never skip them there.
const mustRun = process.env.FASTVISION_IN_TORCH2_ROOT === '1';
const skipPython = torchVersion === null && !mustRun ? `${PYTHON} has no torch and torchvision (the Debian 13 root's suite runs this: npm run test:torch2)` : false;

/** Runs a Python script with this machine's torch; its last stdout line is JSON. */
function python(script: string, args: string[]): unknown {
  assert.ok(torchVersion !== null, `${PYTHON} must have torch and torchvision here`);
  const r = spawnSync(PYTHON, ['-c', script, ...args], { encoding: 'utf8', timeout: 300_000, cwd: repoRoot });
  assert.equal(r.status, 0, `python failed: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!);
}

/** The same network as scripts/make_torch2_fixtures.py's small_convnet, in fastvision's nn. */
function smallConvnet(): nn.Sequential {
  return new nn.Sequential(
    new nn.Conv2d(3, 8, 3, { padding: 1, bias: false }),
    new nn.BatchNorm2d(8),
    new nn.ReLU(),
    new nn.MaxPool2d(2),
    new nn.Conv2d(8, 16, 3, { padding: 1 }),
    new nn.BatchNorm2d(16),
    new nn.ReLU(),
    new nn.AdaptiveAvgPool2d(1),
    new nn.Flatten(),
    new nn.Linear(16, 5),
  );
}

test("a state dict written by PyTorch 2's torch.save (byteorder record, aligned storages) loads with PyTorch's outputs", async () => {
  const records = readZip(readFileSync(join(fixturesDir, 'torch2', 'saved_by_torch2.pth')));
  assert.ok(
    [...records.keys()].some((k) => k.endsWith('/byteorder')),
    'the fixture is in the PyTorch 2 layout',
  );
  const fx = await fixture('torch2/saved_by_torch2.pth');
  assert.match(String(fx.get('version')), /^2\./);
  const model = smallConvnet();
  model.loadStateDict(fx.get('state_dict') as Map<string, Tensor>);
  model.eval();
  const y = noGrad(() => model.forward(tensorAt(fx, 'input')));
  assertClose(y, tensorAt(fx, 'output'), { rtol: 1e-4, atol: 1e-5, what: 'output' });
  model.dispose();
});

test('a .pth whose byteorder record is not little is refused, naming the file', () => {
  const records = readZip(readFileSync(join(fixturesDir, 'torch2', 'saved_by_torch2.pth')));
  const entries = [...records].map(([name, data]) => ({ name, data: name.endsWith('/byteorder') ? new TextEncoder().encode('big') : data }));
  assert.throws(
    () => parsePth(writeZip(entries), 'big.pth'),
    (e: unknown) => e instanceof PthError && /big\.pth/.test(e.message) && /byteorder/.test(e.message) && /big/.test(e.message),
  );
});

const SAVE_RESNET18 = `
import json, sys, torch, torchvision
sys.path.insert(0, 'scripts')
from make_model_fixtures import seeded_weights
model = torchvision.models.resnet18(num_classes=10)
seeded_weights(model)
model.eval()
torch.manual_seed(7)
x = torch.randn(2, 3, 64, 64)
with torch.no_grad():
    y = model(x)
torch.save(model.state_dict(), sys.argv[1])
torch.save({'input': x, 'output': y}, sys.argv[2])
print(json.dumps({'torch': torch.__version__}))
`;

test("torchvision's resnet18 saved by this machine's PyTorch loads into fastvision's resnet18: no missing or unexpected key, the same outputs", { skip: skipPython }, async () => {
  const dir = await tmp();
  const weights = join(dir, 'resnet18.pth');
  const io = join(dir, 'io.pth');
  python(SAVE_RESNET18, [weights, io]);
  const state = await loadStateDictFile(weights);
  const model = resnet18({ numClasses: 10 });
  // loadStateDict checks every key and shape first: a missing or unexpected key throws, naming it.
  model.loadStateDict(state);
  assert.deepEqual([...state.keys()], [...model.stateDict().keys()]);
  model.eval();
  const fx = (await loadPth(io)) as Map<string, Tensor>;
  const y = noGrad(() => model.forward(fx.get('input')!));
  const expected = fx.get('output')!;
  assertClose(y, expected, { rtol: 1e-4, atol: 1e-5 * expected.abs().max().item(), what: 'resnet18 output' });
  model.dispose();
});

/** The documented Python snippet for loading a fastvision model.pth in PyTorch (docs/PYTORCH.md, the block after its marker). */
function documentedSnippet(): string {
  const doc = readFileSync(join(repoRoot, 'docs', 'PYTORCH.md'), 'utf8');
  const at = doc.indexOf('<!-- tested by test/torch2.test.ts');
  assert.ok(at >= 0, 'docs/PYTORCH.md has the marked snippet');
  const m = /```python\n([\s\S]*?)```/.exec(doc.slice(at));
  assert.ok(m, 'a python block follows the marker');
  return m[1]!;
}

test("fastvision's model.pth loads with torch.load(weights_only=True) through the documented snippet, with fastvision predict's probabilities", { skip: skipPython }, async () => {
  const dir = await tmp();
  const classes = ['cat', 'dog'];
  const size = 64;
  const { model, headSpec } = await buildClassifier('resnet18', classes.length, { pretrained: false });
  seededWeights(model);
  await saveNetwork(dir, model, { format: 'fastvision-model', version: 1, arch: 'resnet18', classes, size, xtraFc: headSpec!.xtraFc, ps: headSpec!.ps });
  model.dispose();
  const files = ['cats', 'dogs'].map((c) => join(photos, 'dogscats', 'valid', c)).map((d) => join(d, readdirSync(d).sort()[0]!));
  const predicted = await predictInProcess(dir, files);
  // fastvision's own input for each photo, so that the comparison is of the models alone.
  const val = tfmsFromModel(archOf('resnet18'), size).val;
  const buf = new Float32Array(files.length * 3 * size * size);
  for (let i = 0; i < files.length; i++) await loadTransformed(files[i]!, val, rngFor(0), buf, i * 3 * size * size);
  const inputs = join(dir, 'inputs.pth');
  await savePth(inputs, new Map([['x', tensor(buf, { shape: [files.length, 3, size, size] })]]));
  const script = `${documentedSnippet()}
import json, sys
model = fastvision_model(sys.argv[1])
x = torch.load(sys.argv[2], weights_only=True)['x']
with torch.no_grad():
    print(json.dumps(model(x).softmax(1).tolist()))
`;
  const probs = python(script, [join(dir, 'model.pth'), inputs]) as number[][];
  files.forEach((f, i) => {
    classes.forEach((c, j) => {
      const p = predicted.get(f)!.get(c)!;
      assert.ok(Math.abs(probs[i]![j]! - p) < 1e-4, `${f} ${c}: PyTorch ${probs[i]![j]}, fastvision predict ${p}`);
    });
  });
  // And from the photo files, through the documented torchvision transform on Pillow's decoding.
  const fromFiles = `${documentedSnippet()}
import json, sys
model = fastvision_model(sys.argv[1])
with torch.no_grad():
    print(json.dumps([model(fastvision_input(f, ${size})).softmax(1)[0].tolist() for f in sys.argv[2:]]))
`;
  const probs2 = python(fromFiles, [join(dir, 'model.pth'), ...files]) as number[][];
  files.forEach((f, i) => {
    classes.forEach((c, j) => {
      const p = predicted.get(f)!.get(c)!;
      assert.ok(Math.abs(probs2[i]![j]! - p) < 1e-3, `${f} ${c}: PyTorch from the file ${probs2[i]![j]}, fastvision predict ${p}`);
    });
  });
});

test("fastvision's ranks and this machine's torch.distributed ranks run Gloo collectives together (scripts/ddp-interop.mjs)", { skip: skipPython }, () => {
  assert.ok(torchVersion !== null, `${PYTHON} must have torch here`);
  const r = spawnSync(process.execPath, [join(repoRoot, 'scripts', 'ddp-interop.mjs')], { encoding: 'utf8', timeout: 180_000, env: { ...process.env, FASTVISION_BENCH_PYTHON: PYTHON } });
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /RESULT ddp_interop_with_pytorch ok/);
  assert.equal((r.stdout.match(/: OK/g) ?? []).length, 2, r.stdout);
});
