// Building the native addon of an installed fastvision: what `npx fastvision setup` does when
// npm's install scripts were skipped or libtorch came later. The work is scripts/install.mjs's,
// which npm also runs at install with nothing but Node's standard library.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { FastvisionError, InputError } from '../util/errors.js';
import { packageRoot } from '../util/package-files.js';

/** Something the build needs is not installed: libtorch, Node's headers or node-gyp (exit code 2). */
export class BuildPrerequisiteError extends InputError {}

/** The native addon failed to compile (exit code 1); the compiler's output was printed. */
export class AddonBuildError extends FastvisionError {}

/** Options of {@link setupNativeAddon}. */
export interface SetupOptions {
  /** Rebuild even when the addon is newer than its sources (default true: setup is asked for on purpose). */
  force?: boolean;
  /** Where progress lines go (default: stderr). */
  log?: (line: string) => void;
}

interface InstallScript {
  buildAddon(opts: { force: boolean; log?: (m: string) => void }): Promise<'built' | 'up to date'>;
  MissingError?: unknown;
}

/**
 * Builds fastvision's native addons in the installed package, against the libtorch that
 * `scripts/find-libtorch.mjs` finds, with Node's local headers (never downloaded).
 * Throws {@link BuildPrerequisiteError} naming what to install, or {@link AddonBuildError}.
 */
export async function setupNativeAddon(opts: SetupOptions = {}): Promise<'built' | 'up to date'> {
  const script = join(packageRoot(), 'scripts', 'install.mjs');
  if (!existsSync(script)) throw new AddonBuildError(`this fastvision has no ${script}: reinstall it (npm install fastvision)`);
  const m = (await import(pathToFileURL(script).href)) as InstallScript;
  try {
    return await m.buildAddon({ force: opts.force ?? true, ...(opts.log ? { log: opts.log } : {}) });
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    // install.mjs's MissingError is a plain class of a script without types: told apart by name.
    if (e instanceof Error && e.constructor.name === 'MissingError') throw new BuildPrerequisiteError(message, { cause: e });
    throw new AddonBuildError(message, { cause: e });
  }
}
