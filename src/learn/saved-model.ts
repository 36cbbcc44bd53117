// A trained model on disk: the weights as a PyTorch state dict (`model.pth`)
// that carries what is needed to use them again (architecture, classes, image
// size, head) inside it, with the same description beside it as `model.json`.
// Everything that uses a saved model — predict, export, serve — starts here.
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { loadStateDictFile, readPthExtras, savePth, type nn } from '../torch/index.js';
import { ensureDir, writeFileAtomic } from '../util/files.js';
import { ARCHS } from '../vision/models/archs.js';
import { buildClassifier } from './head.js';
import type { ConvLearner } from './conv-learner.js';
import { readRegularFile } from '../util/read-files.js';
import { InputError } from '../util/errors.js';

/** A saved model that cannot be found or read, or does not describe itself: the message names the file. */
export class ModelFileError extends InputError {}

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
  /** Tags rather than one class: sigmoid outputs, each tag kept above `threshold`. */
  multiLabel?: boolean;
  /** The multi-label threshold chosen on validation (best F2). */
  threshold?: number;
}

/** The name of the record inside a model's `.pth` that holds its description. */
export const MODEL_INFO_RECORD = 'fastvision-model.json';

/** The description of a learner's model, as `model.json` holds it. */
export function modelInfoOf(learn: ConvLearner, size: number, { threshold }: { threshold?: number } = {}): ModelInfo {
  if (learn.headSpec === null) throw new Error('a model with a custom head cannot be described in model.json');
  const info: ModelInfo = { format: 'fastvision-model', version: 1, arch: learn.arch.name, classes: learn.data.classes, size, xtraFc: learn.headSpec.xtraFc, ps: learn.headSpec.ps };
  if (learn.multiLabel) Object.assign(info, { multiLabel: true, threshold: threshold ?? 0.5 });
  return info;
}

/**
 * Saves a learner's weights as `{dir}/{name}.pth` — a PyTorch state dict that also
 * carries its description (architecture, classes, size, head) as an extra record,
 * so the one file is always complete — then the same description as
 * `{dir}/{name}.json` for people and other tools. Both writes are atomic; a kill
 * between them leaves a `.pth` that loads by itself. Weights that are not all
 * finite are refused: a broken model never replaces a good one.
 */
export async function saveModel(dir: string, learn: ConvLearner, size: number, options: { name?: string; json?: boolean; threshold?: number } = {}): Promise<{ model: string; info: string }> {
  return saveNetwork(dir, learn.model, modelInfoOf(learn, size, options), options);
}

/** Saves a classifier network (body, pool, head) with its description, as `saveModel` does. */
export async function saveNetwork(
  dir: string,
  network: nn.Module,
  description: ModelInfo,
  { name = 'model', json = true }: { name?: string; json?: boolean } = {},
): Promise<{ model: string; info: string }> {
  const model = join(dir, `${name}.pth`);
  const info = join(dir, `${name}.json`);
  const state = network.stateDict();
  const broken = [...state].filter(([, t]) => !t.allFinite()).map(([k]) => k);
  if (broken.length > 0)
    throw new Error(
      `refusing to save ${model}: ${broken.length} tensor(s) hold NaN or infinite values (${broken.slice(0, 3).join(', ')}${broken.length > 3 ? ', …' : ''}); the previous model, if any, is kept`,
    );
  const meta = `${JSON.stringify(checkInfo(description, 'the model description'), null, 2)}\n`;
  ensureDir(dir);
  await savePth(model, state, { extras: { [MODEL_INFO_RECORD]: meta } });
  if (json) await writeFileAtomic(info, meta);
  return { model, info };
}

/** Checks a parsed description field by field; errors name `where`. */
function checkInfo(info: ModelInfo, where: string): ModelInfo {
  const bad = (what: string): never => {
    throw new ModelFileError(`${where}: ${what}`);
  };
  if (info === null || typeof info !== 'object') bad('not a fastvision model description');
  if (info.format !== 'fastvision-model') bad(`not a fastvision model description (format '${String(info.format)}')`);
  if (typeof info.arch !== 'string' || !Object.hasOwn(ARCHS, info.arch)) bad(`unknown architecture '${String(info.arch)}'`);
  if (!Array.isArray(info.classes) || info.classes.length < 2 || info.classes.some((c) => typeof c !== 'string')) bad('classes must be a list of at least two names');
  if (!Number.isInteger(info.size) || info.size < 8) bad(`size must be an integer of at least 8, got ${String(info.size)}`);
  if (!Array.isArray(info.xtraFc) || !Array.isArray(info.ps) || info.ps.length !== info.xtraFc.length + 1) bad('xtraFc and ps do not describe a head');
  if (info.xtraFc.some((n) => !Number.isInteger(n) || n < 1 || n > 65536) || info.ps.some((p) => typeof p !== 'number' || !(p >= 0 && p < 1))) bad('xtraFc and ps do not describe a head');
  if (info.multiLabel !== undefined && typeof info.multiLabel !== 'boolean') bad('multiLabel must be true or false');
  if (info.threshold !== undefined && !(typeof info.threshold === 'number' && info.threshold > 0 && info.threshold < 1)) bad(`threshold must be between 0 and 1, got ${String(info.threshold)}`);
  return info;
}

function parseInfo(text: string, where: string): ModelInfo {
  try {
    return checkInfo(JSON.parse(text) as ModelInfo, where);
  } catch (e) {
    if (e instanceof ModelFileError) throw e;
    throw new ModelFileError(`${where}: not valid JSON (${(e as Error).message})`);
  }
}

/**
 * Finds a saved model from what the user typed: a `.pth` file, its `.json`, or a
 * folder holding `model.pth`. The description comes from inside the `.pth` when it
 * carries one (every model fastvision saves now), else from the `.json` beside it.
 * Errors name the path.
 */
export async function readSavedModel(where: string): Promise<{ pth: string; info: ModelInfo }> {
  if (!existsSync(where)) throw new ModelFileError(`no such model: ${where}`);
  let base: string;
  if (statSync(where).isDirectory()) base = join(where, 'model');
  else if (/\.(pth|json)$/.test(where)) base = where.replace(/\.(pth|json)$/, '');
  else throw new ModelFileError(`${where}: expected a model folder, a .pth file or its .json`);
  const pth = `${base}.pth`;
  const json = `${base}.json`;
  if (!existsSync(pth)) throw new ModelFileError(`no model weights at ${pth}`);
  let embedded: Uint8Array | undefined;
  try {
    embedded = readPthExtras(await readRegularFile(pth), pth).get(MODEL_INFO_RECORD);
  } catch (e) {
    if (!existsSync(json)) throw new ModelFileError(`${pth}: ${(e as Error).message.replace(`${pth}: `, '')}`);
  }
  if (embedded !== undefined) return { pth, info: parseInfo(new TextDecoder().decode(embedded), `${pth} (its description)`) };
  if (!existsSync(json)) throw new ModelFileError(`no model description at ${json} (fastvision writes it next to the .pth)`);
  return { pth, info: parseInfo((await readRegularFile(json)).toString('utf8'), json) };
}

/** A saved model found by `readSavedModel`: its weights file and its description. */
export interface SavedModel {
  pth: string;
  info: ModelInfo;
}

/** The saved model's network (body, pool, head) with its weights, in evaluation mode. */
export async function loadSavedNetwork(saved: SavedModel): Promise<nn.Sequential> {
  const { model } = await buildClassifier(saved.info.arch, saved.info.classes.length, { pretrained: false, xtraFc: saved.info.xtraFc, ps: saved.info.ps, multiLabel: saved.info.multiLabel ?? false });
  const state = await loadStateDictFile(saved.pth);
  try {
    model.loadStateDict(state);
  } catch (e) {
    throw new ModelFileError(`${saved.pth}: cannot load into ${saved.info.arch} for ${saved.info.classes.length} classes (${(e as Error).message.split('\n')[0]})`);
  } finally {
    for (const t of state.values()) t.dispose();
  }
  return model.eval();
}
