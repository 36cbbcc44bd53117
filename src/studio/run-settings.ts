// What the studio's Train screen sends to start a run, checked as an option parser
// would: every field's type and range, each error naming the field.
import { RECIPES, type Recipe } from '../learn/recipe.js';
import { InputError } from '../util/errors.js';
import { ARCHS } from '../vision/models/archs.js';

/** A run the studio starts. */
export interface StudioRunSettings {
  arch: string;
  recipe: Recipe;
  /** Image side in pixels. */
  size: number;
  /** fine-tune: epochs of the unfrozen network; lesson: its SGDR cycles (1 + 2 + 4 … epochs). */
  epochs: number;
  /** fine-tune: epochs of the head on precomputed activations. */
  freezeEpochs: number;
  bs: number;
  /** The learning rate; null: the finder's suggestion. */
  lr: number | null;
  device: 'auto' | 'cpu' | 'cuda';
  /** Continue from the output folder's checkpoint. */
  resume: boolean;
  /** Train on the cleaned labels (`<out>/cleaning.csv`). */
  clean: boolean;
}

/** The settings the Train screen starts with. */
export const STUDIO_RUN_DEFAULTS: StudioRunSettings = {
  arch: 'mobilenet_v2_nsfwjs',
  recipe: 'fine-tune',
  size: 224,
  epochs: 4,
  freezeEpochs: 8,
  bs: 32,
  lr: null,
  device: 'auto',
  resume: false,
  clean: true,
};

const DEVICES = ['auto', 'cpu', 'cuda'] as const;

/** An error in a request's settings: the server answers 400 with it. */
export class SettingsError extends InputError {}

function integer(v: unknown, name: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new SettingsError(`${name} must be a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`);
  return v;
}

function oneOf<T extends string>(v: unknown, name: string, choices: readonly T[]): T {
  if (typeof v !== 'string' || !(choices as readonly string[]).includes(v)) throw new SettingsError(`${name} must be one of ${choices.join(', ')}, got ${JSON.stringify(v)?.slice(0, 80)}`);
  return v as T;
}

function rate(v: unknown): number | null {
  if (v === null) return null;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 1e-8 || v > 10)
    throw new SettingsError(`lr must be null (the finder's suggestion) or a number from 1e-8 to 10, got ${JSON.stringify(v)?.slice(0, 80)}`);
  return v;
}

/** Settings from a request body: the defaults where a field is absent, an error naming any field that is wrong or unknown. */
export function parseRunSettings(body: unknown): StudioRunSettings {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new SettingsError('the settings must be a JSON object');
  const b = body as Record<string, unknown>;
  const unknown = Object.keys(b).find((k) => !Object.hasOwn(STUDIO_RUN_DEFAULTS, k));
  if (unknown !== undefined) throw new SettingsError(`unknown setting ${JSON.stringify(unknown).slice(0, 80)} (known: ${Object.keys(STUDIO_RUN_DEFAULTS).join(', ')})`);
  const get = <K extends keyof StudioRunSettings>(k: K): unknown => (Object.hasOwn(b, k) ? b[k] : STUDIO_RUN_DEFAULTS[k]);
  const bool = (k: 'resume' | 'clean'): boolean => {
    const v = get(k);
    if (typeof v !== 'boolean') throw new SettingsError(`${k} must be true or false`);
    return v;
  };
  return {
    arch: oneOf(get('arch'), 'arch', Object.keys(ARCHS)),
    recipe: oneOf(get('recipe'), 'recipe', RECIPES),
    size: integer(get('size'), 'size', 8, 2048),
    epochs: integer(get('epochs'), 'epochs', 1, 1000),
    freezeEpochs: integer(get('freezeEpochs'), 'freezeEpochs', 0, 1000),
    bs: integer(get('bs'), 'bs', 1, 4096),
    lr: rate(get('lr')),
    device: oneOf(get('device'), 'device', DEVICES),
    resume: bool('resume'),
    clean: bool('clean'),
  };
}
