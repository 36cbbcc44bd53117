// The `fastvision` command: dispatches to a subcommand; any failure is one line
// on stderr and a non-zero exit (2 for a wrong call, 1 for a failure while running).
import { closeLoaderWorkers } from '../vision/loader.js';
import { fastvisionVersion } from '../util/version.js';
import { isExiting } from '../util/cleanup.js';
import { commandHelp, parseCommandArgs, type CommandSpec } from './args.js';
import { exitCodeOf } from '../util/errors.js';
import { demoCommand } from './demo.js';
import { doctorCommand } from './doctor.js';
import { setupCommand } from './setup.js';
import { exportCommand } from './export.js';
import { serveCommand } from './serve.js';
import { interpretCommand, sizesCommand } from './inspect.js';
import { predictCommand, submitCommand } from './predict.js';
import { fitCommand, lrFindCommand } from './schedule-commands.js';
import { trainCommand } from './train.js';
import { studioCommand } from './studio.js';
import { verifyCommand } from './verify.js';
import { shown } from '../util/shown.js';

/** Every subcommand, in the order help lists them. */
export const COMMANDS: CommandSpec[] = [
  trainCommand,
  lrFindCommand,
  fitCommand,
  predictCommand,
  submitCommand,
  interpretCommand,
  sizesCommand,
  verifyCommand,
  exportCommand,
  serveCommand,
  studioCommand,
  doctorCommand,
  setupCommand,
  demoCommand,
];

function mainHelp(): string {
  return [
    'usage: fastvision <command> [arguments] [options]',
    '',
    'The fast.ai way of training image classifiers: point it at a folder of labelled photos.',
    '',
    'commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(10)} ${c.summary.split('. ')[0]!.replace(/\.$/, '')}`),
    '',
    "'fastvision <command> --help' describes a command's options.",
  ].join('\n');
}

/** Runs the CLI on `argv` (without node and the script) and returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(mainHelp());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version') {
    console.log(fastvisionVersion());
    return 0;
  }
  const cmd = COMMANDS.find((c) => c.name === name);
  if (!cmd) {
    console.error(`fastvision: unknown command '${name}' (commands: ${COMMANDS.map((c) => c.name).join(', ')})`);
    return 2;
  }
  try {
    const args = parseCommandArgs(cmd, rest);
    if (args === 'help') {
      console.log(commandHelp(cmd));
      return 0;
    }
    await cmd.run(args);
    return 0;
  } catch (e) {
    const err = e as Error;
    // An interrupt is ending the process and has said so; what it cut short is no news.
    if (isExiting()) return 130;
    if (process.env.FASTVISION_DEBUG === '1') console.error(err.stack);
    console.error(`fastvision ${cmd.name}: ${shown((err.message || String(e)).split('\n')[0]!.replace(/^fastvision \S+: /, ''))}`);
    // 2: the call or its input is wrong (options, data, weights, model files, devices); 1: a failure while running.
    return exitCodeOf(e);
  } finally {
    // Loader worker threads would keep the process alive after the command.
    await closeLoaderWorkers();
  }
}
