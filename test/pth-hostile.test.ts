// Hostile weights files: offsets, sizes and strides that point outside their
// storage or overflow 64 bits, storages that claim more bytes than the file has,
// views that would expand a few bytes into gigabytes, zip bombs. Each is a clear
// PthError naming the file, raised before anything large is allocated.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parsePth, PthError, serializePth, Tensor, tensor } from '../src/index.js';
import { readZip } from '../src/torch/serialization/zip.js';
import { deflatedZip, legacyPth, zipPth, type TensorClaim } from './pth-hostile.js';

const formats = [
  ['zip', zipPth],
  ['legacy', (c: TensorClaim) => legacyPth(c)],
] as const;

/** Peak RSS growth (MiB) while `fn` runs. */
function peakGrowthMiB(fn: () => void): number {
  const before = process.resourceUsage().maxRSS;
  fn();
  return (process.resourceUsage().maxRSS - before) / 1024;
}

function rejects(buf: Buffer, name: string, re: RegExp): void {
  let err: unknown;
  const growth = peakGrowthMiB(() => {
    try {
      parsePth(buf, name);
    } catch (e) {
      err = e;
    }
  });
  assert.ok(err instanceof PthError, `${name}: expected a PthError, got ${String(err)}`);
  assert.match((err as Error).message, new RegExp(`^${name.replace(/\./g, '\\.')}`), 'the error names the file');
  assert.match((err as Error).message, re);
  assert.ok(growth < 64, `${name}: peak memory grew by ${growth.toFixed(0)} MiB for a ${buf.length}-byte file`);
}

test('a well-formed view in either format still loads, with the right values', () => {
  for (const [kind, make] of formats) {
    const buf = make({ numel: 6, dataBytes: 24, offset: 1, size: [2, 2], stride: [2, 1] });
    // Fill the storage with 0..5 (float32), wherever each format keeps it.
    const data = new Float32Array([0, 1, 2, 3, 4, 5]);
    const bytes = Buffer.from(data.buffer);
    const v = parsePth(kind === 'legacy' ? Buffer.concat([buf.subarray(0, buf.length - 24), bytes]) : patchZipStorage(buf, bytes), kind) as Map<string, Tensor>;
    assert.deepEqual(v.get('weight')!.toArray(), [1, 2, 3, 4], kind);
  }
});

/** The zip file with the storage record's bytes replaced (re-packed, so that the CRC matches). */
function patchZipStorage(buf: Buffer, bytes: Buffer): Buffer {
  return deflatedZip([...readZip(buf)].map(([name, data]) => ({ name, data: name === 'archive/data/0' ? bytes : data })));
}

test('a storage offset near 2^62 (which overflows libtorch 1.13 own check) is refused, in both formats', () => {
  for (const [kind, make] of formats) {
    rejects(make({ numel: 4, dataBytes: 16, offset: 2n ** 62n, size: [4], stride: [1] }), `${kind}-2p62.pth`, /offset 4611686018427387904.*out of range/);
    // Its neighbour: (2^62 + 1024) × 4 bytes wraps to 4096 — 16 KiB of someone else's heap.
    rejects(make({ numel: 4, dataBytes: 16, offset: 2n ** 62n + 1024n, size: [4096], stride: [1] }), `${kind}-heap.pth`, /out of range/);
    rejects(make({ numel: 4, dataBytes: 16, offset: 1, size: [4], stride: [1] }), `${kind}-past.pth`, /reach element 4, but the storage has 4/);
    rejects(make({ numel: 4, dataBytes: 16, offset: 0, size: [2, 2], stride: [3, 2n ** 61n] }), `${kind}-stride.pth`, /reach element 2305843009213693955, but the storage has 4/);
    rejects(make({ numel: 4, dataBytes: 16, offset: 0, size: [3, 2], stride: [1, 2n ** 62n] }), `${kind}-stride2.pth`, /out of range/);
    rejects(make({ numel: 4, dataBytes: 16, offset: 0, size: [2], stride: [-1] }), `${kind}-negative.pth`, /non-negative/);
  }
});

test('a stride-0 view over a huge shape is refused before anything is allocated', () => {
  for (const [kind, make] of formats) {
    const buf = make({ numel: 4, dataBytes: 16, offset: 0, size: [100000, 100000], stride: [0, 0] });
    assert.ok(buf.length < 1024, `${kind}: a ${buf.length}-byte file`);
    rejects(buf, `${kind}-expand.pth`, /would take 40000000000 bytes from 16 bytes of storage/);
  }
  // A small repetition (e.g. an expanded bias) is within the budget and loads.
  const ok = parsePth(zipPth({ numel: 1, dataBytes: 4, offset: 0, size: [1000], stride: [0] })) as Map<string, Tensor>;
  assert.deepEqual(ok.get('weight')!.shape, [1000]);
});

test('a storage that claims more bytes than the file holds is refused (zip and legacy: 8 GB)', () => {
  rejects(zipPth({ numel: 2n ** 31n, dataBytes: 16, offset: 0, size: [4], stride: [1] }), 'zip-claim.pth', /storage 0 claims 8589934592 bytes .* but the file holds only 16/);
  rejects(legacyPth({ numel: 2n ** 31n, dataBytes: 16, offset: 0, size: [4], stride: [1] }), 'legacy-claim.pth', /storage 0 claims 8589934592 bytes/);
  rejects(zipPth({ numel: -4, dataBytes: 16, offset: 0, size: [4], stride: [1] }), 'zip-neg.pth', /invalid element count/);
  // The legacy storage's own header disagreeing with the object, or its data cut off.
  rejects(legacyPth({ numel: 4, dataBytes: 16, offset: 0, size: [4], stride: [1] }, 5n), 'legacy-count.pth', /truncated or of the wrong size/);
  const full = legacyPth({ numel: 4, dataBytes: 16, offset: 0, size: [4], stride: [1] });
  rejects(full.subarray(0, full.length - 8), 'legacy-cut.pth', /claims 16 bytes|truncated/);
});

test('zip bombs: a deflated record may not expand far beyond the file, nor beyond its declared size', () => {
  const good = readZip(serializePth(new Map([['w', tensor([1, 2, 3])]])));
  // Re-packed with deflate by another tool: still loads.
  const repacked = deflatedZip([...good].map(([name, data]) => ({ name, data })));
  assert.deepEqual(((parsePth(repacked) as Map<string, Tensor>).get('w') as Tensor).toArray(), [1, 2, 3]);
  // 64 MiB of zeros deflate to about 64 KiB: a 1000× expansion.
  const zeros = new Uint8Array(64 * 2 ** 20);
  const bomb = deflatedZip([...good].map(([name, data]) => ({ name, data: name.endsWith('data/0') ? zeros : data })));
  assert.ok(bomb.length < 2 ** 20, `${bomb.length} bytes`);
  rejects(bomb, 'bomb.pth', /would inflate to 67108864 bytes, beyond 16× the file's size/);
  // A record that declares 12 bytes but inflates to 64 MiB stops at 12.
  const liar = deflatedZip(
    [...good].map(([name, data]) => ({ name, data: name.endsWith('data/0') ? zeros : data })),
    (name, n) => (name.endsWith('data/0') ? 12 : n),
  );
  rejects(liar, 'liar.pth', /does not inflate to its declared 12 bytes/);
});

test('malformed pickles inside a valid zip are PthErrors, never crashes', () => {
  const good = readZip(serializePth(new Map([['w', tensor([1, 2, 3])]])));
  const pkl = good.get('archive/data.pkl')!;
  const huge = Buffer.concat([Buffer.from([0x80, 0x02, 0x8b]), Buffer.from([0, 0, 16, 0]), Buffer.alloc(1 << 20, 0x7f), Buffer.from([0x2e])]);
  for (const [name, data] of [
    ['truncated.pth', pkl.subarray(0, pkl.length - 5)],
    ['long-int.pth', huge],
    ['garbage.pth', Buffer.from([0x80, 0x02, 0xff, 0x2e])],
  ] as const) {
    const buf = deflatedZip([...good].map(([n, d]) => ({ name: n, data: n.endsWith('data.pkl') ? data : d })));
    rejects(buf, name, /.+/);
  }
});
