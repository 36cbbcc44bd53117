// The exported web page: a static folder that any static file server can serve,
// working offline — index.html, the app (web-app/app.ts compiled), onnxruntime-web's
// wasm build copied from its npm package, the model with its preprocessing inside
// (model-preprocess.onnx) and its metadata.
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureDir, writeFileAtomic } from '../util/files.js';
import { vendoredFile } from '../util/package-files.js';
import { PREPROCESS_FILE, type ExportedModel } from './export-model.js';

const here = dirname(fileURLToPath(import.meta.url));

/** onnxruntime-web's files the page loads (the wasm build: its ES module, glue and binary). */
export const ORT_FILES = ['ort.wasm.bundle.min.mjs', 'ort-wasm-simd-threaded.mjs', 'ort-wasm-simd-threaded.wasm'];

/** Where onnxruntime-web's dist/ folder is: the copy the package carries, else the devDependency of a checkout. */
export function ortDistDir(): string {
  const vendored = vendoredFile('onnxruntime-web', 'dist/ort-wasm-simd-threaded.wasm');
  if (vendored) return dirname(vendored);
  return dirname(createRequire(import.meta.url).resolve('onnxruntime-web/ort-wasm-simd-threaded.wasm'));
}

/** The page's HTML; `server` makes it post photos to the server's /predict instead of running the model itself. */
export function indexHtml({ server = false }: { server?: boolean } = {}): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="fastvision-mode" content="${server ? 'server' : 'browser'}">
<title>fastvision classifier</title>
<style>
  [hidden] { display: none !important; }
  body { font: 15px/1.4 system-ui, sans-serif; margin: 0 auto; max-width: 760px; padding: 24px; color: #222; }
  h1 { font-size: 22px; margin: 0 0 4px; } #title { color: #555; margin: 0 0 16px; }
  #drop { border: 2px dashed #999; border-radius: 10px; padding: 28px; text-align: center; color: #555; }
  #drop.over { border-color: #2a7; background: #efe; }
  button, label.button { display: inline-block; margin: 10px 6px 0; padding: 7px 14px; border: 1px solid #888; border-radius: 6px; background: #f6f6f6; cursor: pointer; font: inherit; }
  #status { color: #666; font-size: 13px; margin: 12px 0; }
  video { max-width: 100%; margin-top: 10px; border-radius: 8px; }
  ul { list-style: none; padding: 0; } .result { display: flex; gap: 16px; align-items: center; border-bottom: 1px solid #eee; padding: 12px 0; }
  .result img { width: 128px; height: 128px; object-fit: cover; border-radius: 8px; }
  .result > div { flex: 1; } .name { font-weight: 600; margin-bottom: 6px; word-break: break-all; }
  .class { display: grid; grid-template-columns: 10em 1fr 4em; gap: 8px; align-items: center; margin: 3px 0; }
  .bar { background: #eee; border-radius: 4px; height: 12px; overflow: hidden; } .bar span { display: block; height: 100%; background: #2a7; }
  .p { text-align: right; font-variant-numeric: tabular-nums; }
</style>
</head>
<body>
<h1>What is in this photo?</h1>
<p id="title">loading the model…</p>
<div id="drop">Drop photos here
  <div><label class="button">Choose photos<input id="files" type="file" accept="image/*" multiple hidden></label>
  <button id="camera-on" type="button">Use the camera</button><button id="snap" type="button" hidden>Classify this frame</button></div>
  <video id="camera" autoplay playsinline muted hidden></video>
</div>
<div id="status">starting…</div>
<ul id="results"></ul>
<script type="module" src="app.js"></script>
</body>
</html>
`;
}

/** The compiled app with its imports pointed at the files beside it. */
async function appJs(): Promise<string> {
  const js = await readFile(join(here, 'web-app', 'app.js'), 'utf8');
  return js.replace(/import\(['"]onnxruntime-web\/wasm['"]\)/, `import('./${ORT_FILES[0]}')`).replace(/\/\/# sourceMappingURL=.*$/m, '');
}

/** The page's static files other than the model, by name (for the server, which serves them itself). */
export async function webAssets({ server = false }: { server?: boolean } = {}): Promise<Map<string, { body: Buffer; type: string }>> {
  const ort = ortDistDir();
  const files = new Map<string, { body: Buffer; type: string }>([
    ['index.html', { body: Buffer.from(indexHtml({ server })), type: 'text/html; charset=utf-8' }],
    ['app.js', { body: Buffer.from(await appJs()), type: 'text/javascript; charset=utf-8' }],
  ]);
  if (!server) for (const f of ORT_FILES) files.set(f, { body: await readFile(join(ort, f)), type: f.endsWith('.wasm') ? 'application/wasm' : 'text/javascript; charset=utf-8' });
  return files;
}

const README = `A fastvision classifier as a static web page. It works offline: nothing is
fetched from elsewhere. Serve this folder with any static file server, e.g.

    python3 -m http.server 8000        # then open http://localhost:8000/

(opening index.html as a file does not work: browsers load ES modules and wasm
only over http). Served with the headers

    Cross-Origin-Opener-Policy: same-origin
    Cross-Origin-Embedder-Policy: require-corp

the page is cross-origin isolated and onnxruntime-web uses up to 4 threads;
without them it runs on one thread (slower, same results). \`fastvision serve\`
sends these headers. _headers holds them for hosts that read that file.
`;

/** Writes the web page into `dir` (created); returns the path of its index.html. */
export async function writeWebApp(dir: string, model: ExportedModel): Promise<{ index: string; files: string[] }> {
  ensureDir(dir);
  const written: string[] = [];
  const put = async (name: string, body: Uint8Array | string): Promise<void> => {
    await writeFileAtomic(join(dir, name), body);
    written.push(name);
  };
  if (model.withPreprocessing === null) throw new Error('the web page runs model-preprocess.onnx: export without --no-preprocess');
  for (const [name, f] of await webAssets()) await put(name, f.body);
  await put(PREPROCESS_FILE, model.withPreprocessing);
  await put('metadata.json', `${JSON.stringify(model.metadata, null, 2)}\n`);
  await put('README.txt', README);
  await put('_headers', '/*\n  Cross-Origin-Opener-Policy: same-origin\n  Cross-Origin-Embedder-Policy: require-corp\n');
  return { index: join(dir, 'index.html'), files: written };
}
