// bench/serve: images per second of `fastvision serve` (its own process, libtorch,
// dynamic batching) under 32 concurrent clients on loopback posting pets-sample
// photos, against PyTorch's batched inference of the same network (batch 32,
// random input: no decoding) in the same run, alternating, for resnet34 and
// mobilenet_v2 at 224 with random weights. Also: per-image latency of
// onnxruntime-node against libtorch at batch 1 and 32 (batch norms folded or kept),
// the run time of PyTorch's own ONNX export of the resnet18 classifier against
// fastvision's, and the exported web page's per-image time in Chromium.
// Last line: `RESULT serve_throughput_ratio_vs_pytorch_batch <the lower of the two models' serve img/s ÷ PyTorch img/s>`.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { cpus } from 'node:os';
import { extname, join } from 'node:path';
import { buildClassifier } from '../src/learn/head.js';
import { saveNetwork } from '../src/learn/saved-model.js';
import { getNumThreads, manualSeed } from '../src/index.js';
import { arg, median, photoDataArg, PYTHON, repoRoot, runPeer, table } from './common.js';

const DATA = photoDataArg('bench/serve');
const ROUNDS = Number(arg('rounds', '2'));
const CLIENTS = 32;
const MODELS = ['resnet34', 'mobilenet_v2'];
const out = join(repoRoot, 'bench', '.out', 'serve');
const bin = join(repoRoot, 'dist', 'src', 'cli', 'bin.js');

const photos = ['cats', 'dogs'].flatMap((c) => readdirSync(join(DATA, 'valid', c)).map((f) => readFileSync(join(DATA, 'valid', c, f))));

/** Starts `fastvision serve` on a free port; resolves with its URL once /healthz answers, and a stop function. */
async function serve(model: string): Promise<{ url: string; stop: () => Promise<void> }> {
  const port = 18000 + Math.floor(Math.random() * 2000);
  const child = spawn(process.execPath, [bin, 'serve', model, '--port', String(port), '--max-batch', '32', '--max-wait', '5'], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env: { ...process.env, FASTVISION_QUIET: '1' },
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${url}/healthz`)).ok) break;
    } catch {
      if (i > 600) throw new Error('fastvision serve did not start');
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return { url, stop: () => new Promise((r) => (child.once('exit', () => r()), child.kill('SIGTERM'))) };
}

/** `total` requests from CLIENTS concurrent loops; images per second over the last `total - warmup`. */
async function throughput(url: string, total: number, warmup: number): Promise<number> {
  let next = 0;
  let t0 = 0;
  let done = 0;
  const loop = async (): Promise<void> => {
    for (;;) {
      const i = next++;
      if (i >= total) return;
      const res = await fetch(`${url}/predict?top=1`, { method: 'POST', body: new Blob([new Uint8Array(photos[i % photos.length]!)]), headers: { 'content-type': 'image/jpeg' } });
      if (!res.ok) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
      await res.arrayBuffer();
      if (++done === warmup) t0 = performance.now();
    }
  };
  await Promise.all(Array.from({ length: CLIENTS }, loop));
  return (total - warmup) / ((performance.now() - t0) / 1000);
}

/** The exported page's mean time per photo in Chromium (no COOP/COEP: one thread; with: up to 4). */
async function pageTime(model: string): Promise<Record<string, number> | string> {
  if (!existsSync('/usr/bin/chromium')) return 'no /usr/bin/chromium';
  const { chromium } = await import('playwright-core');
  const site = join(out, `site-${model.split('/').pop()}`);
  const exported = runPeer('node', [bin, 'export', model, '--web', site], 600);
  if (!existsSync(join(site, 'index.html'))) return `export failed: ${String(exported.error)}`;
  const types: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.mjs': 'text/javascript', '.wasm': 'application/wasm', '.json': 'application/json' };
  const result: Record<string, number> = {};
  const browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
  });
  const files = ['cats', 'dogs'].flatMap((c) =>
    readdirSync(join(DATA, 'valid', c))
      .slice(0, 6)
      .map((f) => join(DATA, 'valid', c, f)),
  );
  for (const isolated of [false, true]) {
    const server = createServer((req, res) => {
      const p = join(site, new URL(req.url ?? '/', 'http://x').pathname === '/' ? 'index.html' : new URL(req.url ?? '/', 'http://x').pathname);
      if (!existsSync(p)) return void res.writeHead(404).end();
      res
        .writeHead(200, {
          'content-type': types[extname(p)] ?? 'application/octet-stream',
          ...(isolated ? { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' } : {}),
        })
        .end(readFileSync(p));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${(server.address() as { port: number }).port}/`);
    await page.waitForSelector('body[data-ready="true"]', { timeout: 120_000 });
    await page.setInputFiles('#files', files);
    await page.waitForSelector(`body[data-done="${files.length}"]`, { timeout: 600_000 });
    const ms = await page.$$eval('.result', (els) => els.map((e) => Number((e as HTMLElement).dataset.ms)));
    result[isolated ? 'cross-origin isolated' : 'one thread'] = median(ms.slice(1));
    await page.close();
    server.close();
  }
  await browser.close();
  return result;
}

async function main(): Promise<void> {
  const threads = getNumThreads();
  console.log(
    `bench/serve: fastvision serve (libtorch, dynamic batching ≤32, ≤5 ms wait) under ${CLIENTS} concurrent clients posting ${photos.length} pets-sample photos (decoded by the server), vs PyTorch batched inference (batch 32, no decoding); 224 px, random weights, 37 classes; ${ROUNDS} alternating rounds`,
  );
  console.log(`machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}; ${threads} threads for both`);
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const models = new Map<string, string>();
  for (const name of MODELS) {
    manualSeed(0);
    const { model, headSpec } = await buildClassifier(name, 37, { pretrained: false });
    const dir = join(out, name);
    await saveNetwork(dir, model, {
      format: 'fastvision-model',
      version: 1,
      arch: name,
      classes: Array.from({ length: 37 }, (_, i) => `class${i}`),
      size: 224,
      xtraFc: headSpec!.xtraFc,
      ps: headSpec!.ps,
    });
    models.set(name, dir);
  }
  const serveRates = new Map<string, number[]>();
  const torchRates = new Map<string, number[]>();
  for (let r = 0; r < ROUNDS; r++) {
    for (const side of r % 2 === 0 ? ['serve', 'pytorch'] : ['pytorch', 'serve']) {
      if (side === 'pytorch') {
        const res = runPeer(PYTHON, [join(repoRoot, 'bench', 'serve_pytorch.py'), '--threads', String(threads)], 1800);
        if (res.error) console.log(`pytorch failed: ${String(res.error)}`);
        for (const m of MODELS) torchRates.set(m, [...(torchRates.get(m) ?? []), Number(res[m])]);
        continue;
      }
      for (const m of MODELS) {
        const s = await serve(models.get(m)!);
        try {
          serveRates.set(m, [...(serveRates.get(m) ?? []), await throughput(s.url, m === 'resnet34' ? 352 : 576, 64)]);
        } finally {
          await s.stop();
        }
      }
    }
  }
  const rows: string[][] = [];
  const ratios: number[] = [];
  for (const m of MODELS) {
    const sv = median(serveRates.get(m)!);
    const py = median(torchRates.get(m)!);
    ratios.push(sv / py);
    rows.push([m, sv.toFixed(1), py.toFixed(1), (sv / py).toFixed(3)]);
  }
  console.log('');
  console.log(table(['model', 'fastvision serve, images/s', 'PyTorch batched inference, images/s', 'ratio'], rows));
  console.log('\nper-image latency, in-process (ms per image; onnxruntime-node 1.30 with 2 intra-op threads, libtorch with ' + threads + '):');
  const lat: string[][] = [];
  for (const m of MODELS) {
    const extra = m === 'resnet34' ? ['--pytorch-onnx', join(repoRoot, 'test', 'fixtures', 'onnx', 'resnet18_pytorch.onnx')] : [];
    const res = runPeer('node', [join(repoRoot, 'dist', 'bench', 'serve-latency.js'), '--model', models.get(m)!, ...extra], 1800);
    for (const [k, v] of Object.entries(res)) {
      if (typeof v !== 'number') continue;
      const [what, batch] = k.split('/') as [string, string];
      // The export comparison runs on resnet18 at 64 px (PyTorch's exported fixture).
      const other = /^(resnet18), (.*) \((64 px)\)$/.exec(what);
      lat.push(other ? [`${other[1]} at ${other[3]}`, other[2]!, batch, v.toFixed(2)] : [m, what, batch, v.toFixed(2)]);
    }
  }
  console.log(table(['model', 'runtime', 'batch', 'ms / image'], lat));
  const page = await pageTime(models.get('mobilenet_v2')!);
  console.log(
    `\nthe exported web page in Chromium (mobilenet_v2, 224 px), median ms per photo: ${
      typeof page === 'string'
        ? page
        : Object.entries(page)
            .map(([k, v]) => `${k} ${v.toFixed(0)}`)
            .join(', ')
    }`,
  );
  console.log('');
  console.log(`RESULT serve_throughput_ratio_vs_pytorch_batch ${Math.min(...ratios).toFixed(3)}`);
}

await main();
