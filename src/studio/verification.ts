// The Data screen's "check every photo": fastai's verify_images run in the background of
// the server (it yields between photos, so the page keeps answering), its progress and
// findings kept for the page to poll.
import { join } from 'node:path';
import { verifyImages, type UnreadableImage } from '../vision/verify.js';
import type { DataView } from './data-view.js';

/** What `/api/verify` answers: photos are named by their key (their path under the data folder). */
export interface VerifyStatus {
  state: 'idle' | 'running' | 'done';
  done: number;
  total: number;
  unreadable: UnreadableImage[];
}

/** One check of a data folder's photos at a time. */
export class StudioVerification {
  private current: VerifyStatus = { state: 'idle', done: 0, total: 0, unreadable: [] };
  private abort: AbortController | null = null;

  constructor(private readonly view: DataView) {}

  /** Starts a check unless one is going on; returns whether it started. */
  start(): boolean {
    if (this.current.state === 'running') return false;
    const keys = this.view.photos.map((p) => p.file);
    const abort = new AbortController();
    this.abort = abort;
    const status: VerifyStatus = { state: 'running', done: 0, total: keys.length, unreadable: [] };
    this.current = status;
    const byPath = new Map(keys.map((k) => [join(this.view.root, k), k]));
    void verifyImages([...byPath.keys()], { signal: abort.signal, onProgress: (done) => (status.done = done) }).then(
      (bad) => {
        status.unreadable = bad.map((b) => ({ file: byPath.get(b.file)!, reason: b.reason }));
        status.state = 'done';
      },
      (e: unknown) => {
        // verifyImages reports each photo's failure; anything else ends the check with it.
        status.unreadable.push({ file: '', reason: `the check stopped: ${(e as Error).message}` });
        status.state = 'done';
      },
    );
    return true;
  }

  /** The check's progress, and what it found once done. */
  status(): VerifyStatus {
    return this.current;
  }

  /** Stops a check in progress. */
  stop(): void {
    this.abort?.abort();
  }
}
