// A trained model on disk: the weights as a PyTorch state dict (`model.pth`)
// and what is needed to use them again (`model.json`: architecture, classes,
// image size, head), so that `predict`, `submit` and `interpret` need only the file.
import { existsSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConvLearner } from '../learn/learner.js';
import { savePth, type Tensor } from '../torch/index.js';
import { writeFileAtomic } from '../util/files.js';
import type { ImageClassifierData } from '../vision/data.js';
import { ARCHS } from '../vision/models/archs.js';
import { UsageError } from './args.js';

/** What `model.json` holds. */
export interface ModelInfo {
  format: 'fastvision-model';
  version: 1;
  arch: string;
  classes: string[];
  /** The image side the model was last trained at. */
  size: number;
  xtraFc: number[];
  ps: number[];
}

/** Saves a learner's weights and description as `{dir}/{name}.pth` and `{dir}/{name}.json` (both atomic). */
export async function saveModel(dir: string, learn: ConvLearner, size: number, { name = 'model', xtraFc = [512], ps = [0.25, 0.5] } = {}): Promise<{ model: string; info: string }> {
  const model = join(dir, `${name}.pth`);
  const info = join(dir, `${name}.json`);
  await savePth(model, learn.model.stateDict());
  const meta: ModelInfo = { format: 'fastvision-model', version: 1, arch: learn.arch.name, classes: learn.data.classes, size, xtraFc, ps };
  await writeFileAtomic(info, `${JSON.stringify(meta, null, 2)}\n`);
  return { model, info };
}

/**
 * Finds a saved model from what the user typed: a `.pth` file (with its `.json`
 * beside it), a `.json`, or a folder holding `model.pth`. Errors name the path.
 */
export async function readModel(where: string): Promise<{ pth: string; info: ModelInfo }> {
  if (!existsSync(where)) throw new UsageError(`no such model: ${where}`);
  let base: string;
  if (statSync(where).isDirectory()) base = join(where, 'model');
  else if (/\.(pth|json)$/.test(where)) base = where.replace(/\.(pth|json)$/, '');
  else throw new UsageError(`${where}: expected a model folder, a .pth file or its .json`);
  const pth = `${base}.pth`;
  const json = `${base}.json`;
  if (!existsSync(pth)) throw new UsageError(`no model weights at ${pth}`);
  if (!existsSync(json)) throw new UsageError(`no model description at ${json} (fastvision writes it next to the .pth)`);
  let info: ModelInfo;
  try {
    info = JSON.parse(await readFile(json, 'utf8')) as ModelInfo;
  } catch (e) {
    throw new UsageError(`${json}: not valid JSON (${(e as Error).message})`);
  }
  const bad = (what: string): never => {
    throw new UsageError(`${json}: ${what}`);
  };
  if (info.format !== 'fastvision-model') bad(`not a fastvision model description (format '${String(info.format)}')`);
  if (typeof info.arch !== 'string' || !ARCHS[info.arch]) bad(`unknown architecture '${String(info.arch)}'`);
  if (!Array.isArray(info.classes) || info.classes.length < 2 || info.classes.some((c) => typeof c !== 'string')) bad('classes must be a list of at least two names');
  if (!Number.isInteger(info.size) || info.size < 8) bad(`size must be an integer of at least 8, got ${String(info.size)}`);
  if (!Array.isArray(info.xtraFc) || !Array.isArray(info.ps) || info.ps.length !== info.xtraFc.length + 1) bad('xtraFc and ps do not describe a head');
  return { pth, info };
}

/** Class probabilities (row-major) and targets for the validation or test set, plain or averaged by TTA. */
export async function probabilitiesOf(learn: ConvLearner, { tta, nAug, isTest }: { tta: boolean; nAug: number; isTest: boolean }): Promise<{ probs: Float32Array; y: number[] }> {
  let probs: Tensor;
  let y: Tensor;
  if (tta) ({ probs, y } = await learn.TTA({ nAug, isTest }));
  else {
    const r = await learn.predictWithTargets(isTest);
    probs = r.logProbs.exp();
    r.logProbs.dispose();
    y = r.y;
  }
  const out = { probs: probs.dataSync() as Float32Array, y: y.toArray() };
  probs.dispose();
  y.dispose();
  return out;
}

/** Rebuilds the learner a saved model came from, on `data`, with its weights loaded. */
export async function learnerFor(saved: { pth: string; info: ModelInfo }, data: ImageClassifierData, { optFn = 'sgd' }: { optFn?: 'sgd' | 'adam' } = {}): Promise<ConvLearner> {
  const learn = await ConvLearner.pretrained(saved.info.arch, data, { pretrained: false, xtraFc: saved.info.xtraFc, ps: saved.info.ps, optFn });
  try {
    await learn.load(saved.pth);
  } catch (e) {
    throw new UsageError(`${saved.pth}: cannot load into ${saved.info.arch} for ${saved.info.classes.length} classes (${(e as Error).message.split('\n')[0]})`);
  }
  return learn;
}
