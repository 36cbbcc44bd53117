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
  // torchvision's DEFAULT weights of the newer families (ImageNet-1k; RegNets: IMAGENET1K_V2).
  convnext_tiny: torchvision('convnext_tiny-983f1562.pth'),
  convnext_small: torchvision('convnext_small-0c510722.pth'),
  convnext_base: torchvision('convnext_base-6075fbad.pth'),
  convnext_large: torchvision('convnext_large-ea097f82.pth'),
  efficientnet_b0: torchvision('efficientnet_b0_rwightman-3dd342df.pth'),
  efficientnet_b1: torchvision('efficientnet_b1-c27df63c.pth'),
  efficientnet_b2: torchvision('efficientnet_b2_rwightman-bcdf34b7.pth'),
  efficientnet_b3: torchvision('efficientnet_b3_rwightman-cf984f9c.pth'),
  efficientnet_b4: torchvision('efficientnet_b4_rwightman-7eb33cd5.pth'),
  efficientnet_b5: torchvision('efficientnet_b5_lukemelas-b6417697.pth'),
  efficientnet_b6: torchvision('efficientnet_b6_lukemelas-c76e70fd.pth'),
  efficientnet_b7: torchvision('efficientnet_b7_lukemelas-dcc49843.pth'),
  efficientnet_v2_s: torchvision('efficientnet_v2_s-dd5fe13b.pth'),
  efficientnet_v2_m: torchvision('efficientnet_v2_m-dc08266a.pth'),
  efficientnet_v2_l: torchvision('efficientnet_v2_l-59c71312.pth'),
  regnet_y_400mf: torchvision('regnet_y_400mf-e6988f5f.pth'),
  regnet_y_800mf: torchvision('regnet_y_800mf-58fc7688.pth'),
  regnet_y_1_6gf: torchvision('regnet_y_1_6gf-0d7bc02a.pth'),
  regnet_y_3_2gf: torchvision('regnet_y_3_2gf-9180c971.pth'),
  regnet_y_8gf: torchvision('regnet_y_8gf-dc2b1b54.pth'),
  regnet_y_16gf: torchvision('regnet_y_16gf-3e4a00f9.pth'),
  regnet_y_32gf: torchvision('regnet_y_32gf-8db6d4b5.pth'),
  // Its only weights: SWAG end-to-end, at 384 px.
  regnet_y_128gf: torchvision('regnet_y_128gf_swag-c8ce3e52.pth'),
  regnet_x_400mf: torchvision('regnet_x_400mf-62229a5f.pth'),
  regnet_x_800mf: torchvision('regnet_x_800mf-94a99ebd.pth'),
  regnet_x_1_6gf: torchvision('regnet_x_1_6gf-a12f2b72.pth'),
  regnet_x_3_2gf: torchvision('regnet_x_3_2gf-7071aa85.pth'),
  regnet_x_8gf: torchvision('regnet_x_8gf-2b70d774.pth'),
  regnet_x_16gf: torchvision('regnet_x_16gf-ba3796d7.pth'),
  regnet_x_32gf: torchvision('regnet_x_32gf-6eb8fdc6.pth'),
  vit_b_16: torchvision('vit_b_16-c867db91.pth'),
  vit_b_32: torchvision('vit_b_32-d86f8d99.pth'),
  vit_l_16: torchvision('vit_l_16-852ce7e3.pth'),
  swin_t: torchvision('swin_t-704ceda3.pth'),
  swin_s: torchvision('swin_s-5e29d889.pth'),
  swin_b: torchvision('swin_b-68c6b09e.pth'),
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
