// `fastvision train`: the lesson's steps to a world-class image classifier,
// done for a folder of photos — learning-rate finder, head on precomputed
// activations, augmentation, unfreezing with differential rates and cycleMult 2,
// optional progressive resizing, TTA — then the model, report, JSON and submission.
import { deviceArg, mixedPrecisionArg, TRAINING_DEVICE_OPTIONS } from './device-args.js';
import { basename, join, resolve } from 'node:path';
import { SUGGESTION_RULES } from '../learn/lr-finder.js';
import { defaultSuggestion, RECIPE_DEFAULTS, RECIPES, trainRecipe, type Recipe, type RecipeOptions, type RecipeSettings } from '../learn/recipe.js';
import { inSession } from '../learn/session.js';
import { DIST_OPTION_NAMES, DIST_OPTIONS, distRole, joinGroup, launchRanks, leaveGroup, rankLogger } from './distributed.js';
import { choice, flag, num, numList, rangeOf, str, UsageError, type CommandSpec, type OptionSpec, type ParsedArgs } from './args.js';
import { archArg, dataPath, LAYOUT_OPTIONS, loadData, MODEL_OPTIONS, sizeArg } from './data-args.js';
import { claimFile } from '../util/outputs.js';
import { fileDigest } from '../util/read-files.js';

const count = (min: number, max: number): OptionSpec['value'] => ({ kind: 'number', min, max, integer: true });
const rate: OptionSpec['value'] = { kind: 'number', min: 1e-8, max: 10 };

/** `train`'s recipe options: their types and ranges declared here, their defaults in the library's RECIPE_DEFAULTS. */
export const RECIPE_OPTIONS: Record<string, OptionSpec> = {
  recipe: {
    type: 'string',
    arg: 'NAME',
    help: 'fine-tune (fastai v2: AdamW, one-cycle, head then all) or lesson (fast.ai Lesson 2: SGD, head on activations, SGDR, unfreeze)',
    default: RECIPE_DEFAULTS.recipe,
    value: { kind: 'choice', choices: RECIPES },
  },
  suggest: { type: 'string', arg: 'RULE', help: "the finder's suggestion rule", default: 'lesson for --recipe lesson, valley for fine-tune', value: { kind: 'choice', choices: SUGGESTION_RULES } },
  'freeze-epochs': {
    type: 'string',
    arg: 'N',
    help: 'fine-tune: one-cycle epochs of the head on precomputed activations (0: none)',
    default: String(RECIPE_DEFAULTS.freezeEpochs),
    value: count(0, 1000),
  },
  epochs: { type: 'string', arg: 'N', help: 'fine-tune: one-cycle epochs of the unfrozen model', default: String(RECIPE_DEFAULTS.epochs), value: count(1, 1000) },
  sizes: { type: 'string', arg: 'PX,PX', help: 'progressive resizing: train at each size in turn (overrides --size)', value: { kind: 'numbers', min: 8, max: 2048, integer: true } },
  cycles: { type: 'string', arg: 'N', help: 'cycles of each frozen stage', default: String(RECIPE_DEFAULTS.cycles), value: count(1, 1000) },
  'unfreeze-cycles': { type: 'string', arg: 'N', help: 'cycles of the unfrozen stage (cycleMult 2: 1+2+4 epochs for 3)', default: String(RECIPE_DEFAULTS.unfreezeCycles), value: count(0, 12) },
  lr: { type: 'string', arg: 'RATE', help: "learning rate (default: the finder's suggestion)", value: rate },
  'class-weights': {
    type: 'string',
    arg: 'auto|W,W…',
    help: "weigh the loss by class: auto (inverse frequency in the training set, for rare classes) or one weight per class, in the classes' order",
  },
  'group-div': {
    type: 'string',
    arg: 'K',
    help: 'rate factor between layer groups once unfrozen (3 for satellite or medical images)',
    default: String(RECIPE_DEFAULTS.groupDiv),
    value: { kind: 'number', min: 1, max: 1000 },
  },
  'bn-freeze': { type: 'boolean', help: "keep the body's batch-norm statistics once unfrozen (fast.ai's bn_freeze)" },
  'lesson-unfreeze': { type: 'boolean', help: 'unfreeze as the lesson does even where the architecture advises otherwise (batch statistics, the same rate; fine-tune: half the rate)' },
  'unfreeze-lr': {
    type: 'string',
    arg: 'RATE',
    help: "the head's rate once unfrozen (the body's are K and K² times lower; fine-tune: 10 and 100)",
    default: "--lr, times the architecture's advice",
    value: rate,
  },
  weights: { type: 'string', arg: 'NAME|FILE', help: "the body's pretrained weights: a zoo name, or a .pth or .safetensors file (timm's names load too) (default: the architecture's own)" },
  'tta-aug': { type: 'string', arg: 'N', help: 'augmented copies averaged by test-time augmentation', default: String(RECIPE_DEFAULTS.ttaAug), value: count(0, 64) },
  'keep-last': { type: 'boolean', help: 'save the weights training ended with, not those of the cycle end with the lowest validation loss' },
  seed: { type: 'string', arg: 'N', help: "seed of the head's initial weights, dropout, shuffling and augmentation", default: String(RECIPE_DEFAULTS.seed), value: count(0, 2 ** 31 - 1) },
  resume: { type: 'boolean', help: "continue an interrupted run from --out's checkpoint (written at each epoch's end), with the same options" },
  out: { type: 'string', arg: 'DIR', help: 'where the model, pictures, report and submission go', default: './fastvision-out/<folder name>' },
  json: { type: 'string', arg: 'FILE', help: 'also write a machine-readable summary there' },
};

/**
 * The options that decide what a run computes (the data, the model, the
 * schedule, the seed), as one string: a resumed run must be given the same.
 * Where the results go, and how many threads load images, do not count.
 */
export function runFingerprint(args: ParsedArgs, path: string): string {
  // The device is not among them: a checkpoint written on the CPU resumes on a GPU, and back.
  const ignored = new Set(['resume', 'out', 'json', 'workers', 'device', ...DIST_OPTION_NAMES]);
  const values = Object.entries(args.values)
    .filter(([k, v]) => !ignored.has(k) && v !== undefined)
    .sort(([a], [b]) => a.localeCompare(b));
  // The cleaning file changes between runs while its name stays: its content decides.
  const clean = args.values.clean;
  const cleaning = typeof clean === 'string' ? fileDigest(clean) : null;
  return JSON.stringify({ path: resolve(path), values, ...(cleaning ? { cleaning } : {}) });
}

/** The options only one recipe reads: given with the other, they would be silently ignored. */
const RECIPE_ONLY: Record<Recipe, string[]> = {
  lesson: ['cycles', 'unfreeze-cycles', 'group-div'],
  'fine-tune': ['freeze-epochs', 'epochs'],
};

/** A UsageError for an option that belongs to the recipe not chosen, naming that recipe. */
function refuseOtherRecipesOptions(args: ParsedArgs, recipe: Recipe): void {
  for (const [other, names] of Object.entries(RECIPE_ONLY) as [Recipe, string[]][]) {
    if (other === recipe) continue;
    const given = names.find((n) => args.values[n] !== undefined);
    if (given)
      throw new UsageError(
        `--${given} belongs to --recipe ${other}; ${recipe === 'fine-tune' ? 'the fine-tune recipe (the default) trains --freeze-epochs, then --epochs' : 'the lesson recipe trains --cycles, then --unfreeze-cycles'}`,
      );
  }
}

/** --class-weights: 'auto', or a comma-separated list of finite non-negative numbers. */
function classWeightsArg(args: ParsedArgs): number[] | 'auto' | undefined {
  const v = args.values['class-weights'];
  if (v === undefined || typeof v !== 'string') return undefined;
  if (v === 'auto') return 'auto';
  const ws = v.split(',').map((x) => (x.trim() === '' ? Number.NaN : Number(x)));
  if (ws.some((w) => !Number.isFinite(w) || w < 0)) throw new UsageError(`--class-weights: '${v}' is neither auto nor a list of non-negative numbers, e.g. 1,4,2`);
  return ws;
}

/**
 * The recipe's settings from the command line: only what was given (checked against the
 * options' declared ranges when parsed), with the sizes and the output folder; trainRecipe fills
 * the rest from RECIPE_DEFAULTS.
 */
export function recipeSettings(args: ParsedArgs, path: string, dfltSize = 224): RecipeOptions & Pick<RecipeSettings, 'sizes'> {
  const sizes = numList(args, 'sizes', rangeOf(RECIPE_OPTIONS.sizes)) ?? [sizeArg(args, dfltSize)];
  if (sizes.some((s, i) => i > 0 && s <= sizes[i - 1]!)) throw new UsageError(`--sizes: ${sizes.join(',')} must grow, e.g. 128,224`);
  const recipe = choice(args, 'recipe', RECIPES, RECIPE_DEFAULTS.recipe);
  refuseOtherRecipesOptions(args, recipe);
  return {
    recipe,
    suggest: choice(args, 'suggest', SUGGESTION_RULES, defaultSuggestion(recipe)),
    freezeEpochs: num(args, 'freeze-epochs', undefined, rangeOf(RECIPE_OPTIONS['freeze-epochs'])),
    epochs: num(args, 'epochs', undefined, rangeOf(RECIPE_OPTIONS['epochs'])),
    sizes,
    cycles: num(args, 'cycles', undefined, rangeOf(RECIPE_OPTIONS['cycles'])),
    unfreezeCycles: num(args, 'unfreeze-cycles', undefined, rangeOf(RECIPE_OPTIONS['unfreeze-cycles'])),
    lr: num(args, 'lr', undefined, rangeOf(RECIPE_OPTIONS['lr'])),
    classWeights: classWeightsArg(args),
    groupDiv: num(args, 'group-div', undefined, rangeOf(RECIPE_OPTIONS['group-div'])),
    bnFreeze: flag(args, 'bn-freeze') ? true : undefined,
    lessonUnfreeze: flag(args, 'lesson-unfreeze'),
    unfreezeLr: num(args, 'unfreeze-lr', undefined, rangeOf(RECIPE_OPTIONS['unfreeze-lr'])),
    weights: str(args, 'weights'),
    ttaAug: num(args, 'tta-aug', undefined, rangeOf(RECIPE_OPTIONS['tta-aug'])),
    keepBest: !flag(args, 'keep-last'),
    seed: num(args, 'seed', undefined, rangeOf(RECIPE_OPTIONS['seed'])),
    resume: flag(args, 'resume'),
    mixedPrecision: mixedPrecisionArg(args),
    fingerprint: runFingerprint(args, path),
    out: str(args, 'out', join('fastvision-out', basename(path))),
    json: str(args, 'json'),
  };
}

export const trainCommand: CommandSpec = {
  name: 'train',
  summary:
    "Trains a classifier on a folder of labelled photos (fastai v2's fine-tune with a precomputed head, or --recipe lesson), then saves the model, an HTML report with pictures, and (with --test) a Kaggle submission.",
  positionals: ['<path>'],
  options: { ...LAYOUT_OPTIONS, ...MODEL_OPTIONS, ...RECIPE_OPTIONS, ...TRAINING_DEVICE_OPTIONS, ...DIST_OPTIONS },
  details: [
    "--recipe fine-tune (the default; fastai v2's with the lesson's precomputed head): learning-rate finder (valley) → head on precomputed activations for --freeze-epochs, one cycle",
    "       → unfreeze, rates [u/100, u/10, u] (u = --unfreeze-lr, or lr/2 and at most the architecture's advice), --epochs of one cycle (AdamW) → TTA",
    '--recipe lesson: learning-rate finder → head on precomputed activations (--cycles) → head with augmentation (cycleLen 1)',
    "       → unfreeze, rates [u/K², u/K, u] (K = --group-div, u = --unfreeze-lr, or lr times the architecture's advice), cycleLen 1, cycleMult 2 (--unfreeze-cycles) → TTA",
    "mobilenet_v2_nsfwjs's advice (measured on pets-sample): keep batch-norm statistics and unfreeze at lr/5, at most 1e-3; --lesson-unfreeze ignores it (both recipes).",
    "several processes: --nproc N on this machine; on several machines the same command with --world-size, --rank, --master HOST:PORT (or torchrun's environment); --bs is per process",
    'examples:',
    '  fastvision train photos/dogscats                     # photos/dogscats/train/<label>/*.jpg and valid/',
    '  fastvision train photos/breeds --csv labels.csv --suffix .jpg --test test --sizes 128,224 --json run.json',
  ].join('\n'),
  async run(args) {
    const path = dataPath(args.positionals[0]);
    const arch = archArg(args);
    const settings = recipeSettings(args, path);
    const role = distRole(args);
    if (role.kind === 'launcher') {
      const code = await launchRanks(role.nproc, process.argv.slice(2), resolve(settings.out), num(args, 'dist-timeout', 1800, rangeOf(DIST_OPTIONS['dist-timeout'])) * 1000);
      if (code !== 0) throw new Error(`distributed training failed (exit code ${code}); each rank's log is in ${join(resolve(settings.out), 'logs')}`);
      return;
    }
    // After the launcher: each rank resolves its own GPU (cuda is cuda:LOCAL_RANK).
    settings.device = deviceArg(args);
    const pg = await joinGroup(role, settings.device);
    {
      const shard = pg ? { rank: pg.rank, worldSize: pg.worldSize } : undefined;
      const work = async (): Promise<void> => {
        const data = await loadData(path, args, arch, settings.sizes[0]!, shard);
        await trainRecipe(data, arch.name, settings, (size) => loadData(path, args, arch, size, shard), rankLogger(resolve(settings.out), pg), pg);
      };
      // Rank 0 owns the output folder; the others only add their logs to it.
      if (pg && pg.rank !== 0) await work();
      else
        await inSession(settings.out, async () => {
          if (settings.json) claimFile(settings.json, '--json');
          await work();
        });
      // Left on success; after a failure the process exits (a group whose peer died may not shut down cleanly).
      if (pg) leaveGroup();
    }
  },
};
