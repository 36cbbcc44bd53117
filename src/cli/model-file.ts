// The command line's side of saved models: finding one from what the user typed
// (src/learn/saved-model.ts reads and writes them), rebuilding its learner on
// data, its probabilities with TTA and snapshot ensembles.
import type { MixedPrecisionMode } from '../learn/mixed-precision.js';
import { readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ConvLearner } from '../learn/conv-learner.js';
import { readSavedModel, type ModelInfo } from '../learn/saved-model.js';
import { averageProbabilities, keepingWeights, type Probabilities } from '../learn/predict.js';
import type { ImageClassifierData } from '../vision/data.js';
import { UsageError, type OptionSpec } from './args.js';

export { MODEL_INFO_RECORD, modelInfoOf, saveModel, type ModelInfo } from '../learn/saved-model.js';

/** Finds a saved model from what the user typed (a folder, a .pth or its .json); errors name the path. */
export const readModel = readSavedModel;

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
 * Class (or tag) probabilities, row-major, and targets (class indices, or
 * multi-hot rows flattened) for the validation or test set: plain or averaged by
 * TTA, and with `ensemble` averaged again over those snapshots' weights (the
 * learner's own weights are restored afterwards).
 */
export async function probabilitiesOf(
  learn: ConvLearner,
  { tta, nAug, isTest, ensemble }: { tta: boolean; nAug: number; isTest: boolean; ensemble?: string[] },
): Promise<{ probs: Float32Array; y: number[] }> {
  const once = async (): Promise<Probabilities> => {
    if (tta) return learn.TTA({ nAug, isTest });
    const r = await learn.predictWithTargets(isTest);
    const probs = learn.probabilities(r.logProbs);
    r.logProbs.dispose();
    return { probs, y: r.y };
  };
  const result =
    ensemble === undefined
      ? await once()
      : await keepingWeights(learn.model, () =>
          averageProbabilities(ensemble.length, async (k) => {
            try {
              await learn.load(ensemble[k]!);
            } catch (e) {
              throw new UsageError(`${ensemble[k]}: cannot load into the model (${(e as Error).message.split('\n')[0]})`);
            }
            return once();
          }),
        );
  const out = { probs: result.probs.dataSync() as Float32Array, y: result.y.toArray() };
  result.probs.dispose();
  result.y.dispose();
  return out;
}

/** Rebuilds the learner a saved model came from, on `data`, with its weights loaded. */
export async function learnerFor(
  saved: { pth: string; info: ModelInfo },
  data: ImageClassifierData,
  { optFunc = 'sgd', device = 'cpu', mixedPrecision }: { optFunc?: 'sgd' | 'adam' | 'adamw'; device?: string; mixedPrecision?: MixedPrecisionMode } = {},
): Promise<ConvLearner> {
  const learn = await ConvLearner.pretrained(saved.info.arch, data, {
    pretrained: false,
    xtraFc: saved.info.xtraFc,
    ps: saved.info.ps,
    optFunc,
    multiLabel: saved.info.multiLabel ?? false,
    device,
    mixedPrecision,
  });
  try {
    await learn.load(saved.pth);
  } catch (e) {
    throw new UsageError(`${saved.pth}: cannot load into ${saved.info.arch} for ${saved.info.classes.length} classes (${(e as Error).message.split('\n')[0]})`);
  }
  return learn;
}
