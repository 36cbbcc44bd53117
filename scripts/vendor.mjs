#!/usr/bin/env node
// Copies into vendor/ the few files of two large packages that fastvision uses at run time, so
// that they travel in the tarball while the packages stay devDependencies:
//   - onnxruntime-web: the wasm build the exported web page loads (3 of its 140 MB);
//   - nsfwjs: the Keras MobileNetV2 that is the offline backbone (its 3.6 MB of 41, without the
//     TF.js it asks for as a peer: 270 MB that fastvision never loads).
// `npm pack` runs it (prepack) and removes vendor/ afterwards (postpack). The code looks in vendor/
// first, then in node_modules, so a checkout works without it. `--clean` only removes vendor/.
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const vendor = join(root, 'vendor');
rmSync(vendor, { recursive: true, force: true });
if (process.argv.includes('--clean')) process.exit(0);

const require = createRequire(join(root, 'package.json'));

/** The root folder of an installed package. */
function packageDir(name, entry) {
  let dir = dirname(require.resolve(entry));
  while (!existsSync(join(dir, 'package.json')) || JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).name !== name) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`vendor: cannot find the folder of ${name} from ${entry}`);
    dir = up;
  }
  return dir;
}

/** Copies `files` (relative to the package's root) into vendor/<name>/, with a NOTICE naming its version and licence. */
function copy(name, entry, files) {
  const from = packageDir(name, entry);
  const meta = JSON.parse(readFileSync(join(from, 'package.json'), 'utf8'));
  const to = join(vendor, name);
  for (const f of files) {
    mkdirSync(dirname(join(to, f)), { recursive: true });
    copyFileSync(join(from, f), join(to, f));
  }
  const license = existsSync(join(from, 'LICENSE')) ? `\n${readFileSync(join(from, 'LICENSE'), 'utf8')}` : '';
  writeFileSync(join(to, 'NOTICE'), `Files copied from the npm package ${name}@${meta.version} (${meta.license} licence), ${meta.homepage ?? ''}\n${license}`);
  writeFileSync(join(to, 'version'), `${meta.version}\n`);
}

copy('onnxruntime-web', 'onnxruntime-web/ort-wasm-simd-threaded.wasm', ['dist/ort.wasm.bundle.min.mjs', 'dist/ort-wasm-simd-threaded.mjs', 'dist/ort-wasm-simd-threaded.wasm']);
copy('nsfwjs', 'nsfwjs', ['dist/models/package.json', 'dist/models/mobilenet_v2/model.min.js', 'dist/models/mobilenet_v2/group1-shard1of1.min.js']);
process.stderr.write(`[vendor] wrote ${vendor}\n`);
