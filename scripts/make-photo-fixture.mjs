#!/usr/bin/env node
// Makes the committed photo fixture test/fixtures/photos/ from pets-sample: a few
// dozen of its photos, downsized (longer side 160 px), in both layouts — the folder
// layout (dogscats/train|valid/<label>/, dogscats/test/) and the CSV layout
// (breeds/train/<id>.jpg, breeds/labels.csv, breeds/test/) — so that a fresh clone
// runs its tests with nothing beside it. Deterministic: the same input gives the
// same choice of photos. Usage: node scripts/make-photo-fixture.mjs [pets-sample dir]
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const src = process.argv[2] ?? join(root, '..', 'shared', 'datasets', 'pets-sample');
if (!existsSync(join(src, 'dogscats'))) {
  console.error(`pets-sample not found at ${src}; pass its path: node scripts/make-photo-fixture.mjs DIR`);
  process.exit(2);
}
const dest = join(root, 'test', 'fixtures', 'photos');
rmSync(dest, { recursive: true, force: true });

async function shrink(from, to) {
  mkdirSync(dirname(to), { recursive: true });
  await sharp(from).rotate().resize(160, 160, { fit: 'inside', withoutEnlargement: true }).jpeg({ quality: 82 }).toFile(to);
}

const sorted = (dir) =>
  readdirSync(dir)
    .filter((f) => f.endsWith('.jpg'))
    .sort();
// Every k-th photo, so that several breeds appear in each class.
const spread = (files, n) => Array.from({ length: n }, (_, i) => files[Math.floor((i * files.length) / n)]);

// Folder layout: unbalanced on purpose (6 cats, 10 dogs) for the oversampling tests;
// the validation photos include Bengal_167 and beagle_171, which the Keras tests use.
const folder = { train: { cats: 6, dogs: 10 }, valid: { cats: 3, dogs: 3 } };
for (const [split, labels] of Object.entries(folder)) {
  for (const [label, n] of Object.entries(labels)) {
    const all = sorted(join(src, 'dogscats', split, label));
    const picked = new Set(spread(all, n));
    if (split === 'valid') {
      const must = label === 'cats' ? 'Bengal_167.jpg' : 'beagle_171.jpg';
      if (!picked.has(must)) {
        picked.delete([...picked].pop());
        picked.add(must);
      }
    }
    for (const f of [...picked].sort()) await shrink(join(src, 'dogscats', split, label, f), join(dest, 'dogscats', split, label, f));
  }
}
// An unlabelled test folder: validation photos not used above.
const usedValid = new Set(readdirSync(join(dest, 'dogscats', 'valid', 'dogs')));
const testPhotos = sorted(join(src, 'dogscats', 'valid', 'dogs'))
  .filter((f) => !usedValid.has(f))
  .slice(-4);
for (const f of testPhotos) await shrink(join(src, 'dogscats', 'valid', 'dogs', f), join(dest, 'dogscats', 'test', f));

// CSV layout: four breeds, five photos each, ids without the suffix; four test photos.
const rows = readFileSync(join(src, 'breeds', 'labels.csv'), 'utf8')
  .trim()
  .split('\n')
  .slice(1)
  .map((l) => l.split(','));
const breeds = [...new Set(rows.map((r) => r[1]))].sort();
const chosen = spread(breeds, 4);
const picked = chosen.flatMap((b) => rows.filter((r) => r[1] === b).slice(0, 5));
for (const [id] of picked) await shrink(join(src, 'breeds', 'train', `${id}.jpg`), join(dest, 'breeds', 'train', `${id}.jpg`));
writeFileSync(join(dest, 'breeds', 'labels.csv'), `id,breed\n${picked.map((r) => r.join(',')).join('\n')}\n`);
for (const f of sorted(join(src, 'breeds', 'test')).slice(0, 4)) await shrink(join(src, 'breeds', 'test', f), join(dest, 'breeds', 'test', f));

writeFileSync(
  join(dest, 'README.md'),
  `# photos: the test suite's photo fixture

Made by \`node scripts/make-photo-fixture.mjs\` from pets-sample: real photographs from the
Oxford-IIIT Pet Dataset (Parkhi, Vedaldi, Zisserman, Jawahar, "Cats and Dogs", CVPR 2012),
https://www.robots.ox.ac.uk/~vgg/data/pets/ — licensed CC BY-SA 4.0; the copyright of each image
remains with its owner. Downsized to at most 160 px on the longer side.

- \`dogscats/\`: the folder layout, \`train/{cats,dogs}\` (6 and 10 photos), \`valid/{cats,dogs}\`
  (3 and 3), and an unlabelled \`test/\` (4).
- \`breeds/\`: the CSV layout, \`train/<id>.jpg\` with \`labels.csv\` (\`id,breed\`: ${chosen.join(', ')},
  5 photos each) and an unlabelled \`test/\` (4).
`,
);
console.log(`wrote ${dest}`);
