// fast.ai's classifier: a pretrained body cut where the architecture says, concat
// pooling, and a new head of [BatchNorm1d, Dropout, Linear, ReLU] blocks ending in
// LogSoftmax. Built here for the learner and for anything that needs the same
// network without data (export, serving).
import { nn } from '../torch/index.js';
import { archOf, createPretrained, type Arch, type ArchLike } from '../vision/models/archs.js';

/** How the network is built (the learner's options that shape it). */
export interface ClassifierOptions {
  /** Dropout of the head's layers: one value for the last layer (earlier ones get half), or one per layer. */
  ps?: number | number[];
  /** Sizes of the head's hidden layers (default [512]). */
  xtraFc?: number[];
  /** A head to use instead of fast.ai's (it receives the body's pooled features). */
  customHead?: nn.Module;
  /** The body's weights: true for the architecture's published or bundled ones, false for none, or a zoo name or .pth path. */
  pretrained?: boolean | string;
  /** Extra children to cut from the end of a Sequential body (fast.ai's xtra_cut). */
  xtraCut?: number;
  /** Tags rather than one class: the head ends in logits for independent sigmoids, not LogSoftmax. */
  multiLabel?: boolean;
}

/** The network's parts: `model` is Sequential(body, pool, head), with the state-dict keys fastvision saves. */
export interface Classifier {
  arch: Arch;
  body: nn.Module;
  pool: nn.Sequential;
  head: nn.Module;
  model: nn.Sequential;
  /** fast.ai's head as built (null for a custom head). */
  headSpec: { xtraFc: number[]; ps: number[] } | null;
}

/**
 * fast.ai's head: [BatchNorm1d, Dropout, Linear, ReLU] per hidden layer, then
 * [BatchNorm1d, Dropout, Linear], LogSoftmax (multi-label: no LogSoftmax; the
 * logits go to binary cross entropy, and a sigmoid gives each tag's probability).
 */
export function makeHead(nf: number, c: number, xtraFc: number[], ps: number[], multiLabel = false): nn.Sequential {
  const layers: nn.Module[] = [];
  let ni = nf;
  xtraFc.forEach((n, i) => {
    layers.push(new nn.BatchNorm1d(ni), new nn.Dropout(ps[i]), new nn.Linear(ni, n), new nn.ReLU());
    ni = n;
  });
  layers.push(new nn.BatchNorm1d(ni), new nn.Dropout(ps[ps.length - 1]), new nn.Linear(ni, c));
  if (!multiLabel) layers.push(new nn.LogSoftmax(1));
  const head = new nn.Sequential(...layers);
  for (const m of head.modules()) {
    if (m instanceof nn.Linear) {
      nn.init.kaimingNormal_(m.weight);
      if (m.bias) nn.init.zeros_(m.bias);
    }
  }
  return head;
}

/** Output channels of a body: those of its last convolution or batch norm. */
function outChannels(body: nn.Module): number {
  let n = 0;
  for (const m of body.modules()) {
    if (m instanceof nn.Conv2d) n = m.outChannels;
    else if (m instanceof nn.BatchNorm2d) n = m.numFeatures;
  }
  if (n === 0) throw new Error('cannot tell the number of features of this body');
  return n;
}

/** Builds fast.ai's classifier on `arch` for `numClasses` classes (ConvLearner.pretrained's network). */
export async function buildClassifier(arch: ArchLike, numClasses: number, options: ClassifierOptions = {}): Promise<Classifier> {
  const a = archOf(arch);
  const full = options.pretrained === false ? a.create() : await createPretrained(a, options.pretrained === undefined || options.pretrained === true ? true : options.pretrained);
  let body = a.body(full);
  let bodyFeatures = a.bodyFeatures;
  if (options.xtraCut) {
    if (!(body instanceof nn.Sequential)) throw new Error(`xtraCut: ${a.name}'s body is not a sequence of layers`);
    body = nn.Sequential.named([...body.namedChildren()].slice(0, -options.xtraCut));
    bodyFeatures = outChannels(body);
  }
  const pool = new nn.Sequential(new nn.AdaptiveConcatPool2d(), new nn.Flatten());
  const xtraFc = options.xtraFc ?? [512];
  const nLayers = xtraFc.length + 1;
  const ps =
    options.ps === undefined
      ? [...new Array<number>(xtraFc.length).fill(0.25), 0.5]
      : typeof options.ps === 'number'
        ? [...new Array<number>(xtraFc.length).fill(options.ps / 2), options.ps]
        : options.ps;
  if (ps.length !== nLayers) throw new Error(`ps has ${ps.length} values for ${nLayers} head layers`);
  const head = options.customHead ?? makeHead(bodyFeatures * 2, numClasses, xtraFc, ps, options.multiLabel ?? false);
  const model = nn.Sequential.named([
    ['body', body],
    ['pool', pool],
    ['head', head],
  ]);
  return { arch: a, body, pool, head, model, headSpec: options.customHead ? null : { xtraFc: [...xtraFc], ps: [...ps] } };
}
