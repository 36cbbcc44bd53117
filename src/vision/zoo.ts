// Pretrained weights: a zoo of published files (name → URL + SHA-256), a cache
// folder, downloads with a progress bar and a checksum check, and local files.
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync } from 'node:fs';
import { stat, unlink } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, join } from 'node:path';
import { megabytes, progress } from '../util/progress.js';
import { ensureDir, renameIntoPlace } from '../util/files.js';
import { removeOnInterrupt } from '../util/cleanup.js';
import { InputError } from '../util/errors.js';

/** A published weights file. */
export interface ZooEntry {
  /** Where it is published. */
  url: string;
  /**
   * Its SHA-256 in hex: the whole digest, or a prefix of it (torchvision publishes
   * the first 8 hex digits in each file name and PyTorch's hub checks those).
   */
  sha256: string;
  /** The file name in the cache. */
  fileName: string;
}

function torchvision(file: string): ZooEntry {
  const prefix = /-([a-f0-9]{8,})\.pth$/.exec(file)?.[1];
  if (!prefix) throw new Error(`zoo: ${file} carries no hash`);
  return { url: `https://download.pytorch.org/models/${file}`, sha256: prefix, fileName: file };
}

/** ImageNet weights published by torchvision, by architecture name. */
export const ZOO: Record<string, ZooEntry> = {
  resnet18: torchvision('resnet18-f37072fd.pth'),
  resnet34: torchvision('resnet34-b627a593.pth'),
  resnet50: torchvision('resnet50-0676ba61.pth'),
  resnet101: torchvision('resnet101-63fe2227.pth'),
  resnet152: torchvision('resnet152-394f9c45.pth'),
  resnext50_32x4d: torchvision('resnext50_32x4d-7cdf4587.pth'),
  resnext101_32x8d: torchvision('resnext101_32x8d-8ba56ff5.pth'),
  resnext101_64x4d: torchvision('resnext101_64x4d-173b62eb.pth'),
  wide_resnet50_2: torchvision('wide_resnet50_2-95faca4d.pth'),
  vgg16_bn: torchvision('vgg16_bn-6c64b313.pth'),
  densenet121: torchvision('densenet121-a639ec97.pth'),
  mobilenet_v2: torchvision('mobilenet_v2-b0353104.pth'),
  inception_v3: torchvision('inception_v3_google-0cc3c7bd.pth'),
};

/** fastvision's folder for downloaded and converted files: FASTVISION_HOME, default ~/.cache/fastvision. */
export function fastvisionHome(): string {
  return process.env.FASTVISION_HOME ?? join(homedir(), '.cache', 'fastvision');
}

/** Where the zoo keeps weights files. */
export function weightsDir(): string {
  return join(fastvisionHome(), 'weights');
}

/** A download or checksum failure, with what the user can do about it. */
export class WeightsError extends InputError {}

/** Options of `fetchWeights`. */
export interface FetchOptions {
  /** Show a progress bar (default true; plain lines when not a terminal). */
  progress?: boolean;
  /** The cache folder (default `weightsDir()`). */
  dir?: string;
}

function checksumMatches(digest: string, expected: string): boolean {
  return digest.toLowerCase().startsWith(expected.toLowerCase());
}

/**
 * The local path of a zoo entry's file, downloading it once into the cache. The
 * download goes to a `.partial` file that is checked (length and SHA-256) and only
 * then renamed into place, so an interrupted or corrupted download never leaves a
 * file that looks complete. Offline, the error names the file to put where.
 */
export async function fetchWeights(entry: ZooEntry, { progress: showProgress = true, dir = weightsDir() }: FetchOptions = {}): Promise<string> {
  const dest = join(dir, entry.fileName);
  if (existsSync(dest)) return dest;
  ensureDir(dir);
  const partial = `${dest}.partial`;
  const unregister = removeOnInterrupt(partial);
  const offlineHelp = `Without network access, download ${entry.url} elsewhere and put it at ${dest} (SHA-256 starting ${entry.sha256}), or pass the file's path instead of the zoo name.`;
  let res: Response;
  try {
    res = await fetch(entry.url);
  } catch (e) {
    const cause = (e as Error & { cause?: Error }).cause?.message ?? (e as Error).message;
    throw new WeightsError(`cannot download ${entry.url}: ${cause}. ${offlineHelp}`);
  }
  if (!res.ok || res.body === null) {
    throw new WeightsError(`cannot download ${entry.url}: HTTP ${res.status} ${res.statusText}. ${offlineHelp}`);
  }
  const total = Number(res.headers.get('content-length') ?? 0);
  const bar = showProgress ? progress(`downloading ${entry.fileName}`, total, { format: megabytes }) : null;
  const hash = createHash('sha256');
  const out = createWriteStream(partial);
  let received = 0;
  try {
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      hash.update(chunk);
      received += chunk.length;
      bar?.update(received);
      if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
    }
    await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
  } catch (e) {
    bar?.stop();
    out.destroy();
    await unlink(partial).catch(() => undefined);
    throw new WeightsError(`download of ${entry.url} was interrupted after ${megabytes(received)}: ${(e as Error).message}. Run again to retry. ${offlineHelp}`);
  }
  bar?.stop();
  if (total > 0 && received !== total) {
    await unlink(partial).catch(() => undefined);
    throw new WeightsError(`download of ${entry.url} was interrupted: got ${received} of ${total} bytes. Run again to retry.`);
  }
  const digest = hash.digest('hex');
  if (!checksumMatches(digest, entry.sha256)) {
    await unlink(partial).catch(() => undefined);
    throw new WeightsError(`download of ${entry.url} is corrupt: its SHA-256 is ${digest}, expected one starting ${entry.sha256}. Nothing was kept; run again to retry.`);
  }
  await renameIntoPlace(partial, dest);
  unregister();
  return dest;
}

/**
 * Resolves what a user passed as weights: a zoo name (downloaded or cached), or a
 * path to a local `.pth` file (checked to exist).
 */
export async function resolveWeights(nameOrPath: string, options: FetchOptions = {}): Promise<string> {
  // Own names only: `__proto__` or `toString` is a file name, not an entry.
  const entry = Object.hasOwn(ZOO, nameOrPath) ? ZOO[nameOrPath] : undefined;
  if (entry !== undefined) return fetchWeights(entry, options);
  try {
    const s = await stat(nameOrPath);
    if (!s.isFile()) throw new WeightsError(`weights: ${nameOrPath} is not a file`);
    return nameOrPath;
  } catch (e) {
    if (e instanceof WeightsError) throw e;
    throw new WeightsError(`weights: '${basename(nameOrPath)}' is neither a zoo name (${Object.keys(ZOO).join(', ')}) nor a readable file (${nameOrPath})`);
  }
}
