/// <reference lib="dom" />
// The studio page's script. It talks to the studio's JSON API (the token travels in
// a same-site cookie set when the printed address was opened) and builds every
// element with textContent and attributes, so that labels and file names from the
// data are shown as text, never read as markup.

import type { ResultPhoto, StudioResults as Results } from '../results.js';
import type { ChildMessage } from '../train-child.js';
import type { VerifyStatus } from '../verification.js';

interface ClassCount {
  label: string;
  train: number;
  valid: number;
}
interface DataInfo {
  root: string;
  out: string;
  layout: string;
  classes: string[];
  counts: ClassCount[];
  total: number;
  excluded: number;
  sizes: { from: number; to: number | null; n: number }[];
  skipped: { file: string | null; reason: string }[];
  archs: string[];
  /** The architectures whose weights are here (the others are downloaded on their first run). */
  archsHere: string[];
  recipes: string[];
  defaults: Record<string, string | number | boolean>;
}
interface Photo {
  file: string;
  split: string;
  label: string;
  cleaned: string | null;
  decision: string | null;
}
interface Decision {
  file: string;
  action: 'keep' | 'relabel' | 'exclude';
  label: string | null;
}
type RunEvent = ChildMessage & { seq: number };
interface RunStatus {
  state: string;
  run: number;
  pid: number | null;
  error: string | null;
  checkpoint: boolean;
  events: RunEvent[];
  next: number;
}

const $ = <T extends HTMLElement = HTMLElement>(id: string): T => document.getElementById(id) as T;

/** An element with text and attributes (never HTML). */
function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  e.append(...children);
  return e;
}

async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
  const res = await fetch(path, { ...init, credentials: 'same-origin' });
  const body = (await res.json()) as T & { error?: string };
  if (!res.ok) throw new Error(body.error ?? `${res.status} ${res.statusText}`);
  return body;
}

const post = <T>(path: string, body: unknown): Promise<T> => api<T>(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

function showError(e: unknown): void {
  const box = $('error');
  box.textContent = e instanceof Error ? e.message : String(e);
  box.hidden = false;
}

function clearError(): void {
  $('error').hidden = true;
}

const imageUrl = (file: string, w = 240): string => `/api/image?root=data&w=${w}&file=${encodeURIComponent(file)}`;
const fmt = (x: number | null, d = 4): string => (x === null || !Number.isFinite(x) ? '–' : x.toFixed(d));
const short = (file: string): string => file.split('/').slice(-2).join('/');

let data: DataInfo;
let decisions = new Map<string, Decision>();

// ---- photo tiles with the cleaning actions -------------------------------------------

/** A photo with its label, decision and the keep / relabel / exclude actions; `extra` goes under the picture. */
function photoTile(file: string, label: string, extra: (Node | string)[] = [], pics: HTMLElement[] = []): HTMLElement {
  const tile = el('div', { class: 'photo', 'data-file': file });
  const img = el('img', { src: imageUrl(file), alt: file, loading: 'lazy' });
  const status = el('div', { class: 'label' });
  const keep = el('button', { type: 'button', class: 'keep', title: 'the label is right' }, 'Keep');
  const exclude = el('button', { type: 'button', class: 'exclude', title: 'leave this photo out of training' }, 'Exclude');
  const relabel = el('select', { class: 'relabel', title: 'give this photo another class' });
  relabel.append(el('option', { value: '' }, 'Relabel as…'), ...data.classes.filter((c) => c !== label).map((c) => el('option', { value: c }, c)));
  const paint = (): void => {
    const d = decisions.get(file);
    if (d) tile.dataset.decision = d.action;
    else delete tile.dataset.decision;
    status.replaceChildren(label);
    if (d?.action === 'relabel') status.append(el('span', { class: 'badge' }, `→ ${d.label}`));
    if (d?.action === 'exclude') status.append(el('span', { class: 'badge' }, 'excluded'));
    if (d?.action === 'keep') status.append(el('span', { class: 'badge' }, 'kept'));
  };
  const decide = (action: Decision['action'], to: string | null): void => {
    clearError();
    post<{ current: Record<string, Decision> }>('/api/cleaning', { file, action, label: to })
      .then((r) => {
        decisions = new Map(Object.entries(r.current));
        repaintTiles();
      })
      .catch(showError);
  };
  keep.addEventListener('click', () => decide('keep', null));
  exclude.addEventListener('click', () => decide('exclude', null));
  relabel.addEventListener('change', () => {
    if (relabel.value !== '') decide('relabel', relabel.value);
    relabel.value = '';
  });
  tile.append(el('div', { class: 'pics' }, img, ...pics), el('div', { class: 'name', title: file }, short(file)), status, ...extra, el('div', { class: 'actions' }, keep, exclude, relabel));
  (tile as HTMLElement & { paint?: () => void }).paint = paint;
  paint();
  return tile;
}

function repaintTiles(): void {
  for (const t of document.querySelectorAll<HTMLElement & { paint?: () => void }>('.photo')) t.paint?.();
  void refreshCounts();
  renderDecisions();
}

// ---- data ------------------------------------------------------------------------------

async function refreshCounts(): Promise<void> {
  data = await api<DataInfo>('/api/data');
  const body = $('counts').querySelector('tbody')!;
  const most = Math.max(1, ...data.counts.map((c) => c.train + c.valid));
  body.replaceChildren(
    ...data.counts.map((c) =>
      el(
        'tr',
        { 'data-label': c.label },
        el('td', {}, c.label),
        el('td', { class: 'num train' }, String(c.train)),
        el('td', { class: 'num valid' }, String(c.valid)),
        el('td', {}, el('span', { class: 'bar', style: `width:${Math.round((120 * (c.train + c.valid)) / most)}px` })),
      ),
    ),
  );
  $('data-summary').textContent =
    `${data.total} photos in ${data.classes.length} classes (${data.layout === 'csv' ? 'labels CSV' : 'train/ and valid/ folders'})` +
    (data.excluded > 0 ? `; ${data.excluded} excluded by cleaning` : '');
}

let shownClass = '';
let shownOffset = 0;

async function showClass(label: string, more = false): Promise<void> {
  shownClass = label;
  if (!more) shownOffset = 0;
  for (const b of $('class-picker').querySelectorAll('button')) b.classList.toggle('active', b.dataset.label === label);
  const r = await api<{ total: number; photos: Photo[] }>(`/api/photos?label=${encodeURIComponent(label)}&offset=${shownOffset}&limit=60`);
  const tiles = r.photos.map((p) => photoTile(p.file, p.label, [el('div', { class: 'note' }, p.split)]));
  if (more) $('class-photos').append(...tiles);
  else $('class-photos').replaceChildren(...tiles);
  shownOffset += r.photos.length;
  $('more-photos').hidden = shownOffset >= r.total;
}

async function loadData(): Promise<void> {
  await refreshCounts();
  $('where').textContent = `data: ${data.root} · output: ${data.out}`;
  const most = Math.max(1, ...data.sizes.map((s) => s.n));
  $('sizes')
    .querySelector('tbody')!
    .replaceChildren(
      ...data.sizes.map((s) =>
        el(
          'tr',
          {},
          el('td', {}, s.to === null ? `${s.from}+` : `${s.from}–${s.to - 1}`),
          el('td', { class: 'num' }, String(s.n)),
          el('td', {}, el('span', { class: 'bar', style: `width:${Math.round((120 * s.n) / most)}px` })),
        ),
      ),
    );
  $('skipped-box').hidden = data.skipped.length === 0;
  $('skipped').replaceChildren(...data.skipped.map((s) => el('li', {}, s.file === null ? s.reason : `${s.file}: ${s.reason}`)));
  $('class-picker').replaceChildren(
    ...data.classes.map((c) => {
      const b = el('button', { type: 'button', 'data-label': c }, c);
      b.addEventListener('click', () => void showClass(c).catch(showError));
      return b;
    }),
  );
  const fill = (id: string, values: string[], chosen: string): void => {
    const s = $<HTMLSelectElement>(id);
    s.replaceChildren(...values.map((v) => el('option', { value: v }, v)));
    s.value = chosen;
  };
  const arch = $<HTMLSelectElement>('arch');
  const here = new Set(data.archsHere);
  const option = (v: string): HTMLElement => el('option', { value: v }, v);
  const groups: [string, string[]][] = [
    ['weights here', data.archs.filter((a) => here.has(a))],
    ['weights downloaded on the first run (needs the internet)', data.archs.filter((a) => !here.has(a))],
  ];
  arch.replaceChildren(...groups.filter(([, names]) => names.length > 0).map(([label, names]) => el('optgroup', { label }, ...names.map(option))));
  arch.value = String(data.defaults.arch);
  fill('recipe', data.recipes, String(data.defaults.recipe));
  showSettings(data.defaults);
  if (data.classes[0] !== undefined) await showClass(data.classes[0]);
}

/** Puts settings (the defaults, or the last run's) into the Train form. */
function showSettings(s: Record<string, unknown>): void {
  for (const [id, key] of [
    ['arch', 'arch'],
    ['recipe', 'recipe'],
    ['size', 'size'],
    ['epochs', 'epochs'],
    ['freeze-epochs', 'freezeEpochs'],
    ['bs', 'bs'],
    ['device', 'device'],
  ] as const) {
    const v = s[key];
    if (typeof v === 'string' || typeof v === 'number') $<HTMLInputElement>(id).value = String(v);
  }
  if (typeof s.clean === 'boolean') $<HTMLInputElement>('use-clean').checked = s.clean;
  $<HTMLInputElement>('lr').value = typeof s.lr === 'number' ? String(s.lr) : '';
}

// ---- charts (SVG, drawn here) ---------------------------------------------------------------

const SVG = 'http://www.w3.org/2000/svg';

function svgEl(tag: string, attrs: Record<string, string | number>): SVGElement {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

interface Series {
  points: [number, number][];
  colour: string;
  dots?: boolean;
}

/** A line chart with axes; `logX` puts x on a log scale. */
function drawChart(svg: SVGSVGElement, series: Series[], { logX = false, xLabel = '', marks = [] as { x: number; colour: string }[] } = {}): void {
  const w = Number(svg.getAttribute('width'));
  const h = Number(svg.getAttribute('height'));
  const m = { l: 52, r: 24, t: 8, b: 34 };
  svg.replaceChildren();
  const all = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!logX || x > 0));
  if (all.length === 0) {
    const t = svgEl('text', { x: w / 2, y: h / 2, 'text-anchor': 'middle', fill: '#9aa5b1', 'font-size': 12 });
    t.textContent = 'waiting for the run…';
    svg.append(t);
    return;
  }
  const fx = (x: number): number => (logX ? Math.log10(x) : x);
  const xs = all.map(([x]) => fx(x));
  const ys = all.map(([, y]) => y);
  let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (x1 === x0) [x0, x1] = [x0 - 1, x1 + 1];
  if (y1 === y0) [y0, y1] = [y0 - 1, y1 + 1];
  const pad = (y1 - y0) * 0.05;
  y0 -= pad;
  y1 += pad;
  const px = (x: number): number => m.l + ((fx(x) - x0) / (x1 - x0)) * (w - m.l - m.r);
  const py = (y: number): number => h - m.b - ((y - y0) / (y1 - y0)) * (h - m.t - m.b);
  svg.append(svgEl('line', { x1: m.l, y1: h - m.b, x2: w - m.r, y2: h - m.b, stroke: '#9aa5b1' }), svgEl('line', { x1: m.l, y1: m.t, x2: m.l, y2: h - m.b, stroke: '#9aa5b1' }));
  for (let i = 0; i <= 4; i++) {
    const yv = y0 + ((y1 - y0) * i) / 4;
    const t = svgEl('text', { x: m.l - 6, y: py(yv) + 4, 'text-anchor': 'end', fill: '#616e7c', 'font-size': 11 });
    t.textContent = yv.toPrecision(3);
    svg.append(t);
    const xv = x0 + ((x1 - x0) * i) / 4;
    const tx = svgEl('text', { x: m.l + ((xv - x0) / (x1 - x0)) * (w - m.l - m.r), y: h - m.b + 14, 'text-anchor': 'middle', fill: '#616e7c', 'font-size': 11 });
    tx.textContent = logX ? `1e${xv.toFixed(1)}` : String(Math.round(xv));
    svg.append(tx);
  }
  const label = svgEl('text', { x: (m.l + w - m.r) / 2, y: h - 4, 'text-anchor': 'middle', fill: '#3e4c59', 'font-size': 12 });
  label.textContent = xLabel;
  svg.append(label);
  for (const mk of marks) svg.append(svgEl('line', { x1: px(mk.x), x2: px(mk.x), y1: m.t, y2: h - m.b, stroke: mk.colour, 'stroke-dasharray': '4 3' }));
  for (const s of series) {
    const pts = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!logX || x > 0));
    if (pts.length === 0) continue;
    svg.append(svgEl('polyline', { points: pts.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(' '), fill: 'none', stroke: s.colour, 'stroke-width': 1.6 }));
    if (s.dots) for (const [x, y] of pts) svg.append(svgEl('circle', { cx: px(x), cy: py(y), r: 3, fill: s.colour }));
  }
}

// ---- training ----------------------------------------------------------------------------

interface RunView {
  run: number;
  next: number;
  finder: Extract<RunEvent, { kind: 'finder' }> | null;
  iterations: [number, number][];
  validation: [number, number][];
  epochs: { stage: string; epoch: number; trnLoss: number; valLoss: number | null; accuracy: number | null }[];
  stage: Extract<RunEvent, { kind: 'stage' }> | null;
  batch: Extract<RunEvent, { kind: 'batch' }> | null;
  phase: string | null;
  lines: string[];
}

const emptyRun = (run: number): RunView => ({ run, next: 0, finder: null, iterations: [], validation: [], epochs: [], stage: null, batch: null, phase: null, lines: [] });
let runView = emptyRun(0);
let lastState = '';

function absorb(e: RunEvent): void {
  switch (e.kind) {
    case 'finder':
      runView.finder = e;
      break;
    case 'restored':
      runView.iterations = e.iterations.map((p) => [p.iteration, p.loss]);
      runView.epochs = e.epochs.slice();
      break;
    case 'stage':
      runView.stage = e;
      runView.batch = null;
      runView.phase = null;
      break;
    case 'batch':
      runView.batch = e;
      runView.iterations.push([e.iteration, e.loss]);
      break;
    case 'epoch':
      runView.epochs.push(e);
      if (e.valLoss !== null) runView.validation.push([e.iteration, e.valLoss]);
      break;
    case 'phase':
      runView.phase = e.name;
      break;
    case 'say':
      runView.lines.push(e.line);
      break;
    case 'done':
      runView.lines.push(`done: TTA accuracy ${e.accuracy.toFixed(4)} in ${e.seconds.toFixed(0)} s`);
      break;
    case 'error':
      runView.lines.push(`error: ${e.message}`);
      break;
  }
}

function renderRun(status: RunStatus): void {
  const running = status.state === 'running' || status.state === 'stopping';
  $<HTMLButtonElement>('start').disabled = running;
  $<HTMLButtonElement>('stop').disabled = !running;
  // A second press ends the run at once (the server kills it; the last checkpoint stays).
  $('stop').textContent = status.state === 'stopping' ? 'Stop now' : 'Stop';
  $<HTMLButtonElement>('resume').disabled = running || !status.checkpoint;
  const words: Record<string, string> = {
    idle: 'no run yet',
    running: 'training…',
    stopping: 'stopping after the current step… (Stop now ends it at once; the last checkpoint stays)',
    done: 'finished: see Results',
    stopped: 'stopped; the last epoch is saved in the checkpoint: Resume continues from it',
    failed: `failed: ${status.error ?? ''}`,
  };
  $('run-state').textContent = words[status.state] ?? status.state;
  document.body.dataset.runState = status.state;
  document.body.dataset.run = String(status.run);
  const st = runView.stage;
  const b = runView.batch;
  let share = 0;
  let text = '';
  if (st) {
    const inStage = b ? (b.epoch + (b.batch + 1) / Math.max(1, b.batches)) / Math.max(1, st.epochs) : st.done / Math.max(1, st.epochs);
    share = (st.index + Math.min(1, inStage)) / st.count;
    text = `stage ${st.index + 1} of ${st.count}: ${st.name} (${st.size} px)` + (b ? ` · epoch ${b.epoch + 1} of ${st.epochs} · batch ${b.batch + 1} of ${b.batches}` : '');
  }
  if (runView.phase) text = runView.phase === 'tta' ? 'test-time augmentation on the validation set…' : 'writing the report and the results…';
  if (status.state === 'done') {
    share = 1;
    text = 'done';
  }
  $('progress').style.width = `${(100 * share).toFixed(1)}%`;
  $('progress-text').textContent = text;
  const f = runView.finder;
  drawChart($('finder-chart') as unknown as SVGSVGElement, f ? [{ points: f.lrs.map((lr, i) => [lr, f.losses[i]!] as [number, number]), colour: '#3e7cb1' }] : [], {
    logX: true,
    xLabel: 'learning rate (log)',
    marks: f ? [{ x: f.chosen, colour: '#2a7' }, ...(f.suggested !== null && f.suggested !== f.chosen ? [{ x: f.suggested, colour: '#e08a00' }] : [])] : [],
  });
  $('finder-legend').replaceChildren(...(f ? [el('span', {}, `chosen ${f.chosen.toExponential(2)} (${f.rule})`)] : []));
  const loss = $('loss-chart');
  drawChart(
    loss as unknown as SVGSVGElement,
    [
      { points: runView.iterations, colour: '#3e7cb1' },
      { points: runView.validation, colour: '#e08a00', dots: true },
    ],
    { xLabel: 'iteration' },
  );
  loss.dataset.points = String(runView.iterations.length);
  $('epochs-table')
    .querySelector('tbody')!
    .replaceChildren(
      ...runView.epochs.map((e) =>
        el(
          'tr',
          {},
          el('td', {}, e.stage),
          el('td', { class: 'num' }, String(e.epoch)),
          el('td', { class: 'num' }, fmt(e.trnLoss)),
          el('td', { class: 'num' }, fmt(e.valLoss)),
          el('td', { class: 'num' }, fmt(e.accuracy)),
        ),
      ),
    );
  const log = $('log');
  log.textContent = runView.lines.slice(-300).join('\n');
  log.scrollTop = log.scrollHeight;
}

let polling = false;

/** Fetches the run's new events and redraws; one poll at a time, so that no event is taken twice. */
async function poll(): Promise<void> {
  if (polling) return;
  polling = true;
  try {
    await pollOnce();
  } finally {
    polling = false;
  }
}

async function pollOnce(): Promise<void> {
  try {
    let status = await api<RunStatus>(`/api/run?since=${runView.next}`);
    if (status.run !== runView.run) {
      // A new run: its events from the start.
      runView = emptyRun(status.run);
      status = await api<RunStatus>('/api/run?since=0');
    }
    for (const e of status.events) absorb(e);
    runView.next = status.next;
    renderRun(status);
    if (status.state !== lastState) {
      const ended = lastState !== '' && status.state !== 'running' && status.state !== 'stopping';
      lastState = status.state;
      if (ended) {
        await refreshCounts();
        await loadResults();
      }
    }
  } catch (e) {
    showError(e);
  }
}

function settings(resume: boolean): Record<string, unknown> {
  const n = (id: string): number => Number($<HTMLInputElement>(id).value);
  return {
    arch: $<HTMLSelectElement>('arch').value,
    recipe: $<HTMLSelectElement>('recipe').value,
    size: n('size'),
    epochs: n('epochs'),
    freezeEpochs: n('freeze-epochs'),
    bs: n('bs'),
    lr: rateOf($<HTMLInputElement>('lr').value),
    device: $<HTMLSelectElement>('device').value,
    clean: $<HTMLInputElement>('use-clean').checked,
    resume,
  };
}

/** The learning-rate field: empty is the finder's suggestion. */
function rateOf(text: string): number | null {
  if (text.trim() === '') return null;
  const v = Number(text);
  if (!Number.isFinite(v)) throw new Error(`learning rate: '${text}' is not a number (leave it empty for the finder's suggestion)`);
  return v;
}

function startRun(resume: boolean): void {
  clearError();
  let body: Record<string, unknown>;
  try {
    body = settings(resume);
  } catch (e) {
    showError(e);
    return;
  }
  post('/api/run', body)
    .then(() => poll())
    .catch(showError);
}

// ---- results ------------------------------------------------------------------------------

let results: Results | null = null;

/** A validation photo's tile: the photo, and Grad-CAM of `camClass` beside it when asked. */
function resultTile(p: ResultPhoto, camClass: number | null): HTMLElement {
  const r = results!;
  const pics: HTMLElement[] = [];
  const caption = el('div', { class: 'cam-caption' });
  if (camClass !== null) {
    const cam = el('img', { alt: `Grad-CAM of ${p.file}`, class: 'cam' });
    pics.push(cam);
    api<{ image: string; caption: string }>(`/api/cam?file=${encodeURIComponent(p.file)}&class=${camClass}`)
      .then((c) => {
        cam.src = c.image;
        caption.textContent = c.caption;
      })
      .catch((e: Error) => (caption.textContent = `Grad-CAM: ${e.message}`));
  }
  const said = el('div', {}, `predicted ${r.classes[p.predicted]} (${p.probability.toFixed(3)})`);
  return photoTile(p.file, r.classes[p.actual]!, [said, caption], pics);
}

async function loadResults(): Promise<void> {
  try {
    results = await api<Results>('/api/results');
  } catch {
    results = null;
  }
  $('results-none').hidden = results !== null;
  $('results-body').hidden = results === null;
  if (results === null) return;
  const r = results;
  document.body.dataset.results = String(r.photos.length);
  $('results-summary').textContent = `Validation accuracy with TTA: ${(100 * r.accuracy).toFixed(1)}% on ${r.photos.length} photos.`;
  const most = Math.max(1, ...r.confusion.flat());
  const head = el('tr', {}, el('th', {}, 'actual \\ predicted'), ...r.classes.map((c) => el('th', { class: 'pred' }, c)));
  const rows = r.confusion.map((row, a) =>
    el(
      'tr',
      {},
      el('th', {}, r.classes[a]!),
      ...row.map((n, p) => {
        const shade = n === 0 ? '#fff' : a === p ? `rgba(42,170,119,${0.15 + (0.75 * n) / most})` : `rgba(176,0,32,${0.15 + (0.75 * n) / most})`;
        const b = el(
          'button',
          { type: 'button', 'data-actual': String(a), 'data-predicted': String(p), style: `background:${shade}`, title: `${r.classes[a]} predicted as ${r.classes[p]}` },
          String(n),
        );
        b.addEventListener('click', () => showCell(a, p));
        return el('td', {}, b);
      }),
    ),
  );
  $('confusion').replaceChildren(el('thead', {}, head), el('tbody', {}, ...rows));
  $('per-class')
    .querySelector('tbody')!
    .replaceChildren(
      ...r.perClass.map((c) =>
        el('tr', {}, el('td', {}, c.label), el('td', { class: 'num' }, String(c.n)), el('td', { class: 'num' }, c.accuracy === null ? '–' : `${(100 * c.accuracy).toFixed(0)}%`)),
      ),
    );
  const group = (id: string, photos: ResultPhoto[], cam: (p: ResultPhoto) => number): void => {
    $(id).replaceChildren(...(photos.length === 0 ? [el('p', { class: 'note' }, 'No photos in this group.')] : photos.map((p) => resultTile(p, cam(p)))));
  };
  group('group-incorrect', r.groups.incorrect, (p) => p.predicted);
  group('group-uncertain', r.groups.uncertain, (p) => p.predicted);
  group('group-confident', r.groups.confident, (p) => p.predicted);
}

function showCell(a: number, p: number): void {
  const r = results!;
  const photos = r.photos.filter((x) => x.actual === a && x.predicted === p);
  $('cell-box').hidden = false;
  $('cell-title').textContent = `${r.classes[a]} predicted as ${r.classes[p]}: ${photos.length} photo${photos.length === 1 ? '' : 's'}`;
  $('cell-photos').replaceChildren(...photos.map((x) => resultTile(x, x.predicted)));
  $('cell-box').scrollIntoView({ block: 'nearest' });
}

// ---- cleaning ---------------------------------------------------------------------------------

function renderDecisions(): void {
  const list = [...decisions.values()];
  $('clean-summary').textContent =
    list.length === 0
      ? 'No decisions yet. Keep, relabel or exclude photos on the Data and Results tabs.'
      : `${list.filter((d) => d.action === 'relabel').length} relabelled, ${list.filter((d) => d.action === 'exclude').length} excluded, ${list.filter((d) => d.action === 'keep').length} kept. Saved in cleaning.csv in the output folder.`;
  $('decisions').replaceChildren(
    ...list.map((d) =>
      el(
        'li',
        { class: 'photo', 'data-file': d.file, 'data-decision': d.action },
        el('img', { src: imageUrl(d.file), alt: d.file, loading: 'lazy' }),
        el('div', { class: 'name' }, short(d.file)),
        el('div', { class: 'label' }, d.action === 'relabel' ? `relabelled → ${d.label}` : d.action === 'exclude' ? 'excluded' : 'kept'),
      ),
    ),
  );
  $<HTMLButtonElement>('undo').disabled = list.length === 0 && undoCount === 0;
}

let undoCount = 0;

async function loadDecisions(): Promise<void> {
  const r = await api<{ current: Record<string, Decision>; decisions: Decision[] }>('/api/cleaning');
  decisions = new Map(Object.entries(r.current));
  undoCount = r.decisions.length;
  renderDecisions();
}

// ---- checking every photo --------------------------------------------------------------------

/** Shows a check's progress, then what it found, with the button that excludes it. */
function renderVerify(v: VerifyStatus): void {
  const n = v.unreadable.length;
  $('verify-state').textContent =
    v.state === 'idle' ? '' : v.state === 'running' ? `checked ${v.done} of ${v.total}…` : n === 0 ? `all ${v.total} photos read` : `${n} of ${v.total} photos cannot be read:`;
  document.body.dataset.verify = v.state;
  $<HTMLButtonElement>('verify').disabled = v.state === 'running';
  $('unreadable').replaceChildren(...v.unreadable.map((u) => el('li', { 'data-file': u.file }, `${u.file}: ${u.reason}`)));
  const open = v.unreadable.filter((u) => decisions.get(u.file)?.action !== 'exclude').length;
  $('exclude-unreadable').hidden = v.state !== 'done' || open === 0;
  $('exclude-unreadable').textContent = `Exclude ${open === 1 ? 'this photo' : `these ${open} photos`}`;
}

async function checkPhotos(): Promise<void> {
  clearError();
  await followCheck(await post<VerifyStatus>('/api/verify', {}));
}

/** Shows a check until it is done. */
async function followCheck(v: VerifyStatus): Promise<void> {
  while (v.state === 'running') {
    renderVerify(v);
    await new Promise((r) => setTimeout(r, 300));
    v = await api<VerifyStatus>('/api/verify');
  }
  renderVerify(v);
}

// ---- try and export -------------------------------------------------------------------------

async function tryPhoto(file: File): Promise<void> {
  clearError();
  const res = await fetch('/api/predict', { method: 'POST', body: file, headers: { 'content-type': 'application/octet-stream' }, credentials: 'same-origin' });
  const body = (await res.json()) as { error?: string; top: { label: string; probability: number }[]; cam: { image: string; caption: string } | null };
  if (!res.ok) throw new Error(body.error ?? res.statusText);
  $('try-result').hidden = false;
  const photo = el('img', { alt: file.name });
  photo.src = URL.createObjectURL(file);
  const pics: HTMLElement[] = [photo];
  if (body.cam) {
    const cam = el('img', { alt: 'Grad-CAM', id: 'try-cam' });
    cam.src = body.cam.image;
    pics.push(cam);
  }
  $('try-pics').replaceChildren(...pics);
  $('try-cam-caption').textContent = body.cam?.caption ?? '';
  $('try-ranked').replaceChildren(
    ...body.top.flatMap((t) => {
      const track = el('div', { class: 'track' }, el('span', { style: `width:${(100 * t.probability).toFixed(1)}%` }));
      return [el('div', { class: 'class', 'data-label': t.label, 'data-probability': String(t.probability) }, t.label), track, el('div', { class: 'num' }, `${(100 * t.probability).toFixed(1)}%`)];
    }),
  );
  document.body.dataset.tried = String(Number(document.body.dataset.tried ?? 0) + 1);
}

async function exportModel(kind: 'onnx' | 'web'): Promise<void> {
  clearError();
  const r = await post<{ dir: string; files: string[] }>('/api/export', { kind });
  $('export-result').replaceChildren(
    el('li', {}, kind === 'onnx' ? `ONNX written to ${r.dir}:` : `Web page written to ${r.dir} (serve it with any static file server):`),
    ...r.files.map((f) => el('li', { class: 'file' }, f)),
  );
  document.body.dataset.exported = kind;
}

// ---- start ------------------------------------------------------------------------------------

function switchTab(name: string): void {
  for (const b of document.querySelectorAll<HTMLButtonElement>('nav button.tab')) b.classList.toggle('active', b.dataset.tab === name);
  for (const s of document.querySelectorAll<HTMLElement>('main > section')) s.hidden = s.id !== `tab-${name}`;
  if (name === 'results') void loadResults();
}

async function start(): Promise<void> {
  for (const b of document.querySelectorAll<HTMLButtonElement>('nav button.tab')) b.addEventListener('click', () => switchTab(b.dataset.tab!));
  $('start').addEventListener('click', () => startRun(false));
  $('resume').addEventListener('click', () => startRun(true));
  $('stop').addEventListener('click', () => {
    post('/api/run/stop', {})
      .then(() => poll())
      .catch(showError);
  });
  $('more-photos').addEventListener('click', () => void showClass(shownClass, true).catch(showError));
  $('verify').addEventListener('click', () => void checkPhotos().catch(showError));
  $('exclude-unreadable').addEventListener('click', () => {
    post<{ current: Record<string, Decision>; count: number }>('/api/verify/exclude', {})
      .then(async (r) => {
        decisions = new Map(Object.entries(r.current));
        undoCount = r.count;
        repaintTiles();
        renderVerify(await api<VerifyStatus>('/api/verify'));
      })
      .catch(showError);
  });
  $('undo').addEventListener('click', () => {
    post<{ current: Record<string, Decision>; count: number }>('/api/cleaning/undo', {})
      .then((r) => {
        decisions = new Map(Object.entries(r.current));
        undoCount = r.count;
        repaintTiles();
      })
      .catch(showError);
  });
  $('export-labels').addEventListener('click', () => {
    post<{ file: string; use: string }>('/api/cleaning/export', {})
      .then((r) => {
        $('export-labels-result').textContent = `Written: ${r.file}. Train on it with: ${r.use}`;
      })
      .catch(showError);
  });
  $('train-again').addEventListener('click', () => {
    $<HTMLInputElement>('use-clean').checked = true;
    switchTab('train');
    startRun(false);
  });
  $<HTMLInputElement>('try-file').addEventListener('change', () => {
    const f = $<HTMLInputElement>('try-file').files?.[0];
    if (f) tryPhoto(f).catch(showError);
  });
  const drop = $('drop');
  drop.addEventListener('dragover', (e) => {
    e.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    const f = e.dataTransfer?.files[0];
    if (f) tryPhoto(f).catch(showError);
  });
  $('export-onnx').addEventListener('click', () => void exportModel('onnx').catch(showError));
  $('export-web').addEventListener('click', () => void exportModel('web').catch(showError));
  await loadDecisions();
  // A check made before a reload is shown again; one still going on is followed.
  void followCheck(await api<VerifyStatus>('/api/verify')).catch(showError);
  await loadData();
  // A reload shows the last run's settings, so that "train again" repeats it.
  const last = await api<{ settings: Record<string, unknown> | null }>('/api/run?since=' + Number.MAX_SAFE_INTEGER);
  if (last.settings) showSettings(last.settings);
  await poll();
  await loadResults();
  setInterval(() => void poll(), 700);
  document.body.dataset.ready = 'true';
}

start().catch(showError);
