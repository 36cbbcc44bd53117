// fastvision's errors: one base whose kind decides the exit code (2 for wrong input, 1
// for a failure while running), and a `name` that is each class's own.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import * as api from '../src/index.js';
import { UsageError } from '../src/cli/args.js';
import { RequestError } from '../src/deploy/form.js';
import { OnnxExportError } from '../src/deploy/onnx-export.js';
import { ModelFileError } from '../src/learn/saved-model.js';
import { OutputPathError } from '../src/util/files.js';
import { NotAFileError } from '../src/util/read-files.js';
import { BadImageError } from '../src/vision/augment.js';
import { DataError } from '../src/vision/dataset.js';
import { WeightsError } from '../src/vision/zoo.js';
import { PickleError } from '../src/torch/serialization/pickle.js';
import { ZipFormatError } from '../src/torch/serialization/zip.js';
import { repoRoot } from './helpers.js';

const { FastvisionError, InputError, exitCodeOf } = api;

test('every error class is a FastvisionError named after itself; wrong input exits 2, failures 1', () => {
  const input: Error[] = [
    new UsageError('u'),
    new DataError('d'),
    new WeightsError('w'),
    new api.PthError('p'),
    new PickleError('p'),
    new ZipFormatError('z'),
    new ModelFileError('m'),
    new NotAFileError('n'),
    new OutputPathError('o'),
    new api.DeviceUnavailableError('d'),
    new BadImageError('a.jpg', 'broken'),
    new api.BatchTooLargeError('b', 2),
    new RequestError(413, 'r'),
  ];
  const failures: Error[] = [
    new api.OutOfMemoryError('o', 2),
    new api.DistributedError('d'),
    new OnnxExportError('o'),
    new api.TrainingDivergedError('nan', 0, 'the start of this fit', []),
    new api.CancelFitError(),
  ];
  for (const e of input) {
    assert.ok(e instanceof InputError && e instanceof FastvisionError, e.constructor.name);
    assert.equal(e.name, e.constructor.name);
    assert.equal(exitCodeOf(e), 2, e.name);
  }
  for (const e of failures) {
    assert.ok(e instanceof FastvisionError && !(e instanceof InputError), e.constructor.name);
    assert.equal(e.name, e.constructor.name);
    assert.equal(exitCodeOf(e), 1, e.name);
  }
  assert.equal(exitCodeOf(new Error('plain')), 1);
  assert.match(String(new UsageError('--bs: not a number')), /^UsageError: --bs: not a number$/);
});

test('no error class in src/ bypasses the base', () => {
  const offenders: string[] = [];
  const walk = (dir: string): void => {
    for (const f of readdirSync(dir)) {
      const p = join(dir, f);
      if (statSync(p).isDirectory()) walk(p);
      else if (p.endsWith('.ts') && !p.endsWith(join('util', 'errors.ts'))) {
        for (const m of readFileSync(p, 'utf8').matchAll(/class (\w+) extends (Error|TypeError|RangeError)\b/g)) offenders.push(`${p}: ${m[1]}`);
      }
    }
  };
  walk(join(repoRoot, 'src'));
  assert.deepEqual(offenders, [], 'extend FastvisionError or InputError (src/util/errors.ts)');
});
