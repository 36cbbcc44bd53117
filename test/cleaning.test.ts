// Label cleaning as data: the decisions file (its parser refuses what it cannot use,
// naming the line), decisions applied to datasets and to ImageClassifierData, the
// studio's store with undo, and `train --clean` refusing a bad file before any work.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { main } from '../src/cli/main.js';
import { CleaningStore } from '../src/studio/cleaning-store.js';
import { ImageClassifierData } from '../src/vision/data.js';
import { FilesDataset } from '../src/vision/dataset.js';
import { applyCleaning, cleanedLabelsCsv, CleaningError, currentDecisions, parseCleaning, readCleaning, serializeCleaning, type CleaningDecision } from '../src/vision/cleaning.js';
import { archOf } from '../src/vision/models/archs.js';
import { tfmsFromModel } from '../src/vision/transforms.js';
import { photos } from './helpers.js';

let tmp = '';
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'fastvision-cleaning-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

test('a cleaning file round-trips any file name, and a later decision about a photo overrides an earlier one', () => {
  const decisions: CleaningDecision[] = [
    { file: 'train/cats/a, "quoted".jpg', action: 'relabel', label: 'dogs' },
    { file: 'train/cats/line\nbreak.jpg', action: 'exclude', label: null },
    { file: 'train/dogs/ leading space.jpg', action: 'keep', label: null },
    { file: 'train/cats/a, "quoted".jpg', action: 'keep', label: null },
  ];
  const back = parseCleaning(serializeCleaning(decisions), 'c.csv').map(({ file, action, label }) => ({ file, action, label }));
  assert.deepEqual(back, decisions);
  const now = currentDecisions(back);
  assert.equal(now.size, 3);
  assert.equal(now.get('train/cats/a, "quoted".jpg')!.action, 'keep');
});

test('a cleaning file that cannot be used is refused, naming the line', () => {
  const cases: [string, RegExp][] = [
    ['', /line 1: expected the header file,action,label/],
    ['id,label\na.jpg,cats\n', /line 1: expected the header/],
    ['file,action,label\na.jpg,delete,\n', /line 2: action 'delete' is none of keep, relabel, exclude/],
    ['file,action,label\na.jpg,keep,\nb.jpg,relabel,\n', /line 3: a relabel needs the new label/],
    ['file,action,label\na.jpg,exclude,dogs\n', /line 2: exclude takes no label/],
    ['file,action,label\n/etc/passwd,exclude,\n', /line 2: '\/etc\/passwd' is not a path inside the data folder/],
    ['file,action,label\ntrain/../../x.jpg,exclude,\n', /line 2: .* is not a path inside the data folder/],
    ['file,action,label\na.jpg,exclude\n', /line 2: expected 3 columns/],
    ['file,action,label\n"a.jpg,exclude,\n', /malformed CSV/],
  ];
  for (const [text, message] of cases)
    assert.throws(
      () => parseCleaning(text, 'c.csv'),
      (e: Error) => e instanceof CleaningError && /^c\.csv/.test(e.message) && message.test(e.message),
      JSON.stringify(text),
    );
  mkdirSync(join(tmp, 'a-folder'));
  assert.throws(() => readCleaning(join(tmp, 'a-folder')), /cleaning file .*a-folder/);
  assert.throws(() => readCleaning(join(tmp, 'missing.csv')), /cleaning file .*missing\.csv/);
});

test('decisions applied to a dataset: excluded photos leave, relabelled ones move; an unknown class or a multi-label relabel is refused', () => {
  const root = '/data';
  const ds = new FilesDataset(['/data/train/cats/1.jpg', '/data/train/cats/2.jpg', '/data/train/dogs/3.jpg'], [0, 0, 1], ['cats', 'dogs']);
  const now = currentDecisions(parseCleaning('file,action,label\ntrain/cats/1.jpg,relabel,dogs\ntrain/dogs/3.jpg,exclude,\ntrain/cats/2.jpg,keep,\n', 'c.csv'));
  const cleaned = applyCleaning(root, ds, now, 'c.csv');
  assert.deepEqual(
    [cleaned.files, cleaned.labels],
    [
      ['/data/train/cats/1.jpg', '/data/train/cats/2.jpg'],
      [1, 0],
    ],
  );
  assert.equal(cleanedLabelsCsv(root, [cleaned]), 'id,label\ntrain/cats/1.jpg,dogs\ntrain/cats/2.jpg,cats\n');
  const cows = currentDecisions(parseCleaning('file,action,label\ntrain/cats/1.jpg,relabel,cows\n', 'c.csv'));
  assert.throws(
    () => applyCleaning(root, ds, cows, 'c.csv'),
    (e: Error) => e.message === "c.csv, line 2: 'cows' is not a class of the data (cats, dogs)",
  );
  const tagged = new FilesDataset(ds.files, ds.labels, ds.classes, [[0], [0, 1], [1]]);
  assert.throws(() => applyCleaning(root, tagged, now, 'c.csv'), /multi-label; only exclusions apply/);
  const excludedOnly = applyCleaning(root, tagged, currentDecisions([{ file: 'train/cats/2.jpg', action: 'exclude', label: null }]));
  assert.deepEqual(excludedOnly.tags, [[0], [1]]);
});

test('ImageClassifierData with a cleaning file; the studio store keeps decisions across reopening, with undo', async () => {
  const data = join(tmp, 'dogscats');
  cpSync(join(photos, 'dogscats'), data, { recursive: true });
  const out = join(tmp, 'out');
  mkdirSync(out);
  const store = CleaningStore.open(out);
  await store.add('train/cats/Ragdoll_10.jpg', 'relabel', 'dogs');
  await store.add('train/dogs/pug_142.jpg', 'exclude', null);
  await store.add('valid/cats/Bengal_167.jpg', 'exclude', null);
  await store.add('train/dogs/havanese_100.jpg', 'keep', null);
  assert.equal((await store.undo())!.file, 'train/dogs/havanese_100.jpg');
  const reopened = CleaningStore.open(out);
  assert.deepEqual(
    reopened.decisions.map((d) => d.file),
    ['train/cats/Ragdoll_10.jpg', 'train/dogs/pug_142.jpg', 'valid/cats/Bengal_167.jpg'],
  );
  const tfms = tfmsFromModel(archOf('mobilenet_v2_nsfwjs'), 32);
  const d = await ImageClassifierData.fromPaths(data, { tfms, cleaning: store.file });
  const counts = d.labelCounts();
  assert.deepEqual(Object.fromEntries(counts.trn), { cats: 5, dogs: 10 });
  assert.deepEqual(Object.fromEntries(counts.val!), { cats: 2, dogs: 3 });
});

test('train --clean with a decision the data cannot take stops before any work, naming the file and line', async () => {
  const data = join(tmp, 'dogscats2');
  cpSync(join(photos, 'dogscats'), data, { recursive: true });
  const clean = join(tmp, 'bad-clean.csv');
  writeFileSync(clean, 'file,action,label\ntrain/cats/Ragdoll_10.jpg,relabel,cows\n');
  const errors: string[] = [];
  const err = console.error;
  console.error = (...a: unknown[]) => void errors.push(a.join(' '));
  try {
    assert.notEqual(await main(['train', data, '--clean', clean, '--size', '32', '--out', join(tmp, 'never')]), 0);
  } finally {
    console.error = err;
  }
  assert.match(errors.join('\n'), /bad-clean\.csv, line 2: 'cows' is not a class of the data/);
  assert.equal(execFileSync('ls', [join(tmp, 'never')], { encoding: 'utf8' }).includes('model.pth'), false);
});
