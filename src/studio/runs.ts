// The studio's training runs: one child process at a time per studio (and per output
// folder, which the child locks), its events kept in order for the page to poll, and
// its end — done, stopped, failed or killed — told without taking the server down.
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkpointFile } from '../learn/session.js';
import { InputError } from '../util/errors.js';
import type { StudioDataSpec } from './data-view.js';
import type { StudioRunSettings } from './run-settings.js';
import type { ChildJob, ChildMessage } from './train-child.js';

const here = dirname(fileURLToPath(import.meta.url));

/** Where a run is. */
export type RunState = 'idle' | 'running' | 'stopping' | 'done' | 'stopped' | 'failed';

/** A run's event as the page receives it: a child message with its sequence number. */
export type RunEvent = ChildMessage & { seq: number };

/** What `/api/run` answers. */
export interface RunStatus {
  state: RunState;
  /** Increases with each run started by this server. */
  run: number;
  settings: StudioRunSettings | null;
  /** The child's process id while it runs (null otherwise). */
  pid: number | null;
  /** Why the last run failed, or null. */
  error: string | null;
  /** Whether the output folder holds a checkpoint to resume from. */
  checkpoint: boolean;
  events: RunEvent[];
  /** The sequence number to ask for next. */
  next: number;
}

/** Events kept for the page; past this, every other per-iteration point is dropped (the chart keeps its shape). */
const MAX_EVENTS = 20_000;
/** A progress bar's line when the output is not a terminal. */
const PROGRESS_LINE = /: \d+\/\d+ \(\d+%, [\d.]+ s\)$/;
/** How long a run asked to stop has before it is killed. */
const STOP_GRACE_MS = 30_000;
/** Lines of the child's output kept. */
const MAX_LINES = 400;

/** The studio's training runs into one output folder. */
export class StudioRuns {
  private child: ChildProcess | null = null;
  private state: RunState = 'idle';
  private runNo = 0;
  private settings: StudioRunSettings | null = null;
  private error: string | null = null;
  private events: RunEvent[] = [];
  private seq = 0;
  private lines = 0;
  private exited: Promise<void> = Promise.resolve();

  constructor(
    private readonly data: StudioDataSpec,
    private readonly out: string,
    private readonly cleaningFile: string,
  ) {}

  /** Starts a run; refused (an Error) while one is going. */
  start(settings: StudioRunSettings): void {
    if (this.child !== null) throw new RunBusyError('a run is going on: stop it first');
    if (settings.resume && !existsSync(checkpointFile(this.out))) throw new RunBusyError(`no checkpoint to resume from in ${this.out}; start a new run`);
    this.runNo++;
    this.events = [];
    this.lines = 0;
    this.error = null;
    this.settings = settings;
    this.state = 'running';
    // Not the server's --inspect flags: the child would find the inspector's port taken.
    const execArgv = process.execArgv.filter((a) => !/^--inspect/.test(a));
    const child = fork(join(here, 'train-child.js'), [], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], serialization: 'json', execArgv });
    this.child = child;
    const job: ChildJob = { data: this.data, settings, out: this.out, clean: settings.clean && existsSync(this.cleaningFile) ? this.cleaningFile : null };
    child.send(job);
    const onLine = (chunk: Buffer): void => {
      // Progress-bar lines ("epoch 0: 3/4 (75%, 0.6 s)") say what the batch events already tell.
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim() !== '' && !PROGRESS_LINE.test(line) && this.lines++ < MAX_LINES) this.push({ kind: 'say', line: line.slice(0, 2000) });
    };
    child.stdout!.on('data', onLine);
    child.stderr!.on('data', onLine);
    child.on('message', (m: ChildMessage) => {
      if (m.kind === 'error') this.error = m.message;
      this.push(m);
    });
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => {
        this.child = null;
        if (code === 0) this.state = 'done';
        // Asked to stop: however it ended, the last epoch's checkpoint is what is left.
        else if (this.state === 'stopping') this.state = 'stopped';
        else {
          this.state = 'failed';
          this.error ??= signal ? `the training process was killed (${signal})` : `the training process exited with code ${code}`;
        }
        resolve();
      });
      child.on('error', (e) => {
        // Not started at all: no 'exit' follows, so the run ends here.
        if (child.pid === undefined && this.child === child) {
          this.child = null;
          this.state = 'failed';
          this.error = `could not start the training process: ${e.message}`;
          resolve();
        }
      });
    });
  }

  /**
   * Asks the run to stop (as Ctrl-C does: the last epoch's checkpoint stays); resolves once it
   * has ended. A run that has not ended `graceMs` later (stuck in a native call), or that is
   * asked a second time, is killed: checkpoints are written atomically, so the last one stays.
   */
  async stop(graceMs = STOP_GRACE_MS): Promise<void> {
    const child = this.child;
    if (child === null) return;
    if (this.state === 'stopping') {
      child.kill('SIGKILL');
    } else {
      this.state = 'stopping';
      child.kill('SIGINT');
    }
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    try {
      await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  /** The run's state and its events from sequence number `since` on. */
  status(since = 0): RunStatus {
    const events = this.events.filter((e) => e.seq >= since);
    return { state: this.state, run: this.runNo, settings: this.settings, pid: this.child?.pid ?? null, error: this.error, checkpoint: existsSync(checkpointFile(this.out)), events, next: this.seq };
  }

  /** Resolves when the current run (if any) has ended. */
  ended(): Promise<void> {
    return this.exited;
  }

  private push(m: ChildMessage): void {
    this.events.push({ ...m, seq: this.seq++ });
    if (this.events.length > MAX_EVENTS) {
      let odd = false;
      this.events = this.events.filter((e) => e.kind !== 'batch' || (odd = !odd));
    }
  }
}

/** A run cannot start now (one is going, or there is nothing to resume): the server answers 409. */
export class RunBusyError extends InputError {}
