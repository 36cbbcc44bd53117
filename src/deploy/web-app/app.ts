/// <reference lib="dom" />
// The exported web page's script, run in the browser: it classifies photos chosen,
// dropped or taken with the camera, with onnxruntime-web (wasm) on this page — or,
// served by `fastvision serve`, by posting them to the server. The page only decodes:
// model-preprocess.onnx takes the decoded pixels and does the resize, crop and
// normalization itself, as in every other place the export runs.
import type * as Ort from 'onnxruntime-web/wasm';

interface Metadata {
  arch: string;
  labels: string[];
  input: { size: number };
  withPreprocessing: { file: string } | null;
}

interface Ranked {
  label: string;
  probability: number;
}

const $ = <T extends HTMLElement>(id: string): T => document.getElementById(id) as T;
const status = (text: string): void => void ($('status').textContent = text);
const serverMode = document.querySelector('meta[name="fastvision-mode"]')?.getAttribute('content') === 'server';
const TOP = 3;

/** Upright RGB pixels of an image file, as the browser decodes it (EXIF orientation applied, no colour conversion). */
async function pixelsOf(blob: Blob): Promise<{ data: Uint8Array; width: number; height: number }> {
  const bmp = await createImageBitmap(blob, { imageOrientation: 'from-image', colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  const canvas = new OffscreenCanvas(bmp.width, bmp.height);
  const ctx = canvas.getContext('2d', { willReadFrequently: true })!;
  ctx.drawImage(bmp, 0, 0);
  const rgba = ctx.getImageData(0, 0, bmp.width, bmp.height).data;
  bmp.close();
  const data = new Uint8Array((rgba.length / 4) * 3);
  for (let i = 0, o = 0; i < rgba.length; i += 4, o += 3) {
    data[o] = rgba[i]!;
    data[o + 1] = rgba[i + 1]!;
    data[o + 2] = rgba[i + 2]!;
  }
  return { data, width: canvas.width, height: canvas.height };
}

function rank(probs: ArrayLike<number>, labels: string[]): Ranked[] {
  return labels.map((label, i) => ({ label, probability: Number(probs[i]) })).sort((a, b) => b.probability - a.probability);
}

/** One result on the page: the photo, its top classes with bars, and the full probabilities as data attributes. */
function show(name: string, blob: Blob, ranked: Ranked[], ms: number): void {
  const li = document.createElement('li');
  li.className = 'result';
  li.dataset.file = name;
  li.dataset.ms = ms.toFixed(1);
  const img = document.createElement('img');
  img.src = URL.createObjectURL(blob);
  img.alt = name;
  const box = document.createElement('div');
  const title = document.createElement('div');
  title.className = 'name';
  title.textContent = `${name} · ${ms.toFixed(0)} ms`;
  box.append(title);
  for (const r of ranked.slice(0, TOP)) {
    const row = document.createElement('div');
    row.className = 'class';
    row.dataset.label = r.label;
    row.dataset.probability = String(r.probability);
    row.innerHTML = `<span class="label"></span><span class="bar"><span style="width:${(100 * r.probability).toFixed(1)}%"></span></span><span class="p">${(100 * r.probability).toFixed(1)}%</span>`;
    row.querySelector('.label')!.textContent = r.label;
    box.append(row);
  }
  li.append(img, box);
  $('results').prepend(li);
}

async function main(): Promise<void> {
  const meta = (await (await fetch('metadata.json')).json()) as Metadata;
  $('title').textContent = `${meta.labels.length} classes: ${meta.labels.slice(0, 6).join(', ')}${meta.labels.length > 6 ? ', …' : ''}`;
  let classify: (blob: Blob) => Promise<Ranked[]>;
  if (serverMode) {
    classify = async (blob) => {
      const res = await fetch(`predict?top=${meta.labels.length}`, { method: 'POST', body: blob, headers: { 'content-type': blob.type || 'application/octet-stream' } });
      const body = (await res.json()) as { top?: Ranked[]; error?: string };
      if (!res.ok || !body.top) throw new Error(body.error ?? `HTTP ${res.status}`);
      return body.top;
    };
    status(`model ${meta.arch} on the server`);
  } else {
    // Loaded only here: served by `fastvision serve`, the page needs no runtime of its own.
    const ort: typeof Ort = await import('onnxruntime-web/wasm');
    // Threads need SharedArrayBuffer, which only a cross-origin-isolated page (COOP/COEP headers) has.
    ort.env.wasm.numThreads = crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
    ort.env.wasm.wasmPaths = new URL('./', import.meta.url).href;
    if (meta.withPreprocessing === null) throw new Error('metadata.json names no model-preprocess.onnx: export again without --no-preprocess');
    const session = await ort.InferenceSession.create(meta.withPreprocessing.file, { executionProviders: ['wasm'] });
    classify = async (blob) => {
      const { data, width, height } = await pixelsOf(blob);
      const out = await session.run({ pixels: new ort.Tensor('uint8', data, [1, height, width, 3]) });
      return rank(out.probabilities!.data as Float32Array, meta.labels);
    };
    status(
      `model ${meta.arch} in this page (onnxruntime-web, ${ort.env.wasm.numThreads} thread${ort.env.wasm.numThreads === 1 ? '' : 's'}${crossOriginIsolated ? '' : '; serve with COOP/COEP headers for more'})`,
    );
  }
  const run = async (files: Iterable<File | Blob>): Promise<void> => {
    for (const f of files) {
      const name = f instanceof File ? f.name : 'camera';
      try {
        const t0 = performance.now();
        const ranked = await classify(f);
        show(name, f, ranked, performance.now() - t0);
      } catch (e) {
        status(`${name}: ${(e as Error).message}`);
      }
    }
    document.body.dataset.done = String(document.querySelectorAll('.result').length);
  };
  const picker = $<HTMLInputElement>('files');
  picker.addEventListener('change', () => void run(picker.files ?? []));
  const drop = $('drop');
  drop.addEventListener('dragover', (e) => {
    e.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    void run(e.dataTransfer?.files ?? []);
  });
  const video = $<HTMLVideoElement>('camera');
  $('camera-on').addEventListener('click', () => {
    navigator.mediaDevices
      .getUserMedia({ video: { facingMode: 'environment' } })
      .then((stream) => {
        video.srcObject = stream;
        video.hidden = false;
        $('snap').hidden = false;
      })
      .catch((e: unknown) => status(`camera: ${(e as Error).message}`));
  });
  $('snap').addEventListener('click', () => {
    const c = document.createElement('canvas');
    c.width = video.videoWidth;
    c.height = video.videoHeight;
    c.getContext('2d')!.drawImage(video, 0, 0);
    c.toBlob((b) => b && void run([b]), 'image/png');
  });
  // For tests and the curious: the decoded pixels the model gets for an image URL.
  (window as unknown as { fastvision: unknown }).fastvision = {
    pixels: async (url: string) => {
      const p = await pixelsOf(await (await fetch(url)).blob());
      return { width: p.width, height: p.height, data: Array.from(p.data) };
    },
  };
  document.body.dataset.ready = 'true';
}

main().catch((e: Error) => status(`cannot start: ${e.message}`));
