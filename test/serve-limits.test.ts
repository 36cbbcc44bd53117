// `fastvision serve` against clients that do not play fair: forms whose text parts,
// part counts or files try to get around --max-bytes, malformed forms, bodies sent a
// byte at a time, many large uploads at once, and pages on other origins reaching a
// loopback server through DNS rebinding. Every exchange is bounded in time.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { FORM_LIMITS } from '../src/deploy/form.js';
import { libtorchPredictor, type Predictor } from '../src/deploy/predictor.js';
import { hostNameOf, parseOrigin, RequestGuard } from '../src/deploy/request-guard.js';
import { startServer, type RunningServer, type ServerOptions } from '../src/deploy/server.js';
import { readSavedModel } from '../src/learn/saved-model.js';
import { photos, repoRoot, saveSeededModel } from './helpers.js';

const bin = join(repoRoot, 'dist', 'src', 'cli', 'bin.js');
const jpeg = readFileSync(join(photos, 'dogscats', 'test', 'wheaten_terrier_169.jpg'));
let tmp = '';
let predictor: Predictor;
const servers: RunningServer[] = [];

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'fastvision-serve-limits-'));
  process.env.FASTVISION_HOME = join(tmp, 'home');
  await saveSeededModel(join(tmp, 'model'), ['cats', 'dogs'], 32);
  predictor = await libtorchPredictor(await readSavedModel(join(tmp, 'model')));
});
after(async () => {
  // close() also closes the predictor, which the servers share: close it once, last.
  for (const s of servers) await s.app.close();
  await predictor?.close();
  await rm(tmp, { recursive: true, force: true });
});

async function serve(options: ServerOptions = {}): Promise<RunningServer> {
  const s = await startServer(predictor, { port: 0, maxBytes: 64 * 1024, ...options });
  servers.push(s);
  return s;
}

/** One raw HTTP exchange: what the server answered (status line and body) within `ms`. */
function exchange(url: string, head: string, body: Buffer | string = '', ms = 5000): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    let got = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${ms} ms: ${JSON.stringify(got.slice(0, 200))}`));
    }, ms);
    socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      const status = Number(/^HTTP\/1\.1 (\d+)/.exec(got)?.[1] ?? 0);
      resolve({ status, body: got.slice(got.indexOf('\r\n\r\n') + 4) });
    });
    socket.write(`${head}\r\nconnection: close\r\n\r\n`);
    socket.write(body);
  });
}

/** A multipart body from parts given as [headers, content]. */
function form(boundary: string, parts: [string, Buffer | string][], end = true): Buffer {
  const chunks = parts.flatMap(([h, c]) => [Buffer.from(`--${boundary}\r\n${h}\r\n\r\n`), Buffer.from(c), Buffer.from('\r\n')]);
  return Buffer.concat([...chunks, Buffer.from(end ? `--${boundary}--\r\n` : '')]);
}

const filePart = (name = 'photo.jpg'): [string, Buffer] => [`content-disposition: form-data; name="file"; filename="${name}"\r\ncontent-type: image/jpeg`, jpeg];
const textPart = (i: number, text: string): [string, string] => [`content-disposition: form-data; name="f${i}"`, text];

function postForm(url: string, body: Buffer, boundary: string | null = 'XyZ'): Promise<{ status: number; body: string }> {
  const type = boundary === null ? 'multipart/form-data' : `multipart/form-data; boundary=${boundary}`;
  return exchange(url, `POST /predict HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: ${type}\r\ncontent-length: ${body.length}`, body);
}

test('a form is capped as a whole by --max-bytes, its part and field counts are limited, several files are refused, and each answer names the limit hit', async () => {
  const s = await serve();
  // 300 KB of text fields beside a small image: the whole body is over 64 KiB.
  const fat = form('XyZ', [filePart(), ...Array.from({ length: 6 }, (_, i) => textPart(i, 'x'.repeat(50_000)))]);
  const r1 = await postForm(s.url, fat);
  assert.equal(r1.status, 413, r1.body);
  assert.match(r1.body, /request body is larger than 65536 bytes \(--max-bytes\)/);
  // 1,000 tiny parts, under the byte limit: a count is what is hit, and the answer says which.
  const many = form(
    'XyZ',
    Array.from({ length: 1000 }, (_, i) => textPart(i, 'a')),
  );
  assert.ok(many.length < 64 * 1024, `${many.length} bytes`);
  const r2 = await postForm(s.url, many);
  assert.equal(r2.status, 413, r2.body);
  assert.match(r2.body, new RegExp(`more than (${FORM_LIMITS.parts} parts|${FORM_LIMITS.fields} text fields)`));
  assert.doesNotMatch(r2.body, /larger than/);
  const r3 = await postForm(s.url, form('XyZ', [filePart(), textPart(0, 'y'.repeat(FORM_LIMITS.fieldSize + 1))]));
  assert.equal(r3.status, 413, r3.body);
  assert.match(r3.body, /text field of the form is over 4096 bytes/);
  const two = await postForm(s.url, form('XyZ', [filePart('a.jpg'), filePart('b.jpg')]));
  assert.equal(two.status, 400, two.body);
  assert.match(two.body, /one image per request/);
  // A small form with a field beside the file is fine.
  const ok = await postForm(s.url, form('XyZ', [textPart(0, 'hello'), filePart()]));
  assert.equal(ok.status, 200, ok.body);
  assert.match(ok.body, /"top":\[/);
});

test('malformed forms are the client’s mistake: 400 naming the form, never 500', async () => {
  const s = await serve();
  const whole = form('XyZ', [filePart()]);
  const cases: [string, Promise<{ status: number; body: string }>][] = [
    ['no boundary', postForm(s.url, whole, null)],
    ['cut off mid-part', postForm(s.url, whole.subarray(0, whole.length >> 1))],
    ['no closing boundary', postForm(s.url, form('XyZ', [filePart()], false))],
    ['wrong boundary', postForm(s.url, whole, 'Other')],
    ['no file', postForm(s.url, form('XyZ', [textPart(0, 'hi')]))],
  ];
  for (const [what, answer] of cases) {
    const r = await answer;
    assert.equal(r.status, 400, `${what}: ${r.body}`);
    assert.match(r.body, /malformed multipart form|the form has no file/, what);
  }
});

test('a request body sent a byte at a time is cut off by the request timeout (408), and the server still answers others', async () => {
  const s = await serve({ requestTimeoutMs: 600 });
  const { port } = new URL(s.url);
  const started = Date.now();
  const status = await new Promise<number>((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1');
    let got = '';
    let sent = 0;
    const trickle = setInterval(() => {
      // Never more than 60 bytes: the body is 1,000, so it can only end by the server.
      if (sent < 60 && !socket.destroyed) socket.write('x', () => undefined);
      sent++;
    }, 100);
    const limit = setTimeout(() => {
      clearInterval(trickle);
      socket.destroy();
      reject(new Error('the slow request was still open after 6 s'));
    }, 6000);
    socket.on('data', (d: Buffer) => (got += d.toString()));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearInterval(trickle);
      clearTimeout(limit);
      resolve(Number(/^HTTP\/1\.1 (\d+)/.exec(got)?.[1] ?? 0));
    });
    socket.write('POST /predict HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: image/jpeg\r\ncontent-length: 1000\r\n\r\n');
  });
  assert.equal(status, 408);
  assert.ok(Date.now() - started < 4000, `cut off after ${Date.now() - started} ms`);
  const r = await exchange(s.url, `POST /predict HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: image/jpeg\r\ncontent-length: ${jpeg.length}`, jpeg);
  assert.equal(r.status, 200, r.body);
});

test('uploads held at once share one memory budget: past it, 503 and the others finish', async () => {
  const s = await serve({ maxBufferedBytes: 100 * 1024 });
  const { port } = new URL(s.url);
  // A first client sends 60 KB of a 64,000-byte body and waits.
  const first = connect(Number(port), '127.0.0.1');
  let firstGot = '';
  first.on('data', (d: Buffer) => (firstGot += d.toString()));
  const firstClosed = new Promise((r) => first.on('close', r));
  first.write(`POST /predict HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: image/jpeg\r\nconnection: close\r\ncontent-length: 64000\r\n\r\n`);
  first.write(Buffer.alloc(60_000, 1));
  await new Promise((r) => setTimeout(r, 300));
  const second = await exchange(s.url, 'POST /predict HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: image/jpeg\r\ncontent-length: 60000', Buffer.alloc(60_000, 2));
  assert.equal(second.status, 503, second.body);
  assert.match(second.body, /too many uploads/);
  first.end(Buffer.alloc(4000, 1));
  await Promise.race([firstClosed, new Promise((r) => setTimeout(r, 5000))]);
  assert.match(firstGot, /^HTTP\/1\.1 415/, 'the first upload was read to its end and answered (not an image)');
  // Its bytes were given back: a real photo goes through.
  const r = await exchange(s.url, `POST /predict HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: image/jpeg\r\ncontent-length: ${jpeg.length}`, jpeg);
  assert.equal(r.status, 200, r.body);
});

/** A request through node:http with any Host and Origin. */
function call(url: string, method: string, headers: Record<string, string>, body?: Buffer): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers, timeout: 5000 }, (res) => {
      let got = '';
      res.on('data', (d: Buffer) => (got += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: got }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.end(body);
  });
}

test('DNS rebinding: a Host that is not an address, localhost or an allowed name is refused; pages on other origins are refused unless --cors names them', async () => {
  const s = await serve();
  const predict = (headers: Record<string, string>) => call(`${s.url}/predict`, 'POST', { 'content-type': 'image/jpeg', ...headers }, jpeg);
  const { port } = new URL(s.url);
  const evil = await predict({ host: `rebind.attacker.example:${port}` });
  assert.equal(evil.status, 403, evil.body);
  assert.match(evil.body, /host \\"rebind\.attacker\.example\\" is not one this server was started for.*--allowed-hosts/);
  assert.equal((await call(`${s.url}/metadata`, 'GET', { host: 'rebind.attacker.example' })).status, 403, 'GETs too');
  for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, `app.localhost:${port}`]) {
    assert.equal((await predict({ host })).status, 200, host);
  }
  // A page on another origin, even with a good Host, cannot use the API.
  const cross = await predict({ host: `127.0.0.1:${port}`, origin: 'https://evil.example' });
  assert.equal(cross.status, 403, cross.body);
  assert.match(cross.body, /requests from pages on \\"https:\/\/evil\.example\\" are refused.*--cors/);
  assert.equal(cross.headers['access-control-allow-origin'], undefined);
  // The server's own page (same origin) can.
  assert.equal((await predict({ host: `127.0.0.1:${port}`, origin: `http://127.0.0.1:${port}` })).status, 200);

  const open = await serve({ allowedHosts: ['my.box', '.lab.example'], cors: 'https://app.example.com' });
  const p2 = (headers: Record<string, string>) => call(`${open.url}/predict`, 'POST', { 'content-type': 'image/jpeg', ...headers }, jpeg);
  assert.equal((await p2({ host: 'my.box' })).status, 200);
  assert.equal((await p2({ host: 'gpu1.lab.example:8080' })).status, 200);
  assert.equal((await p2({ host: 'other.example' })).status, 403);
  const allowed = await p2({ host: 'my.box', origin: 'https://app.example.com' });
  assert.equal(allowed.status, 200, allowed.body);
  assert.equal(allowed.headers['access-control-allow-origin'], 'https://app.example.com');
  const pre = await call(`${open.url}/predict`, 'OPTIONS', { host: 'my.box', origin: 'https://app.example.com', 'access-control-request-method': 'POST' });
  assert.equal(pre.status, 204);
  assert.match(String(pre.headers['access-control-allow-methods']), /POST/);
  assert.equal((await p2({ host: 'my.box', origin: 'https://app.example.com.evil.example' })).status, 403);
  const any = await serve({ allowedHosts: ['all'] });
  assert.equal((await call(`${any.url}/healthz`, 'GET', { host: 'whatever.example' })).status, 200);
});

test('the guard’s pieces: host names out of Host headers, origins checked', () => {
  assert.equal(hostNameOf('Example.COM:8080'), 'example.com');
  assert.equal(hostNameOf('[::1]:80'), '::1');
  assert.equal(hostNameOf('localhost'), 'localhost');
  assert.equal(parseOrigin('https://app.example.com'), 'https://app.example.com');
  assert.equal(parseOrigin('http://localhost:3000/'), 'http://localhost:3000');
  for (const bad of ['app.example.com', 'https://app.example.com/path', 'ftp://x', 'https://u@x.example', '*']) assert.throws(() => parseOrigin(bad), /not an origin/, bad);
  const g = new RequestGuard({ host: '0.0.0.0' });
  assert.equal(g.hostAllowed('10.1.2.3:8080'), true);
  assert.equal(g.hostAllowed('intranet.example'), false);
  assert.equal(g.hostAllowed(undefined), false);
});

test('serve refuses a --cors that is not an origin and an --allowed-hosts that is not a list, before loading anything', () => {
  for (const [opt, value, re] of [
    ['--cors', 'https://x.example/path', /^fastvision serve: --cors: 'https:\/\/x\.example\/path' is not an origin/],
    ['--allowed-hosts', 'a.example,,b', /^fastvision serve: --allowed-hosts: 'a\.example,,b' is not a comma-separated list of host names$/],
    ['--request-timeout', '0', /^fastvision serve: --request-timeout: 0 is out of range/],
  ] as const) {
    const r = spawnSync(process.execPath, [bin, 'serve', join(tmp, 'nowhere'), opt, value], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr.trim(), re);
  }
});
