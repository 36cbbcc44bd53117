// `fastvision serve`: an HTTP prediction server on fastify. Uploads are decoded on
// the loader's threads (fastvision's validation transform) while the model runs;
// concurrent requests are batched dynamically (up to maxBatch, waiting at most
// maxWaitMs for company). Bad requests get a JSON error and the server stays up.
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { Transform as ByteCounter } from 'node:stream';
import type { Transform } from '../vision/augment.js';
import { isBmp } from '../vision/bmp.js';
import { decodeImage, transformImages } from '../vision/loader.js';
import { formImage, RequestError } from './form.js';
import type { Predictor } from './predictor.js';
import { RequestGuard } from './request-guard.js';
import { webAssets } from './web.js';

/** Options of the server. */
export interface ServerOptions {
  host?: string;
  port?: number;
  /** Most images in one batch (default 32). */
  maxBatch?: number;
  /** Longest a request waits for others to share its batch, in ms (default 5). */
  maxWaitMs?: number;
  /** Largest request body, form or image, in bytes (default 10 MiB): larger is 413. */
  maxBytes?: number;
  /** Bytes of request bodies held at once across all requests (default 8 × maxBytes, at least 64 MiB): past it, 503. */
  maxBufferedBytes?: number;
  /** Longest time to receive a whole request, headers and body, in ms (default 30 s): slower is 408. */
  requestTimeoutMs?: number;
  /** More host names to answer besides IP addresses, localhost and the listening name; `all` turns the check off. */
  allowedHosts?: readonly string[];
  /** One origin whose web pages may call the API (CORS); none by default. */
  cors?: string;
  /** Classes returned per image unless ?top= says otherwise (default 5). */
  top?: number;
  /** Threads decoding uploads (default: cores, at most 4). */
  decodeThreads?: number;
}

/** The image formats the decoders read, by their first bytes. */
export function imageFormat(b: Uint8Array): string | null {
  const ascii = (from: number, to: number): string => String.fromCharCode(...b.subarray(from, to));
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b.length >= 8 && ascii(1, 4) === 'PNG' && b[0] === 0x89) return 'png';
  if (b.length >= 6 && ascii(0, 4) === 'GIF8') return 'gif';
  if (b.length >= 12 && ascii(0, 4) === 'RIFF' && ascii(8, 12) === 'WEBP') return 'webp';
  if (b.length >= 4 && ((b[0] === 0x49 && b[1] === 0x49 && b[2] === 0x2a) || (b[0] === 0x4d && b[1] === 0x4d && b[3] === 0x2a))) return 'tiff';
  if (b.length >= 12 && ascii(4, 8) === 'ftyp' && /^(avif|avis|heic|heix|mif1)$/.test(ascii(8, 12))) return 'avif';
  if (isBmp(b)) return 'bmp';
  return null;
}

/** Batches concurrent inputs: a batch runs when it is full or its first input has waited maxWaitMs. */
export class DynamicBatcher {
  private queue: { input: Float32Array; resolve: (p: Float32Array) => void; reject: (e: Error) => void }[] = [];
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  /** Batches run and inputs served, for /healthz. */
  readonly stats = { batches: 0, images: 0, largest: 0 };

  constructor(
    private readonly predictor: Predictor,
    private readonly per: number,
    private readonly classes: number,
    private readonly maxBatch: number,
    private readonly maxWaitMs: number,
  ) {}

  /** The probabilities for one preprocessed image. */
  submit(input: Float32Array): Promise<Float32Array> {
    return new Promise((resolve, reject) => {
      this.queue.push({ input, resolve, reject });
      if (this.queue.length >= this.maxBatch) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), this.maxWaitMs);
    });
  }

  private flush(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.running || this.queue.length === 0) return;
    this.running = true;
    const batch = this.queue.splice(0, this.maxBatch);
    const input = new Float32Array(batch.length * this.per);
    batch.forEach((b, i) => input.set(b.input, i * this.per));
    this.predictor
      .run(input, batch.length)
      .then(
        (probs) => batch.forEach((b, i) => b.resolve(probs.slice(i * this.classes, (i + 1) * this.classes))),
        (e: Error) => batch.forEach((b) => b.reject(e)),
      )
      .finally(() => {
        this.stats.batches++;
        this.stats.images += batch.length;
        this.stats.largest = Math.max(this.stats.largest, batch.length);
        this.running = false;
        // Whatever arrived meanwhile has waited long enough: run it now.
        if (this.queue.length > 0) this.flush();
      });
  }
}

/** A running server. */
export interface RunningServer {
  app: FastifyInstance;
  url: string;
  batcher: DynamicBatcher;
  /** Stops accepting connections, finishes the requests in flight, then resolves. */
  close(): Promise<void>;
}

/** How long a closing server keeps reading requests already sent on open connections. */
const CLOSE_GRACE_MS = 100;

/** Starts the prediction server for a predictor; resolves once it listens. */
export async function startServer(predictor: Predictor, options: ServerOptions = {}): Promise<RunningServer> {
  const { host = '127.0.0.1', port = 8080, maxBatch = 32, maxWaitMs = 5, maxBytes = 10 * 2 ** 20, top = 5, decodeThreads, requestTimeoutMs = 30_000 } = options;
  const maxBuffered = options.maxBufferedBytes ?? Math.max(8 * maxBytes, 64 * 2 ** 20);
  const guard = new RequestGuard({ host, allowedHosts: options.allowedHosts, cors: options.cors });
  const meta = predictor.metadata;
  const size = meta.input.size;
  const classes = meta.labels.length;
  const transform: Transform = { sz: size, maxZoom: 1, augs: [], crop: 'center', stats: { mean: meta.input.mean, std: meta.input.std }, exact: true };
  const batcher = new DynamicBatcher(predictor, 3 * size * size, classes, maxBatch, maxWaitMs);
  // On close, idle keep-alive connections are dropped and requests in flight are finished.
  // Node checks its request timeout only every connectionsCheckingInterval (30 s by default).
  const app = Fastify({
    bodyLimit: maxBytes,
    logger: false,
    forceCloseConnections: 'idle',
    return503OnClosing: true,
    requestTimeout: requestTimeoutMs,
    http: { headersTimeout: requestTimeoutMs, connectionsCheckingInterval: Math.max(50, Math.min(1000, requestTimeoutMs / 4)) },
  });
  // Whole bodies, a form's included, are read under one cap (bodyLimit) and then parsed.
  app.addContentTypeParser('multipart/form-data', { parseAs: 'buffer', bodyLimit: maxBytes }, (req, body, done) => {
    formImage(req.headers, body as Buffer).then(
      (image) => done(null, image),
      (e: Error) => done(e),
    );
  });
  // Any body that is not a form or JSON arrives as bytes (an image, we hope).
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: maxBytes }, (_req, body, done) => done(null, body));
  // Each request's bytes count against one budget for all of them, so many large
  // requests at once cannot hold more than maxBuffered in memory.
  let buffered = 0;
  const held = new WeakMap<FastifyRequest, number>();
  const release = (req: FastifyRequest): void => {
    buffered -= held.get(req) ?? 0;
    held.delete(req);
  };
  app.addHook('onRequest', async (req, reply) => {
    const refusal = guard.check(req.headers);
    if (refusal) return reply.code(refusal.status).send({ error: refusal.error });
    if (guard.cors !== undefined && req.headers.origin === guard.cors) {
      reply.header('access-control-allow-origin', guard.cors);
      reply.header('vary', 'origin');
    }
  });
  app.addHook('preParsing', async (req, _reply, payload) => {
    held.set(req, 0);
    req.raw.once('close', () => release(req));
    return payload.pipe(
      new ByteCounter({
        transform(chunk: Buffer, _enc, next) {
          if (buffered + chunk.length > maxBuffered) {
            next(new RequestError(503, 'the server is holding too many uploads; try again shortly'));
            return;
          }
          buffered += chunk.length;
          held.set(req, (held.get(req) ?? 0) + chunk.length);
          next(null, chunk);
        },
      }),
    );
  });
  app.addHook('onResponse', async (req) => release(req));
  if (guard.cors !== undefined) {
    app.options('*', async (_req, reply) =>
      reply.code(204).header('access-control-allow-methods', 'GET, POST').header('access-control-allow-headers', 'content-type').header('access-control-max-age', '600').send(),
    );
  }
  let closing = false;
  // Cross-origin isolation lets the page use threads; harmless for the API.
  app.addHook('onSend', async (_req, reply) => {
    reply.header('cross-origin-opener-policy', 'same-origin');
    reply.header('cross-origin-embedder-policy', 'require-corp');
    // Draining: each answer closes its connection, so no idle keep-alive socket holds the process.
    if (closing) reply.header('connection', 'close');
  });
  const assets = await webAssets({ server: true });
  for (const [name, f] of assets) {
    app.get(name === 'index.html' ? '/' : `/${name}`, async (_req, reply) => reply.type(f.type).send(f.body));
  }
  app.get('/metadata.json', async () => meta);
  app.get('/metadata', async () => meta);
  app.get('/healthz', async () => ({
    status: 'ok',
    arch: meta.arch,
    runtime: predictor.runtime,
    preprocessing: predictor.runPixels !== undefined ? 'in the ONNX graph' : 'fastvision',
    classes,
    ...batcher.stats,
  }));

  const imageOf = (req: FastifyRequest): Uint8Array => {
    if (!Buffer.isBuffer(req.body)) throw new RequestError(415, 'send an image as the request body (image/jpeg, image/png, …) or as a multipart form file');
    return req.body;
  };
  app.post('/predict', async (req: FastifyRequest<{ Querystring: { top?: string } }>, reply: FastifyReply) => {
    const bytes = imageOf(req);
    if (bytes.length === 0) throw new RequestError(400, 'the image is empty');
    const format = imageFormat(bytes);
    if (format === null) throw new RequestError(415, 'not an image: JPEG, PNG, WebP, GIF, TIFF, AVIF or BMP expected');
    let probs: Float32Array;
    if (predictor.runPixels !== undefined) {
      // The exported graph preprocesses decoded pixels itself: one preprocessing, the exported one.
      const img = await decodeImage(bytes, { numWorkers: decodeThreads });
      if ('error' in img) throw new RequestError(400, `cannot read this ${format.toUpperCase()}: ${img.error}`);
      probs = await predictor.runPixels(img.pixels, img.height, img.width);
    } else {
      const { data, errors } = await transformImages([bytes], transform, { numWorkers: decodeThreads });
      if (errors[0] !== null) throw new RequestError(400, `cannot read this ${format.toUpperCase()}: ${errors[0]}`);
      probs = await batcher.submit(data);
    }
    const k = Math.max(1, Math.min(classes, Number(req.query.top ?? top) || top));
    const ranked = meta.labels.map((label, i) => ({ label, probability: probs[i]! })).sort((a, b) => b.probability - a.probability);
    return reply.send({ top: ranked.slice(0, k) });
  });
  app.setNotFoundHandler(async (req, reply) => reply.code(404).send({ error: `no route ${req.method} ${req.url.split('?')[0]}` }));
  app.setErrorHandler(async (err: Error & { statusCode?: number; code?: string }, _req, reply) => {
    if (err instanceof RequestError) return reply.code(err.status).send({ error: err.message });
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return reply.code(413).send({ error: `the request body is larger than ${maxBytes} bytes (--max-bytes)` });
    if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) return reply.code(err.statusCode).send({ error: err.message });
    return reply.code(500).send({ error: `internal error: ${err.message}` });
  });
  await app.listen({ host, port });
  const address = app.server.address();
  const actual = typeof address === 'object' && address !== null ? address.port : port;
  return {
    app,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${actual}`,
    batcher,
    close: async () => {
      closing = true;
      // Requests a client sent before the signal may still sit unread in their sockets
      // (the event loop was busy with a batch): Node's close drops every connection
      // without a parsed request, so give the loop a moment to read them first.
      await new Promise((r) => setTimeout(r, CLOSE_GRACE_MS));
      await app.close();
      await predictor.close();
    },
  };
}
