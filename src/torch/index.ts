// The torch layer: tensors, autograd, nn, optim and .pth files on libtorch.
export * from './dtype.js';
export { Tensor, type TensorOrScalar, type Reduction } from './tensor.js';
export * from './creation.js';
export * from './autograd.js';
export { tidy, keep, dispose, type Disposable } from './scope.js';
export { callOp, opSchema } from './ops.js';
export { channelsLastConvIsSound } from './layout-check.js';
export * from './device.js';
export type { Handle } from './native.js';
export * as F from './functional.js';
export * as nn from './nn/index.js';
export * as optim from './optim/index.js';
export { loadPth, parsePth, readPthExtras, serializePth, savePth, loadStateDictFile, saveStateDictFile, asStateDict, PthError, type PthValue, type PthWritable } from './serialization/pth.js';
export { writeFileAtomic } from '../util/files.js';
export { initProcessGroup, destroyProcessGroup, defaultProcessGroup, ncclAvailable, ProcessGroup, DistributedError, type InitProcessGroupOptions, type ReduceOp } from './distributed.js';
export { environment, type Environment } from './environment.js';
export { AddonMissingError } from './native.js';
export { setupNativeAddon, BuildPrerequisiteError, AddonBuildError, type SetupOptions } from './setup-addon.js';
