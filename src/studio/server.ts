// `fastvision studio`: a local web app on fastify for the lesson's loop — look at the
// data, train (in a child process) and watch, look at the mistakes, clean the labels,
// train again, try a photo, export. Since the page can start work and read files, it
// listens on 127.0.0.1, every request carries a random token (403 without it), images
// come only from the data and output folders, and errors are JSON.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { constants, realpathSync, statSync } from 'node:fs';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { isAbsolute, join, relative, resolve, sep } from 'node:path';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import sharp from 'sharp';
import { exportSavedModel, writeExport } from '../deploy/export-model.js';
import { RequestError } from '../deploy/form.js';
import { RequestGuard } from '../deploy/request-guard.js';
import { imageFormat } from '../deploy/server.js';
import { writeWebApp } from '../deploy/web.js';
import type { ConvLearner } from '../learn/conv-learner.js';
import { camCaption, camTiles, type CamPicture } from '../learn/figures.js';
import { loadLearner } from '../learn/load-learner.js';
import { readSavedModel } from '../learn/saved-model.js';
import { InputError } from '../util/errors.js';
import { writeFileAtomic } from '../util/files.js';
import { claimOutput, withOutput } from '../util/outputs.js';
import { applyCleaning, cleanedLabelsCsv } from '../vision/cleaning.js';
import { maxImagePixels } from '../vision/image-limits.js';
import { isImageFile } from '../vision/dataset.js';
import { CleaningStore } from './cleaning-store.js';
import { classCounts, cleanedLabel, readDataView, sizeHistogram, type DataView, type StudioDataSpec } from './data-view.js';
import { studioAppJs, studioHtml } from './page.js';
import { readResults } from './results.js';
import { parseRunSettings, SettingsError, STUDIO_RUN_DEFAULTS } from './run-settings.js';
import { RunBusyError, StudioRuns } from './runs.js';
import { StudioVerification } from './verification.js';
import { ARCHS, weightsHere } from '../vision/models/archs.js';
import { RECIPES } from '../learn/recipe.js';

/** Options of the studio. */
export interface StudioOptions {
  /** The data folder and its layout. */
  data: StudioDataSpec;
  /** The output folder: runs, cleaning decisions and exports go there. */
  out: string;
  /** Default 127.0.0.1: the studio starts work and reads files for whoever can reach it. */
  host?: string;
  /** Default 7860; 0 picks a free port. */
  port?: number;
  /** The access token (default: 24 random bytes, hex). */
  token?: string;
  /** More host names to answer besides IP addresses and localhost. */
  allowedHosts?: readonly string[];
}

/** A running studio. */
export interface RunningStudio {
  /** The address to open, token included. */
  url: string;
  token: string;
  runs: StudioRuns;
  /** Stops a run in progress (keeping its checkpoint), then the server. */
  close(): Promise<void>;
}

/** The output folder's lock that a studio holds while it runs (its training runs hold the folder's usual one). */
export const STUDIO_LOCK = { what: 'fastvision studio', name: '.fastvision-studio.lock' } as const;

/** Largest upload to "try a photo". */
const MAX_UPLOAD = 20 * 2 ** 20;
/** Photos per page of a class's grid. */
const MAX_PAGE = 200;

/**
 * `path` inside `root` as a real, regular file, or null: names that climb out, absolute
 * names, links whose target is outside, folders, devices and missing files are all null.
 */
export function fileInside(root: string, path: string): string | null {
  if (path === '' || isAbsolute(path) || path.includes('\0')) return null;
  const full = resolve(root, path);
  const rel = relative(root, full);
  if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) return null;
  try {
    const realRoot = realpathSync(root);
    const real = realpathSync(full);
    if (real !== realRoot && !real.startsWith(realRoot + sep)) return null;
    return statSync(real).isFile() ? real : null;
  } catch {
    return null;
  }
}

/** A Grad-CAM picture as the page takes it: a PNG data URL and its caption. */
async function camJson(c: CamPicture, label: string): Promise<{ image: string; caption: string; coarse: boolean; layer: string }> {
  const png = await sharp(Buffer.from(c.pixels.data), { raw: { width: c.pixels.width, height: c.pixels.height, channels: 3 } })
    .png()
    .toBuffer();
  return { image: `data:image/png;base64,${png.toString('base64')}`, caption: camCaption(c, label), coarse: c.coarse, layer: c.layer };
}

/** A cookie's value from a Cookie header, or undefined. */
function cookieValue(header: string | undefined, name: string): string | undefined {
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** Starts the studio; resolves once it listens. */
export async function startStudio(options: StudioOptions): Promise<RunningStudio> {
  const { host = '127.0.0.1', port = 7860 } = options;
  const out = resolve(options.out);
  const data: StudioDataSpec = { ...options.data, path: resolve(options.data.path) };
  const token = options.token ?? randomBytes(24).toString('hex');
  const guard = new RequestGuard({ host, allowedHosts: options.allowedHosts });
  // Two studios on one output folder would each keep their own log of decisions and
  // write it over the other's; the second is refused.
  const studioLock = claimOutput(out, '--out', STUDIO_LOCK);
  let view: DataView;
  let cleaning: CleaningStore;
  try {
    view = await readDataView(data);
    cleaning = CleaningStore.open(out);
  } catch (e) {
    studioLock.release();
    throw e;
  }
  const runs = new StudioRuns(data, out, cleaning.file);
  const verification = new StudioVerification(view);
  const tokenBytes = Buffer.from(token);
  // Per port, so that two studios on one machine keep their own.
  let cookieName = `fastvision_studio_${port}`;
  const tokenOk = (given: unknown): boolean => {
    if (typeof given !== 'string') return false;
    const b = Buffer.from(given);
    return b.length === tokenBytes.length && timingSafeEqual(b, tokenBytes);
  };

  // The model the Results and Try screens use: the output folder's, reloaded when a run replaces it.
  // Requests that arrive while it loads share the one load.
  let model: { mtimeMs: number; learn: Promise<ConvLearner> } | null = null;
  const learner = async (): Promise<ConvLearner> => {
    const pth = join(out, 'model.pth');
    let mtimeMs: number;
    try {
      mtimeMs = statSync(pth).mtimeMs;
    } catch {
      throw new RequestError(409, 'no model yet: train one first');
    }
    if (model?.mtimeMs !== mtimeMs) {
      const loading = { mtimeMs, learn: loadLearner(pth, { device: 'cpu' }) };
      model = loading;
      // A model that cannot be loaded is tried again by the next request.
      loading.learn.catch(() => {
        if (model === loading) model = null;
      });
    }
    return model.learn;
  };

  const app = Fastify({ bodyLimit: MAX_UPLOAD, logger: false, forceCloseConnections: true });
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: MAX_UPLOAD }, (_req, body, done) => done(null, body));
  app.addHook('onRequest', async (req, reply) => {
    const refusal = guard.check(req.headers);
    if (refusal) return reply.code(refusal.status).send({ error: refusal.error });
    const q = req.query as Record<string, unknown>;
    if (tokenOk(q.token)) {
      // As Jupyter does: the token in the printed address once, then a cookie that only this site's own pages send.
      void reply.header('set-cookie', `${cookieName}=${token}; Path=/; HttpOnly; SameSite=Strict`);
      return;
    }
    if (!tokenOk(req.headers['x-fastvision-token']) && !tokenOk(cookieValue(req.headers.cookie, cookieName))) {
      return reply.code(403).send({ error: 'this studio needs the token of the address it printed when it started (…/?token=…)' });
    }
  });
  app.addHook('onSend', async (_req, reply) => {
    // The page runs only its own script, and shows only its own images: a label that
    // slipped past escaping could not run anything.
    reply.header('content-security-policy', "default-src 'self'; img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'");
    reply.header('x-content-type-options', 'nosniff');
    reply.header('referrer-policy', 'no-referrer');
  });

  app.get('/', async (_req, reply) => reply.type('text/html; charset=utf-8').header('cache-control', 'no-store').send(studioHtml()));
  app.get('/studio.js', async (_req, reply) => reply.type('text/javascript; charset=utf-8').send(await studioAppJs()));

  app.get('/api/data', async () => {
    const now = cleaning.current();
    return {
      root: view.root,
      out,
      layout: data.csv === undefined ? 'folders' : 'csv',
      classes: view.classes,
      counts: classCounts(view, now),
      total: view.photos.length,
      excluded: view.photos.filter((p) => cleanedLabel(p, now) === null).length,
      sizes: sizeHistogram(view.sizes),
      skipped: view.skipped,
      archs: Object.keys(ARCHS),
      // Offered first: the rest need a download on their first run, which fails offline.
      archsHere: Object.keys(ARCHS).filter((a) => weightsHere(a)),
      recipes: RECIPES,
      defaults: STUDIO_RUN_DEFAULTS,
    };
  });

  app.get('/api/photos', async (req: FastifyRequest<{ Querystring: { label?: string; offset?: string; limit?: string } }>) => {
    const { label } = req.query;
    if (label !== undefined && !view.classes.includes(label)) throw new RequestError(400, `no class ${JSON.stringify(label).slice(0, 100)}`);
    const offset = Math.max(0, Math.floor(Number(req.query.offset ?? 0)) || 0);
    const limit = Math.min(MAX_PAGE, Math.max(1, Math.floor(Number(req.query.limit ?? 60)) || 60));
    const now = cleaning.current();
    const all = view.photos.filter((p) => label === undefined || p.label === label);
    return {
      total: all.length,
      photos: all.slice(offset, offset + limit).map((p) => ({ ...p, cleaned: cleanedLabel(p, now), decision: now.get(p.file)?.action ?? null })),
    };
  });

  app.get('/api/image', async (req: FastifyRequest<{ Querystring: { file?: string; root?: string; w?: string } }>, reply: FastifyReply) => {
    const { file = '', root = 'data' } = req.query;
    const base = root === 'data' ? view.root : root === 'out' ? out : null;
    const real = base === null || !isImageFile(file) ? null : fileInside(base, file);
    if (real === null) return reply.code(404).send({ error: 'no such image in the data or output folder' });
    const w = Math.min(1024, Math.max(16, Math.floor(Number(req.query.w ?? 0)) || 0));
    if (!req.query.w) {
      // Streamed from the file: a photo of any size costs the server no more memory than a small one.
      // O_NONBLOCK: were it swapped for a named pipe since it was checked, the open must not wait for a writer.
      const fh = await open(real, constants.O_RDONLY | constants.O_NONBLOCK);
      try {
        if (!(await fh.stat()).isFile()) throw new RequestError(404, 'no such image in the data or output folder');
        const head = Buffer.alloc(32);
        const { bytesRead } = await fh.read(head, 0, head.length, 0);
        const format = imageFormat(head.subarray(0, bytesRead));
        if (format === null) throw new RequestError(415, 'not an image');
        const stream = fh.createReadStream({ start: 0, autoClose: true });
        return reply.type(`image/${format}`).header('cache-control', 'private, max-age=60').send(stream);
      } catch (e) {
        await fh.close();
        throw e;
      }
    }
    try {
      const thumb = await sharp(real, { failOn: 'error', limitInputPixels: maxImagePixels() }).rotate().resize(w, w, { fit: 'inside', withoutEnlargement: true }).jpeg({ quality: 85 }).toBuffer();
      return reply.type('image/jpeg').header('cache-control', 'private, max-age=60').send(thumb);
    } catch (e) {
      throw new RequestError(422, `cannot read this image: ${(e as Error).message}`);
    }
  });

  app.get('/api/cam', async (req: FastifyRequest<{ Querystring: { file?: string; class?: string } }>, reply: FastifyReply) => {
    const photo = view.byKey.get(req.query.file ?? '');
    const real = photo ? fileInside(view.root, photo.file) : null;
    if (real === null) return reply.code(404).send({ error: 'no such photo in the data' });
    const learn = await learner();
    const cls = Number(req.query.class);
    if (!Number.isInteger(cls) || cls < 0 || cls >= learn.data.c) throw new RequestError(400, `class must be 0…${learn.data.c - 1}`);
    const cam = camTiles(learn);
    if (!cam) throw new RequestError(409, 'this model has no Grad-CAM (multi-label)');
    return camJson(await cam(real, cls), learn.data.classes[cls]!);
  });

  app.get('/api/verify', async () => verification.status());
  app.post('/api/verify', async (_req, reply) => {
    if (!verification.start()) throw new RequestError(409, 'a check of the photos is going on');
    return reply.code(202).send(verification.status());
  });
  app.post('/api/verify/exclude', async () => {
    const s = verification.status();
    if (s.state !== 'done') throw new RequestError(409, 'check the photos first');
    const added = await cleaning.excludeAll(s.unreadable.map((u) => u.file).filter((f) => view.byKey.has(f)));
    return { added, current: Object.fromEntries(cleaning.current()), count: cleaning.decisions.length };
  });

  app.get('/api/run', async (req: FastifyRequest<{ Querystring: { since?: string } }>) => runs.status(Math.max(0, Number(req.query.since ?? 0) || 0)));
  app.post('/api/run', async (req, reply) => {
    const settings = parseRunSettings(req.body);
    runs.start(settings);
    return reply.code(202).send(runs.status(Number.MAX_SAFE_INTEGER));
  });
  app.post('/api/run/stop', async () => {
    await runs.stop();
    return runs.status(Number.MAX_SAFE_INTEGER);
  });

  app.get('/api/results', async (_req, reply) => {
    const r = readResults(out);
    if (r === null) return reply.code(404).send({ error: 'no results yet: train a model first' });
    return r;
  });

  app.get('/api/cleaning', async () => ({ file: cleaning.file, decisions: cleaning.decisions, current: Object.fromEntries(cleaning.current()) }));
  app.post('/api/cleaning', async (req) => {
    const b = (req.body ?? {}) as { file?: unknown; action?: unknown; label?: unknown };
    if (typeof b.file !== 'string' || !view.byKey.has(b.file)) throw new RequestError(400, 'file must be a photo of the data (its path under the data folder)');
    if (b.action !== 'keep' && b.action !== 'relabel' && b.action !== 'exclude') throw new RequestError(400, 'action must be keep, relabel or exclude');
    let label: string | null = null;
    if (b.action === 'relabel') {
      if (typeof b.label !== 'string' || !view.classes.includes(b.label)) throw new RequestError(400, `label must be one of the classes (${view.classes.join(', ')})`);
      label = b.label;
    }
    await cleaning.add(b.file, b.action, label);
    return { current: Object.fromEntries(cleaning.current()), count: cleaning.decisions.length };
  });
  app.post('/api/cleaning/undo', async () => {
    const undone = await cleaning.undo();
    return { undone, current: Object.fromEntries(cleaning.current()), count: cleaning.decisions.length };
  });
  app.post('/api/cleaning/export', async () => {
    const now = cleaning.current();
    const { trn, val } = view.datasets;
    const file = join(out, 'labels-cleaned.csv');
    await writeFileAtomic(file, cleanedLabelsCsv(view.root, [applyCleaning(view.root, trn, now, cleaning.file), val && applyCleaning(view.root, val, now, cleaning.file)]));
    return { file, use: `fastvision train ${view.root} --csv ${file} --folder .` };
  });

  app.post('/api/predict', async (req) => {
    const bytes = req.body;
    if (!Buffer.isBuffer(bytes) || bytes.length === 0) throw new RequestError(400, 'send the photo as the request body');
    const format = imageFormat(bytes);
    if (format === null) throw new RequestError(415, 'not an image: JPEG, PNG, WebP, GIF, TIFF, AVIF or BMP expected');
    const learn = await learner();
    // Grad-CAM reads files: the upload is written to a private temporary folder for the moment.
    const dir = await mkdtemp(join(tmpdir(), 'fastvision-studio-'));
    try {
      const file = join(dir, `upload.${format === 'jpeg' ? 'jpg' : format}`);
      await writeFile(file, bytes, { mode: 0o600 });
      let p;
      try {
        p = await learn.predict(file);
      } catch (e) {
        throw new RequestError(422, `cannot read this ${format.toUpperCase()}: ${(e as Error).message}`);
      }
      const ranked = learn.data.classes.map((label, i) => ({ label, probability: p.probs[i]! })).sort((a, b) => b.probability - a.probability);
      const best = learn.data.classes.indexOf(ranked[0]!.label);
      const cam = camTiles(learn);
      return { top: ranked.slice(0, 5), cam: cam ? await camJson(await cam(file, best), ranked[0]!.label) : null };
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  app.post('/api/export', async (req) => {
    const kind = (req.body as { kind?: unknown } | null)?.kind;
    if (kind !== 'onnx' && kind !== 'web') throw new RequestError(400, 'kind must be onnx or web');
    let saved;
    try {
      saved = await readSavedModel(join(out, 'model.pth'));
    } catch {
      throw new RequestError(409, 'no model yet: train one first');
    }
    const dir = join(out, kind === 'onnx' ? 'onnx' : 'web');
    return withOutput(dir, async () => {
      const exported = await exportSavedModel(saved, {});
      if (kind === 'onnx') {
        const files = await writeExport(dir, exported);
        return { dir, files: [files.onnx, files.withPreprocessing, files.metadata].filter((f): f is string => f !== null) };
      }
      const page = await writeWebApp(dir, exported);
      return { dir, files: page.files.map((f) => join(dir, f)), index: page.index };
    });
  });

  app.setNotFoundHandler(async (req, reply) => reply.code(404).send({ error: `no route ${req.method} ${req.url.split('?')[0]}` }));
  app.setErrorHandler(async (err: Error & { statusCode?: number; code?: string }, _req, reply) => {
    if (err instanceof RequestError) return reply.code(err.status).send({ error: err.message });
    if (err instanceof SettingsError) return reply.code(400).send({ error: err.message });
    if (err instanceof RunBusyError) return reply.code(409).send({ error: err.message });
    // A file of the output folder the studio cannot use (a broken validation.json or model): the request was fine.
    if (err instanceof InputError) return reply.code(422).send({ error: err.message });
    if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return reply.code(413).send({ error: `the request body is larger than ${MAX_UPLOAD} bytes` });
    if (err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500) return reply.code(err.statusCode).send({ error: err.message });
    return reply.code(500).send({ error: err.message });
  });
  try {
    await app.listen({ host, port });
  } catch (e) {
    studioLock.release();
    throw e;
  }
  const address = app.server.address();
  const actual = typeof address === 'object' && address !== null ? address.port : port;
  cookieName = `fastvision_studio_${actual}`;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${actual}/?token=${token}`;
  return {
    url,
    token,
    runs,
    close: async () => {
      try {
        verification.stop();
        await runs.stop();
        await app.close();
      } finally {
        studioLock.release();
      }
    },
  };
}
