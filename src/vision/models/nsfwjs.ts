// ImageNet-derived backbones that work offline: the Keras MobileNetV2 and
// InceptionV3 that the nsfwjs npm package bundles, converted to modules.
import { KerasModel } from '../keras/convert.js';
import { loadNsfwjsModel } from '../keras/tfjs-format.js';

function build(model: 'mobilenet_v2' | 'inception_v3'): KerasModel {
  const { json, weights } = loadNsfwjsModel(model);
  const cfg = json.modelTopology.model_config.config;
  return KerasModel.fromKeras(cfg.layers, weights, cfg.input_layers[0]![0], cfg.output_layers[0]![0]);
}

/**
 * nsfwjs' Keras MobileNetV2 (224×224, input in [0, 1]) with its weights. Conv1 to
 * block_10 hold the original ImageNet weights (frozen while nsfwjs trained);
 * block_11 to Conv_1 were fine-tuned on nsfwjs' task; the top is nsfwjs' 5-class head.
 */
export function mobilenet_v2_nsfwjs(): KerasModel {
  return build('mobilenet_v2');
}

/** nsfwjs' Keras InceptionV3 (299×299, input in [0, 1]) with its weights. */
export function inception_v3_nsfwjs(): KerasModel {
  return build('inception_v3');
}
