// The studio's cleaning decisions, kept in `<out>/cleaning.csv` as a log: each change
// is written (atomically) before it is acknowledged, so a reload or a restart of the
// server finds every decision, and undo takes back the last one.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../util/files.js';
import { currentDecisions, exclusionsToAdd, readCleaning, serializeCleaning, type CleaningAction, type CleaningDecision } from '../vision/cleaning.js';

/** The name of the cleaning file in the output folder. */
export const CLEANING_FILE = 'cleaning.csv';

/** Decisions in order, backed by a file. */
export class CleaningStore {
  private log: CleaningDecision[];
  /** Changes are written one after another, in the order made. */
  private writing: Promise<void> = Promise.resolve();

  private constructor(
    /** The cleaning file. */
    readonly file: string,
    log: CleaningDecision[],
  ) {
    this.log = log;
  }

  /** The store of output folder `out`, with the decisions its cleaning file already holds (a malformed file is an error naming its line). */
  static open(out: string): CleaningStore {
    const file = join(out, CLEANING_FILE);
    return new CleaningStore(file, existsSync(file) ? readCleaning(file).map(({ file: f, action, label }) => ({ file: f, action, label })) : []);
  }

  /** Every decision, in order. */
  get decisions(): readonly CleaningDecision[] {
    return this.log;
  }

  /** The decision in force for each photo. */
  current(): Map<string, CleaningDecision> {
    return currentDecisions(this.log);
  }

  /** Records a decision and writes the file. */
  add(file: string, action: CleaningAction, label: string | null): Promise<void> {
    this.log.push({ file, action, label: action === 'relabel' ? label : null });
    return this.save();
  }

  /** Excludes each photo not already excluded, in one write; returns how many decisions were added. */
  async excludeAll(files: readonly string[]): Promise<number> {
    const added = exclusionsToAdd(this.log, files);
    if (added.length === 0) return 0;
    this.log.push(...added);
    await this.save();
    return added.length;
  }

  /** Takes back the last decision and writes the file; null when there was none. */
  async undo(): Promise<CleaningDecision | null> {
    const last = this.log.pop() ?? null;
    if (last) await this.save();
    return last;
  }

  private save(): Promise<void> {
    const text = serializeCleaning(this.log);
    this.writing = this.writing.then(() => writeFileAtomic(this.file, text));
    return this.writing;
  }
}
