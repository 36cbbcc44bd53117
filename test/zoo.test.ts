// The weights zoo against a local HTTP server: a good download (cached, fetched
// once), an interrupted one, a corrupted one, and being offline.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fetchWeights, resolveWeights, WeightsError, type ZooEntry } from '../src/index.js';

const payload = Buffer.from(Array.from({ length: 300_000 }, (_, i) => (i * 7919) % 251));
const sha = createHash('sha256').update(payload).digest('hex');
const hits = new Map<string, number>();
let server: Server;
let base = '';
let dir = '';

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fastvision-zoo-'));
  server = createServer((req, res) => {
    hits.set(req.url!, (hits.get(req.url!) ?? 0) + 1);
    if (req.url === '/good.pth' || req.url === '/corrupt.pth') {
      const body = req.url === '/good.pth' ? payload : Buffer.from(payload).fill(0, 1000, 2000);
      res.writeHead(200, { 'content-length': body.length });
      res.end(body);
    } else if (req.url === '/cut.pth') {
      res.writeHead(200, { 'content-length': payload.length });
      res.write(payload.subarray(0, 100_000), () => res.destroy());
    } else {
      res.writeHead(404);
      res.end('not found');
    }
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  await new Promise((r) => server.close(r));
  await rm(dir, { recursive: true, force: true });
});

const entry = (file: string, sha256 = sha): ZooEntry => ({ url: `${base}/${file}`, sha256, fileName: file });

test('a good download lands in the cache once, checked, and is reused', async () => {
  const path = await fetchWeights(entry('good.pth'), { dir, progress: false });
  assert.equal(path, join(dir, 'good.pth'));
  assert.deepEqual(await readFile(path), payload);
  await fetchWeights(entry('good.pth'), { dir, progress: false });
  assert.equal(hits.get('/good.pth'), 1, 'the second call is served from the cache');
});

test('a checksum prefix (as torchvision publishes) is accepted', async () => {
  const sub = join(dir, 'prefix');
  const path = await fetchWeights({ ...entry('good.pth'), sha256: sha.slice(0, 8) }, { dir: sub, progress: false });
  assert.ok(existsSync(path));
});

test('an interrupted download is an error and leaves nothing in the cache', async () => {
  await assert.rejects(fetchWeights(entry('cut.pth'), { dir, progress: false }), (e: Error) => e instanceof WeightsError && /interrupted/.test(e.message));
  assert.ok(!(await readdir(dir)).some((f) => f.startsWith('cut.pth')), 'no file and no .partial left');
});

test('a corrupted download is an error and leaves nothing in the cache', async () => {
  await assert.rejects(fetchWeights(entry('corrupt.pth'), { dir, progress: false }), /corrupt: its SHA-256 is [0-9a-f]{64}, expected one starting/);
  assert.ok(!(await readdir(dir)).some((f) => f.startsWith('corrupt.pth')));
});

test('offline, the error says which file to put where', async () => {
  const offline: ZooEntry = { url: 'http://127.0.0.1:9/resnet34-b627a593.pth', sha256: 'b627a593', fileName: 'resnet34-b627a593.pth' };
  await assert.rejects(fetchWeights(offline, { dir, progress: false }), (e: Error) => e.message.includes(`put it at ${join(dir, 'resnet34-b627a593.pth')}`));
  await assert.rejects(fetchWeights(entry('missing.pth'), { dir, progress: false }), /HTTP 404/);
});

test('weights can be a local file; an unknown name is a clear error', async () => {
  const local = join(dir, 'mine.pth');
  await writeFile(local, 'x');
  assert.equal(await resolveWeights(local), local);
  await assert.rejects(resolveWeights('resnet35'), /'resnet35' is neither a zoo name \(resnet18, .*\) nor a readable file/);
});
