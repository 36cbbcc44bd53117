// Text from strangers (labels, file names) made safe to show: on a terminal an ESC
// sequence can rewrite the screen and a right-to-left mark reverses what follows; in a
// table a line break breaks the row; in a chart a control character stopped the
// renderer. Each such character is shown as an escape instead.

/** C0 and C1 controls, DEL, bidirectional controls, line/paragraph separators, BOM and lone surrogates. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/**
 * `text` with every character that could move the cursor, reorder the line or break a
 * table written as an escape (`\n`, `\x1b`, `\u202e`); other text is unchanged.
 * @example
 * shown('Maine Coon') // 'Maine Coon'
 * shown('evil\x1b[2Jlabel') // 'evil\\x1b[2Jlabel'
 */
export function shown(text: string): string {
  return text.replace(UNSAFE, (c) => {
    const named = NAMED[c];
    if (named !== undefined) return named;
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
}

/** Whether `text` holds anything `shown` would escape. */
export function needsEscaping(text: string): boolean {
  UNSAFE.lastIndex = 0;
  const found = UNSAFE.test(text);
  UNSAFE.lastIndex = 0;
  return found;
}
