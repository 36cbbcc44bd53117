// `fastvision verify`: fastai's verify_images from the command line. Every photo of the
// data is decoded whole; those that cannot be read are named with the reason, and
// `--exclude-to` records them as exclusions in a cleaning file that `--clean` reads.
import { resolve } from 'node:path';
import { writeFileAtomic } from '../util/files.js';
import { claimFile } from '../util/outputs.js';
import { progress } from '../util/progress.js';
import { shown } from '../util/shown.js';
import { addExclusions, cleaningKey } from '../vision/cleaning.js';
import { FilesDataset } from '../vision/dataset.js';
import { archOf } from '../vision/models/archs.js';
import { verifyImages } from '../vision/verify.js';
import { str, type CommandSpec } from './args.js';
import { dataPath, DEFAULT_ARCH, LAYOUT_OPTIONS, loadData, MODEL_OPTIONS } from './data-args.js';

export const verifyCommand: CommandSpec = {
  name: 'verify',
  summary: "Decodes every photo of the data as training would and names those that cannot be read (fastai's verify_images); --exclude-to records them in a cleaning file.",
  positionals: ['<path>'],
  options: {
    ...LAYOUT_OPTIONS,
    'max-image-pixels': MODEL_OPTIONS['max-image-pixels']!,
    'exclude-to': { type: 'string', arg: 'FILE', help: 'add an exclusion for each unreadable photo to this cleaning file (created if missing); train with --clean FILE' },
    json: { type: 'string', arg: 'FILE', help: 'also write the unreadable photos as JSON there' },
  },
  details: [
    'Exit code 0 when every photo reads (or each one that does not has been excluded with --exclude-to), 1 otherwise.',
    'examples:',
    '  fastvision verify photos/dogscats',
    '  fastvision verify photos/dogscats --exclude-to runs/dogscats/cleaning.csv && fastvision train photos/dogscats --clean runs/dogscats/cleaning.csv',
  ].join('\n'),
  async run(args) {
    const path = dataPath(args.positionals[0]);
    const excludeTo = str(args, 'exclude-to');
    const json = str(args, 'json');
    // Both are checked before the photos are read: a mistake costs a second, not the whole check.
    if (excludeTo !== undefined) claimFile(excludeTo, '--exclude-to');
    if (json !== undefined) claimFile(json, '--json');
    const data = await loadData(path, { ...args, values: { ...args.values, aug: 'none' } }, archOf(DEFAULT_ARCH), 64);
    const files = [data.trnDs, data.valDs, data.testDs].flatMap((ds) => (ds instanceof FilesDataset ? ds.files : []));
    const bar = progress('verifying photos', files.length);
    const bad = await verifyImages(files, { onProgress: (done) => bar.update(done) });
    bar.stop();
    const root = resolve(data.path);
    for (const b of bad) console.log(`${shown(cleaningKey(root, b.file))}: ${shown(b.reason)}`);
    if (json !== undefined)
      await writeFileAtomic(json, `${JSON.stringify({ root, checked: files.length, unreadable: bad.map((b) => ({ file: cleaningKey(root, b.file), reason: b.reason })) }, null, 2)}\n`);
    if (bad.length === 0) {
      console.log(`all ${files.length} photos read`);
      return;
    }
    if (excludeTo !== undefined) {
      const added = await addExclusions(
        excludeTo,
        bad.map((b) => cleaningKey(root, b.file)),
      );
      console.log(`${bad.length} of ${files.length} photos cannot be read; ${added} exclusion(s) added to ${excludeTo} (train with --clean ${excludeTo})`);
      return;
    }
    throw new Error(`${bad.length} of ${files.length} photos cannot be read (--exclude-to FILE leaves them out of training with --clean FILE)`);
  },
};
