// `fastvision setup`: builds the native addon of the installed package (after npm's install
// scripts were skipped, or once libtorch is installed), then says what it runs on.
import { environment } from '../torch/environment.js';
import { setupNativeAddon } from '../torch/setup-addon.js';
import { flag, type CommandSpec } from './args.js';
import { doctorLines } from './doctor.js';

export const setupCommand: CommandSpec = {
  name: 'setup',
  summary: "Builds fastvision's native addon against the libtorch found here (what npm's install does; run it after --ignore-scripts, pnpm, or installing libtorch later).",
  positionals: [],
  options: {
    'if-needed': { type: 'boolean', help: 'build only when the addon is missing or older than its sources' },
  },
  details:
    "Needs libtorch (see `fastvision doctor` or docs/INSTALL.md), a C++17 compiler, make and python3. Node's headers are taken beside node or from libnode-dev, never downloaded. `npm rebuild fastvision` does the same.",
  async run(args) {
    const what = await setupNativeAddon({ force: !flag(args, 'if-needed') });
    console.log(`native addon: ${what}`);
    console.log(doctorLines(await environment()).join('\n'));
  },
};
