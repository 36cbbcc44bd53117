// Grad-CAM (Selvaraju et al., 2017): where in an image the network looked for a
// class. The body's last feature maps are weighted by the mean gradient of the
// class's score with respect to each map, summed and passed through a ReLU; the
// result is a coarse heatmap (the body's output resolution), stretched to [0, 1]
// map by map. Where the body's last map is too coarse to show anything (2×2 for a
// 64-pixel photo), the maps of the deepest earlier layer that is fine enough are used.
import { nn, noGrad, tensor, tidy, type Tensor } from '../torch/index.js';
import { KerasModel } from '../vision/keras/convert.js';
import { Permute } from '../vision/models/blocks.js';

/** Maps smaller than this on a side tint whole quarters of a photo: an earlier layer is looked at instead. */
export const MIN_CAM_SIDE = 7;

/** A heatmap per image, `h`×`w` row-major in [0, 1] (the grid of the layer looked at). */
export interface CamMaps {
  maps: Float32Array[];
  h: number;
  w: number;
  /** The layer whose maps these are: 'body' (its output, the usual one) or the name of an earlier layer of the body. */
  layer: string;
  /** No layer's maps reach MIN_CAM_SIDE: these are the body's, too coarse to show where the model looked. */
  coarse: boolean;
}

/** A body cut in two: `suffix(prefix(x))` is `body(x)`. */
interface Cut {
  name: string;
  prefix: nn.Module;
  suffix: nn.Module;
}

/** The places a body can be cut in two, deepest first: between a Sequential's children (after any that changes the layout), or after a Keras layer that the rest reads alone. */
function* cutsOf(body: nn.Module): Generator<Cut> {
  // Each cut is built only when the one before it was not fine enough.
  if (body instanceof KerasModel) {
    // A padding layer's map has a border of zeros that is not in the photo: the heatmap would be shifted by it.
    const pads = new Set(body.graph().flatMap((n) => (n.className === 'ZeroPadding2D' ? [n.name] : [])));
    for (const name of body.cutPoints().reverse()) if (!pads.has(name)) yield { name, prefix: body.cut(name), suffix: body.suffixFrom(name) };
    return;
  }
  if (!(body instanceof nn.Sequential)) return;
  const named = [...body.namedChildren()];
  // Before a Permute child the maps are channels-last (Swin's stages): not maps to cut at.
  const layoutChange = named.reduce((last, [, m], i) => (m instanceof Permute ? i : last), -1);
  for (let k = named.length - 2; k >= Math.max(0, layoutChange); k--) yield { name: named[k]![0], prefix: nn.Sequential.named(named.slice(0, k + 1)), suffix: nn.Sequential.named(named.slice(k + 1)) };
}

/** The cut chosen for a body at an input size (null: the body's own output), found once. */
const chosenCuts = new WeakMap<nn.Module, Map<string, Cut | null>>();

const fineEnough = (t: Tensor): boolean => t.shape.length === 4 && Math.min(t.shape[2]!, t.shape[3]!) >= MIN_CAM_SIDE;

/** The layer to look at for inputs like `x`, and its maps of `x` (no gradient). */
function featuresFor(body: nn.Module, x: Tensor): { cut: Cut | null; features: Tensor } {
  const key = x.shape.slice(2).join('x');
  const known = chosenCuts.get(body) ?? chosenCuts.set(body, new Map()).get(body)!;
  if (known.has(key)) {
    const cut = known.get(key)!;
    return { cut, features: noGrad(() => (cut ?? { prefix: body }).prefix.forward(x)) };
  }
  const whole = noGrad(() => body.forward(x));
  let chosen: { cut: Cut | null; features: Tensor } = { cut: null, features: whole };
  if (!fineEnough(whole)) {
    for (const cut of cutsOf(body)) {
      const f = noGrad(() => cut.prefix.forward(x));
      if (fineEnough(f)) {
        whole.dispose();
        chosen = { cut, features: f };
        break;
      }
      f.dispose();
    }
  }
  known.set(key, chosen.cut);
  return chosen;
}

/**
 * The modules after the body up to the class scores: a LogSoftmax at the end of
 * the head is left out, so the gradient is that of the class's logit, as in the paper.
 */
function scoreNet(pool: nn.Module, head: nn.Module): nn.Module {
  if (head instanceof nn.Sequential && head.length > 0 && head.at(head.length - 1) instanceof nn.LogSoftmax) {
    const layers: nn.Module[] = [];
    for (let i = 0; i < head.length - 1; i++) layers.push(head.at(i));
    return new nn.Sequential(pool, ...layers);
  }
  return new nn.Sequential(pool, head);
}

/**
 * Grad-CAM of images `x` (N×3×H×W, normalized) for one class per image, for a
 * network made of `body` (convolutional, ending in the last conv layer's
 * activations), `pool` and `head`. Each map is stretched to [0, 1] on its own. When
 * the body's output is smaller than MIN_CAM_SIDE on a side, the deepest earlier
 * layer of a Sequential or Keras body that is large enough is used (`layer` names
 * it); if there is none, `coarse` says so. Runs in evaluation mode; no weight's
 * gradient is left behind.
 */
export function gradCam(parts: { body: nn.Module; pool: nn.Module; head: nn.Module }, x: Tensor, classes: number[]): CamMaps {
  const n = x.shape[0]!;
  if (classes.length !== n) throw new Error(`gradCam: ${classes.length} classes for ${n} images`);
  const wasTraining = [parts.body, parts.pool, parts.head].map((m) => m.training);
  for (const m of [parts.body, parts.pool, parts.head]) m.eval();
  // Only the feature maps need a gradient: the weights are left out of backward (and keep their .grad).
  const params = [parts.body, parts.pool, parts.head].flatMap((m) => m.parameters());
  const required = params.map((p) => p.requiresGrad);
  for (const p of params) p.requiresGrad_(false);
  const { cut, features } = featuresFor(parts.body, x);
  const leaf = features.detach().requiresGrad_(true);
  features.dispose();
  try {
    const pool = cut ? new nn.Sequential(cut.suffix, parts.pool) : parts.pool;
    const scores = scoreNet(pool, parts.head).forward(leaf);
    const picked = tidy(() =>
      scores
        .gather(
          1,
          tensor(
            BigInt64Array.from(classes, (c) => BigInt(c)),
            { shape: [n, 1], device: scores.device },
          ),
        )
        .sum(),
    );
    picked.backward();
    picked.dispose();
    scores.dispose();
    const grad = leaf.grad;
    if (grad === null) throw new Error('gradCam: no gradient reached the feature maps');
    const [, , h, w] = leaf.shape as [number, number, number, number];
    const cam = noGrad(() => tidy(() => grad.mean([2, 3], true).mul(leaf.detach()).sum(1).relu()));
    const data = cam.dataSync() as Float32Array;
    cam.dispose();
    const maps = Array.from({ length: n }, (_, i) => {
      const m = data.slice(i * h * w, (i + 1) * h * w);
      // Stretched between its own least and greatest value: dividing by the maximum
      // alone left maps whose every cell is large in one colour.
      const min = m.reduce((a, b) => Math.min(a, b), Infinity);
      const max = m.reduce((a, b) => Math.max(a, b), 0);
      for (let k = 0; k < m.length; k++) m[k] = max > min ? (m[k]! - min) / (max - min) : 0;
      return m;
    });
    return { maps, h, w, layer: cut ? cut.name : 'body', coarse: !cut && Math.min(h, w) < MIN_CAM_SIDE };
  } finally {
    leaf.dispose();
    params.forEach((p, i) => p.requiresGrad_(required[i]));
    [parts.body, parts.pool, parts.head].forEach((m, i) => (wasTraining[i] ? m.train() : m.eval()));
  }
}
