// A new user's program, compiled against the installed package (strict, nodenext) by
// scripts/consumer-test.mjs: train on the photo fixture at a tiny size, export the model file,
// read it back, classify one photo, export ONNX with the web page, and check that the ONNX
// model served through onnxruntime-node gives the same top class.
//   node app.js <photos folder> <output folder>
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ImageClassifierData, exportOnnx, loadLearner, mobilenet_v2_nsfwjs, serve, tfmsFromModel, visionLearner, type ImagePrediction } from 'fastvision';

const [photos, out] = process.argv.slice(2);
if (photos === undefined || out === undefined) throw new Error('usage: node app.js <photos folder> <output folder>');

const tfms = tfmsFromModel(mobilenet_v2_nsfwjs, 64);
const data = await ImageClassifierData.fromPaths(join(photos, 'dogscats'), { tfms, bs: 8 });
const learn = await visionLearner(data, mobilenet_v2_nsfwjs, { device: 'cpu', log: null });
await learn.fineTune(1, 1e-2);

const modelPath = join(out, 'model.pth');
await learn.export(modelPath);
const loaded = await loadLearner(modelPath, { device: 'cpu' });
const photo = join(photos, 'dogscats', 'valid', 'cats', 'Abyssinian_158.jpg');
const direct: ImagePrediction = await learn.predict(photo);
const reloaded = await loaded.predict(await readFile(photo));
assert.equal(reloaded.label, direct.label, 'the exported model file predicts as the learner');
assert.ok(Math.abs(reloaded.probability - direct.probability) < 1e-4, `same probability (${reloaded.probability} vs ${direct.probability})`);

const files = await exportOnnx(learn, join(out, 'onnx'), { web: join(out, 'site') });
assert.ok(files.web !== null, 'the web page was written');
const served = await serve(files.onnx, { runtime: 'onnx', host: '127.0.0.1', port: 0 });
try {
  const res = await fetch(new URL('predict', served.url), { method: 'POST', body: await readFile(photo), headers: { 'content-type': 'image/jpeg' } });
  assert.equal(res.status, 200, `POST /predict answered ${res.status}`);
  const { top } = (await res.json()) as { top: { label: string; probability: number }[] };
  assert.equal(top[0]?.label, direct.label, 'onnxruntime gives the same top class');
  assert.ok(Math.abs(top[0].probability - direct.probability) < 1e-3, `same probability on onnxruntime (${top[0].probability} vs ${direct.probability})`);
} finally {
  await served.close();
}
console.log(`consumer app: ${direct.label} ${direct.probability.toFixed(4)} (learner, model file and ONNX agree)`);
