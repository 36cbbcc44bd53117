// `fastvision studio`: the local web app for the lesson's loop (train, look, clean, train
// again), a thin layer over the library's startStudio.
import { basename, join, resolve } from 'node:path';
import { startStudio } from '../studio/server.js';
import { drainOnSignals } from '../util/cleanup.js';
import { num, rangeOf, str, UsageError, type CommandSpec } from './args.js';
import { csvReadArgs, dataPath, LAYOUT_OPTIONS } from './data-args.js';

export const studioCommand: CommandSpec = {
  name: 'studio',
  summary: 'A local web page for the whole loop: look at the data, train and watch, look at the mistakes, relabel or exclude photos, train again, try a photo, export.',
  positionals: ['<path>'],
  options: {
    csv: LAYOUT_OPTIONS.csv!,
    folder: LAYOUT_OPTIONS.folder!,
    suffix: LAYOUT_OPTIONS.suffix!,
    'val-pct': LAYOUT_OPTIONS['val-pct']!,
    out: { type: 'string', arg: 'DIR', help: 'where runs, cleaning decisions (cleaning.csv) and exports go', default: './fastvision-out/<folder name>' },
    port: { type: 'string', arg: 'N', help: 'port (0: any free one)', default: '7860', value: { kind: 'number', min: 0, max: 65535, integer: true } },
    host: { type: 'string', arg: 'ADDR', help: 'address to listen on (anyone who can reach it and has the token can train and read the data)', default: '127.0.0.1' },
    'allowed-hosts': { type: 'string', arg: 'LIST', help: 'host names to answer besides IP addresses and localhost (comma-separated)' },
  },
  details: [
    'Open the address it prints: it holds a random token (requests without it get 403).',
    'Training runs in a child process; decisions about photos go to <out>/cleaning.csv (the data folder is never written),',
    'and `fastvision train <path> --clean <out>/cleaning.csv` trains on them from the command line.',
    'examples:',
    '  fastvision studio photos/dogscats',
    '  fastvision studio photos/breeds --csv labels.csv --suffix .jpg --out runs/breeds',
  ].join('\n'),
  async run(args) {
    const path = dataPath(args.positionals[0]);
    const { csv, folder, suffix } = csvReadArgs(args);
    const host = str(args, 'host', '127.0.0.1');
    const port = num(args, 'port', 7860, rangeOf(studioCommand.options.port));
    const allowedHosts = str(args, 'allowed-hosts')
      ?.split(',')
      .map((h) => h.trim());
    const out = resolve(str(args, 'out', join('fastvision-out', basename(path))));
    const studio = await startStudio({
      data: { path, csv, folder, suffix, valPct: num(args, 'val-pct', 0.2, rangeOf(LAYOUT_OPTIONS['val-pct'])) },
      out,
      host,
      port,
      allowedHosts,
    }).catch((e: Error & { code?: string }) => {
      throw e.code === 'EADDRINUSE' || e.code === 'EACCES' || e.code === 'EADDRNOTAVAIL' ? new UsageError(`cannot listen on ${host}:${port}: ${e.code} (--port 0 picks a free one)`) : e;
    });
    console.log(`fastvision studio for ${path}\noutput: ${out}\nopen ${studio.url}`);
    await new Promise<void>((done) => {
      const release = drainOnSignals(() => {
        release();
        void studio.close().then(done);
      });
    });
    console.log('stopped');
  },
};
