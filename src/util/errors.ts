// One base for the errors fastvision throws on purpose. Its kind decides the command
// line's exit code: 2 when the call, its options or the files it names are wrong, 1 when
// something failed while running. Each error's `name` is its class's own.

/** 'input': the call, an option or a file it names is wrong (exit code 2); 'failure': something failed while running (1). */
export type ErrorKind = 'input' | 'failure';

/** The base of fastvision's errors; `name` is the class's name, `kind` what the error says about the call. */
export class FastvisionError extends Error {
  /** Whether the input was wrong (exit code 2) or the work failed (1). */
  readonly kind: ErrorKind = 'failure';

  constructor(message?: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Wrong input: an option, a data folder, a weights or model file, a request (exit code 2). */
export class InputError extends FastvisionError {
  override readonly kind: ErrorKind = 'input';
}

/** The exit code for an error the command line caught: 2 for wrong input, else 1. */
export function exitCodeOf(e: unknown): 1 | 2 {
  return e instanceof FastvisionError && e.kind === 'input' ? 2 : 1;
}
