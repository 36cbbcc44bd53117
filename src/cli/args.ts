// Command-line parsing: each command declares its options once, and help text
// and error messages come from that declaration.
import { parseArgs } from 'node:util';
import { InputError } from '../util/errors.js';

/** A mistake in how the command was called: printed as one line, exit code 2. */
export class UsageError extends InputError {}

/** How a string option's value is read and checked: declared once, it gives the help text's range and the error. */
export type ValueSpec =
  | { kind: 'number'; min?: number; max?: number; integer?: boolean }
  /** Comma-separated numbers, e.g. `--sizes 128,224`. */
  | { kind: 'numbers'; min?: number; max?: number; integer?: boolean }
  | { kind: 'choice'; choices: readonly string[] };

/** One option of a command. */
export interface OptionSpec {
  type: 'string' | 'boolean';
  /** Placeholder in help, e.g. `N` or `FILE`. */
  arg?: string;
  help: string;
  /** Shown in help as the default. */
  default?: string;
  /** The value's type and range: checked as soon as the command line is parsed, before any work. */
  value?: ValueSpec;
}

/** A command: its positionals and options, and what it does with them. */
export interface CommandSpec {
  name: string;
  summary: string;
  /** Positional arguments, e.g. `['<path>']`; a trailing `...` takes the rest. */
  positionals: string[];
  options: Record<string, OptionSpec>;
  /** Longer text after the option list. */
  details?: string;
  run(args: ParsedArgs): Promise<void>;
}

/** What a command receives. */
export interface ParsedArgs {
  positionals: string[];
  values: Record<string, string | boolean | undefined>;
  /** The command's option specs, so that readers take the declared range. */
  specs?: Record<string, OptionSpec>;
}

/** The range a value spec declares, as help shows it. */
function rangeText(v: ValueSpec | undefined): string {
  if (!v) return '';
  if (v.kind === 'choice') return ` (${v.choices.join(', ')})`;
  const lo = v.min ?? -Infinity;
  const hi = v.max ?? Infinity;
  if (lo === -Infinity && hi === Infinity) return '';
  const what = v.integer ? 'whole numbers' : 'numbers';
  return hi === Infinity ? ` (${what} from ${lo})` : ` (${what} ${lo} to ${hi})`;
}

/** Help text of a command. */
export function commandHelp(c: CommandSpec): string {
  const rows = Object.entries(c.options).map(([name, o]) => {
    const left = `  --${name}${o.arg ? ` ${o.arg}` : ''}`;
    const range = o.value?.kind === 'choice' && o.value.choices.every((c) => o.help.includes(c)) ? '' : rangeText(o.value);
    return `${left.padEnd(28)} ${o.help}${range}${o.default !== undefined ? ` (default ${o.default})` : ''}`;
  });
  rows.push(`${'  --help'.padEnd(28)} this text`);
  return [`usage: fastvision ${c.name} ${c.positionals.join(' ')} [options]`.replace(/ +/g, ' '), '', c.summary, '', 'options:', ...rows, ...(c.details ? ['', c.details] : [])].join('\n');
}

/** Parses a command's arguments; a wrong one is a UsageError naming it. */
export function parseCommandArgs(c: CommandSpec, argv: string[]): ParsedArgs | 'help' {
  if (argv.includes('--help') || argv.includes('-h')) return 'help';
  const options = Object.fromEntries(Object.entries(c.options).map(([k, o]) => [k, { type: o.type }]));
  // `--lr -1`: parseArgs takes a value that starts with '-' for an option, so a negative
  // number is joined to its option (`--lr=-1`) and then refused by the option's range.
  const joined: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = argv[i + 1];
    const takesValue = /^--[\w-]+$/.test(a) && Object.hasOwn(c.options, a.slice(2)) && c.options[a.slice(2)]!.type === 'string';
    if (takesValue && next !== undefined && /^-(\d|\.\d)/.test(next)) {
      joined.push(`${a}=${next}`);
      i++;
    } else joined.push(a);
  }
  let parsed: { values: Record<string, string | boolean | undefined>; positionals: string[] };
  try {
    const r = parseArgs({ args: joined, options, allowPositionals: true, strict: true });
    parsed = { values: r.values, positionals: r.positionals };
  } catch (e) {
    const msg = (e as Error).message;
    const unknown = /Unknown option '([^']+)'/.exec(msg);
    if (unknown) throw new UsageError(`fastvision ${c.name}: unknown option '${unknown[1]}' (see fastvision ${c.name} --help)`);
    const needs = /Option '(?:-\w, )?(--[\w-]+)[^']*' argument missing/.exec(msg);
    if (needs) throw new UsageError(`fastvision ${c.name}: option '${needs[1]}' needs a value`);
    const noValue = /Option '(--[\w-]+)' does not take an argument/.exec(msg);
    if (noValue) throw new UsageError(`fastvision ${c.name}: option '${noValue[1]}' takes no value`);
    throw new UsageError(`fastvision ${c.name}: ${msg.split('\n')[0]}`);
  }
  const required = c.positionals.filter((p) => p.startsWith('<'));
  const rest = c.positionals.some((p) => p.endsWith('...'));
  if (parsed.positionals.length < required.length) {
    throw new UsageError(`fastvision ${c.name}: missing ${required.slice(parsed.positionals.length).join(' ')} (usage: fastvision ${c.name} ${c.positionals.join(' ')})`);
  }
  if (!rest && parsed.positionals.length > c.positionals.length) {
    throw new UsageError(`fastvision ${c.name}: unexpected argument '${parsed.positionals[c.positionals.length]}'`);
  }
  const out: ParsedArgs = { ...parsed, specs: c.options };
  // Every typed option is checked now, so that a wrong value stops the command before any work.
  for (const [name, o] of Object.entries(c.options)) {
    const v = o.value;
    if (!v || typeof out.values[name] !== 'string') continue;
    if (v.kind === 'number') num(out, name, undefined);
    else if (v.kind === 'numbers') numList(out, name);
    else choice(out, name, v.choices, v.choices[0]!);
  }
  return out;
}

/** The range an option declares (ValueSpec), for readers not given one. */
function declaredRange(args: ParsedArgs, name: string): { min?: number; max?: number; integer?: boolean } {
  const v = args.specs?.[name]?.value;
  return v && v.kind !== 'choice' ? v : {};
}

/** The range an option spec declares, for a reader whose command may declare the option without one. */
export function rangeOf(o: OptionSpec | undefined): { min?: number; max?: number; integer?: boolean } {
  const v = o?.value;
  return v && v.kind !== 'choice' ? v : {};
}

/** Reads option `name` as a string (or the default). */
export function str(args: ParsedArgs, name: string): string | undefined;
export function str(args: ParsedArgs, name: string, dflt: string): string;
export function str(args: ParsedArgs, name: string, dflt?: string): string | undefined {
  const v = args.values[name];
  return typeof v === 'string' ? v : dflt;
}

/** Reads option `name` as a number within [min, max] (integer when asked; by default the option's declared range). */
export function num(args: ParsedArgs, name: string, dflt: number, range?: { min?: number; max?: number; integer?: boolean }): number;
export function num(args: ParsedArgs, name: string, dflt?: undefined, range?: { min?: number; max?: number; integer?: boolean }): number | undefined;
export function num(args: ParsedArgs, name: string, dflt: number | undefined, range: { min?: number; max?: number; integer?: boolean } = declaredRange(args, name)): number | undefined {
  const { min = -Infinity, max = Infinity, integer = false } = range;
  const v = args.values[name];
  if (typeof v !== 'string') return dflt;
  return parseNumber(v, `--${name}`, { min, max, integer });
}

/** Parses a comma-separated list of numbers (e.g. `--sizes 128,224`; by default in the option's declared range). */
export function numList(args: ParsedArgs, name: string, range: { min?: number; max?: number; integer?: boolean } = declaredRange(args, name)): number[] | undefined {
  const { min = -Infinity, max = Infinity, integer = false } = range;
  const v = args.values[name];
  if (typeof v !== 'string') return undefined;
  const parts = v.split(',').map((s) => s.trim());
  if (parts.some((p) => p === '')) throw new UsageError(`--${name}: '${v}' is not a comma-separated list of numbers`);
  return parts.map((p) => parseNumber(p, `--${name}`, { min, max, integer }));
}

/** A plain decimal number, as people write them: no hexadecimal, binary or octal (`Number('0x20')` is 32), no `Infinity`. */
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

function parseNumber(v: string, what: string, { min, max, integer }: { min: number; max: number; integer: boolean }): number {
  const n = Number(v.trim());
  if (!DECIMAL.test(v.trim()) || !Number.isFinite(n)) throw new UsageError(`${what}: '${v}' is not a number`);
  if (integer && !Number.isInteger(n)) throw new UsageError(`${what}: '${v}' must be a whole number`);
  if (n < min || n > max) throw new UsageError(`${what}: ${v} is out of range (${min} to ${max})`);
  return n;
}

/** Reads option `name` as one of `choices`. */
export function choice<T extends string>(args: ParsedArgs, name: string, choices: readonly T[], dflt: T): T {
  const v = args.values[name];
  if (typeof v !== 'string') return dflt;
  if (!(choices as readonly string[]).includes(v)) throw new UsageError(`--${name}: '${v}' is not one of ${choices.join(', ')}`);
  return v as T;
}

/** Whether boolean option `name` was given. */
export function flag(args: ParsedArgs, name: string): boolean {
  return args.values[name] === true;
}
