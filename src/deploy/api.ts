// Deployment from the API, as the CLI's `export` and `serve` do it: a saved model (or a
// learner) written as ONNX with an optional web page, and a model served over HTTP.
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { ConvLearner } from '../learn/conv-learner.js';
import { readSavedModel } from '../learn/saved-model.js';
import { resolveDevice } from '../torch/index.js';
import { InputError } from '../util/errors.js';
import { exportSavedModel, isPreprocessGraph, PREPROCESS_FILE, readExport, writeExport, type ExportedModel } from './export-model.js';
import { libtorchPredictor, onnxPredictor, type Predictor } from './predictor.js';
import { startServer, type RunningServer, type ServerOptions } from './server.js';
import { writeWebApp } from './web.js';

/** Where a model runs when served: libtorch (a saved model) or onnxruntime-node (a saved model exported in memory, or a model.onnx). */
export type Runtime = 'libtorch' | 'onnx';

/**
 * The predictor for a model: a saved model (folder, `.pth` or `.json`) on libtorch, or
 * exported in memory for onnxruntime; or an exported `model.onnx` / `model-preprocess.onnx`
 * (onnx only). With onnx, the graph with the preprocessing inside is used whenever there
 * is one. `device` applies to libtorch; it is resolved only then, so that serving ONNX
 * never loads libtorch.
 */
export async function predictorFor(
  where: string,
  { runtime = 'libtorch', device = 'auto', warn = (m: string) => console.error(m) }: { runtime?: Runtime; device?: string; warn?: (m: string) => void } = {},
): Promise<Predictor> {
  const isDir = existsSync(where) && statSync(where).isDirectory();
  const onnxFile = where.endsWith('.onnx') ? where : isDir && existsSync(join(where, 'model.onnx')) && !existsSync(join(where, 'model.pth')) ? join(where, 'model.onnx') : null;
  if (onnxFile !== null) {
    if (runtime !== 'onnx') throw new InputError(`${where}: an ONNX model; serve it with --runtime onnx`);
    if (!existsSync(onnxFile)) throw new InputError(`no such model: ${onnxFile}`);
    const { onnx, metadata } = await readExport(onnxFile).catch((e: Error) => {
      throw new InputError(e.message);
    });
    if (isPreprocessGraph(onnx)) return onnxPredictor(null, metadata, { withPreprocessing: onnx });
    // model-preprocess.onnx beside model.onnx, when the export wrote one.
    const beside = join(dirname(onnxFile), PREPROCESS_FILE);
    const withPreprocessing = metadata.withPreprocessing && existsSync(beside) ? (await readExport(beside)).onnx : null;
    if (withPreprocessing === null) warn(`note: no ${PREPROCESS_FILE} beside ${onnxFile}: images are preprocessed by fastvision, then run through model.onnx`);
    return onnxPredictor(onnx, metadata, { withPreprocessing });
  }
  const saved = await readSavedModel(where);
  if (runtime === 'libtorch') return libtorchPredictor(saved, resolveDevice(device));
  const exported = await exportSavedModel(saved);
  return onnxPredictor(exported.onnx, exported.metadata, { withPreprocessing: exported.withPreprocessing });
}

/** Options of `serve`: the server's (host, port, limits) and where the model runs. */
export interface ServeOptions extends ServerOptions {
  runtime?: Runtime;
  /** libtorch's device: 'auto' (the default), 'cpu', 'cuda' or 'cuda:N'. */
  device?: string;
}

/** A model being served: the server (its `url`, and `close()`, which also frees the model). */
export interface ServedModel extends RunningServer {
  predictor: Predictor;
}

/**
 * Serves a model over HTTP as `fastvision serve` does (POST /predict, the web page at /),
 * listening on 127.0.0.1:8080 unless told otherwise; resolves once it listens.
 */
export async function serve(model: string, options: ServeOptions = {}): Promise<ServedModel> {
  const { runtime = 'libtorch', device = 'auto', ...serverOptions } = options;
  const predictor = await predictorFor(model, { runtime, device });
  let server: RunningServer;
  try {
    server = await startServer(predictor, serverOptions);
  } catch (e) {
    await predictor.close();
    throw e;
  }
  // The server's close also frees the predictor.
  return { ...server, predictor };
}

/** Options of `exportOnnx`. */
export interface ExportOnnxOptions {
  /** Also write the static web page (index.html, the app, the model, onnxruntime-web's files) into this folder. */
  web?: string;
  /** Fold batch norms into the convolutions (default true). */
  foldBatchNorm?: boolean;
  /** Also write model-preprocess.onnx, the graph that takes decoded pixels (default true; the web page needs it). */
  preprocess?: boolean;
}

/** What `exportOnnx` wrote. */
export interface ExportedFiles {
  onnx: string;
  withPreprocessing: string | null;
  metadata: string;
  /** The web page's index.html, when `web` was given. */
  web: string | null;
  exported: ExportedModel;
}

/**
 * Writes a model as ONNX into `dir` (`model.onnx`, `model-preprocess.onnx`, `metadata.json`), as
 * `fastvision export` does: from a saved model's path, or from a learner (its current weights).
 * With `web`, also the static page that classifies photos offline.
 */
export async function exportOnnx(source: string | ConvLearner, dir: string, { web, foldBatchNorm = true, preprocess = true }: ExportOnnxOptions = {}): Promise<ExportedFiles> {
  if (web !== undefined && !preprocess) throw new InputError('exportOnnx: the web page runs model-preprocess.onnx; leave preprocess on');
  let scratch: string | null = null;
  try {
    let where = source;
    if (typeof source !== 'string') {
      // A learner: its weights and description as the model file, in a scratch folder.
      scratch = await mkdtemp(join(tmpdir(), 'fastvision-export-'));
      where = await source.export(join(scratch, 'model.pth'));
    }
    const exported = await exportSavedModel(await readSavedModel(where as string), { foldBatchNorm, preprocess });
    const files = await writeExport(dir, exported);
    const page = web === undefined ? null : await writeWebApp(web, exported);
    return { ...files, web: page?.index ?? null, exported };
  } finally {
    if (scratch !== null) await rm(scratch, { recursive: true, force: true });
  }
}
