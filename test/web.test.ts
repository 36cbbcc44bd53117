// The exported web page in a real browser (Debian's Chromium, driven by
// playwright-core), as a user uses it: photos uploaded, labels and probabilities
// read from the page and compared with `fastvision predict`; the page's
// preprocessing compared value for value with fastvision's validation transform
// (EXIF-rotated JPEG and PNG included); the same page served by `fastvision serve`.
// A screenshot is kept in test-artifacts/.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import sharp from 'sharp';
import { main } from '../src/cli/main.js';
import { libtorchPredictor } from '../src/deploy/predictor.js';
import { startServer } from '../src/deploy/server.js';
import { readSavedModel } from '../src/learn/saved-model.js';
import { decodeUpright } from '../src/vision/augment.js';
import { photos, predictInProcess, repoRoot, saveSeededModel } from './helpers.js';

const CHROMIUM = '/usr/bin/chromium';
let tmp = '';
let modelDir = '';
let site = '';
let browser: Browser;
const servers: Server[] = [];
const uploads = readdirSync(join(photos, 'dogscats', 'test'))
  .slice(0, 3)
  .map((f) => join(photos, 'dogscats', 'test', f));
const expected = new Map<string, Map<string, number>>();

const TYPES: Record<string, string> = {
  '.html': 'text/html',
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
  '.jpg': 'image/jpeg',
  '.png': 'image/png',
};

/** A static file server for a folder, with or without the cross-origin isolation headers. */
async function serveStatic(dir: string, isolated: boolean): Promise<string> {
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const file = join(dir, path === '/' ? 'index.html' : decodeURIComponent(path));
    if (!file.startsWith(dir) || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    const headers: Record<string, string> = { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' };
    if (isolated) Object.assign(headers, { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' });
    res.writeHead(200, headers).end(readFileSync(file));
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}/`;
}

/** Uploads files through the page's file picker and reads what it shows. */
async function classifyOnPage(page: Page, url: string, files: string[]): Promise<{ status: string; results: { file: string; top: [string, number][] }[] }> {
  await page.goto(url);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 30_000 });
  await page.setInputFiles('#files', files);
  await page.waitForSelector(`body[data-done="${files.length}"]`, { timeout: 30_000 });
  const results = await page.$$eval('.result', (els) =>
    els.map((e) => ({
      file: (e as HTMLElement).dataset.file!,
      top: [...e.querySelectorAll('.class')].map((c) => [(c as HTMLElement).dataset.label!, Number((c as HTMLElement).dataset.probability)] as [string, number]),
    })),
  );
  return { status: (await page.textContent('#status')) ?? '', results };
}

function assertLikePredict(results: { file: string; top: [string, number][] }[]): void {
  assert.equal(results.length, uploads.length);
  for (const r of results) {
    const file = uploads.find((u) => u.endsWith(`/${r.file}`))!;
    const want = expected.get(file)!;
    for (const [label, p] of r.top) assert.ok(Math.abs(p - want.get(label)!) < 1e-3, `${r.file} ${label}: page ${p}, predict ${want.get(label)}`);
    assert.equal(r.top[0]![0], [...want].sort((a, b) => b[1] - a[1])[0]![0], `${r.file}: same top-1`);
  }
}

before(async () => {
  assert.ok(existsSync(CHROMIUM), `the browser tests need Debian's chromium at ${CHROMIUM} (apt-get install chromium; npm test installs it as root)`);
  tmp = await mkdtemp(join(tmpdir(), 'fastvision-web-'));
  process.env.FASTVISION_HOME = join(tmp, 'home');
  modelDir = join(tmp, 'model');
  await saveSeededModel(modelDir, ['cats', 'dogs', 'other'], 64);
  site = join(tmp, 'site');
  const log = console.log;
  console.log = () => undefined;
  try {
    assert.equal(await main(['export', modelDir, '--web', site]), 0);
  } finally {
    console.log = log;
  }
  for (const [f, p] of await predictInProcess(modelDir, uploads, 3)) expected.set(f, p);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
  });
});
after(async () => {
  await browser?.close();
  for (const s of servers) s.close();
  await rm(tmp, { recursive: true, force: true });
});

test('the exported page classifies uploaded photos as fastvision predict does (cross-origin isolated: threads)', async () => {
  for (const f of ['index.html', 'app.js', 'model-preprocess.onnx', 'metadata.json', 'ort.wasm.bundle.min.mjs', 'ort-wasm-simd-threaded.wasm']) assert.ok(existsSync(join(site, f)), f);
  for (const f of ['warp.js', 'model.onnx']) assert.equal(existsSync(join(site, f)), false, `${f}: the page has one preprocessing, the graph's`);
  const page = await browser.newPage();
  const requests: string[] = [];
  page.on('request', (r) => requests.push(r.url()));
  const url = await serveStatic(site, true);
  const { status, results } = await classifyOnPage(page, url, uploads);
  const { isolated, cores } = await page.evaluate(() => ({ isolated: crossOriginIsolated, cores: navigator.hardwareConcurrency }));
  assert.equal(isolated, true, 'the COOP/COEP headers make the page cross-origin isolated');
  const threads = Math.min(4, cores);
  assert.ok(status.includes(`in this page (onnxruntime-web, ${threads} thread${threads === 1 ? '' : 's'}`), `${status}: as many threads as cores, at most 4`);
  assertLikePredict(results);
  assert.deepEqual(
    requests.filter((r) => !r.startsWith(url) && !r.startsWith('blob:') && !r.startsWith('data:')),
    [],
    'nothing is fetched from elsewhere',
  );
  mkdirSync(join(repoRoot, 'test-artifacts'), { recursive: true });
  await page.screenshot({ path: join(repoRoot, 'test-artifacts', 'web-page.png'), fullPage: true });
  await page.close();
});

test("the page decodes photos to fastvision's pixels, value for value (JPEG, EXIF-rotated JPEG, PNG); the graph does the rest", async () => {
  const dir = join(site, 'probe');
  mkdirSync(dir);
  const src = uploads[0]!;
  await writeFile(join(dir, 'plain.jpg'), readFileSync(src));
  await writeFile(join(dir, 'rotated.jpg'), await sharp(src).jpeg({ quality: 90 }).withMetadata({ orientation: 6 }).toBuffer());
  await writeFile(
    join(dir, 'image.png'),
    await sharp(join(photos, 'dogscats', 'valid', 'cats', 'Bengal_167.jpg'))
      .png()
      .toBuffer(),
  );
  const page = await browser.newPage();
  const url = await serveStatic(site, false);
  await page.goto(url);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 30_000 });
  assert.match((await page.textContent('#status')) ?? '', /1 thread; serve with COOP\/COEP headers for more/, 'without the headers: one thread, said so');
  for (const name of ['plain.jpg', 'rotated.jpg', 'image.png']) {
    type Decoded = { width: number; height: number; data: number[] };
    const inPage = await page.evaluate<Decoded, string>(async (u) => (window as unknown as { fastvision: { pixels(u: string): Promise<Decoded> } }).fastvision.pixels(u), `probe/${name}`);
    const inNode = await decodeUpright(join(dir, name));
    assert.deepEqual([inPage.width, inPage.height], [inNode.width, inNode.height], name);
    let worst = 0;
    for (let i = 0; i < inNode.data.length; i++) worst = Math.max(worst, Math.abs(inPage.data[i]! - inNode.data[i]!));
    assert.equal(worst, 0, `${name}: the page's pixels differ by up to ${worst}`);
  }
  await page.close();
});

test('GET / of fastvision serve is the same page, talking to the server', async () => {
  const server = await startServer(await libtorchPredictor(await readSavedModel(modelDir)), { port: 0 });
  try {
    const page = await browser.newPage();
    const { status, results } = await classifyOnPage(page, `${server.url}/`, uploads);
    assert.match(status, /on the server/);
    assertLikePredict(results);
    await page.close();
  } finally {
    await server.close();
  }
});
