// The studio's training process: the server forks it for each run, so that the page
// stays responsive and a crash of the run cannot take the server down. It receives
// the data and settings over IPC, runs the library's recipe in a training session
// (the output folder's lock, checkpoints, resume), and sends the recipe's progress back.
import { fileDigest } from '../util/read-files.js';
import { join, resolve } from 'node:path';
import { trainRecipe, type RecipeObserver } from '../learn/recipe.js';
import { inSession } from '../learn/session.js';
import { resolveDevice } from '../torch/device.js';
import { cleanUpOnSignals, isExiting } from '../util/cleanup.js';
import { ImageClassifierData } from '../vision/data.js';
import { archOf } from '../vision/models/archs.js';
import { tfmsFromModel, transformsSideOn } from '../vision/transforms.js';
import { csvValIdxs, type StudioDataSpec } from './data-view.js';
import type { StudioRunSettings } from './run-settings.js';

/** What the server sends the child to start a run. */
export interface ChildJob {
  data: StudioDataSpec;
  settings: StudioRunSettings;
  out: string;
  /** The cleaning file to train on, or null. */
  clean: string | null;
}

/** A message from the child: one of the recipe's events, a line it said, or its end. */
export type ChildMessage =
  | { kind: 'finder'; lrs: number[]; losses: number[]; suggested: number | null; chosen: number; rule: string }
  | { kind: 'restored'; iterations: { iteration: number; loss: number; stage: string }[]; epochs: { stage: string; epoch: number; trnLoss: number; valLoss: number | null; accuracy: number | null }[] }
  | { kind: 'stage'; index: number; count: number; name: string; size: number; epochs: number; done: number }
  | { kind: 'batch'; iteration: number; loss: number; epoch: number; batch: number; batches: number }
  | { kind: 'epoch'; stage: string; epoch: number; trnLoss: number; valLoss: number | null; accuracy: number | null; iteration: number }
  | { kind: 'phase'; name: string }
  | { kind: 'say'; line: string }
  | { kind: 'done'; accuracy: number; seconds: number; counts: { trn: Record<string, number>; val: Record<string, number> | null } }
  | { kind: 'error'; message: string };

function send(m: ChildMessage): Promise<void> {
  return new Promise((done) => {
    if (!process.send || !process.connected) return done();
    process.send(m, undefined, {}, () => done());
  });
}

/** The data the job describes at image side `size`. */
function loadData(job: ChildJob, size: number): Promise<ImageClassifierData> {
  const arch = archOf(job.settings.arch);
  const tfms = tfmsFromModel(arch, size, { augTfms: transformsSideOn, maxZoom: 1.1 });
  const common = { tfms, bs: job.settings.bs, seed: 0, cleaning: job.clean ?? undefined };
  const d = job.data;
  if (d.csv === undefined) return ImageClassifierData.fromPaths(d.path, common);
  return ImageClassifierData.fromCsv(d.path, d.folder ?? 'train', d.csv, { ...common, valIdxs: csvValIdxs({ ...d, csv: d.csv }), suffix: d.suffix ?? '', multiLabel: false });
}

/** What decides the run's result, for resuming: the data, the settings that matter and the cleaning file's content. */
function fingerprint(job: ChildJob): string {
  const { resume: _r, device: _d, ...deciding } = job.settings;
  const cleaning = job.clean ? fileDigest(job.clean) : null;
  return JSON.stringify({ studio: 1, data: { ...job.data, path: resolve(job.data.path) }, deciding, cleaning });
}

async function run(job: ChildJob): Promise<void> {
  const s = job.settings;
  const observer: RecipeObserver = {
    finder: (e) => void send({ kind: 'finder', ...e }),
    restored: (e) =>
      void send({
        kind: 'restored',
        iterations: e.iterations.map(({ iteration, loss, stage }) => ({ iteration, loss, stage })),
        epochs: e.epochs.map(({ stage, record }) => ({ stage, epoch: record.epoch, trnLoss: record.trnLoss, valLoss: record.valLoss, accuracy: record.accuracy })),
      }),
    stage: (e) => void send({ kind: 'stage', ...e }),
    batch: ({ iteration, loss, epoch, batch, batches }) => void send({ kind: 'batch', iteration, loss, epoch, batch, batches }),
    epoch: ({ stage, record, iteration }) => void send({ kind: 'epoch', stage, epoch: record.epoch, trnLoss: record.trnLoss, valLoss: record.valLoss, accuracy: record.accuracy, iteration }),
    phase: (name) => void send({ kind: 'phase', name }),
  };
  const say = (line: string): void => void send({ kind: 'say', line });
  const summary = await inSession(job.out, async () => {
    const data = await loadData(job, s.size);
    return trainRecipe(
      data,
      s.arch,
      {
        out: job.out,
        recipe: s.recipe,
        epochs: s.epochs,
        lr: s.lr ?? undefined,
        freezeEpochs: s.freezeEpochs,
        unfreezeCycles: Math.min(s.epochs, 12),
        sizes: [s.size],
        device: resolveDevice(s.device),
        resume: s.resume,
        fingerprint: fingerprint(job),
        json: join(job.out, 'summary.json'),
        observer,
      },
      (size) => loadData(job, size),
      say,
    );
  });
  await send({ kind: 'done', accuracy: summary.tta?.accuracy ?? 0, seconds: summary.seconds, counts: summary.data.counts });
}

cleanUpOnSignals((line) => void send({ kind: 'say', line }));
// The studio is gone (killed, or its terminal closed): stop as its Stop button would, keeping
// the last checkpoint, rather than train on unseen and hold the output folder's lock.
process.once('disconnect', () => process.kill(process.pid, 'SIGINT'));
// Its output pipes close with it: a line written then must not crash the run before it has stopped.
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined);
process.once('message', (job: ChildJob) => {
  run(job).then(
    () => process.exit(0),
    async (e: unknown) => {
      // Interrupted (Stop): the signal handler is exiting with 130 and the checkpoint stays; anything cut short is not an error.
      if (isExiting()) return;
      await send({ kind: 'error', message: e instanceof Error ? e.message : String(e) });
      process.exit(1);
    },
  );
});
