// Checkpoints: everything a run needs to continue after an interruption and end
// where an uninterrupted run would have — the model's weights, the optimizer's
// state, the schedule's position, the random generator, the loaders' pass
// counters — as one `.pth` file written atomically at each epoch's end. The
// tensors are in the pickle; the rest is JSON in an extra record, with the
// caller's own description of the run (`meta`) beside it.
import { loadPth, optim, pickleText, readPthExtras, savePth, Tensor, type PthValue, type PthWritable } from '../torch/index.js';
import type { EpochRecord, FitState } from './loop.js';
import { readRegularFile } from '../util/read-files.js';

const RECORD = 'fastvision-checkpoint.json';

/** A checkpoint as read back (tensors owned by the caller: `disposeCheckpoint` frees them). */
export interface Checkpoint<M> {
  meta: M;
  model: Map<string, Tensor>;
  /** Where the fit in progress stands (null between fits). */
  fit: FitState | null;
  /** Other weights the run keeps (e.g. the best so far), by name. */
  states: Map<string, Map<string, Tensor>>;
  /** libtorch's random generator at the checkpoint. */
  rng: Tensor;
}

type FitNumbers = Omit<FitState, 'optimizer' | 'rng'> & { paramGroups: optim.OptimizerStateDict['paramGroups'] };

/** Writes a checkpoint (atomically). `fit` may be null between fits. */
export async function saveCheckpoint<M>(file: string, c: { meta: M; model: Map<string, Tensor>; fit: FitState | null; states?: Map<string, Map<string, Tensor>>; rng: Tensor }): Promise<void> {
  const optState = new Map<number, Map<string, PthWritable>>();
  if (c.fit) for (const [i, st] of c.fit.optimizer.state) optState.set(i, new Map(Object.entries(st)));
  const tensors = new Map<string, PthWritable>([
    ['model', c.model],
    ['rng', c.rng],
    ['optimizer_state', optState],
    ['states', new Map([...(c.states ?? new Map<string, Map<string, Tensor>>())])],
  ]);
  const fit: FitNumbers | null = c.fit
    ? {
        epoch: c.fit.epoch,
        iteration: c.fit.iteration,
        smoothed: c.fit.smoothed,
        loaderEpoch: c.fit.loaderEpoch,
        history: c.fit.history,
        callbacks: c.fit.callbacks,
        paramGroups: c.fit.optimizer.paramGroups,
      }
    : null;
  const json = JSON.stringify({ format: 'fastvision-checkpoint', version: 2, meta: c.meta, fit });
  await savePth(file, tensors, { extras: { [RECORD]: json } });
}

function asTensorMap(v: PthValue | undefined, what: string): Map<string, Tensor> {
  if (!(v instanceof Map)) throw new Error(`${what} is missing`);
  const out = new Map<string, Tensor>();
  for (const [k, t] of v) {
    if (typeof k !== 'string' || !(t instanceof Tensor)) throw new Error(`${what} holds something other than named tensors`);
    out.set(k, t);
  }
  return out;
}

/**
 * Reads a checkpoint written by `saveCheckpoint`. Errors name the file; a file
 * that is not a fastvision checkpoint is refused.
 */
export async function loadCheckpoint<M>(file: string): Promise<Checkpoint<M>> {
  const buf = await readRegularFile(file);
  const record = readPthExtras(buf, file).get(RECORD);
  if (record === undefined) throw new Error(`${file} is not a fastvision checkpoint`);
  const parsed = JSON.parse(new TextDecoder().decode(record)) as { format?: string; version?: number; meta: M; fit: FitNumbers | null };
  if (parsed.format !== 'fastvision-checkpoint' || parsed.version !== 2) throw new Error(`${file} is not a fastvision checkpoint this version reads`);
  const value = await loadPth(file);
  if (!(value instanceof Map)) throw new Error(`${file}: not a checkpoint`);
  const model = asTensorMap(value.get('model'), `${file}: model`);
  const rng = value.get('rng');
  if (!(rng instanceof Tensor)) throw new Error(`${file}: the random generator's state is missing`);
  const states = new Map<string, Map<string, Tensor>>();
  const rawStates = value.get('states');
  if (rawStates instanceof Map) for (const [k, v] of rawStates) states.set(pickleText(k), asTensorMap(v, `${file}: ${pickleText(k)}`));
  let fit: FitState | null = null;
  if (parsed.fit) {
    const state = new Map<number, optim.ParamState>();
    const raw = value.get('optimizer_state');
    if (raw instanceof Map) {
      for (const [i, st] of raw) {
        if (!(st instanceof Map)) throw new Error(`${file}: optimizer state ${pickleText(i)} is malformed`);
        state.set(Number(i), Object.fromEntries([...st].map(([k, x]) => [pickleText(k), x as Tensor | number])));
      }
    }
    const { paramGroups, ...numbers } = parsed.fit;
    fit = { ...numbers, callbacks: numbers.callbacks ?? {}, history: numbers.history.map((h: EpochRecord) => h), optimizer: { state, paramGroups }, rng };
  }
  return { meta: parsed.meta, model, fit, states, rng };
}

/** Frees a checkpoint's tensors. */
export function disposeCheckpoint<M>(c: Checkpoint<M>): void {
  for (const t of c.model.values()) t.dispose();
  for (const s of c.states.values()) for (const t of s.values()) t.dispose();
  if (c.fit) for (const st of c.fit.optimizer.state.values()) for (const v of Object.values(st)) if (v instanceof Tensor) v.dispose();
  c.rng.dispose();
}
