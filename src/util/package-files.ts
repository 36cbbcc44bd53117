// Where fastvision's own files are once installed: the package root, and the vendored copies of
// other packages' files that `npm pack` puts in vendor/ (scripts/vendor.mjs).
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package root (where package.json and build/ are). */
export function packageRoot(): string {
  // dist/src/util/package-files.js -> package root; also works from src/ under a TS runner.
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    dir = dirname(dir);
  }
  throw new Error('fastvision: cannot find the package root from ' + fileURLToPath(import.meta.url));
}

/**
 * The vendored copy of a package's file (`vendor/<name>/<path>`), when the installed fastvision
 * carries one, else null: the package itself is then looked up in node_modules (a checkout).
 */
export function vendoredFile(name: string, path: string): string | null {
  const file = join(packageRoot(), 'vendor', name, path);
  return existsSync(file) ? file : null;
}
