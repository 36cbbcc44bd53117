// Labels and file names from strangers: labels with spaces are names unless they
// really are tags, control characters never reach a terminal or a chart raw, the
// formats phones and desktops give are read (or named when they cannot be), nested
// class folders count, litter is passed over, names that are not UTF-8 are named as
// such, named pipes are refused instead of hanging, and a CSV without a header keeps
// its first row.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import sharp from 'sharp';
import { shown } from '../src/util/shown.js';
import { decodeBmp } from '../src/vision/bmp.js';
import { csvRowCount, readLabelsCsv, scanCsv, scanFolders, tagsVerdict } from '../src/vision/dataset.js';
import { fixturesDir, photos, repoRoot } from './helpers.js';

const bin = join(repoRoot, 'dist', 'src', 'cli', 'bin.js');
const formats = join(fixturesDir, 'formats');
const cats = readdirSync(join(photos, 'dogscats', 'train', 'cats')).map((f) => join(photos, 'dogscats', 'train', 'cats', f));
const dogs = readdirSync(join(photos, 'dogscats', 'train', 'dogs')).map((f) => join(photos, 'dogscats', 'train', 'dogs', f));
let tmp = '';

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'fastvision-strangers-'));
  process.env.FASTVISION_HOME = join(tmp, 'home');
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

function run(args: string[]): { status: number | null; stdout: string; stderr: string } {
  return spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, FASTVISION_QUIET: '1' } });
}

test('shown() escapes what moves the cursor, reorders text or breaks a row, and nothing else', () => {
  assert.equal(shown('Maine Coon'), 'Maine Coon');
  assert.equal(shown('Écureuil 日本 🐈'), 'Écureuil 日本 🐈');
  assert.equal(shown('evil\x1b[2Jlabel'), 'evil\\x1b[2Jlabel');
  assert.equal(shown('a\nb\tc\rd\x0be\x7f'), 'a\\nb\\tc\\rd\\x0be\\x7f');
  assert.equal(shown('abc\u202edcba\u200f'), 'abc\\u202edcba\\u200f');
  assert.equal(shown('x\ud800y'), 'x\\ud800y');
});

test('labels with spaces are names; tags are tags only when they recombine or the column says so, and the choice is explained', () => {
  const breeds = ['Maine Coon', 'golden dog', 'Abyssinian', 'Bengal', 'Maine Coon', 'golden retriever', 'Persian', 'British Shorthair'];
  const single = tagsVerdict(breeds);
  assert.equal(single.multiLabel, false);
  assert.match(single.note!, /^labels: single-label: labels such as 'Maine Coon' hold spaces but read as names .*; --multi-label reads them as space-separated tags$/);
  const planet = ['agriculture clear primary', 'clear primary', 'haze primary', 'clear primary water', 'cloudy', 'agriculture haze primary road', 'clear primary road'];
  const multi = tagsVerdict(planet);
  assert.equal(multi.multiLabel, true);
  assert.match(multi.note!, /^labels: multi-label: 6 of 7 rows list several space-separated tags, and 6 of them share a tag with a different label; --single-label reads each label whole$/);
  assert.equal(tagsVerdict(['Maine Coon', 'Bengal'], 'tags').multiLabel, true, 'a column headed tags');
  assert.deepEqual(tagsVerdict(['cat', 'dog']), { multiLabel: false, note: null });
});

/** A CSV data folder: images named by id under train/, and the CSV text given. */
function csvFolder(name: string, rows: [string, string][], text?: string): string {
  const dir = join(tmp, name);
  mkdirSync(join(dir, 'train'), { recursive: true });
  rows.forEach(([id], i) => copyFileSync((i % 2 === 0 ? cats : dogs)[i % 6]!, join(dir, 'train', `${id}.jpg`)));
  writeFileSync(join(dir, 'labels.csv'), text ?? `id,breed\n${rows.map(([id, l]) => `${id},${l}`).join('\n')}\n`);
  return dir;
}

test('a breeds CSV with spaces trains single-label on whole names; a quoted label with a line break is one row; control characters are kept in the data and shown escaped', () => {
  const rows: [string, string][] = Array.from({ length: 8 }, (_, i) => [`img${i}`, ['Maine Coon', 'golden dog', 'Bengal', 'Sphynx'][i % 4]!]);
  const dir = csvFolder('breeds-spaces', rows);
  const scan = scanCsv(dir, 'train', 'labels.csv', { valIdxs: [], suffix: '.jpg' });
  assert.equal(scan.multiLabel, false);
  assert.deepEqual(scan.classes, ['Bengal', 'Maine Coon', 'Sphynx', 'golden dog']);

  const odd = csvFolder('odd-labels', [], `id,label\na1,"golden\ndog"\na2,plain\na3,"evil\x1b[31m"\na4,plain\n`);
  for (const [i, id] of ['a1', 'a2', 'a3', 'a4'].entries()) copyFileSync(cats[i]!, join(odd, 'train', `${id}.jpg`));
  assert.equal(csvRowCount(odd, 'labels.csv'), 4, 'records, not lines');
  const s2 = scanCsv(odd, 'train', 'labels.csv', { valIdxs: [1], suffix: '.jpg' });
  assert.deepEqual(s2.classes, ['evil\x1b[31m', 'golden\ndog', 'plain']);
  assert.equal(s2.val!.files.length, 1);
  // The CLI: sizes renders its charts and prints its table with the labels escaped.
  const r = run(['sizes', odd, '--csv', 'labels.csv', '--suffix', '.jpg', '--val-pct', '0', '--out', join(tmp, 'odd-out')]);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(!(r.stdout + r.stderr).includes('\x1b[31m'), 'no raw ESC sequence from a label');
  assert.match(r.stdout, /evil\\x1b\[31m/);
  assert.match(r.stdout, /golden\\ndog/);
  assert.match(readFileSync(join(tmp, 'odd-out', 'sizes.html'), 'utf8'), /label-counts/);
});

test('a CSV without a header keeps its first row, and says so; --header insists on one', () => {
  const rows: [string, string][] = Array.from({ length: 6 }, (_, i) => [`p${i}`, i % 2 === 0 ? 'cat' : 'dog']);
  const dir = csvFolder('no-header', rows, `${rows.map(([id, l]) => `${id},${l}`).join('\n')}\n`);
  const read = readLabelsCsv(dir, 'labels.csv', { folder: 'train', suffix: '.jpg' });
  assert.equal(read.header, false);
  assert.equal(read.rows.length, 6);
  assert.match(read.headerNote!, /line 1 \(p0,cat\) is data, not a header: its image .*p0\.jpg exists; --header reads it as a header/);
  assert.equal(readLabelsCsv(dir, 'labels.csv', { folder: 'train', suffix: '.jpg', header: true }).rows.length, 5);
  const withHeader = csvFolder('with-header', rows);
  assert.equal(readLabelsCsv(withHeader, 'labels.csv', { folder: 'train', suffix: '.jpg' }).header, true);
  const r = run(['sizes', dir, '--csv', 'labels.csv', '--suffix', '.jpg', '--val-pct', '0', '--out', join(tmp, 'nh-out')]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /line 1 \(p0,cat\) is data, not a header/);
  assert.match(r.stdout, /^cat\s+3\s*$/m);
  const n = run(['sizes', dir, '--csv', 'labels.csv', '--suffix', '.jpg', '--no-header', '--header']);
  assert.equal(n.status, 2);
  assert.match(n.stderr, /--header and --no-header exclude each other/);
});

test('Windows bitmaps of every common kind decode to the pixels Pillow wrote; broken ones are named errors', async () => {
  const kinds = ['rgb24', 'p8', 'p4', 'l8', 'mono1', 'topdown24', 'rgb555', 'rgb565'];
  for (const k of kinds) {
    const img = decodeBmp(readFileSync(join(formats, `${k}.bmp`)), 1e8);
    const ref = await sharp(join(formats, `${k}.png`))
      .removeAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
    assert.deepEqual([img.width, img.height], [ref.info.width, ref.info.height], k);
    assert.ok(Buffer.from(img.data).equals(ref.data), `${k}: pixels differ`);
  }
  const good = readFileSync(join(formats, 'rgb24.bmp'));
  assert.throws(() => decodeBmp(good.subarray(0, 200), 1e8), /pixel data is cut off/);
  assert.throws(() => decodeBmp(good, 100), /over the limit of 100/);
  const rle = Buffer.from(good);
  rle.writeUInt32LE(1, 30);
  assert.throws(() => decodeBmp(rle, 1e8), /RLE-compressed BMPs are not supported/);
  const huge = Buffer.from(good);
  huge.writeInt32LE(0x7fffffff, 18);
  assert.throws(() => decodeBmp(huge, 178_956_970), /over the limit/);
});

test('the folder layout: nested class folders count, BMPs are read, HEVC HEIC photos and other files are named, __MACOSX and non-UTF-8 names are passed over with a warning', () => {
  const dir = join(tmp, 'folders');
  const c = join(dir, 'train', 'cats');
  const d = join(dir, 'train', 'dogs');
  mkdirSync(join(c, 'indoor'), { recursive: true });
  mkdirSync(d, { recursive: true });
  mkdirSync(join(dir, 'train', '__MACOSX', 'cats'), { recursive: true });
  mkdirSync(join(dir, 'valid', 'cats'), { recursive: true });
  mkdirSync(join(dir, 'valid', '__MACOSX'), { recursive: true });
  mkdirSync(join(dir, 'train', 'heic-only'), { recursive: true });
  copyFileSync(cats[0]!, join(c, 'a.jpg'));
  copyFileSync(cats[1]!, join(c, 'indoor', 'b.jpg'));
  copyFileSync(join(formats, 'rgb24.bmp'), join(c, 'c.bmp'));
  const heic = Buffer.concat([Buffer.from([0, 0, 0, 24]), Buffer.from('ftypheic'), Buffer.alloc(64)]);
  writeFileSync(join(c, 'phone.HEIC'), heic);
  writeFileSync(join(c, 'notes.txt'), 'not an image');
  writeFileSync(join(dir, 'train', '__MACOSX', 'cats', '._a.jpg'), 'resource fork');
  writeFileSync(Buffer.from(join(c, 'caf\xe9.jpg'), 'latin1'), readFileSync(cats[2]!));
  for (const f of dogs.slice(0, 2)) copyFileSync(f, join(d, f.split('/').pop()!));
  copyFileSync(cats[3]!, join(dir, 'valid', 'cats', 'v.jpg'));
  writeFileSync(join(dir, 'train', 'heic-only', 'x.heic'), heic);
  const warnings: string[] = [];
  assert.throws(
    () => scanFolders(dir, 'train', 'valid', (m) => warnings.push(m)),
    (e: Error) => {
      assert.match(e.message, /class folder .*heic-only holds no images fastvision reads \(\.jpg, .*\.bmp.*\); left out: 1 file: a HEIC photo coded in HEVC, .*convert it to JPEG.* \(x\.heic\)/);
      return true;
    },
  );
  // Without the HEIC-only class, the scan goes through.
  rmSync(join(dir, 'train', 'heic-only'), { recursive: true });
  warnings.length = 0;
  const { trn, val, classes } = scanFolders(dir, 'train', 'valid', (m) => warnings.push(m));
  assert.deepEqual(classes, ['cats', 'dogs']);
  assert.deepEqual(
    trn.files.map((f) => f.slice(dir.length + 1)),
    ['train/cats/a.jpg', 'train/cats/c.bmp', 'train/cats/indoor/b.jpg', ...dogs.slice(0, 2).map((f) => `train/dogs/${f.split('/').pop()}`)],
  );
  assert.equal(val!.files.length, 1);
  const all = warnings.join('\n');
  assert.match(all, /skipping .*train\/__MACOSX: archive or system folder, not a class/);
  assert.match(all, /skipping .*valid\/__MACOSX: archive or system folder, not a class/);
  assert.match(all, /skipping .*cats\/caf\\xe9\.jpg \(bytes 636166e92e6a7067\): its name is not valid UTF-8; rename it/);
  assert.match(all, /skipped under .*train\/cats: 1 file: a HEIC photo coded in HEVC.* \(phone\.HEIC\)/);
  assert.match(all, /skipped under .*train\/cats: 1 file: not image files \(by their extension\) \(notes\.txt\)/);
  assert.doesNotMatch(all, /dangling/);
});

test('named pipes are refused at once, never read: on the command line, in a CSV, and as a labels file', () => {
  const dir = join(tmp, 'pipes');
  mkdirSync(join(dir, 'train'), { recursive: true });
  const mk = spawnSync('mkfifo', [join(dir, 'train', 'p.jpg'), join(dir, 'labels-pipe.csv')]);
  assert.equal(mk.status, 0);
  writeFileSync(join(dir, 'labels.csv'), 'id,label\np,cat\n');
  const started = Date.now();
  const r = run(['predict', join(tmp, 'nowhere'), join(dir, 'train', 'p.jpg')]);
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /p\.jpg is a named pipe, not a regular file/);
  assert.throws(() => scanCsv(dir, 'train', 'labels.csv', { valIdxs: [], suffix: '.jpg', header: true }), /labels\.csv, line 2: .*p\.jpg is not a regular file/);
  assert.throws(() => readLabelsCsv(dir, 'labels-pipe.csv'), /labels file .*labels-pipe\.csv is a named pipe, not a regular file/);
  assert.ok(Date.now() - started < 60_000);
});

test('sizes counts only the images it could read, and names the one it could not', () => {
  const dir = join(tmp, 'sizes-count');
  mkdirSync(join(dir, 'train', 'cats'), { recursive: true });
  mkdirSync(join(dir, 'train', 'dogs'), { recursive: true });
  mkdirSync(join(dir, 'valid', 'cats'), { recursive: true });
  copyFileSync(cats[4]!, join(dir, 'valid', 'cats', 'v.jpg'));
  for (const f of cats.slice(0, 3)) copyFileSync(f, join(dir, 'train', 'cats', f.split('/').pop()!));
  writeFileSync(join(dir, 'train', 'cats', 'broken.jpg'), readFileSync(cats[3]!).subarray(0, 200));
  for (const f of dogs.slice(0, 2)) copyFileSync(f, join(dir, 'train', 'dogs', f.split('/').pop()!));
  const r = run(['sizes', dir, '--out', join(tmp, 'sizes-count-out')]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^cats\s+3\s+1\s*$/m);
  assert.match(r.stdout, /^dogs\s+2\s+0\s*$/m);
  assert.match(r.stderr, /skipping unreadable image .*broken\.jpg/);
});
