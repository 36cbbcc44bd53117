// fastai v2's names for a trained model: `learn.export(path)` writes the self-describing
// model file, `loadLearner(path, { device })` reads it back, and `learn.predict(image)`
// classifies one photo (a path or its bytes) as `fastvision predict` does.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { closeLoaderWorkers, ConvLearner, exportOnnx, ImageClassifierData, InputError, loadLearner, manualSeed, mobilenet_v2_nsfwjs, serve, tfmsFromModel } from '../src/index.js';
import { photos, repoRoot } from './helpers.js';

let home = '';
let data: ImageClassifierData;
before(async () => {
  home = await mkdtemp(join(tmpdir(), 'fastvision-learner-api-'));
  process.env.FASTVISION_HOME = home;
  data = await ImageClassifierData.fromPaths(join(photos, 'dogscats'), { tfms: tfmsFromModel(mobilenet_v2_nsfwjs, 48), bs: 4 });
});
after(async () => {
  await closeLoaderWorkers();
  await rm(home, { recursive: true, force: true });
});

test('export, loadLearner and predict(image): the same answer from the learner, the loaded one, its bytes and fastvision predict', async () => {
  manualSeed(0);
  const learn = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, { log: null, device: 'cpu' });
  await learn.fit(1e-3, 1);
  const file = await learn.export(join(home, 'out', 'model.pth'));
  assert.equal(file, join(home, 'out', 'model.pth'));
  assert.ok(existsSync(join(home, 'out', 'model.json')));

  const cat = join(photos, 'dogscats', 'valid', 'cats', readdirSync(join(photos, 'dogscats', 'valid', 'cats'))[0]!);
  const mine = await learn.predict(cat);
  assert.deepEqual(Object.keys(mine).sort(), ['label', 'probability', 'probs']);
  assert.ok(data.classes.includes(mine.label));
  assert.equal(mine.probs.length, 2);
  assert.ok(Math.abs(mine.probs.reduce((a, b) => a + b, 0) - 1) < 1e-5);
  assert.equal(mine.probability, Math.max(...mine.probs));

  const loaded = await loadLearner(file, { device: 'cpu' });
  assert.deepEqual(loaded.data.classes, data.classes);
  const theirs = await loaded.predict(cat);
  const fromBytes = await loaded.predict(readFileSync(cat));
  for (const p of [theirs, fromBytes]) {
    assert.equal(p.label, mine.label);
    p.probs.forEach((v, i) => assert.ok(Math.abs(v - mine.probs[i]!) < 1e-6, `class ${i}: ${v} against ${mine.probs[i]}`));
  }

  const cli = spawnSync(process.execPath, [join(repoRoot, 'dist', 'src', 'cli', 'bin.js'), 'predict', join(home, 'out'), cat, '--json', '--top', '2', '--device', 'cpu'], {
    encoding: 'utf8',
    env: { ...process.env, FASTVISION_HOME: home },
    timeout: 120_000,
  });
  assert.equal(cli.status, 0, cli.stderr);
  const [row] = JSON.parse(cli.stdout) as { top: { label: string; p: number }[] }[];
  assert.equal(row!.top[0]!.label, theirs.label);
  for (const t of row!.top)
    assert.ok(Math.abs(t.p - theirs.probs[data.classes.indexOf(t.label)]!) < 1e-5, `${t.label}: fastvision predict ${t.p}, learn.predict ${theirs.probs[data.classes.indexOf(t.label)]}`);
});

test('loadLearner names the file it cannot read; predict names the image it cannot decode', async () => {
  await assert.rejects(loadLearner(join(home, 'nowhere', 'model.pth')), (e: Error) => e instanceof InputError && /no such model: .*nowhere/.test(e.message));
  const learn = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, { log: null, device: 'cpu' });
  await assert.rejects(learn.predict(Buffer.from('not an image at all')), (e: Error) => e instanceof InputError && /cannot read image/.test(e.message));
});

test('exportOnnx and serve from the API: a learner to ONNX and a web page, served by onnxruntime and by libtorch, answering as learn.predict', async () => {
  manualSeed(1);
  const learn = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, { log: null, device: 'cpu' });
  const dog = join(photos, 'dogscats', 'valid', 'dogs', readdirSync(join(photos, 'dogscats', 'valid', 'dogs'))[0]!);
  const mine = await learn.predict(dog);
  const dir = join(home, 'onnx');
  const files = await exportOnnx(learn, dir, { web: join(home, 'site') });
  for (const f of [files.onnx, files.withPreprocessing!, files.metadata, files.web!]) assert.ok(existsSync(f), f);
  assert.deepEqual((JSON.parse(readFileSync(files.metadata, 'utf8')) as { labels: string[] }).labels, learn.data.classes, 'metadata.json names the classes');
  assert.match(readFileSync(files.web!, 'utf8'), /<title>fastvision classifier<\/title>/);
  assert.deepEqual(readFileSync(join(home, 'site', 'model-preprocess.onnx')), readFileSync(files.withPreprocessing!), 'the page carries the exported graph');
  assert.ok(
    readFileSync(join(home, 'site', 'ort-wasm-simd-threaded.wasm'))
      .subarray(0, 4)
      .equals(Buffer.from([0, 0x61, 0x73, 0x6d])),
    "and onnxruntime-web's wasm",
  );
  const saved = await learn.export(join(home, 'served', 'model.pth'));
  const ask = async (url: string): Promise<Map<string, number>> => {
    const res = await fetch(`${url}/predict?top=2`, { method: 'POST', body: new Blob([new Uint8Array(readFileSync(dog))]), headers: { 'content-type': 'image/jpeg' } });
    assert.equal(res.status, 200);
    const { top } = (await res.json()) as { top: { label: string; probability: number }[] };
    return new Map(top.map((t) => [t.label, t.probability]));
  };
  for (const [model, runtime, tolerance] of [
    [saved, 'libtorch', 1e-5],
    [files.onnx, 'onnx', 1e-3],
  ] as const) {
    const server = await serve(model, { runtime, port: 0, device: 'cpu' });
    try {
      const answer = await ask(server.url);
      data.classes.forEach((c, i) => assert.ok(Math.abs(answer.get(c)! - mine.probs[i]!) < tolerance, `${runtime}: ${c} ${answer.get(c)} against learn.predict's ${mine.probs[i]}`));
    } finally {
      await server.close();
    }
  }
});

test("unfreezeAsAdvised follows the architecture's measured advice, as fastvision train does, unless the caller decides", async () => {
  const learn = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, { log: null, device: 'cpu' });
  const advice = learn.arch.unfreezeAdvice!;
  const plan = learn.unfreezeAsAdvised(0.01);
  assert.equal(plan.bnFreeze, advice.bnFreeze);
  assert.equal(learn.bnFrozen, advice.bnFreeze);
  assert.equal(plan.lr, Math.min(0.01 * advice.lrFactor, advice.maxLr ?? Infinity));
  assert.match(plan.note!, /^unfreezing mobilenet_v2_nsfwjs with batch-norm statistics/);
  assert.ok(
    learn.model.parameters().every((p) => p.requiresGrad),
    'every group trains',
  );
  const lesson = learn.unfreezeAsAdvised(0.01, { lessonUnfreeze: true });
  assert.deepEqual(lesson, { bnFreeze: false, lr: 0.01, note: undefined });
  assert.equal(learn.bnFrozen, false);
});
