"""The page at GET /: upload or drop a scene photo, pick categories, see the look (no external URL).
The scene is shown on its own as soon as it is picked (the attention maps draw over a 160 px copy),
and a legend says what the maps' red means: one HEAT constant draws both, so they cannot disagree."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>Complete the look</title>
<style>
 body{font-family:system-ui,sans-serif;margin:0 auto;padding:1rem;max-width:70rem;color:#222}
 h1{font-size:1.4rem} fieldset{border:1px solid #ccc;margin:.5rem 0}
 #drop{border:2px dashed #888;padding:1rem;text-align:center;display:block;cursor:pointer}
 #drop.over,#drop:focus-within{border-color:#06c;background:#eef5ff}
 .row{display:flex;flex-wrap:wrap;gap:.5rem;align-items:flex-start}
 .cat{margin:1rem 0;border-top:1px solid #ddd;padding-top:.5rem}
 figure{margin:0;width:7rem;text-align:center;font-size:.8rem;overflow-wrap:anywhere}
 figure img{width:7rem;height:7rem;object-fit:cover;background:#eee}
 canvas{width:10rem;height:10rem;border:1px solid #ccc}
 figure.attention{width:10rem} #scene-view{width:auto;margin:.5rem 0;text-align:left}
 #scene{width:20rem;max-width:100%;height:auto;max-height:20rem;object-fit:contain;border:1px solid #ccc}
 #legend{margin:.5rem 0;font-size:.9rem} #legend .bar{display:inline-block;width:10rem;height:.9rem;
  vertical-align:middle;border:1px solid #999;margin:0 .4rem}
 #status{min-height:1.5em} .err{color:#b00}
 button{font-size:1rem;padding:.4rem 1rem}
 @media (max-width:30rem){figure,figure img{width:5.5rem}figure img{height:5.5rem}canvas{width:8rem;height:8rem}}
</style></head><body>
<h1>Complete the look</h1>
<form id="form">
 <label id="drop" for="file">Drop a scene photo here or choose one (JPEG or PNG)
  <input id="file" name="image" type="file" accept="image/jpeg,image/png"></label>
 <fieldset><legend>Categories</legend><div id="cats" class="row"></div></fieldset>
 <label>Products per category <input id="k" type="number" min="1" value="5" style="width:4rem"></label>
 <label>API key (if the server needs one) <input id="key" type="password" autocomplete="off"></label>
 <button id="go" type="submit">Complete the look</button>
</form>
<p id="status" role="status" aria-live="polite"></p>
<figure id="scene-view" hidden><img id="scene" alt="the uploaded scene"><figcaption id="scene-name"></figcaption></figure>
<div id="legend" hidden><strong>Attention map</strong>: where the model looked in the scene for the category
 named under each map. <span>low</span><span class="bar" role="img" aria-label="from no red (low attention) to
 strong red (high attention)"></span><span>high</span> attention; each map is scaled to its own highest cell.</div>
<div id="out"></div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let scene = null;
const HEAT = 0.6;  // the red's opacity at a map's highest cell, in the maps and in the legend
document.querySelector("#legend .bar").style.background =
  "linear-gradient(to right, rgba(255,0,0,0), rgba(255,0,0," + HEAT + ")), #ccc";
function say(text, bad) { $("status").textContent = text; $("status").className = bad ? "err" : ""; }
async function loadCategories() {
  const r = await fetch("/v1/categories");
  const j = await r.json();
  if (!r.ok) { say(j.error || "not ready", true); return; }
  $("k").max = j.max_k;
  $("cats").replaceChildren(...j.categories.map((c) => {
    const l = document.createElement("label"); const b = document.createElement("input");
    b.type = "checkbox"; b.value = c; b.checked = true; b.name = "category";
    l.append(b, " " + c); return l; }));
}
function pick(file) {
  if (!file) return;
  scene = file; say("scene: " + file.name);
  const img = $("scene"); if (img.src) URL.revokeObjectURL(img.src);
  img.src = URL.createObjectURL(file); $("scene-name").textContent = "scene: " + file.name; $("scene-view").hidden = false;
}
$("file").addEventListener("change", (e) => pick(e.target.files[0]));
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); pick(e.dataTransfer.files[0]); });
function attentionMap(cat, grid, img) {
  const c = document.createElement("canvas"); const n = grid.length; c.width = 160; c.height = 160;
  c.setAttribute("role", "img"); c.setAttribute("aria-label", "attention over the scene for " + cat);
  const g = c.getContext("2d"); g.drawImage(img, 0, 0, 160, 160);
  const max = Math.max(...grid.flat()) || 1;
  for (let y = 0; y < n; y++) for (let x = 0; x < n; x++) {
    g.fillStyle = "rgba(255,0,0," + (HEAT * grid[y][x] / max).toFixed(3) + ")";
    g.fillRect(x * 160 / n, y * 160 / n, 160 / n, 160 / n); }
  const f = document.createElement("figure"); f.className = "attention";
  const cap = document.createElement("figcaption"); cap.textContent = "attention for " + cat;
  f.append(c, cap); return f;
}
$("form").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!scene) { say("choose a scene photo first", true); return; }
  const cats = [...document.querySelectorAll("#cats input:checked")].map((b) => b.value);
  if (!cats.length) { say("pick at least one category", true); return; }
  const body = new FormData(); body.append("image", scene);
  const headers = $("key").value ? { "X-API-Key": $("key").value } : {};
  say("working...");
  const q = "/v1/look?attention=1&k=" + encodeURIComponent($("k").value) + "&categories=" + encodeURIComponent(cats.join(","));
  const r = await fetch(q, { method: "POST", body, headers });
  const j = await r.json();
  if (!r.ok) { say(j.error, true); return; }
  const sceneImg = new Image(); sceneImg.src = URL.createObjectURL(scene); await sceneImg.decode();
  $("out").replaceChildren(...Object.entries(j.look).map(([cat, items]) => {
    const s = document.createElement("section"); s.className = "cat"; s.dataset.category = cat;
    const h = document.createElement("h2"); h.textContent = cat + (items.length ? "" : " (no product in the catalog)");
    const row = document.createElement("div"); row.className = "row";
    row.append(attentionMap(cat, j.attention[cat], sceneImg));
    for (const it of items) {
      const f = document.createElement("figure"); const im = document.createElement("img");
      im.src = "/v1/products/" + encodeURIComponent(it.product_id) + "/image";
      im.alt = it.product_id; im.className = "product";
      const cap = document.createElement("figcaption");
      cap.textContent = it.product_id + " d*=" + it.d_star.toFixed(4);
      f.append(im, cap); row.append(f); }
    s.append(h, row); return s; }));
  $("legend").hidden = false;
  say("look for generation " + j.index_generation + " in " + j.timings_ms.total + " ms");
  document.body.dataset.done = "1";
});
loadCategories();
</script></body></html>
"""
