// The lesson's whole sequence on pets-sample/dogscats with the offline
// MobileNetV2 body: lrFind; head training on precomputed activations; training
// with augmentation; unfreeze with differential rates and cycleMult 2; TTA.
// Run: node dist/examples/lesson-dogscats.js [data folder]
// Knobs (environment): LESSON_ARCH, LESSON_SIZE, LESSON_UNFREEZE_LR, LESSON_GROUP_DIV, LESSON_BN_FREEZE=1|0.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { archOf, closeLoaderWorkers, ConvLearner, ImageClassifierData, tfmsFromModel, transformsSideOn } from '../src/index.js';

const PATH = process.argv[2] ?? join(import.meta.dirname ?? '.', '..', '..', '..', 'shared', 'datasets', 'pets-sample', 'dogscats');
if (!existsSync(join(PATH, 'train'))) {
  console.error(`lesson-dogscats: no photo folder at ${PATH}; pass one: node dist/examples/lesson-dogscats.js DIR (with train/<label>/ and valid/<label>/)`);
  process.exit(2);
}
// LESSON_ARCH=inception_v3_nsfwjs tries the other offline backbone (at its own size, 299, unless LESSON_SIZE says otherwise).
const arch = archOf(process.env.LESSON_ARCH ?? 'mobilenet_v2_nsfwjs');
const sz = Number(process.env.LESSON_SIZE ?? (arch.name === 'mobilenet_v2_nsfwjs' ? 224 : arch.size));

const t0 = performance.now();
const tfms = tfmsFromModel(arch, sz, { augTfms: transformsSideOn, maxZoom: 1.1 });
const data = await ImageClassifierData.fromPaths(PATH, { tfms, bs: 32 });
console.log(`${data.trnDs.length} training and ${data.valDs?.length} validation photos of ${data.classes.join(', ')}`);
const learn = await ConvLearner.pretrained(arch, data, { precompute: true });

const finder = await learn.lrFind();
const { lr: suggested, rule } = finder.suggestion();
console.log(`lrFind: ${finder.lrs.length} iterations; suggested ${suggested.toExponential(2)} (${rule})`);
const lr = 1e-2;
console.log(`using lr = ${lr}`);

console.log('\n# head on precomputed activations');
await learn.fit(lr, 3);

console.log('\n# with augmentation (cycleLen 1)');
learn.precompute = false;
await learn.fit(lr, 3, { cycleLen: 1 });
await learn.save('224_lastlayer');

console.log('\n# unfrozen, differential rates, cycleMult 2');
// As fastvision train does: the architecture's measured advice (the offline MobileNetV2 keeps
// its batch-norm statistics and unfreezes at a fifth of the rate; the lesson's way lowers its
// accuracy), unless LESSON_BN_FREEZE or LESSON_UNFREEZE_LR decide.
const plan = learn.unfreezeAsAdvised(lr, {
  bnFreeze: process.env.LESSON_BN_FREEZE === undefined ? undefined : process.env.LESSON_BN_FREEZE === '1',
  unfreezeLr: process.env.LESSON_UNFREEZE_LR === undefined ? undefined : Number(process.env.LESSON_UNFREEZE_LR),
});
if (plan.note) console.log(plan.note);
// The lesson's rates are 10× lower per group; LESSON_GROUP_DIV changes the factor.
const div = Number(process.env.LESSON_GROUP_DIV ?? 10);
const top = plan.lr;
await learn.fit([top / div / div, top / div, top], 3, { cycleLen: 1, cycleMult: 2 });
await learn.save('224_all');

const { probs, y } = await learn.TTA();
const acc = probs.argmax(1).eq(y).float().mean().item();
const plain = (await learn.predict()).argmax(1).eq(y).float().mean().item();
console.log(`\naccuracy without TTA ${plain.toFixed(4)}, with TTA ${acc.toFixed(4)}; ${((performance.now() - t0) / 1000).toFixed(0)} s in all`);
await closeLoaderWorkers();
