// .pth files both ways: fastvision reads torch.save's files and writes files
// torch.load reads; corrupt, truncated or hostile files are clear errors.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { loadPth, loadStateDictFile, nn, parsePth, savePth, serializePth, Tensor, tensor } from '../src/index.js';
import { writeZip } from '../src/torch/serialization/zip.js';
import { fixturesDir, fixture, tensorAt } from './helpers.js';
import { sampleMixed, sampleStateDict } from './pth-samples.js';

const made: string[] = [];
const tmp = async (): Promise<string> => {
  const d = await mkdtemp(join(tmpdir(), 'fastvision-pth-'));
  made.push(d);
  return d;
};
after(async () => {
  for (const d of made) await rm(d, { recursive: true, force: true });
});

test('reads a torch.save file: nested dicts, tensors of several dtypes, booleans', async () => {
  const fx = await fixture('engine/batchnorm2d_train.pth');
  assert.equal(fx.get('train'), true);
  const state = fx.get('state_after') as Map<string, Tensor>;
  assert.deepEqual([...state.keys()], ['weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked']);
  assert.equal(state.get('num_batches_tracked')!.dtype, 'int64');
  assert.equal(state.get('num_batches_tracked')!.item(), 1);
  assert.deepEqual(tensorAt(fx, 'input').shape, [4, 3, 5, 5]);
});

test('writes the exact bytes that PyTorch was checked to read (scripts/check_fastvision_pth.py)', async () => {
  const recorded = JSON.parse(await readFile(join(fixturesDir, 'engine/written_by_fastvision.json'), 'utf8')) as Record<string, string>;
  const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
  assert.equal(sha(serializePth(sampleStateDict(), 'written_by_fastvision')), recorded['written_by_fastvision.pth']);
  assert.equal(sha(serializePth(sampleMixed(), 'mixed_by_fastvision')), recorded['mixed_by_fastvision.pth']);
});

test('a state dict survives save and load, and loads into a model', async () => {
  const dir = await tmp();
  const model = new nn.Sequential(new nn.Conv2d(3, 4, 3), new nn.BatchNorm2d(4), new nn.Linear(4, 2));
  const path = join(dir, 'model.pth');
  await savePth(path, model.stateDict());
  const back = await loadStateDictFile(path);
  const other = new nn.Sequential(new nn.Conv2d(3, 4, 3), new nn.BatchNorm2d(4), new nn.Linear(4, 2));
  other.loadStateDict(back);
  for (const [k, t] of model.stateDict()) assert.deepEqual(other.stateDict().get(k)!.toArray(), t.toArray(), k);
});

test('mixed values round-trip: dtypes, non-contiguous tensors, numbers, big ints, unicode, nesting', async () => {
  const v = parsePth(serializePth(sampleMixed())) as Map<string, unknown>;
  assert.deepEqual((v.get('f64') as Tensor).toArray(), [Math.PI, -Math.E, 1e-300]);
  assert.equal((v.get('f64') as Tensor).dtype, 'float64');
  assert.deepEqual((v.get('i32') as Tensor).toArray(), [-2147483648, 0, 2147483647]);
  assert.deepEqual((v.get('u8') as Tensor).shape, [1, 3]);
  assert.equal((v.get('flags') as Tensor).dtype, 'bool');
  assert.deepEqual((v.get('flags') as Tensor).toArray(), [1, 0, 1]);
  assert.equal(v.get('epoch'), 3);
  assert.equal(v.get('lr'), 0.01);
  assert.equal(v.get('big'), 2 ** 40);
  assert.equal(v.get('name'), 'résumé ✓');
  assert.deepEqual((v.get('nested') as Map<string, unknown>).get('list'), [1, 2.5, 'x', true, null]);
  const sd = parsePth(serializePth(sampleStateDict())) as Map<string, Tensor>;
  assert.deepEqual(sd.get('2.weight')!.toArray(), [0, 0.5, 1, 1.5, 0.25, 0.75, 1.25, 1.75]);
});

test("reads PyTorch's legacy (pre-1.6) format, used by older torchvision weights", async () => {
  const sd = await loadStateDictFile(join(fixturesDir, 'engine/legacy_format.pth'));
  assert.deepEqual([...sd.keys()], ['conv.weight', 'bn.num_batches_tracked', 'fc.weight', 'h']);
  assert.deepEqual(sd.get('conv.weight')!.shape, [2, 3, 2, 2]);
  assert.deepEqual(
    sd.get('conv.weight')!.toArray(),
    Array.from({ length: 24 }, (_, i) => i),
  );
  assert.equal(sd.get('bn.num_batches_tracked')!.item(), 5);
  assert.deepEqual(sd.get('fc.weight')!.toArray(), [0, 3, 1, 4, 2, 5]);
  assert.equal(sd.get('h')!.dtype, 'float64');
  const cut = (await readFile(join(fixturesDir, 'engine/legacy_format.pth'))).subarray(0, 700);
  assert.throws(() => parsePth(cut, 'cut-legacy.pth'), /cut-legacy\.pth.*(truncated|end of data)/);
});

test('a corrupt file is a clear error naming it', async () => {
  const dir = await tmp();
  const good = serializePth(new Map([['w', tensor([1, 2, 3])]]));
  const flipped = Buffer.from(good);
  const at = flipped.indexOf(Buffer.from(Float32Array.of(1, 2, 3).buffer));
  assert.ok(at > 0);
  flipped[at + 5] = flipped[at + 5]! ^ 0xff; // one bit-flipped value inside the tensor's data
  const path = join(dir, 'flipped.pth');
  await writeFile(path, flipped);
  await assert.rejects(loadPth(path), (e: Error) => e.message.includes(path) && /corrupt|checksum|not a valid/.test(e.message));
});

test('a truncated file is a clear error', async () => {
  const dir = await tmp();
  const good = serializePth(sampleStateDict());
  const path = join(dir, 'cut.pth');
  await writeFile(path, good.subarray(0, Math.floor(good.length / 2)));
  await assert.rejects(loadPth(path), /cut\.pth: not a valid PyTorch zip file .*truncated/);
});

test('files that are not .pth, and pickles that torch.save did not write, are clear errors', async () => {
  assert.throws(() => parsePth(Buffer.from('hello, not a zip at all'), 'notes.txt'), /notes\.txt: not a valid PyTorch zip file/);
  assert.throws(() => parsePth(Buffer.from([0x80, 0x02, 0x4b, 0x07, 0x2e]), 'pickle.pkl'), /pickle\.pkl: not a PyTorch file/);
  await assert.rejects(loadPth('/nonexistent/model.pth'), /cannot read \/nonexistent\/model\.pth/);
});

test('a pickle that asks for anything but tensors and containers is refused (no code runs)', () => {
  const evil = Buffer.concat([Buffer.from([0x80, 0x02]), Buffer.from('cos\nsystem\n'), Buffer.from([0x58, 4, 0, 0, 0]), Buffer.from('echo'), Buffer.from([0x85, 0x52, 0x2e])]);
  const file = writeZip([
    { name: 'archive/data.pkl', data: evil },
    { name: 'archive/version', data: Buffer.from('3\n') },
  ]);
  assert.throws(() => parsePth(file, 'evil.pth'), /refusing to load 'os\.system'/);
});

test('a dict that is not a state dict is rejected by loadStateDictFile', async () => {
  const dir = await tmp();
  const path = join(dir, 'mixed.pth');
  await savePth(path, sampleMixed());
  await assert.rejects(loadStateDictFile(path), /mixed\.pth: not a state dict/);
});

test('saving is atomic: a failed save leaves the previous file intact and no temporary files', async () => {
  const dir = await tmp();
  const path = join(dir, 'weights.pth');
  await savePth(path, new Map([['w', tensor([1, 2, 3])]]));
  const before = await readFile(path);
  const disposed = tensor([4, 5, 6]);
  disposed.dispose();
  await assert.rejects(savePth(path, new Map([['w', disposed]])), /disposed/);
  assert.deepEqual(await readFile(path), before);
  assert.deepEqual(await readdir(dir), ['weights.pth']);
  await assert.rejects(savePth(join(dir, 'no-such-dir', 'w.pth'), new Map([['w', tensor([1])]])), /ENOENT/);
});
