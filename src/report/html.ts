// The HTML report: pictures (also kept as PNG files next to it) and tables in
// one self-contained page — images embedded, no scripts, no network.
import { join, relative } from 'node:path';
import { ensureDir, writeFileAtomic } from '../util/files.js';
import { shown } from '../util/shown.js';

type Section =
  | { kind: 'picture'; title: string; file: string; png: Buffer; note?: string }
  | { kind: 'table'; title: string; headers: string[]; rows: (string | number)[][]; note?: string }
  | { kind: 'text'; title: string; text: string };

const esc = (s: string): string => shown(s).replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);

const cell = (v: string | number): string => (typeof v === 'number' ? (Number.isInteger(v) ? String(v) : v.toFixed(4)) : esc(v));

/** A report under construction: `add*` in reading order, then `write`. */
export class Report {
  private readonly sections: Section[] = [];
  /** Paths of the PNG files written so far. */
  readonly pictures: string[] = [];

  constructor(
    /** Folder of the report; pictures go to its `pictures/` subfolder. */
    readonly dir: string,
    readonly title: string,
    /** Write nothing (a distributed run's ranks other than 0 build no report). */
    private readonly discard = false,
  ) {}

  /** Adds a picture, writing it as `pictures/{name}.png` at once (so it survives a later failure). */
  async addPicture(name: string, title: string, png: Buffer, note?: string): Promise<string> {
    if (!/^[A-Za-z0-9_-]+$/.test(name)) throw new Error(`picture name '${name}' must be letters, digits, '-' or '_'`);
    const file = join(this.dir, 'pictures', `${name}.png`);
    if (this.discard) return file;
    ensureDir(join(this.dir, 'pictures'));
    await writeFileAtomic(file, png);
    this.sections.push({ kind: 'picture', title, file, png, note });
    this.pictures.push(file);
    return file;
  }

  /** Adds a table. */
  addTable(title: string, headers: string[], rows: (string | number)[][], note?: string): void {
    this.sections.push({ kind: 'table', title, headers, rows, note });
  }

  /** Adds a paragraph. */
  addText(title: string, text: string): void {
    this.sections.push({ kind: 'text', title, text });
  }

  /** The page as HTML. */
  html(): string {
    const body = this.sections
      .map((s) => {
        const h = `<h2>${esc(s.title)}</h2>`;
        if (s.kind === 'text') return `${h}<p>${esc(s.text)}</p>`;
        const note = s.note ? `<p class="note">${esc(s.note)}</p>` : '';
        if (s.kind === 'picture') {
          return `${h}${note}<img alt="${esc(s.title)}" src="data:image/png;base64,${s.png.toString('base64')}"><p class="file">${esc(relative(this.dir, s.file))}</p>`;
        }
        const head = `<tr>${s.headers.map((x) => `<th>${esc(x)}</th>`).join('')}</tr>`;
        const rows = s.rows.map((r) => `<tr>${r.map((v) => `<td>${cell(v)}</td>`).join('')}</tr>`).join('\n');
        return `${h}${note}<table>${head}\n${rows}</table>`;
      })
      .join('\n');
    return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(this.title)}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
img{max-width:100%;border:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}
td:first-child{text-align:left}
.note{color:#555}.file{color:#888;font-size:.85em}
</style></head>
<body><h1>${esc(this.title)}</h1>
<p class="note">Written by fastvision on ${new Date().toISOString()}.</p>
${body}
</body></html>
`;
  }

  /** Writes the page as `{dir}/{name}` (atomically) and returns its path. */
  async write(name = 'report.html'): Promise<string> {
    const file = join(this.dir, name);
    if (this.discard) return file;
    ensureDir(this.dir);
    await writeFileAtomic(file, this.html());
    return file;
  }
}
