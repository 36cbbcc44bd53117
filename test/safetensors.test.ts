// The safetensors reader and writer against the reference library's files
// (scripts/make_safetensors_fixtures.py, safetensors 0.8.0 and timm 1.0.29): every
// dtype, the metadata, hostile headers rejected with a SafetensorsError naming the
// file, and timm-named ConvNeXt and ViT weights loading into torchvision's modules.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  createPretrained,
  loadPth,
  loadStateDictFile,
  parseSafetensors,
  readSafetensors,
  SafetensorsError,
  saveStateDictFile,
  serializeSafetensors,
  Tensor,
  timmConvNeXtKeys,
  timmViTKeys,
  VisionTransformer,
  ConvNeXt,
  convnext_tiny,
  liveTensorCount,
  archOf,
  noGrad,
  type nn,
} from '../src/index.js';
import { fixturesDir } from './helpers.js';

const dir = join(fixturesDir, 'safetensors');
let tmp: string;
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'fastvision-safetensors-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** A tensor's values, through a float copy that is freed at once. */
const values = (t: Tensor): unknown[] => {
  const f = t.float();
  try {
    return Array.from(f.toArray() as ArrayLike<unknown>);
  } finally {
    if (f !== t) f.dispose();
  }
};

/**
 * Frees every tensor of a file at once, so that the leak check of the hostile-header
 * test counts its own tensors only, not earlier tests' being collected while it runs.
 */
const disposeAll = (tensors: Map<string, Tensor>): void => {
  for (const t of tensors.values()) t.dispose();
};

test("reads the reference writer's file: every dtype, shape and value as torch.save has them, and the metadata", async () => {
  const { tensors, metadata } = await readSafetensors(join(dir, 'dtypes.safetensors'));
  const expected = (await loadPth(join(dir, 'dtypes.pth'))) as Map<string, Tensor>;
  assert.deepEqual(metadata, { format: 'pt', by: 'safetensors 0.8.0' });
  assert.deepEqual([...tensors.keys()].sort(), [...expected.keys()].sort());
  for (const [k, want] of expected) {
    const got = tensors.get(k)!;
    assert.equal(got.dtype, want.dtype, `${k} dtype`);
    assert.deepEqual(got.shape, want.shape, `${k} shape`);
    assert.deepEqual(values(got), values(want), `${k} values`);
  }
  disposeAll(tensors);
  disposeAll(expected);
});

test('writes files it reads back exactly, header padded to 8 bytes, and keeps the metadata', async () => {
  const { tensors } = await readSafetensors(join(dir, 'dtypes.safetensors'));
  const live = liveTensorCount();
  const bytes = serializeSafetensors(tensors, { note: 'ünïcode ✓' });
  assert.equal(liveTensorCount(), live, 'serializing leaves no handle for the GC to free');
  const n = Number(bytes.readBigUInt64LE(0));
  assert.equal((8 + n) % 8, 0, 'the data starts 8-byte aligned');
  const back = parseSafetensors(bytes, 'round trip');
  assert.deepEqual(back.metadata, { note: 'ünïcode ✓' });
  for (const [k, t] of tensors) {
    const b = back.tensors.get(k)!;
    assert.equal(b.dtype, t.dtype);
    assert.deepEqual(b.shape, t.shape);
    assert.deepEqual(values(b), values(t), k);
  }
  disposeAll(tensors);
  disposeAll(back.tensors);
});

/** The ConvNeXt of the timm fixture, in torchvision's layout. */
const tinyConvNeXt = (): ConvNeXt =>
  new ConvNeXt(
    [
      [8, 16, 1],
      [16, 24, 1],
      [24, 32, 2],
      [32, null, 1],
    ],
    { numClasses: 10 },
  );

/** A safetensors file from a header object and a data section. */
function file(header: unknown, data: Buffer | number, raw?: string): Buffer {
  const json = Buffer.from(raw ?? JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, typeof data === 'number' ? Buffer.alloc(data) : data]);
}

test('hostile headers are SafetensorsErrors that say what is wrong, before anything large is allocated', async () => {
  const live = liveTensorCount();
  const cases: [string, Buffer, RegExp][] = [
    ['too short', Buffer.from([1, 2, 3]), /too short/],
    ['header past the end', Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]), Buffer.from('{}')]), /header claims \d+ bytes/],
    ['not JSON', file(null, 0, '{"a": '), /not JSON/],
    ['not an object', file({ a: 1 }, 0), /not described by an object/],
    ['unknown dtype', file({ a: { dtype: 'F8_E4M3', shape: [1], data_offsets: [0, 1] } }, 1), /dtype "F8_E4M3"/],
    ['negative dimension', file({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, 4), /invalid shape/],
    ['a shape whose product overflows 2^64', file({ a: { dtype: 'F32', shape: [2 ** 40, 2 ** 40, 2 ** 20], data_offsets: [0, 4] } }, 4), /does not match its byte range/],
    ['range shorter than the shape', file({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, 4), /does not match its byte range/],
    ['range past the data', file({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, 4), /truncated/],
    ['overlapping tensors', file({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, 4), /overlap or leave a gap/],
    ['a gap', file({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, 8), /overlap or leave a gap/],
    ['trailing bytes', file({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, 12), /cover 4 bytes of a data section of 12/],
    ['bad metadata', file({ __metadata__: { a: 1 } }, 0), /__metadata__ must map strings to strings/],
    ['not a header', file(null, 0, '[1, 2]'), /does not start with '\{'/],
  ];
  for (const [what, bytes, message] of cases) {
    assert.throws(
      () => parseSafetensors(bytes, 'bad.safetensors'),
      (e: Error) => e instanceof SafetensorsError && /bad\.safetensors/.test(e.message) && message.test(e.message),
      what,
    );
    const path = join(tmp, 'bad.safetensors');
    await writeFile(path, bytes);
    await assert.rejects(readSafetensors(path), (e: Error) => e instanceof SafetensorsError && message.test(e.message), `${what} (from a file)`);
  }
  assert.equal(liveTensorCount(), live, 'no tensor left behind');
});

test("timm's ConvNeXt, named as timm names it, loads into torchvision's module and gives timm's outputs", async () => {
  const state = timmConvNeXtKeys(await loadStateDictFile(join(dir, 'timm_convnext.safetensors')));
  const model = tinyConvNeXt();
  model.loadStateDict(state);
  await compareWith('timm_convnext', model);
});

test("timm's ViT (cls_token, pos_embed, fused qkv) loads into torchvision's module and gives timm's outputs", async () => {
  const state = timmViTKeys(await loadStateDictFile(join(dir, 'timm_vit.safetensors')));
  const model = new VisionTransformer({ imageSize: 32, patchSize: 8, numLayers: 2, numHeads: 2, hiddenDim: 16, mlpDim: 32, numClasses: 10 });
  model.loadStateDict(state);
  await compareWith('timm_vit', model);
});

/** The model's output for the fixture's input against timm's (its weights come from the file). */
async function compareWith(name: string, model: nn.Module): Promise<void> {
  const fx = (await loadPth(join(dir, `${name}.pth`))) as Map<string, Tensor>;
  model.eval();
  const y = noGrad(() => model.forward(fx.get('input')!));
  const want = fx.get('output')!;
  const diff = y.sub(want).abs().max().item();
  assert.ok(diff < 1e-4 * Math.max(1, want.abs().max().item()), `${name}: largest difference ${diff}`);
  model.dispose();
}

test('createPretrained and saveStateDictFile take .safetensors files; a timm file renames on load', async () => {
  const path = join(tmp, 'convnext.safetensors');
  const src = convnext_tiny();
  await saveStateDictFile(path, src.stateDict());
  assert.equal((await readFile(path)).readBigUInt64LE(0) > 0n, true);
  const m = await createPretrained('convnext_tiny', path, { progress: false });
  assert.deepEqual(values(m.stateDict().get('features.1.0.block.0.weight')!).slice(0, 5), values(src.stateDict().get('features.1.0.block.0.weight')!).slice(0, 5));
  src.dispose();
  m.dispose();
  // An architecture that knows timm's names takes timm's file as it is.
  const convnext = archOf('convnext_tiny');
  const tiny = { ...convnext, name: 'convnext_test', create: () => tinyConvNeXt() };
  const fromTimm = await createPretrained(tiny, join(dir, 'timm_convnext.safetensors'), { progress: false });
  await compareWith('timm_convnext', fromTimm);
});
