// `model.pth` → `model.onnx` + `metadata.json`: the saved network rebuilt,
// written as ONNX by our own exporter, with its deployment facts inside and beside it.
import { join } from 'node:path';
import { loadSavedNetwork, type SavedModel } from '../learn/saved-model.js';
import type { Tensor } from '../torch/index.js';
import { ensureDir, writeFileAtomic } from '../util/files.js';
import { exportOnnx } from './onnx-export.js';
import { ModelProto, OPSET, PREPROCESS_OPSET } from './onnx-proto.js';
import { deployMetadata, metadataProps, type DeployMetadata } from './metadata.js';
import { readRegularFile } from '../util/read-files.js';

/** An exported model: the ONNX bytes and their metadata. */
export interface ExportedModel {
  onnx: Uint8Array;
  /** The same network behind the preprocessing: uint8 pixels [1, H, W, 3] in (null when not asked for). */
  withPreprocessing: Uint8Array | null;
  metadata: DeployMetadata;
  nodes: number;
  foldedBatchNorms: number;
}

/**
 * Exports a saved model as ONNX (batch norms folded into convolutions unless told
 * otherwise), and unless `preprocess` is false a second graph with the preprocessing inside.
 */
export async function exportSavedModel(saved: SavedModel, { foldBatchNorm = true, preprocess = true }: { foldBatchNorm?: boolean; preprocess?: boolean } = {}): Promise<ExportedModel> {
  const net = await loadSavedNetwork(saved);
  const metadata = deployMetadata(saved.info, { opset: OPSET, foldedBatchNorm: foldBatchNorm, preprocessOpset: preprocess ? PREPROCESS_OPSET : null });
  const options = {
    inputShape: [3, saved.info.size, saved.info.size] as [number, number, number],
    foldBatchNorm,
    probabilities: saved.info.multiLabel ? ('sigmoid' as const) : true,
    metadata: metadataProps(metadata),
    docString: `fastvision ${saved.info.arch} classifier: ${saved.info.classes.length} classes (${saved.info.classes.slice(0, 5).join(', ')}${saved.info.classes.length > 5 ? ', …' : ''})`,
  };
  try {
    const { bytes, nodes, foldedBatchNorms } = exportOnnx(net, options);
    const withPreprocessing = preprocess ? exportOnnx(net, { ...options, preprocess: { mean: metadata.input.mean, std: metadata.input.std } }).bytes : null;
    return { onnx: bytes, withPreprocessing, metadata, nodes, foldedBatchNorms };
  } finally {
    for (const t of net.stateDict().values()) t.dispose();
  }
}

/** Writes `model.onnx`, `model-preprocess.onnx` (when exported) and `metadata.json` into `dir` (created), each atomically; returns their paths. */
export async function writeExport(dir: string, e: ExportedModel): Promise<{ onnx: string; withPreprocessing: string | null; metadata: string }> {
  ensureDir(dir);
  const onnx = join(dir, 'model.onnx');
  const metadata = join(dir, 'metadata.json');
  await writeFileAtomic(onnx, e.onnx);
  const withPreprocessing = e.withPreprocessing === null ? null : join(dir, PREPROCESS_FILE);
  if (withPreprocessing !== null) await writeFileAtomic(withPreprocessing, e.withPreprocessing!);
  await writeFileAtomic(metadata, `${JSON.stringify(e.metadata, null, 2)}\n`);
  return { onnx, withPreprocessing, metadata };
}

/** The file name of the graph with the preprocessing inside. */
export const PREPROCESS_FILE = 'model-preprocess.onnx';

/** Whether an ONNX file is a graph with the preprocessing inside (its input is `pixels`). */
export function isPreprocessGraph(bytes: Uint8Array): boolean {
  const m = ModelProto.toObject(ModelProto.decode(bytes)) as { graph?: { input?: { name: string }[] } };
  return m.graph?.input?.[0]?.name === 'pixels';
}

/** The deployment metadata inside an ONNX file written by fastvision (its metadata_props), or null. */
export function onnxMetadata(bytes: Uint8Array): DeployMetadata | null {
  const m = ModelProto.toObject(ModelProto.decode(bytes)) as { metadata_props?: { key: string; value: string }[] };
  const entry = m.metadata_props?.find((p) => p.key === 'fastvision');
  return entry ? (JSON.parse(entry.value) as DeployMetadata) : null;
}

/** Reads an exported model's bytes and metadata: `metadata.json` beside it, else the file's own metadata_props. */
export async function readExport(onnxPath: string): Promise<{ onnx: Uint8Array; metadata: DeployMetadata }> {
  const onnx = new Uint8Array(await readRegularFile(onnxPath));
  const metadata = onnxMetadata(onnx);
  if (metadata === null) throw new Error(`${onnxPath}: no fastvision metadata in this ONNX file`);
  return { onnx, metadata };
}

/**
 * An ONNX file with each initializer named after a state-dict entry filled from
 * `state` (e.g. another exporter's file committed without its weights); returns
 * the new bytes and how many initializers were filled.
 */
export function withInitializersFrom(onnx: Uint8Array, state: Map<string, Tensor>): { bytes: Uint8Array; filled: number } {
  const model = ModelProto.decode(onnx) as unknown as { graph: { initializer: { name: string; raw_data?: Uint8Array }[] } };
  let filled = 0;
  for (const init of model.graph.initializer) {
    const t = state.get(init.name);
    if (t === undefined) continue;
    const c = t.contiguous();
    const d = c.dataSync();
    if (c !== t) c.dispose();
    init.raw_data = new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
    filled++;
  }
  return { bytes: ModelProto.encode(model).finish(), filled };
}
