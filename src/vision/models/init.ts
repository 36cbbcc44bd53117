// torchvision's weight initialization for its classification models.
import { nn } from '../../torch/index.js';

/**
 * He-normal convolutions (fan-out, as torchvision's ResNet/VGG/MobileNet), batch
 * norm at identity, and, with `linearStd`, linear layers from N(0, linearStd²) with
 * zero bias (linear layers otherwise keep PyTorch's default).
 */
export function initLikeTorchvision(model: nn.Module, { linearStd }: { linearStd?: number } = {}): void {
  for (const m of model.modules()) {
    if (m instanceof nn.Conv2d) {
      nn.init.kaimingNormal_(m.weight, { mode: 'fanOut', nonlinearity: 'relu' });
      if (m.bias) nn.init.zeros_(m.bias);
    } else if (m instanceof nn.BatchNorm2d) {
      nn.init.ones_(m.weight!);
      nn.init.zeros_(m.bias!);
    } else if (m instanceof nn.Linear && linearStd !== undefined) {
      nn.init.normal_(m.weight, 0, linearStd);
      if (m.bias) nn.init.zeros_(m.bias);
    }
  }
}
