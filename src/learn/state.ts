// Copies of a module's weights held in memory: what the divergence guard, the
// learning-rate finder, ensembles and the best-weights keepers put back later.
import { noGrad, type nn, type Tensor } from '../torch/index.js';

/** A module's state dict, cloned (owned by the caller: `disposeState` frees it). */
export type StateSnapshot = Map<string, Tensor>;

/** Clones `m`'s state dict (parameters and buffers). */
export function snapshotState(m: nn.Module): StateSnapshot {
  return noGrad(() => new Map([...m.stateDict()].map(([k, t]) => [k, t.clone()])));
}

/** Overwrites `snapshot` in place with `m`'s current state (no new allocation). */
export function updateSnapshot(snapshot: StateSnapshot, m: nn.Module): void {
  noGrad(() => {
    for (const [k, t] of m.stateDict()) snapshot.get(k)!.copy_(t);
  });
}

/** Frees a snapshot's tensors. */
export function disposeState(snapshot: StateSnapshot): void {
  for (const t of snapshot.values()) t.dispose();
}

/** Copies a snapshot's values into `m`'s parameters and buffers, in place. */
export function restoreSnapshot(m: nn.Module, snapshot: StateSnapshot): void {
  noGrad(() => {
    for (const [k, t] of m.stateDict()) {
      const s = snapshot.get(k);
      if (s === undefined) throw new Error(`restoreSnapshot: the snapshot has no ${k}`);
      t.copy_(s);
    }
  });
}
