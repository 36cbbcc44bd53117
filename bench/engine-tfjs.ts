// The TensorFlow.js side of bench/engine: ResNet-18 built with tfjs-layers, one
// SGD-momentum training step, on a given backend. Prints JSON; run in its own
// process by bench/engine.ts (it can be slow or fail: wasm has no conv backprop).
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';

function convBn(x: tf.SymbolicTensor, filters: number, kernel: number, stride: number): tf.SymbolicTensor {
  const c = tf.layers.conv2d({ filters, kernelSize: kernel, strides: stride, padding: 'same', useBias: false }).apply(x) as tf.SymbolicTensor;
  return tf.layers.batchNormalization({ epsilon: 1e-5, momentum: 0.9 }).apply(c) as tf.SymbolicTensor;
}

function basicBlock(x: tf.SymbolicTensor, filters: number, stride: number): tf.SymbolicTensor {
  let out = tf.layers.reLU().apply(convBn(x, filters, 3, stride)) as tf.SymbolicTensor;
  out = convBn(out, filters, 3, 1);
  const identity = stride !== 1 || x.shape[3] !== filters ? convBn(x, filters, 1, stride) : x;
  return tf.layers.reLU().apply(tf.layers.add().apply([out, identity])) as tf.SymbolicTensor;
}

function resnet18(size: number, classes: number): tf.LayersModel {
  const input = tf.input({ shape: [size, size, 3] });
  let x = tf.layers.reLU().apply(convBn(input, 64, 7, 2)) as tf.SymbolicTensor;
  x = tf.layers.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same' }).apply(x) as tf.SymbolicTensor;
  for (const [filters, stride] of [
    [64, 1],
    [128, 2],
    [256, 2],
    [512, 2],
  ] as const) {
    x = basicBlock(x, filters, stride);
    x = basicBlock(x, filters, 1);
  }
  x = tf.layers.globalAveragePooling2d({}).apply(x) as tf.SymbolicTensor;
  const out = tf.layers.dense({ units: classes }).apply(x) as tf.SymbolicTensor;
  return tf.model({ inputs: input, outputs: out });
}

async function main(): Promise<void> {
  const arg = (name: string, def: string): string => {
    const i = process.argv.indexOf(`--${name}`);
    return i >= 0 ? process.argv[i + 1]! : def;
  };
  const backend = arg('backend', 'cpu');
  const batch = Number(arg('batch', '2'));
  const size = Number(arg('size', '32'));
  const steps = Number(arg('steps', '1'));
  const warmup = Number(arg('warmup', '0'));
  await tf.setBackend(backend);
  await tf.ready();
  const model = resnet18(size, 10);
  const opt = tf.train.momentum(0.01, 0.9);
  const x = tf.randomNormal([batch, size, size, 3]);
  const y = tf.oneHot(tf.randomUniform([batch], 0, 10, 'int32'), 10);
  const times: number[] = [];
  for (let i = 0; i < warmup + steps; i++) {
    const t0 = performance.now();
    const cost = opt.minimize(() => tf.losses.softmaxCrossEntropy<tf.Tensor, tf.Scalar>(y, model.apply(x, { training: true }) as tf.Tensor), true);
    await cost!.data();
    cost!.dispose();
    if (i >= warmup) times.push((performance.now() - t0) / 1000);
  }
  times.sort((a, b) => a - b);
  console.log(JSON.stringify({ backend, batch, size, step: times[Math.floor(times.length / 2)] }));
}

main().catch((e: Error) => {
  console.log(JSON.stringify({ error: e.message.split('\n')[0] }));
  process.exit(0);
});
