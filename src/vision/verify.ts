// fastai's verify_images: every photo decoded whole before training, so that a file
// cut short by a download, or one that only looks like an image, is found and named
// at once rather than skipped with a warning in the middle of an epoch.
import { BadImageError, checkImage } from './augment.js';

/** A photo that cannot be read, and why. */
export interface UnreadableImage {
  file: string;
  reason: string;
}

/** Options of `verifyImages`. */
export interface VerifyOptions {
  /** Called after each file with the number checked and the total. */
  onProgress?: (done: number, total: number) => void;
  /** Stops the check; what was found so far is returned. */
  signal?: AbortSignal;
  /** The most pixels an image may declare (default: the loaders' limit). */
  maxPixels?: number;
}

/**
 * Decodes every file as training would and returns those that cannot be read, in the
 * order given. JPEGs decode on the calling thread, so the check yields to the event
 * loop between files: a server that runs it keeps answering.
 */
export async function verifyImages(files: readonly string[], { onProgress, signal, maxPixels }: VerifyOptions = {}): Promise<UnreadableImage[]> {
  const bad: UnreadableImage[] = [];
  for (let i = 0; i < files.length && !signal?.aborted; i++) {
    const file = files[i]!;
    try {
      await checkImage(file, 64, maxPixels);
    } catch (e) {
      bad.push({ file, reason: e instanceof BadImageError ? e.reason : (e as Error).message });
    }
    onProgress?.(i + 1, files.length);
    await new Promise((r) => setImmediate(r));
  }
  return bad;
}
