// Devices: `--device` resolved and refused as a user sees it, modules and optimizer
// state moved in place, loaders delivering on the device (libtorch's `meta` device
// stands in for a GPU on a CPU build: a real move, without the arithmetic), out of
// memory during a fit with the checkpoint kept and resumed, `fastvision doctor`, and
// the CUDA paths, which run where this libtorch has a GPU and are skipped, saying
// why, everywhere else.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  closeLoaderWorkers,
  ConvLearner,
  cudaInfo,
  DataLoader,
  DeviceUnavailableError,
  empty,
  environment,
  FilesDataset,
  ImageClassifierData,
  libtorchVersion,
  loadCheckpoint,
  manualSeed,
  mobilenet_v2_nsfwjs,
  nn,
  optim,
  OutOfMemoryError,
  randn,
  resolveDevice,
  saveCheckpoint,
  tfmsFromModel,
  type Callback,
  type FitState,
  type Loop,
} from '../src/index.js';
import { photos, repoRoot } from './helpers.js';

const cuda = cudaInfo();
const NO_CUDA = cuda.available ? false : `no CUDA device: this libtorch (${libtorchVersion()}) ${cuda.devices.length === 0 ? 'has no GPU to use' : 'sees none'}; these run in scripts/gpu-check`;
const bin = join(repoRoot, 'dist', 'src', 'cli', 'bin.js');

let home = '';
let data: ImageClassifierData;
const quiet = { log: null };

before(async () => {
  home = await mkdtemp(join(tmpdir(), 'fastvision-device-'));
  process.env.FASTVISION_HOME = home;
  const tfms = tfmsFromModel(mobilenet_v2_nsfwjs, 32);
  data = await ImageClassifierData.fromPaths(join(photos, 'dogscats'), { tfms, bs: 4 });
});
after(async () => {
  await closeLoaderWorkers();
  await rm(home, { recursive: true, force: true });
});

test('resolveDevice: auto is CUDA when there is one, cpu is the CPU, and a GPU that is not here is one line naming fastvision doctor', () => {
  assert.equal(resolveDevice('cpu'), 'cpu');
  assert.equal(resolveDevice('auto'), cuda.available ? 'cuda:0' : 'cpu');
  assert.equal(resolveDevice(undefined), resolveDevice('auto'));
  for (const bad of ['gpu', 'cuda:', 'cuda:-1', 'cuda:01', 'CUDA', 'cuda:1.5', ''])
    assert.throws(
      () => resolveDevice(bad),
      (e: Error) => e instanceof DeviceUnavailableError && /--device must be auto, cpu, cuda or cuda:N/.test(e.message),
      bad,
    );
  const beyond = `cuda:${cuda.devices.length}`;
  assert.throws(
    () => resolveDevice(beyond),
    (e: Error) => e instanceof DeviceUnavailableError && /fastvision doctor/.test(e.message) && !e.message.includes('\n'),
  );
  if (!cuda.available) {
    assert.throws(() => resolveDevice('cuda'), /--device cuda: no CUDA device here: this libtorch \(.+\) is built without CUDA; run `fastvision doctor`/);
  } else {
    assert.equal(resolveDevice('cuda'), 'cuda:0');
    assert.equal(resolveDevice('cuda', cuda.devices.length - 1), `cuda:${cuda.devices.length - 1}`, 'cuda is the local rank’s GPU');
  }
});

test('Module.to keeps every parameter object and moves its data (here: onto the CPU it is on; the CUDA tests move it to a GPU)', () => {
  manualSeed(0);
  const net = new nn.Sequential(new nn.Conv2d(3, 4, 3), new nn.BatchNorm2d(4), new nn.Flatten(), new nn.Linear(4 * 4 * 4, 2));
  const params = net.parameters();
  const before = params.map((p) => p.toArray());
  assert.equal(net.device, 'cpu');
  assert.equal(net.to('cpu'), net);
  assert.deepEqual(net.parameters(), params);
  assert.deepEqual(
    params.map((p) => p.toArray()),
    before,
    'a move to where it is changes nothing',
  );
  // setData_ is the move: the same object, other data (here another dtype; on a GPU, another device).
  const w = params[0]!;
  const shape = w.shape;
  const doubled = w.to('float64');
  w.setData_(doubled);
  assert.equal(net.parameters()[0], w);
  assert.equal(w.dtype, 'float64');
  assert.deepEqual(w.shape, shape);
  assert.ok(w.requiresGrad && w.isLeaf, 'still a trainable leaf');
  assert.throws(() => w.setData_(randn([2]).toDevice('meta')), /incompatible tensor type/, 'libtorch refuses what Python’s param.data refuses');
});

test('a loader delivers its batches on its device, image files and arrays alike', async () => {
  const files = new DataLoader(data.valDs as FilesDataset, { bs: 3, transform: data.tfms!.val, numWorkers: 0, device: 'meta' });
  let n = 0;
  for await (const { x, y } of files) {
    assert.equal(x.device, 'meta');
    assert.equal(y.device, 'meta');
    assert.deepEqual(x.shape.slice(1), [3, 32, 32]);
    n += x.shape[0]!;
  }
  assert.equal(n, data.valDs!.length);
  const arrays = ImageClassifierData.fromArrays(home, [randn([6, 5]), [0, 1, 0, 1, 0, 1]], null, ['a', 'b'], { bs: 4, device: 'meta' });
  for await (const { x, y } of arrays.trnDl) assert.ok(x.device === 'meta' && y.device === 'meta');
  assert.equal(arrays.device, 'meta');
  arrays.device = 'cpu';
  for await (const { x } of arrays.trnDl) assert.equal(x.device, 'cpu', 'setting the data’s device moves its loaders');
});

test('a learner trains where it is told, and sends its data there; a GPU that is not here fails before any work', async () => {
  const learn = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, { ...quiet, device: 'cpu' });
  assert.equal(learn.device, 'cpu');
  assert.equal(data.device, 'cpu');
  assert.equal(learn.model.device, 'cpu');
  if (!cuda.available) await assert.rejects(ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, { ...quiet, device: 'cuda' }), DeviceUnavailableError);
});

test('out of memory during a fit: the lesson’s advice with the batch size to try, and the last checkpoint kept and resumable', async () => {
  const learn = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, { ...quiet, device: 'cpu' });
  const ckpt = join(home, 'oom-checkpoint.pth');
  const onCheckpoint = async (fs: FitState): Promise<void> => saveCheckpoint(ckpt, { meta: { kind: 'test' }, model: learn.model.stateDict(), fit: fs, rng: fs.rng });
  // A real allocation failure of libtorch's, in the second epoch: 2^40 floats.
  const greedy: Callback = {
    beforeBatch: (l: Loop) => {
      if (l.epoch === 1) empty([2 ** 40]);
    },
  };
  await assert.rejects(learn.fit(1e-3, 3, { callbacks: [greedy], onCheckpoint }), (e: Error) => {
    assert.ok(e instanceof OutOfMemoryError, e.message);
    assert.match(e.message, /^out of memory on cpu while training at batch size 4 \(.*can't allocate memory.*\); the lesson's advice is a smaller batch: try --bs 2$/);
    assert.equal(e.suggestedBs, 2);
    return true;
  });
  assert.ok(existsSync(ckpt), 'the checkpoint of the epoch that finished is on disk');
  const saved = await loadCheckpoint<{ kind: string }>(ckpt);
  assert.equal(saved.fit!.epoch, 1);
  const again = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, { ...quiet, device: 'cpu' });
  again.model.loadStateDict(saved.model);
  const rows = await again.fit(1e-3, 3, { resume: saved.fit! });
  assert.deepEqual(
    rows.map((r) => r.epoch),
    [0, 1, 2],
    'the resumed fit finishes the epochs left',
  );
});

function cli(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { cwd: home, encoding: 'utf8', env: { ...process.env, FASTVISION_HOME: join(home, 'cli-home') }, timeout: 120_000 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

test('every command that runs a network takes --device; a GPU that is not here exits 2 in one line naming fastvision doctor', { skip: cuda.available ? 'this machine has a GPU' : false }, () => {
  const dogscats = join(photos, 'dogscats');
  const model = join(home, 'no-model');
  const calls: string[][] = [
    ['train', dogscats, '--device', 'cuda'],
    ['fit', dogscats, '--device', 'cuda:0'],
    ['lr-find', dogscats, '--device', 'cuda'],
    ['predict', model, join(dogscats, 'valid'), '--device', 'cuda'],
    ['submit', model, join(dogscats, 'valid'), '--device', 'cuda'],
    ['interpret', model, dogscats, '--device', 'cuda'],
    ['export', model, '--device', 'cuda'],
    ['serve', model, '--device', 'cuda'],
  ];
  for (const argv of calls) {
    const r = cli(...argv);
    const lines = r.stderr.trim().split('\n');
    assert.equal(r.code, 2, `${argv.join(' ')}: ${r.stderr}`);
    // predict, interpret, export and serve read the model first; a missing one is also exit 2, so make sure it is the device that was refused.
    if (argv[0] === 'train' || argv[0] === 'fit' || argv[0] === 'lr-find') assert.match(lines.at(-1)!, /--device cuda(:0)?: no CUDA device here: .*run `fastvision doctor`/, argv[0]);
  }
  const bogus = cli('train', dogscats, '--device', 'tpu');
  assert.equal(bogus.code, 2);
  assert.match(bogus.stderr, /--device must be auto, cpu, cuda or cuda:N, got 'tpu'/);
  const onnx = cli('serve', join(home, 'x.onnx'), '--runtime', 'onnx', '--device', 'cuda');
  assert.equal(onnx.code, 2);
  assert.match(onnx.stderr, /--device cuda is for --runtime libtorch; --runtime onnx runs on the CPU/);
});

test('fastvision doctor says which libtorch was loaded and how it was found, CUDA, threads and BLAS', async () => {
  const r = cli('doctor');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^libtorch:   ${libtorchVersion().replace(/[.+]/g, '\\$&')} at /\\S+libtorch_cpu\\.so`, 'm'));
  assert.match(r.stdout, /^found by: {3}(LIBTORCH|python torch at|system)/m);
  assert.match(r.stdout, cuda.available ? /^CUDA: {7}available, \d+ devices?/m : /^CUDA: {7}not available: this libtorch is built without CUDA/m);
  assert.match(r.stdout, /^threads: {4}\d+/m);
  assert.match(r.stdout, /^BLAS: {7}\S+/m);
  assert.match(r.stdout, new RegExp(`^node:       ${process.version.replace(/\./g, '\\.')} `, 'm'));
  const json = cli('doctor', '--json');
  assert.equal(json.code, 0);
  const parsed = JSON.parse(json.stdout) as Awaited<ReturnType<typeof environment>>;
  // When libtorch's CPU memory is zero-filled is test/onednn-padding.test.ts's; the line says which.
  assert.match(r.stdout, parsed.cpuZeroFill.available ? /^CPU memory: zero-filled from the first convolution whose channels oneDNN pads/m : /^CPU memory: as the allocator gives it/m);
  const here = await environment();
  assert.equal(parsed.libtorch.version, here.libtorch.version);
  assert.equal(parsed.cuda.available, here.cuda.available);
  assert.equal(parsed.addon.cudaLinked, here.addon.cudaLinked);
  assert.equal(parsed.threads.intraOp > 0, true);
});

test('the build links libtorch_cuda and c10_cuda without --as-needed where the libtorch found has them, and NCCL where its headers are found', async () => {
  const fake = join(home, 'libtorch-cuda');
  const files = ['include/ATen/ATen.h', 'include/torch/csrc/api/include/torch/version.h', 'lib/libtorch.so'];
  const { mkdir, writeFile } = await import('node:fs/promises');
  const put = async (f: string): Promise<void> => {
    await mkdir(join(fake, f, '..'), { recursive: true });
    await writeFile(join(fake, f), '');
  };
  for (const f of files) await put(f);
  const finder = (what: string): string => spawnSync(process.execPath, [join(repoRoot, 'scripts', 'find-libtorch.mjs'), what], { encoding: 'utf8', env: { ...process.env, LIBTORCH: fake } }).stdout;
  assert.equal(finder('ldflags'), `-L${join(fake, 'lib')} -Wl,-rpath,${join(fake, 'lib')}`, 'a CPU libtorch builds as before');
  assert.equal(finder('defines'), '');
  await put('lib/libtorch_cuda.so');
  assert.equal(finder('ldflags'), `-L${join(fake, 'lib')} -Wl,-rpath,${join(fake, 'lib')} -Wl,--no-as-needed -ltorch_cuda -lc10_cuda -Wl,--as-needed`);
  assert.equal(finder('defines'), 'FASTVISION_CUDA_LINKED');
  const ncclFree = finder('dist-defines');
  assert.ok(!ncclFree.includes('USE_C10D_NCCL') || existsSync('/usr/include/nccl.h'), 'no NCCL without its headers');
  await put('include/nccl.h');
  await put('include/cuda_runtime_api.h');
  assert.equal(finder('dist-defines'), 'FASTVISION_CUDA_LINKED USE_C10D_NCCL');
  assert.ok(finder('dist-include').split(' ').includes(join(fake, 'include')));
});

// ---- CUDA only -------------------------------------------------------------------

test('CUDA: a forward pass, backward and an SGD step agree with the CPU', { skip: NO_CUDA }, () => {
  manualSeed(0);
  const make = (): nn.Sequential => new nn.Sequential(new nn.Conv2d(3, 8, 3, { padding: 1 }), new nn.BatchNorm2d(8), new nn.ReLU(), new nn.AdaptiveAvgPool2d(1), new nn.Flatten(), new nn.Linear(8, 3));
  const cpu = make();
  const gpu = make();
  gpu.loadStateDict(cpu.stateDict());
  gpu.to('cuda:0');
  const x = randn([4, 3, 16, 16]);
  const xg = x.toDevice('cuda:0');
  const nets = [cpu, gpu] as const;
  const opts = nets.map((n) => new optim.SGD(n.parameters(), { lr: 0.1, momentum: 0.9 }));
  const outs = [cpu.forward(x), gpu.forward(xg)];
  assert.equal(outs[1]!.device, 'cuda:0');
  const a = outs[0]!.toArray();
  outs[1]!.toArray().forEach((v, i) => assert.ok(Math.abs(v - a[i]!) < 1e-4, `output ${i}`));
  outs.forEach((o) => o.square().mean().backward());
  opts.forEach((o) => o.step());
  const wc = cpu.parameters().map((p) => p.toArray());
  gpu.parameters().forEach((p, k) => p.toArray().forEach((v, i) => assert.ok(Math.abs(v - wc[k]![i]!) < 1e-4, `parameter ${k}[${i}] after a step`)));
});

test('CUDA: a fit trains on the GPU; a CPU checkpoint resumes there, and a GPU one on the CPU', { skip: NO_CUDA }, async () => {
  for (const [first, second] of [
    ['cpu', 'cuda:0'],
    ['cuda:0', 'cpu'],
  ] as const) {
    const learn = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, { ...quiet, device: first });
    const ckpt = join(home, `resume-${first}.pth`);
    const stop: Callback = {
      afterEpoch: (l: Loop) => {
        if (l.epoch === 0) throw new (class extends Error {})('stop');
      },
    };
    await assert.rejects(learn.fit(1e-3, 2, { callbacks: [stop], onCheckpoint: (fs) => saveCheckpoint(ckpt, { meta: {}, model: learn.model.stateDict(), fit: fs, rng: fs.rng }) }));
    const saved = await loadCheckpoint(ckpt);
    const again = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, { ...quiet, device: second });
    again.model.loadStateDict(saved.model);
    const rows = await again.fit(1e-3, 2, { resume: saved.fit! });
    assert.equal(rows.length, 2);
    assert.ok(rows.every((r) => Number.isFinite(r.valLoss!)));
    assert.equal(again.model.device, second);
  }
});

test('CUDA: fp16 autocast with loss scaling trains finite and close to float32', { skip: NO_CUDA }, async () => {
  const losses: Record<string, number> = {};
  for (const mixedPrecision of [undefined, 'fp16', 'bf16'] as const) {
    manualSeed(0);
    const learn = await ConvLearner.pretrained(mobilenet_v2_nsfwjs, data, { ...quiet, device: 'cuda:0', mixedPrecision });
    const rows = await learn.fit(1e-3, 2);
    losses[mixedPrecision ?? 'fp32'] = rows.at(-1)!.valLoss!;
  }
  assert.ok(Object.values(losses).every(Number.isFinite), JSON.stringify(losses));
  assert.ok(Math.abs(losses.fp16! - losses.fp32!) < 0.1 + 0.2 * losses.fp32!, JSON.stringify(losses));
});
