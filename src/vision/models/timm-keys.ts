// timm's names for the networks torchvision also builds. timm (and the Hugging Face
// Hub, in .safetensors) publishes ConvNeXt and ViT weights under its own module
// names; these rename such a state dict to torchvision's, so that the same module
// loads either. Keys that are already torchvision's pass through unchanged.
import { Tensor } from '../../torch/index.js';

type Rule = [RegExp, (m: RegExpExecArray) => string];

function rename<T>(state: Map<string, T>, rules: Rule[], reshape?: (key: string, v: T) => T): Map<string, T> {
  const out = new Map<string, T>();
  for (const [k, v] of state) {
    let name = k;
    for (const [re, to] of rules) {
      const m = re.exec(k);
      if (m) {
        name = to(m);
        break;
      }
    }
    out.set(name, reshape ? reshape(k, v) : v);
  }
  return out;
}

const CONVNEXT: Rule[] = [
  [/^stem\.([01])\.(.+)$/, (m) => `features.0.${m[1]}.${m[2]}`],
  [/^stages\.(\d+)\.downsample\.([01])\.(.+)$/, (m) => `features.${2 * Number(m[1])}.${m[2]}.${m[3]}`],
  [/^stages\.(\d+)\.blocks\.(\d+)\.gamma$/, (m) => `features.${2 * Number(m[1]) + 1}.${m[2]}.layer_scale`],
  [
    /^stages\.(\d+)\.blocks\.(\d+)\.(conv_dw|norm|mlp\.fc1|mlp\.fc2)\.(.+)$/,
    (m) => `features.${2 * Number(m[1]) + 1}.${m[2]}.block.${{ conv_dw: 0, norm: 2, 'mlp.fc1': 3, 'mlp.fc2': 5 }[m[3]!]}.${m[4]}`,
  ],
  [/^head\.norm\.(.+)$/, (m) => `classifier.0.${m[1]}`],
  [/^head\.fc\.(.+)$/, (m) => `classifier.2.${m[1]}`],
];

/** A ConvNeXt state dict with timm's names (stem, stages.N.blocks.M.conv_dw, gamma, head.fc …) renamed to torchvision's; layer scales [C] become [C, 1, 1]. */
export function timmConvNeXtKeys<T>(state: Map<string, T>): Map<string, T> {
  if (!state.has('stem.0.weight')) return state;
  return rename(state, CONVNEXT, (k, v) => {
    if (!k.endsWith('.gamma') || !(v instanceof Tensor)) return v;
    const r = v.reshape(-1, 1, 1);
    v.dispose();
    return r as T;
  });
}

const VIT: Rule[] = [
  [/^cls_token$/, () => 'class_token'],
  [/^pos_embed$/, () => 'encoder.pos_embedding'],
  [/^patch_embed\.proj\.(.+)$/, (m) => `conv_proj.${m[1]}`],
  [/^blocks\.(\d+)\.norm([12])\.(.+)$/, (m) => `encoder.layers.encoder_layer_${m[1]}.ln_${m[2]}.${m[3]}`],
  [/^blocks\.(\d+)\.attn\.qkv\.(weight|bias)$/, (m) => `encoder.layers.encoder_layer_${m[1]}.self_attention.in_proj_${m[2]}`],
  [/^blocks\.(\d+)\.attn\.proj\.(.+)$/, (m) => `encoder.layers.encoder_layer_${m[1]}.self_attention.out_proj.${m[2]}`],
  [/^blocks\.(\d+)\.mlp\.fc([12])\.(.+)$/, (m) => `encoder.layers.encoder_layer_${m[1]}.mlp.${m[2] === '1' ? 0 : 3}.${m[3]}`],
  [/^norm\.(.+)$/, (m) => `encoder.ln.${m[1]}`],
  [/^head\.(.+)$/, (m) => `heads.head.${m[1]}`],
];

/** A ViT state dict with timm's names (cls_token, pos_embed, blocks.N.attn.qkv, head …) renamed to torchvision's. */
export function timmViTKeys<T>(state: Map<string, T>): Map<string, T> {
  if (!state.has('cls_token')) return state;
  return rename(state, VIT);
}
