"""The page at GET /docs: every operation of /openapi.json with a form to try it (parameters, scene
upload, API key) and its JSON answer. Self-contained: no CDN, no external URL, so it works offline
and behind a firewall; all text from the document goes in through textContent (category names may
hold HTML)."""

DOCS = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>Complete the look: API</title>
<style>
 body{font-family:system-ui,sans-serif;margin:0 auto;padding:1rem;max-width:70rem;color:#222}
 h1{font-size:1.4rem} h2{font-size:1.05rem;margin:0}
 section.op{border:1px solid #ccc;border-radius:4px;margin:.75rem 0;padding:.5rem .75rem}
 .method{display:inline-block;min-width:3.5rem;font-weight:bold;color:#fff;background:#06c;padding:0 .3rem;
  border-radius:3px;text-align:center;text-transform:uppercase} .method.post{background:#080}
 code{font-size:.95rem} label{display:block;margin:.25rem 0} .desc{color:#555;font-size:.85rem}
 pre{background:#f4f4f4;padding:.5rem;overflow:auto;max-height:24rem;white-space:pre-wrap}
 .err{color:#b00} button{font-size:1rem;padding:.3rem .9rem} img.answer{max-width:12rem}
</style></head><body>
<h1 id="title">API</h1>
<p id="info" class="desc"></p>
<p>The document itself: <a href="/openapi.json">/openapi.json</a>. The look page: <a href="/">/</a>.</p>
<label>API key (for the keyed routes, if the server needs one) <input id="key" type="password" autocomplete="off"></label>
<p id="status" role="status" aria-live="polite"></p>
<div id="ops"></div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const el = (tag, props, ...kids) => { const e = Object.assign(document.createElement(tag), props || {});
  e.append(...kids); return e; };
let spec = null;
function deref(s) { while (s && s.$ref) s = s.$ref.split("/").slice(1).reduce((o, k) => o[k], spec); return s || {}; }
function field(p) {
  const s = deref(p.schema); const items = s.type === "array" ? deref(s.items) : null;
  const choices = (items || s).enum; let input;
  if (choices) {
    input = el("select", { multiple: !!items });
    if (!items && !p.required) input.append(el("option", { value: "" }, "(none)"));
    for (const c of choices) input.append(el("option", { value: c }, c));
  } else if (s.type === "boolean") input = el("input", { type: "checkbox", checked: !!s.default });
  else if (s.type === "integer") {
    input = el("input", { type: "number", step: 1 });
    if (s.minimum !== undefined) input.min = s.minimum; if (s.maximum !== undefined) input.max = s.maximum;
    if (s.default !== undefined) input.placeholder = String(s.default);
  } else input = el("input", { type: "text" });
  input.dataset.param = p.name; input.dataset.where = p.in;
  const note = [p.in, p.required ? "required" : "", p.description || "", items ? "Ctrl/Cmd-click picks several" : "",
    s.minimum !== undefined ? "range " + s.minimum + ".." + s.maximum : ""].filter(Boolean).join("; ");
  return el("label", {}, el("code", {}, p.name), " ", input, " ", el("span", { className: "desc" }, note));
}
function value(input) {
  if (input.type === "checkbox") return input.checked ? "true" : "";
  if (input.multiple) return [...input.selectedOptions].map((o) => o.value).join(",");
  return input.value;
}
async function send(path, method, form, out) {
  let url = path; const query = new URLSearchParams();
  for (const input of form.querySelectorAll("[data-param]")) {
    const v = value(input); if (!v) continue;
    if (input.dataset.where === "path") url = url.replace("{" + input.dataset.param + "}", encodeURIComponent(v));
    else query.append(input.dataset.param, v);
  }
  if (/[{}]/.test(url)) { out.replaceChildren(el("pre", { className: "err" }, "fill in the path parameter")); return; }
  if ([...query].length) url += "?" + query;
  const headers = $("key").value ? { "X-API-Key": $("key").value } : {}; const init = { method, headers };
  const file = form.querySelector("input[type=file]");
  if (file) {
    if (!file.files[0]) { out.replaceChildren(el("pre", { className: "err" }, "choose a scene photo first")); return; }
    init.body = new FormData(); init.body.append("image", file.files[0]);
  }
  out.replaceChildren(el("pre", {}, "working..."));
  try {
    const r = await fetch(url, init); const kind = r.headers.get("content-type") || "";
    const head = el("pre", { className: r.ok ? "status" : "status err" }, method.toUpperCase() + " " + url + " -> "
      + r.status + " " + r.statusText + " (" + kind + ")");
    let body;
    if (kind.startsWith("image/")) body = el("img", { className: "answer", alt: "answer image",
      src: URL.createObjectURL(await r.blob()) });
    else if (kind.startsWith("application/json")) body = el("pre", { className: "body" },
      JSON.stringify(await r.json(), null, 2));
    else body = el("pre", { className: "body" }, (await r.text()).slice(0, 4000));
    out.replaceChildren(head, body);
  } catch (err) { out.replaceChildren(el("pre", { className: "err" }, String(err))); }
  out.dataset.done = "1";
}
function operation(path, method, op) {
  const form = el("form", {}); const out = el("div", { className: "answer" });
  for (const p of op.parameters || []) form.append(field(p));
  if (op.requestBody) form.append(el("label", {}, el("code", {}, "image"), " ",
    el("input", { type: "file", accept: "image/jpeg,image/png" }), " ",
    el("span", { className: "desc" }, "body; " + Object.keys(op.requestBody.content).join(", "))));
  form.append(el("button", { type: "submit" }, "Send"));
  form.addEventListener("submit", (e) => { e.preventDefault(); send(path, method, form, out); });
  const codes = Object.entries(op.responses).map(([code, r]) => el("li", {}, el("code", {}, code), " " + r.description));
  const s = el("section", { className: "op" },
    el("h2", {}, el("span", { className: "method " + method }, method), " ", el("code", {}, path)),
    el("p", {}, op.summary || "", op.security ? " (needs the API key)" : ""),
    el("details", {}, el("summary", {}, "Responses"), el("ul", {}, ...codes)), form, out);
  s.dataset.path = path; s.dataset.method = method; return s;
}
async function load() {
  try {
    const r = await fetch("/openapi.json"); spec = await r.json();
    if (!r.ok) throw new Error(spec.error || r.statusText);
  } catch (err) { $("status").textContent = "cannot read /openapi.json: " + err; $("status").className = "err"; return; }
  $("title").textContent = spec.info.title + " API " + spec.info.version + " (OpenAPI " + spec.openapi + ")";
  $("info").textContent = spec.info.description || "";
  const ops = [];
  for (const [path, item] of Object.entries(spec.paths))
    for (const [method, op] of Object.entries(item)) ops.push(operation(path, method, op));
  $("ops").replaceChildren(...ops);
  document.body.dataset.ready = "1";
}
load();
</script></body></html>
"""
