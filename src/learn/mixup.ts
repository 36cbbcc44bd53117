// MixUp and CutMix as callbacks on the training loop (fastai v2's): each
// training batch is blended with a shuffled copy of itself, and the loss is the
// same blend of the losses against both sets of targets. Random numbers come
// from libtorch's generator, so `manualSeed` makes a run repeatable.
import { callTensorOp } from '../torch/ops.js';
import { full, noGrad, randint, randperm, tensor, tidy, Tensor } from '../torch/index.js';
import type { Callback, Loop } from './loop.js';

/** n draws from Beta(alpha, alpha), as the ratio of two standard gamma draws. */
function sampleBeta(alpha: number, n: number): number[] {
  if (!(alpha > 0)) throw new RangeError(`the Beta distribution's alpha must be positive, got ${alpha}`);
  return tidy(() => {
    const a = full([2, n], alpha);
    const g = new Tensor(callTensorOp('aten::_standard_gamma', [a.handle, null]));
    const v = g.dataSync() as Float32Array;
    return Array.from({ length: n }, (_, i) => v[i]! / (v[i]! + v[n + i]!));
  });
}

/** What MixUp and CutMix share: the shuffled partner batch and the blended loss. */
abstract class MixHandler implements Callback {
  readonly order = -15;
  /** The partner of each image (a permutation of the batch). */
  protected shuffle: Tensor | null = null;
  /** The last batch's partners (image i was mixed with image partners[i]). */
  partners: number[] = [];
  /** Each image's weight of itself in the last batch (its partner's is 1 − lam); one value for the batch with CutMix. */
  lam: number[] = [];
  constructor(readonly alpha: number) {}

  /** Mixes targets or losses: multi-label targets are blended; class targets blend the losses. */
  afterPred(loop: Loop): void {
    if (!this.shuffle) return;
    const y = loop.y!;
    const n = y.shape[0]!;
    const lam = tensor(Float32Array.from(this.lam.length === n ? this.lam : new Array<number>(n).fill(this.lam[0]!)), { device: y.device });
    try {
      if (y.dtype === 'float32') {
        // Multi-hot targets: blend them, and the loss stays the ordinary one.
        const y1 = y.indexSelect(0, this.shuffle);
        const l2 = lam.view(n, 1);
        const mixed = tidy(() => y1.add(y.sub(y1).mul(l2)));
        for (const t of [y1, l2]) t.dispose();
        loop.loss = tidy(() => loop.lossFunc(loop.pred!, mixed));
        mixed.dispose();
      } else {
        loop.loss = tidy(() => {
          const own = loop.lossFunc(loop.pred!, y, 'none');
          const partner = loop.lossFunc(loop.pred!, y.indexSelect(0, this.shuffle!), 'none');
          return partner.add(own.sub(partner).mul(lam)).mean();
        });
      }
    } finally {
      lam.dispose();
    }
  }

  afterBatch(): void {
    this.shuffle?.dispose();
    this.shuffle = null;
  }

  afterFit(): void {
    this.afterBatch();
  }
}

/**
 * MixUp (Zhang et al.; fastai v2's MixUp): each image becomes lam·itself +
 * (1 − lam)·a shuffled partner, lam drawn per image from Beta(alpha, alpha)
 * and taken as max(lam, 1 − lam) so each image stays mostly itself.
 */
export class MixUp extends MixHandler {
  constructor(alpha = 0.4) {
    super(alpha);
  }

  beforeBatch(loop: Loop): void {
    const x = loop.x!;
    const n = x.shape[0]!;
    this.lam = sampleBeta(this.alpha, n).map((l) => Math.max(l, 1 - l));
    this.shuffle = randperm(n, { device: x.device });
    this.partners = this.shuffle.toArray();
    const shape = [n, ...x.shape.slice(1).map(() => 1)];
    const mixed = noGrad(() =>
      tidy(() => {
        const lam = tensor(Float32Array.from(this.lam), { shape, device: x.device });
        const x1 = x.indexSelect(0, this.shuffle!);
        return x1.add(x.sub(x1).mul(lam));
      }),
    );
    x.dispose();
    loop.x = mixed;
  }
}

/**
 * CutMix (Yun et al.; fastai v2's CutMix): a rectangle of each image is replaced
 * by the same rectangle of a shuffled partner; its area is 1 − lam of the image,
 * lam drawn once per batch from Beta(alpha, alpha), then set to the area really kept.
 */
export class CutMix extends MixHandler {
  /** The last batch's rectangle (x1, y1, x2, y2), for tests and pictures. */
  box: [number, number, number, number] = [0, 0, 0, 0];
  constructor(alpha = 1) {
    super(alpha);
  }

  beforeBatch(loop: Loop): void {
    const x = loop.x!;
    const [n, , h, w] = x.shape as [number, number, number, number];
    const lam = sampleBeta(this.alpha, 1)[0]!;
    this.shuffle = randperm(n, { device: x.device });
    this.partners = this.shuffle.toArray();
    const cut = Math.sqrt(1 - lam);
    const cw = Math.round(w * cut);
    const ch = Math.round(h * cut);
    const centre = randint(0, Math.max(w, h), [2]);
    const [cx0, cy0] = centre.toArray();
    centre.dispose();
    const cx = cx0! % w;
    const cy = cy0! % h;
    const clamp = (v: number, hi: number): number => Math.min(Math.max(v, 0), hi);
    const x1 = clamp(cx - Math.floor(cw / 2), w);
    const y1 = clamp(cy - Math.floor(ch / 2), h);
    const x2 = clamp(cx + Math.floor(cw / 2), w);
    const y2 = clamp(cy + Math.floor(ch / 2), h);
    this.box = [x1, y1, x2, y2];
    if (x2 > x1 && y2 > y1) {
      noGrad(() =>
        tidy(() => {
          const partner = x.indexSelect(0, this.shuffle!);
          x.narrow(2, y1, y2 - y1)
            .narrow(3, x1, x2 - x1)
            .copy_(partner.narrow(2, y1, y2 - y1).narrow(3, x1, x2 - x1));
        }),
      );
    }
    this.lam = [1 - ((x2 - x1) * (y2 - y1)) / (w * h)];
  }
}
