// `fastvision serve`: an HTTP prediction server on fastify. Uploads are decoded on
// the loader's threads (fastvision's validation transform) while the model runs;
// concurrent requests are batched dynamically (up to maxBatch, waiting at most
// maxWaitMs for company). Bad requests get a JSON error and the server stays up.
import fastifyMultipart from '@fastify/multipart';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Transform } from '../vision/augment.js';
import { transformImages } from '../vision/loader.js';
import type { Predictor } from './predictor.js';
import { webAssets } from './web.js';

/** Options of the server. */
export interface ServerOptions {
  host?: string;
  port?: number;
  /** Most images in one batch (default 32). */
  maxBatch?: number;
  /** Longest a request waits for others to share its batch, in ms (default 5). */
  maxWaitMs?: number;
  /** Largest upload, in bytes (default 10 MiB): larger is 413. */
  maxBytes?: number;
  /** Classes returned per image unless ?top= says otherwise (default 5). */
  top?: number;
  /** Threads decoding uploads (default: cores, at most 4). */
  decodeThreads?: number;
}

/** A request the client got wrong: its HTTP status and message. */
class RequestError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
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
  const { host = '127.0.0.1', port = 8080, maxBatch = 32, maxWaitMs = 5, maxBytes = 10 * 2 ** 20, top = 5, decodeThreads } = options;
  const meta = predictor.metadata;
  const size = meta.input.size;
  const classes = meta.labels.length;
  const transform: Transform = { sz: size, maxZoom: 1, augs: [], crop: 'center', stats: { mean: meta.input.mean, std: meta.input.std }, exact: true };
  const batcher = new DynamicBatcher(predictor, 3 * size * size, classes, maxBatch, maxWaitMs);
  // On close, idle keep-alive connections are dropped and requests in flight are finished.
  const app = Fastify({ bodyLimit: maxBytes, logger: false, forceCloseConnections: 'idle', return503OnClosing: true });
  await app.register(fastifyMultipart, { limits: { fileSize: maxBytes, files: 1 } });
  // Any body that is not a form or JSON arrives as bytes (an image, we hope).
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: maxBytes }, (_req, body, done) => done(null, body));
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
  app.get('/healthz', async () => ({ status: 'ok', arch: meta.arch, runtime: predictor.runtime, classes, ...batcher.stats }));

  const imageOf = async (req: FastifyRequest): Promise<Uint8Array> => {
    if (req.isMultipart()) {
      const file = await req.file();
      if (!file) throw new RequestError(400, 'the form has no file');
      const body = await file.toBuffer();
      return body;
    }
    if (!Buffer.isBuffer(req.body)) throw new RequestError(415, 'send an image as the request body (image/jpeg, image/png, …) or as a multipart form file');
    return req.body;
  };
  app.post('/predict', async (req: FastifyRequest<{ Querystring: { top?: string } }>, reply: FastifyReply) => {
    const bytes = await imageOf(req);
    if (bytes.length === 0) throw new RequestError(400, 'the image is empty');
    const format = imageFormat(bytes);
    if (format === null) throw new RequestError(415, 'not an image: JPEG, PNG, WebP, GIF, TIFF or AVIF expected');
    const { data, errors } = await transformImages([bytes], transform, { numWorkers: decodeThreads });
    if (errors[0] !== null) throw new RequestError(400, `cannot read this ${format.toUpperCase()}: ${errors[0]}`);
    const probs = await batcher.submit(data);
    const k = Math.max(1, Math.min(classes, Number(req.query.top ?? top) || top));
    const ranked = meta.labels.map((label, i) => ({ label, probability: probs[i]! })).sort((a, b) => b.probability - a.probability);
    return reply.send({ top: ranked.slice(0, k) });
  });
  app.setNotFoundHandler(async (req, reply) => reply.code(404).send({ error: `no route ${req.method} ${req.url.split('?')[0]}` }));
  app.setErrorHandler(async (err: Error & { statusCode?: number; code?: string }, _req, reply) => {
    if (err instanceof RequestError) return reply.code(err.status).send({ error: err.message });
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE' || err.code === 'FST_REQ_FILE_TOO_LARGE' || err.statusCode === 413) {
      return reply.code(413).send({ error: `the upload is larger than ${maxBytes} bytes (--max-bytes)` });
    }
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
