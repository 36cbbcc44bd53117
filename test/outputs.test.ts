// Writing an output never replaces what is not a regular file: a device or a FIFO is
// written in place (a rename over /dev/null replaced it for the whole machine, as root),
// a symbolic link keeps being a link and its target is written, `-` is standard output,
// and folders, block devices, sockets and link loops are refused before anything is
// written. Device nodes are made here, in a temporary folder, never the machine's own.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { lstatSync, mkdirSync, readFileSync, readlinkSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { checkWritable, OutputPathError, renameIntoPlace, writeFileAtomic, writeTargetOf } from '../src/util/files.js';
import { photos, repoRoot, saveSeededModel } from './helpers.js';

const bin = join(repoRoot, 'dist', 'src', 'cli', 'bin.js');
let tmp = '';
before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'fastvision-outputs-'));
});
after(async () => {
  await rm(tmp, { recursive: true, force: true });
});

/** mknod in the temporary folder (root only); false where it is not allowed. */
function mknod(path: string, type: 'c' | 'b', major: number, minor: number): boolean {
  return spawnSync('mknod', [path, type, String(major), String(minor)]).status === 0;
}
const noMknod = spawnSync('id', ['-u'], { encoding: 'utf8' }).stdout.trim() === '0' ? false : 'making device nodes needs root';

test('a symbolic link stays a link and its target is written; a dangling link creates its target', async () => {
  const real = join(tmp, 'real.csv');
  writeFileSync(real, 'old\n');
  const link = join(tmp, 'link.csv');
  symlinkSync(real, link);
  await writeFileAtomic(link, 'new\n');
  assert.ok(lstatSync(link).isSymbolicLink(), 'still a link');
  assert.equal(readFileSync(real, 'utf8'), 'new\n');
  const dangling = join(tmp, 'dangling.csv');
  symlinkSync('made-by-the-write.csv', dangling);
  await writeFileAtomic(dangling, 'x\n');
  assert.ok(lstatSync(dangling).isSymbolicLink());
  assert.equal(readFileSync(join(tmp, 'made-by-the-write.csv'), 'utf8'), 'x\n');
  assert.deepEqual(
    (await readdir(tmp)).filter((f) => f.endsWith('.tmp')),
    [],
    'no temporary file left',
  );
});

test('a character device is written in place and stays a device', { skip: noMknod }, async () => {
  const dev = join(tmp, 'null');
  assert.ok(mknod(dev, 'c', 1, 3), 'mknod c 1 3');
  assert.equal(writeTargetOf(dev).kind, 'direct');
  checkWritable(dev, '--out');
  await writeFileAtomic(dev, 'discarded\n');
  assert.ok(statSync(dev).isCharacterDevice(), 'still a character device');
  assert.deepEqual(
    (await readdir(tmp)).filter((f) => f.startsWith('.null')),
    [],
    'no temporary file beside it',
  );
});

test('a FIFO is written in place: its reader gets the bytes', async () => {
  const fifo = join(tmp, 'pipe');
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0);
  const reader = spawn('cat', [fifo], { stdio: ['ignore', 'pipe', 'inherit'] });
  let got = '';
  reader.stdout.on('data', (d: Buffer) => (got += d.toString()));
  const done = new Promise<void>((r) => reader.on('exit', () => r()));
  await writeFileAtomic(fifo, 'through the pipe\n');
  await done;
  assert.equal(got, 'through the pipe\n');
  assert.ok(statSync(fifo).isFIFO(), 'still a FIFO');
});

test('folders, block devices and link loops are refused, naming the path, before anything is written', { skip: noMknod }, async () => {
  const folder = join(tmp, 'a-folder');
  mkdirSync(folder);
  await assert.rejects(writeFileAtomic(folder, 'x'), (e: unknown) => e instanceof OutputPathError && e.message.includes(folder) && /folder/.test(e.message));
  const disk = join(tmp, 'disk');
  assert.ok(mknod(disk, 'b', 7, 200), 'mknod b 7 200');
  await assert.rejects(writeFileAtomic(disk, 'x'), (e: unknown) => e instanceof OutputPathError && /block device/.test(e.message));
  assert.ok(statSync(disk).isBlockDevice(), 'the node is untouched');
  assert.throws(() => checkWritable(disk, '--out'), /--out .*disk: cannot be written \(it is a block device/);
  const a = join(tmp, 'loop-a');
  const b = join(tmp, 'loop-b');
  symlinkSync(b, a);
  symlinkSync(a, b);
  await assert.rejects(writeFileAtomic(a, 'x'), (e: unknown) => e instanceof OutputPathError && /loop/.test(e.message));
  assert.equal(readlinkSync(a), b, 'the links are untouched');
});

test('fastvision submit --out: `-` prints the CSV, a device node stays a device, a link keeps its target', { skip: noMknod }, async () => {
  const model = join(tmp, 'model');
  await saveSeededModel(model, ['cats', 'dogs'], 32);
  const testDir = join(photos, 'dogscats', 'test');
  const env = { ...process.env, FASTVISION_HOME: join(tmp, 'home'), FASTVISION_QUIET: '1' };
  const submit = (out: string): { code: number | null; stdout: string; stderr: string } => {
    const r = spawnSync(process.execPath, [bin, 'submit', model, testDir, '--out', out, '--no-tta'], { encoding: 'utf8', env, timeout: 120_000 });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const toStdout = submit('-');
  assert.equal(toStdout.code, 0, toStdout.stderr);
  assert.match(toStdout.stdout, /^id,cats,dogs$/m);
  const dev = join(tmp, 'submit-null');
  assert.ok(mknod(dev, 'c', 1, 3));
  const toDev = submit(dev);
  assert.equal(toDev.code, 0, toDev.stderr);
  assert.ok(statSync(dev).isCharacterDevice(), 'still a character device');
  const target = join(tmp, 'kept-target.csv');
  writeFileSync(target, '');
  const link = join(tmp, 'submission-link.csv');
  symlinkSync(target, link);
  const toLink = submit(link);
  assert.equal(toLink.code, 0, toLink.stderr);
  assert.ok(lstatSync(link).isSymbolicLink(), 'still a link');
  assert.match(readFileSync(target, 'utf8'), /^id,cats,dogs\n/);
  const toFolder = submit(join(tmp, 'a-folder'));
  assert.equal(toFolder.code, 2, toFolder.stderr);
  assert.match(toFolder.stderr, /--out .*a-folder: cannot be written \(it is a folder\)/);
});

test('caches and downloads move into place only over a regular file or a new path (renameIntoPlace)', { skip: noMknod }, async () => {
  const dev = join(tmp, 'cache-null');
  assert.ok(mknod(dev, 'c', 1, 3));
  const tmpFile = join(tmp, 'download.partial');
  writeFileSync(tmpFile, 'weights');
  await assert.rejects(renameIntoPlace(tmpFile, dev), (e: unknown) => e instanceof OutputPathError && e.message.includes(dev));
  assert.ok(statSync(dev).isCharacterDevice(), 'the device node is untouched');
  assert.throws(() => statSync(tmpFile), /ENOENT/, 'the temporary file is removed');
  const real = join(tmp, 'cached.bin');
  const link = join(tmp, 'cached-link.bin');
  symlinkSync(real, link);
  writeFileSync(tmpFile, 'weights');
  await renameIntoPlace(tmpFile, link);
  assert.ok(lstatSync(link).isSymbolicLink());
  assert.equal(readFileSync(real, 'utf8'), 'weights');
});
