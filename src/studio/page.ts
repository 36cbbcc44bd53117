// The studio's page: static HTML and CSS, and the compiled script (app/studio.ts).
// Nothing in the HTML comes from the data: the script fills it in with textContent
// and attributes only, so labels and file names are shown, never interpreted.
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/** The compiled page script, without its source map comment. */
export async function studioAppJs(): Promise<string> {
  return (await readFile(join(here, 'app', 'studio.js'), 'utf8')).replace(/\/\/# sourceMappingURL=.*$/m, '');
}

/** The page's HTML. */
export function studioHtml(): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fastvision studio</title>
<style>
  [hidden] { display: none !important; }
  * { box-sizing: border-box; }
  body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #222; background: #fafafa; }
  header { display: flex; align-items: baseline; gap: 16px; padding: 12px 20px; background: #1f2933; color: #fff; flex-wrap: wrap; }
  header h1 { font-size: 18px; margin: 0; } header .where { color: #cbd2d9; font-size: 12px; word-break: break-all; }
  nav { display: flex; gap: 4px; padding: 8px 20px 0; background: #e4e7eb; }
  nav button { border: 0; border-radius: 6px 6px 0 0; padding: 8px 16px; background: #cbd2d9; cursor: pointer; font: inherit; }
  nav button.active { background: #fafafa; font-weight: 600; }
  main { padding: 16px 20px 40px; max-width: 1200px; }
  h2 { font-size: 16px; margin: 22px 0 8px; } h2:first-child { margin-top: 4px; }
  .note { color: #616e7c; font-size: 13px; }
  .error { color: #b00020; white-space: pre-wrap; }
  table { border-collapse: collapse; } td, th { padding: 3px 10px; border-bottom: 1px solid #e4e7eb; text-align: left; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
  button.action, .btn { padding: 6px 12px; border: 1px solid #9aa5b1; border-radius: 6px; background: #fff; cursor: pointer; font: inherit; }
  button.primary { background: #2a7; border-color: #2a7; color: #fff; } button:disabled { opacity: .5; cursor: default; }
  .row { display: flex; gap: 24px; flex-wrap: wrap; align-items: flex-start; }
  .bar { display: inline-block; height: 10px; background: #3e7cb1; border-radius: 2px; vertical-align: middle; }
  .classes { display: flex; gap: 6px; flex-wrap: wrap; margin: 8px 0; }
  .classes button { padding: 4px 10px; border-radius: 14px; border: 1px solid #9aa5b1; background: #fff; cursor: pointer; font: inherit; }
  .classes button.active { background: #1f2933; color: #fff; }
  .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 10px; }
  .photo { background: #fff; border: 2px solid #e4e7eb; border-radius: 8px; padding: 6px; font-size: 12px; }
  .photo[data-decision="exclude"] { border-color: #b00020; opacity: .6; } .photo[data-decision="relabel"] { border-color: #e08a00; } .photo[data-decision="keep"] { border-color: #2a7; }
  .photo .pics { display: flex; gap: 4px; } .photo img { width: 100%; aspect-ratio: 1; object-fit: cover; border-radius: 4px; background: #eee; min-width: 0; }
  .photo .name { word-break: break-all; color: #616e7c; margin: 4px 0 2px; }
  .photo .label { font-weight: 600; } .photo .badge { display: inline-block; margin-left: 4px; padding: 0 6px; border-radius: 8px; background: #f5e1b8; font-weight: 400; }
  .photo .label { overflow-wrap: anywhere; }
  .photo .actions { display: grid; grid-template-columns: 1fr 1fr; gap: 4px; margin-top: 4px; } .photo .actions button, .photo .actions select { font: inherit; font-size: 12px; padding: 2px 4px; min-width: 0; }
  .photo .actions select { grid-column: 1 / span 2; }
  .grid.wide { grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); }
  .photo img.cam:not([src]) { visibility: hidden; }
  .photo .cam-caption { color: #616e7c; font-size: 11px; }
  form.settings { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 10px 16px; max-width: 900px; }
  form.settings label { display: flex; flex-direction: column; gap: 2px; font-size: 12px; color: #616e7c; }
  form.settings input, form.settings select { font: inherit; padding: 4px 6px; color: #222; }
  .buttons { display: flex; gap: 8px; margin: 12px 0; align-items: center; flex-wrap: wrap; }
  .progress { width: 100%; max-width: 900px; height: 14px; background: #e4e7eb; border-radius: 7px; overflow: hidden; }
  .progress span { display: block; height: 100%; background: #2a7; width: 0; transition: width .3s; }
  .chart { background: #fff; border: 1px solid #e4e7eb; border-radius: 8px; padding: 8px; }
  .chart svg { display: block; } .legend { font-size: 12px; color: #3e4c59; display: flex; gap: 14px; flex-wrap: wrap; margin-top: 4px; }
  .legend i { display: inline-block; width: 14px; height: 3px; vertical-align: middle; margin-right: 4px; }
  pre.log { background: #1f2933; color: #e4e7eb; padding: 8px; border-radius: 6px; max-height: 220px; overflow: auto; font-size: 12px; max-width: 900px; white-space: pre-wrap; }
  table.confusion td button { min-width: 38px; border: 0; padding: 6px; cursor: pointer; font: inherit; border-radius: 3px; }
  table.confusion th.pred { writing-mode: vertical-rl; transform: rotate(180deg); text-align: left; font-weight: 400; }
  #drop { border: 2px dashed #9aa5b1; border-radius: 10px; padding: 24px; text-align: center; color: #616e7c; max-width: 600px; }
  #drop.over { border-color: #2a7; background: #efe; }
  .ranked { display: grid; grid-template-columns: 12em 200px 4em; gap: 4px 8px; align-items: center; }
  .ranked .track { background: #eee; height: 12px; border-radius: 4px; overflow: hidden; } .ranked .track span { display: block; height: 100%; background: #2a7; }
  #try-pics img { width: 224px; height: 224px; object-fit: cover; border-radius: 8px; }
  ul.decisions { list-style: none; padding: 0; }
</style>
</head>
<body>
<header><h1>fastvision studio</h1><span class="where" id="where"></span></header>
<nav>
  <button type="button" class="tab active" data-tab="data">1 · Data</button>
  <button type="button" class="tab" data-tab="train">2 · Train</button>
  <button type="button" class="tab" data-tab="results">3 · Results</button>
  <button type="button" class="tab" data-tab="clean">4 · Cleaning</button>
  <button type="button" class="tab" data-tab="try">5 · Try &amp; export</button>
</nav>
<main>
<p class="error" id="error" hidden></p>
<section id="tab-data">
  <h2>Classes</h2>
  <p class="note" id="data-summary"></p>
  <div class="row">
    <table id="counts"><thead><tr><th>class</th><th class="num">train</th><th class="num">valid</th><th></th></tr></thead><tbody></tbody></table>
    <div><table id="sizes"><thead><tr><th>shorter side (px)</th><th class="num">photos</th><th></th></tr></thead><tbody></tbody></table></div>
  </div>
  <div id="skipped-box" hidden><h2>Skipped</h2><p class="note">These files are not used for training:</p><ul id="skipped"></ul></div>
  <h2>Check every photo</h2>
  <p class="note">The counts above read each photo's header only. This decodes every photo as training will, to find files cut short or that only look like images (fastai's verify_images).</p>
  <div class="buttons"><button type="button" class="action" id="verify">Check every photo</button><span class="note" id="verify-state"></span></div>
  <ul id="unreadable"></ul>
  <div class="buttons"><button type="button" class="action" id="exclude-unreadable" hidden>Exclude these photos</button></div>
  <h2>Photos</h2>
  <p class="note">Pick a class to see its photos. Under each photo: keep it, give it another label, or exclude it. Decisions go to the Cleaning tab and are used by the next run.</p>
  <div class="classes" id="class-picker"></div>
  <div class="grid" id="class-photos"></div>
  <div class="buttons"><button type="button" class="action" id="more-photos" hidden>More photos</button></div>
</section>
<section id="tab-train" hidden>
  <h2>Settings</h2>
  <form class="settings" id="settings">
    <label>architecture<select id="arch"></select></label>
    <label>recipe<select id="recipe"></select></label>
    <label>image size (px)<input id="size" type="number" min="8" max="2048" step="1"></label>
    <label>head epochs (fine-tune)<input id="freeze-epochs" type="number" min="0" max="1000" step="1"></label>
    <label>epochs, unfrozen<input id="epochs" type="number" min="1" max="1000" step="1"></label>
    <label>batch size<input id="bs" type="number" min="1" max="4096" step="1"></label>
    <label>learning rate<input id="lr" type="text" inputmode="decimal" placeholder="the finder's suggestion"></label>
    <label>device<select id="device"><option>auto</option><option>cpu</option><option>cuda</option></select></label>
    <label style="flex-direction: row; align-items: center; gap: 6px; margin-top: 18px"><input id="use-clean" type="checkbox" checked> use the cleaned labels</label>
  </form>
  <div class="buttons">
    <button type="button" class="action primary" id="start">Start training</button>
    <button type="button" class="action" id="stop" disabled>Stop</button>
    <button type="button" class="action" id="resume" disabled>Resume from checkpoint</button>
    <span id="run-state" class="note">no run yet</span>
  </div>
  <div class="progress"><span id="progress"></span></div>
  <p class="note" id="progress-text"></p>
  <div class="row">
    <div class="chart"><div><b>Learning-rate finder</b></div><svg id="finder-chart" width="420" height="240"></svg><div class="legend" id="finder-legend"></div></div>
    <div class="chart"><div><b>Loss</b></div><svg id="loss-chart" width="560" height="240" data-points="0"></svg><div class="legend"><span><i style="background:#3e7cb1"></i>training (smoothed, per iteration)</span><span><i style="background:#e08a00"></i>validation (per epoch)</span></div></div>
  </div>
  <h2>Epochs</h2>
  <table id="epochs-table"><thead><tr><th>stage</th><th class="num">epoch</th><th class="num">train loss</th><th class="num">valid loss</th><th class="num">accuracy</th></tr></thead><tbody></tbody></table>
  <h2>Log</h2>
  <pre class="log" id="log"></pre>
</section>
<section id="tab-results" hidden>
  <p class="note" id="results-none">No results yet: train a model on the Train tab.</p>
  <div id="results-body" hidden>
    <p id="results-summary"></p>
    <div class="row">
      <div><h2>Confusion matrix</h2><p class="note">Rows: actual class; columns: predicted. Click a cell to see its photos.</p><table class="confusion" id="confusion"></table></div>
      <div><h2>Accuracy per class</h2><table id="per-class"><thead><tr><th>class</th><th class="num">photos</th><th class="num">accuracy</th></tr></thead><tbody></tbody></table></div>
    </div>
    <div id="cell-box" hidden><h2 id="cell-title"></h2><div class="grid wide" id="cell-photos"></div></div>
    <h2>Most incorrect</h2><p class="note">Wrong, and most sure of it. Beside each photo: where the model looked for the class it predicted (Grad-CAM).</p><div class="grid wide" id="group-incorrect"></div>
    <h2>Most uncertain</h2><p class="note">The two most probable classes are closest.</p><div class="grid wide" id="group-uncertain"></div>
    <h2>Most confident correct</h2><div class="grid wide" id="group-confident"></div>
  </div>
</section>
<section id="tab-clean" hidden>
  <h2>Decisions</h2>
  <p class="note" id="clean-summary"></p>
  <div class="buttons">
    <button type="button" class="action" id="undo">Undo the last decision</button>
    <button type="button" class="action" id="export-labels">Export a labels CSV</button>
    <button type="button" class="action primary" id="train-again">Train again with these labels</button>
  </div>
  <p class="note" id="export-labels-result"></p>
  <ul class="decisions grid" id="decisions"></ul>
</section>
<section id="tab-try" hidden>
  <h2>Try a photo</h2>
  <div id="drop">Drop a photo here, or <label class="btn">choose one<input id="try-file" type="file" accept="image/*" hidden></label></div>
  <div class="row" id="try-result" hidden>
    <div id="try-pics"></div>
    <div><div class="ranked" id="try-ranked"></div><p class="note" id="try-cam-caption"></p></div>
  </div>
  <h2>Export the model</h2>
  <div class="buttons">
    <button type="button" class="action" id="export-onnx">Export ONNX</button>
    <button type="button" class="action" id="export-web">Export the web page</button>
  </div>
  <ul id="export-result"></ul>
</section>
</main>
<script type="module" src="studio.js"></script>
</body>
</html>
`;
}
