// Checking every photo before training (fastai's verify_images): photos cut short, or
// that only look like images by their header or name, are found by decoding them whole
// and named with the reason; `fastvision verify` says so with exit code 1, and
// `--exclude-to` records them in a cleaning file that `--clean` then leaves out.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { addExclusions, readCleaning, serializeCleaning } from '../src/vision/cleaning.js';
import { verifyImages } from '../src/vision/verify.js';
import { photos, repoRoot } from './helpers.js';

const bin = join(repoRoot, 'dist', 'src', 'cli', 'bin.js');
let tmp = '';
let data = '';
/** Keys (paths under the data folder) of the photos broken on purpose. */
const broken = { truncatedJpeg: 'train/dogs/cut-short.jpg', truncatedPng: 'valid/cats/cut-short.png', textAsJpeg: 'train/cats/not-a-photo.jpg' };

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'fastvision-verify-'));
  data = join(tmp, 'data');
  cpSync(join(photos, 'dogscats'), data, { recursive: true });
  const dog = readFileSync(join(data, 'train', 'dogs', readdirSync(join(data, 'train', 'dogs'))[0]!));
  // Headers intact, data cut off: the header-only scan takes them for photos.
  writeFileSync(join(data, broken.truncatedJpeg), dog.subarray(0, Math.floor(dog.length / 2)));
  const png = await sharp(dog).png().toBuffer();
  writeFileSync(join(data, broken.truncatedPng), png.subarray(0, Math.floor(png.length / 2)));
  writeFileSync(join(data, broken.textAsJpeg), 'hello, I am not a photo\n');
});

after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function cli(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: tmp, encoding: 'utf8', env: { ...process.env, FASTVISION_HOME: join(tmp, 'home') }, timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

test('verifyImages decodes every photo and names those that cannot be read, with the reason; an abort stops it', async () => {
  const good = readdirSync(join(data, 'train', 'dogs'))
    .filter((f) => !f.startsWith('cut-short'))
    .map((f) => join(data, 'train', 'dogs', f));
  const files = [good[0]!, join(data, broken.truncatedJpeg), good[1]!, join(data, broken.truncatedPng), join(data, broken.textAsJpeg)];
  const seen: number[] = [];
  const bad = await verifyImages(files, { onProgress: (done, total) => seen.push(done / total) });
  assert.deepEqual(
    bad.map((b) => b.file),
    [join(data, broken.truncatedJpeg), join(data, broken.truncatedPng), join(data, broken.textAsJpeg)],
  );
  assert.match(bad[0]!.reason, /Premature end of JPEG file/);
  assert.ok(
    bad.every((b) => b.reason.length > 0 && !b.reason.startsWith('cannot read image')),
    'the reason alone, without the file again',
  );
  assert.deepEqual(seen, [0.2, 0.4, 0.6, 0.8, 1]);
  assert.deepEqual(await verifyImages(good), [], 'the fixture photos all read');

  const abort = new AbortController();
  let checked = 0;
  await verifyImages([...good, ...good], {
    signal: abort.signal,
    onProgress: (done) => {
      checked = done;
      if (done === 2) abort.abort();
    },
  });
  assert.equal(checked, 2, 'nothing is checked after the abort');
});

test('addExclusions adds each photo once, keeps the decisions already there, and writes nothing when there is nothing new', async () => {
  const file = join(tmp, 'cleaning.csv');
  writeFileSync(
    file,
    serializeCleaning([
      { file: 'train/cats/a.jpg', action: 'relabel', label: 'dogs' },
      { file: 'train/dogs/b.jpg', action: 'exclude', label: null },
    ]),
  );
  assert.equal(await addExclusions(file, ['train/dogs/b.jpg', 'train/dogs/c.jpg', 'train/dogs/c.jpg', 'train/cats/a.jpg']), 2);
  assert.deepEqual(
    readCleaning(file).map(({ file: f, action, label }) => [f, action, label]),
    [
      ['train/cats/a.jpg', 'relabel', 'dogs'],
      ['train/dogs/b.jpg', 'exclude', null],
      ['train/dogs/c.jpg', 'exclude', null],
      ['train/cats/a.jpg', 'exclude', null],
    ],
  );
  const before = readFileSync(file);
  assert.equal(await addExclusions(file, ['train/dogs/c.jpg']), 0);
  assert.deepEqual(readFileSync(file), before);
  const fresh = join(tmp, 'new', 'cleaning.csv');
  mkdirSync(join(tmp, 'new'));
  assert.equal(await addExclusions(fresh, ['valid/cats/x.png']), 1);
  assert.equal(readFileSync(fresh, 'utf8'), 'file,action,label\nvalid/cats/x.png,exclude,\n');
});

test('fastvision verify names the unreadable photos and exits 1; --exclude-to records them, and --clean then leaves them out', () => {
  const r = cli(['verify', data]);
  assert.equal(r.code, 1, r.stderr);
  const named = r.stdout
    .trim()
    .split('\n')
    .filter((l) => l.includes(': '));
  assert.deepEqual(named.map((l) => l.slice(0, l.indexOf(': '))).sort(), Object.values(broken).sort());
  assert.match(r.stdout, /cut-short\.jpg: corrupt JPEG: Premature end of JPEG file/);
  assert.match(r.stderr, /fastvision verify: 3 of \d+ photos cannot be read \(--exclude-to FILE/);

  const cleaning = join(tmp, 'out', 'cleaning.csv');
  mkdirSync(join(tmp, 'out'));
  const ex = cli(['verify', data, '--exclude-to', cleaning, '--json', join(tmp, 'out', 'verify.json')]);
  assert.equal(ex.code, 0, ex.stderr);
  assert.match(ex.stdout, new RegExp(`3 of \\d+ photos cannot be read; 3 exclusion\\(s\\) added to ${cleaning}`));
  assert.deepEqual(
    readCleaning(cleaning)
      .map((d) => `${d.file} ${d.action}`)
      .sort(),
    Object.values(broken)
      .map((f) => `${f} exclude`)
      .sort(),
  );
  const json = JSON.parse(readFileSync(join(tmp, 'out', 'verify.json'), 'utf8')) as { checked: number; unreadable: { file: string; reason: string }[] };
  assert.equal(json.unreadable.length, 3);
  assert.ok(json.checked > 20);

  const clean = cli(['verify', data, '--clean', cleaning]);
  assert.equal(clean.code, 0, clean.stderr);
  assert.match(clean.stdout, new RegExp(`all ${json.checked - 3} photos read`));

  // Outputs are checked before the photos are read.
  const folder = cli(['verify', data, '--exclude-to', join(tmp, 'out')]);
  assert.equal(folder.code, 2);
  assert.match(folder.stderr, /--exclude-to/);
  assert.doesNotMatch(folder.stderr, /verifying photos/);
});
