// `fastvision export`: a saved model as `model.onnx` + `metadata.json` (our own
// exporter, no Python), and with `--web` a static page that classifies photos in
// the browser with onnxruntime-web.
import { DEVICE_OPTIONS, deviceArg } from './device-args.js';
import { dirname, resolve } from 'node:path';
import { exportSavedModel, writeExport } from '../deploy/export-model.js';
import { writeWebApp } from '../deploy/web.js';
import { flag, str, UsageError, type CommandSpec } from './args.js';
import { readModel } from './model-file.js';
import { withOutput } from '../util/outputs.js';

export const exportCommand: CommandSpec = {
  name: 'export',
  summary: 'Writes a saved model as ONNX (model.onnx + metadata.json) for onnxruntime in Node or the browser; with --web, a static web page that classifies photos offline.',
  positionals: ['<model>'],
  options: {
    ...DEVICE_OPTIONS,
    out: { type: 'string', arg: 'DIR', help: 'where model.onnx and metadata.json go', default: "the model's folder" },
    web: { type: 'string', arg: 'DIR', help: 'also write a static web page there (index.html, app, model, onnxruntime-web files)' },
    'no-fold-bn': { type: 'boolean', help: 'keep batch norms as nodes instead of folding them into the convolutions' },
    'no-preprocess': { type: 'boolean', help: 'leave out model-preprocess.onnx, the graph that takes decoded pixels and does the resize, crop and normalization itself' },
  },
  details: [
    'model.onnx: input `image` float32 [N,3,size,size] (RGB, resized, cropped and normalized as metadata.json says), output `probabilities` [N,classes]; opset 17.',
    'model-preprocess.onnx: input `pixels` uint8 [1,H,W,3] (decoded RGB of any size, upright), the same output: the resize (as Pillow), crop and',
    "  normalization happen inside, so any decoder and runtime give fastvision predict's answer.",
    'examples:',
    '  fastvision export fastvision-out/dogscats                  # fastvision-out/dogscats/model.onnx + metadata.json',
    '  fastvision export fastvision-out/dogscats --web site/      # and a page: serve site/ with any static file server',
  ].join('\n'),
  async run(args) {
    const saved = await readModel(args.positionals[0]!);
    // Checked like every command's (a GPU that is not here is exit 2); the graph is written from CPU weights, the same from any device.
    deviceArg(args);
    const out = resolve(str(args, 'out', dirname(saved.pth)));
    const web = str(args, 'web');
    const webDir = web === undefined ? null : resolve(web);
    if (webDir !== null && flag(args, 'no-preprocess')) throw new UsageError('--web needs model-preprocess.onnx (the page runs it): leave out --no-preprocess');
    // Both outputs are claimed (checked writable, locked) before anything is written:
    // a --web that cannot be a folder must not leave a new model.onnx behind.
    const writeAll = async (): Promise<void> => {
      const exported = await exportSavedModel(saved, { foldBatchNorm: !flag(args, 'no-fold-bn'), preprocess: !flag(args, 'no-preprocess') });
      const files = await writeExport(out, exported);
      console.log(
        `${files.onnx} (${(exported.onnx.length / 2 ** 20).toFixed(1)} MiB, ${exported.nodes} nodes${exported.foldedBatchNorms > 0 ? `, ${exported.foldedBatchNorms} batch norms folded` : ''})`,
      );
      if (files.withPreprocessing !== null) console.log(`${files.withPreprocessing} (takes uint8 pixels [1,H,W,3]; resize, crop and normalization inside)`);
      console.log(files.metadata);
      if (webDir !== null) {
        const page = await writeWebApp(webDir, exported);
        console.log(`web page: ${page.index} (serve ${webDir} with any static file server, e.g. 'python3 -m http.server -d ${web}'; it works offline)`);
      }
    };
    await withOutput(out, () => (webDir === null || webDir === out ? writeAll() : withOutput(webDir, writeAll, '--web')));
  },
};
