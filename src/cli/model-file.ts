// A trained model on disk: the weights as a PyTorch state dict (`model.pth`)
// that carries what is needed to use them again (architecture, classes, image
// size, head) inside it, with the same description beside it as `model.json`;
// `predict`, `submit` and `interpret` need only the `.pth`.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ConvLearner } from '../learn/learner.js';
import { noGrad, readPthExtras, savePth, tidy, type Tensor } from '../torch/index.js';
import { ensureDir, writeFileAtomic } from '../util/files.js';
import type { ImageClassifierData } from '../vision/data.js';
import { ARCHS } from '../vision/models/archs.js';
import { UsageError, type OptionSpec } from './args.js';

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

/** The name of the record inside a model's `.pth` that holds its description. */
export const MODEL_INFO_RECORD = 'fastvision-model.json';

/** The description of a learner's model, as `model.json` holds it. */
export function modelInfoOf(learn: ConvLearner, size: number): ModelInfo {
  if (learn.headSpec === null) throw new Error('a model with a custom head cannot be described in model.json');
  return { format: 'fastvision-model', version: 1, arch: learn.arch.name, classes: learn.data.classes, size, xtraFc: learn.headSpec.xtraFc, ps: learn.headSpec.ps };
}

/**
 * Saves a learner's weights as `{dir}/{name}.pth` — a PyTorch state dict that also
 * carries its description (architecture, classes, size, head) as an extra record,
 * so the one file is always complete — then the same description as
 * `{dir}/{name}.json` for people and other tools. Both writes are atomic; a kill
 * between them leaves a `.pth` that loads by itself. Weights that are not all
 * finite are refused: a broken model never replaces a good one.
 */
export async function saveModel(dir: string, learn: ConvLearner, size: number, { name = 'model', json = true }: { name?: string; json?: boolean } = {}): Promise<{ model: string; info: string }> {
  const model = join(dir, `${name}.pth`);
  const info = join(dir, `${name}.json`);
  const state = learn.model.stateDict();
  const broken = [...state].filter(([, t]) => !t.allFinite()).map(([k]) => k);
  if (broken.length > 0) throw new Error(`refusing to save ${model}: ${broken.length} tensor(s) hold NaN or infinite values (${broken.slice(0, 3).join(', ')}${broken.length > 3 ? ', …' : ''}); the previous model, if any, is kept`);
  const meta = `${JSON.stringify(modelInfoOf(learn, size), null, 2)}\n`;
  ensureDir(dir);
  await savePth(model, state, { extras: { [MODEL_INFO_RECORD]: meta } });
  if (json) await writeFileAtomic(info, meta);
  return { model, info };
}

/** Checks a parsed description field by field; errors name `where`. */
function checkInfo(info: ModelInfo, where: string): ModelInfo {
  const bad = (what: string): never => {
    throw new UsageError(`${where}: ${what}`);
  };
  if (info === null || typeof info !== 'object') bad('not a fastvision model description');
  if (info.format !== 'fastvision-model') bad(`not a fastvision model description (format '${String(info.format)}')`);
  if (typeof info.arch !== 'string' || !ARCHS[info.arch]) bad(`unknown architecture '${String(info.arch)}'`);
  if (!Array.isArray(info.classes) || info.classes.length < 2 || info.classes.some((c) => typeof c !== 'string')) bad('classes must be a list of at least two names');
  if (!Number.isInteger(info.size) || info.size < 8) bad(`size must be an integer of at least 8, got ${String(info.size)}`);
  if (!Array.isArray(info.xtraFc) || !Array.isArray(info.ps) || info.ps.length !== info.xtraFc.length + 1) bad('xtraFc and ps do not describe a head');
  if (info.xtraFc.some((n) => !Number.isInteger(n) || n < 1 || n > 65536) || info.ps.some((p) => typeof p !== 'number' || !(p >= 0 && p < 1))) bad('xtraFc and ps do not describe a head');
  return info;
}

function parseInfo(text: string, where: string): ModelInfo {
  try {
    return checkInfo(JSON.parse(text) as ModelInfo, where);
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`${where}: not valid JSON (${(e as Error).message})`);
  }
}

/**
 * Finds a saved model from what the user typed: a `.pth` file, its `.json`, or a
 * folder holding `model.pth`. The description comes from inside the `.pth` when it
 * carries one (every model fastvision saves now), else from the `.json` beside it.
 * Errors name the path.
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
  let embedded: Uint8Array | undefined;
  try {
    embedded = readPthExtras(await readFile(pth), pth).get(MODEL_INFO_RECORD);
  } catch (e) {
    if (!existsSync(json)) throw new UsageError(`${pth}: ${(e as Error).message.replace(`${pth}: `, '')}`);
  }
  if (embedded !== undefined) return { pth, info: parseInfo(new TextDecoder().decode(embedded), `${pth} (its description)`) };
  if (!existsSync(json)) throw new UsageError(`no model description at ${json} (fastvision writes it next to the .pth)`);
  return { pth, info: parseInfo(await readFile(json, 'utf8'), json) };
}

/** The `--ensemble` option of the prediction commands. */
export const ENSEMBLE: OptionSpec = { type: 'boolean', help: "average over the model's cycle snapshots (model_cyc_*.pth beside it, from fit --save-cycles): a snapshot ensemble" };

/** The cycle snapshots beside a saved model (`model_cyc_K.pth`, in cycle order); an error when there are none. */
export function snapshotsOf(saved: { pth: string }): string[] {
  const dir = dirname(saved.pth);
  const found = readdirSync(dir)
    .map((f) => ({ f, k: /^model_cyc_(\d+)\.pth$/.exec(f) }))
    .filter((e) => e.k !== null)
    .sort((a, b) => Number(a.k![1]) - Number(b.k![1]))
    .map((e) => join(dir, e.f));
  if (found.length === 0) throw new UsageError(`--ensemble: no cycle snapshots (model_cyc_*.pth) in ${dir}; 'fastvision fit --save-cycles' writes them`);
  return found;
}

/**
 * Class probabilities (row-major) and targets for the validation or test set:
 * plain or averaged by TTA, and with `ensemble` averaged again over those
 * snapshots' weights (the learner's own weights are restored afterwards).
 */
export async function probabilitiesOf(learn: ConvLearner, { tta, nAug, isTest, ensemble }: { tta: boolean; nAug: number; isTest: boolean; ensemble?: string[] }): Promise<{ probs: Float32Array; y: number[] }> {
  const once = async (): Promise<{ probs: Tensor; y: Tensor }> => {
    if (tta) return learn.TTA({ nAug, isTest });
    const r = await learn.predictWithTargets(isTest);
    const probs = r.logProbs.exp();
    r.logProbs.dispose();
    return { probs, y: r.y };
  };
  let result: { probs: Tensor; y: Tensor };
  if (ensemble === undefined) result = await once();
  else {
    const parts = await withWeightsOf(learn, ensemble, once);
    result = { probs: averageProbs(parts.map((p) => p.probs)), y: parts[0]!.y };
    for (const p of parts) p.probs.dispose();
    for (const p of parts.slice(1)) p.y.dispose();
  }
  const out = { probs: result.probs.dataSync() as Float32Array, y: result.y.toArray() };
  result.probs.dispose();
  result.y.dispose();
  return out;
}

/** Runs `fn` with each weights file loaded in turn, then puts the learner's weights back. */
async function withWeightsOf<T>(learn: ConvLearner, files: string[], fn: () => Promise<T>): Promise<T[]> {
  const current = new Map([...learn.model.stateDict()].map(([k, t]) => [k, noGrad(() => t.clone())]));
  const out: T[] = [];
  try {
    for (const f of files) {
      try {
        await learn.load(f);
      } catch (e) {
        throw new UsageError(`${f}: cannot load into the model (${(e as Error).message.split('\n')[0]})`);
      }
      out.push(await fn());
    }
  } finally {
    learn.model.loadStateDict(current);
    for (const t of current.values()) t.dispose();
  }
  return out;
}

/** The mean of probability tensors of the same shape. */
function averageProbs(parts: Tensor[]): Tensor {
  return tidy(() => parts.slice(1).reduce((acc, p) => acc.add(p), parts[0]!).div(parts.length));
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
