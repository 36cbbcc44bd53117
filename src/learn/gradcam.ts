// Grad-CAM (Selvaraju et al., 2017): where in an image the network looked for a
// class. The body's last feature maps are weighted by the mean gradient of the
// class's score with respect to each map, summed and passed through a ReLU; the
// result is a coarse heatmap (the body's output resolution) in [0, 1].
import { nn, noGrad, tensor, tidy, type Tensor } from '../torch/index.js';

/** A heatmap per image, `h`×`w` row-major in [0, 1] (the body's output grid). */
export interface CamMaps {
  maps: Float32Array[];
  h: number;
  w: number;
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
 * activations), `pool` and `head`. Runs in evaluation mode; no weight's gradient
 * is left behind.
 */
export function gradCam(parts: { body: nn.Module; pool: nn.Module; head: nn.Module }, x: Tensor, classes: number[]): CamMaps {
  const n = x.shape[0]!;
  if (classes.length !== n) throw new Error(`gradCam: ${classes.length} classes for ${n} images`);
  const wasTraining = [parts.body, parts.pool, parts.head].map((m) => m.training);
  for (const m of [parts.body, parts.pool, parts.head]) m.eval();
  // Only the feature maps need a gradient: the weights are left out of backward (and keep their .grad).
  const params = [parts.pool, parts.head].flatMap((m) => m.parameters());
  const required = params.map((p) => p.requiresGrad);
  for (const p of params) p.requiresGrad_(false);
  const features = noGrad(() => parts.body.forward(x));
  const leaf = features.detach().requiresGrad_(true);
  features.dispose();
  try {
    const scores = scoreNet(parts.pool, parts.head).forward(leaf);
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
      const max = m.reduce((a, b) => Math.max(a, b), 0);
      if (max > 0) for (let k = 0; k < m.length; k++) m[k]! /= max;
      return m;
    });
    return { maps, h, w };
  } finally {
    leaf.dispose();
    params.forEach((p, i) => p.requiresGrad_(required[i]));
    [parts.body, parts.pool, parts.head].forEach((m, i) => (wasTraining[i] ? m.train() : m.eval()));
  }
}
