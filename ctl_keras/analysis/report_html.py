"""The HTML of `analysis report`, from plain data (report_page.py computes it).

One self-contained page: inline CSS, no script, no external URL; images are relative paths. Every
image has an alt text, every scene an anchor listed in the table of contents, headings nest
h1 > h2 (scene) > h3 (category), and the ground truth is marked by text, not only by colour.
Machine-readable data-* attributes let tests (and scripts) check the page without scraping text.
"""

from __future__ import annotations

import re
from html import escape

_CSS = """
body{font-family:system-ui,sans-serif;line-height:1.4;margin:0 auto;max-width:1180px;padding:0 1rem 3rem;color:#111}
a:focus,img:focus{outline:3px solid #1a5fb4;outline-offset:2px}
.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:1rem;background:#fff;padding:.3rem}
nav ol{columns:2;column-gap:2rem}table{border-collapse:collapse;margin:.5rem 0}
th,td{border:1px solid #bbb;padding:.2rem .5rem;text-align:right}th:first-child,td:first-child{text-align:left}
.scene{border-top:2px solid #444;margin-top:2rem}.head{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}
.category{margin:1rem 0;padding-left:.5rem;border-left:4px solid #ddd}.category.asked{border-left-color:#2a7}
.row{display:flex;flex-wrap:wrap;gap:.6rem;align-items:flex-start}
figure{margin:0;width:128px;font-size:.8rem}figure.big{width:224px}figure img{width:100%;height:auto;display:block}
figcaption{overflow-wrap:anywhere;overflow:hidden}
.pid{display:block;max-width:100%;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
figure.plot{width:min(704px,100%)}
ol.products{display:flex;flex-wrap:wrap;gap:.6rem;list-style:none;padding:0;margin:0}
li.positive figure{outline:4px solid #2a7;outline-offset:2px}.gt{color:#175;font-weight:bold}
.noimg{display:flex;align-items:center;justify-content:center;width:128px;height:96px;background:#eee}
.note{font-size:.9rem;color:#333}
"""


def _a(value) -> str:
    return escape(str(value), quote=True)


def _anchor(i: int, category: str) -> str:
    """Fragment id of a scene's category: ids cannot hold spaces ("light fixtures")."""
    return f"scene-{i}-" + re.sub(r"[^A-Za-z0-9_-]+", "-", category)


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def _pid(product_id: str, href) -> str:
    """A product id shortened visibly to its cell (CSS ellipsis; 32-character ids do not fit 128 px),
    whole in the tooltip, the link's accessible name and the text (copy and find still get all of it).
    The link opens the product's picture; without one the id is plain text with the same tooltip."""
    pid = _a(product_id)
    if not href:
        return f"<span class='pid' title='{pid}'>{pid}</span>"
    return f"<a class='pid' href='{_a(href)}' title='{pid}' aria-label='product {pid}'>{pid}</a>"


def _figure(src, alt: str, caption: str, cls: str = "") -> str:
    image = (f"<img src='{_a(src)}' alt='{_a(alt)}' loading='lazy'>" if src
             else f"<div class='noimg' role='img' aria-label='{_a(alt)}'>no image</div>")
    return f"<figure class='{cls}'>{image}<figcaption>{caption}</figcaption></figure>"


def _summary(page: dict) -> str:
    results, evaluation = page["summary"].get("results.json"), page["summary"].get("eval.json")
    parts = ["<section id='summary' aria-labelledby='summary-h'><h2 id='summary-h'>Run summary</h2>"]
    if results:
        parts.append(f"<p>results.json: {_a(results.get('variant', ''))} on {_a(results.get('dataset', ''))}, "
                     f"validation AUC {_fmt(results.get('val_auc'))}, test AUC {_fmt(results.get('test_auc'))}, "
                     f"best epoch {_a(results.get('best_epoch', '–'))}.</p>")
    if evaluation:
        topk = evaluation.get("topk") or []
        ks = [k for k in (1, 5, 10) if k <= len(topk)]
        rows = [("all", evaluation)] + sorted((evaluation.get("per_category") or {}).items())
        head = "".join(f"<th scope='col'>Top-{k}</th>" for k in ks)
        body = "".join(
            f"<tr><th scope='row'>{_a(name)}</th><td>{_a(r.get('num_queries', ''))}</td><td>{_fmt(r.get('auc'))}</td>"
            + "".join(f"<td>{_fmt((r.get('topk') or [None] * k)[k - 1])}</td>" for k in ks) + "</tr>"
            for name, r in rows)
        parts.append(f"<p>eval.json: {_a(evaluation.get('split', ''))} split, scored on "
                     f"{_a(evaluation.get('scored_on', 'cropped'))} scenes, trained on "
                     f"{_a(evaluation.get('trained_on', 'unknown'))}.</p>"
                     f"<table><caption>AUC and Top-K accuracy</caption><thead><tr><th scope='col'>category</th>"
                     f"<th scope='col'>queries</th><th scope='col'>AUC</th>{head}</tr></thead>"
                     f"<tbody>{body}</tbody></table>")
    if page.get("topk_curve"):
        parts.append(_figure(page["topk_curve"], "Top-K accuracy (y axis, 0 to 1) against K (x axis), from "
                             "eval.json", "Top-K accuracy vs K", "plot"))
    if page.get("category_bars"):
        parts.append(_figure(page["category_bars"], "AUC and Top-10 accuracy per category as bars, from eval.json",
                             "AUC and Top-10 per category", "plot"))
    if not results and not evaluation:
        parts.append("<p>No results.json or eval.json in the model directory: run "
                     "<code>ctl evaluate --model_dir=…</code> for AUC and Top-K.</p>")
    return "".join(parts) + "</section>"


def _category(i: int, scene: dict, cat: dict) -> str:
    name, anchor = cat["name"], _anchor(i, cat["name"])
    peak = cat["attention_peak"]
    attention = _figure(cat["attention"], f"Attention of the {name} query over scene {scene['scene_id']}; "
                        f"strongest cell at row {peak[0] + 1}, column {peak[1] + 1}",
                        "attention (scaled to its maximum: red)")
    items = []
    for p in cat["products"]:
        mark = " <span class='gt'>★ ground truth</span>" if p["positive"] else ""
        alt = f"Product {p['id']} ({name}), rank {p['rank']}, d* {p['d_star']:.3f}" + (
            ", the ground truth" if p["positive"] else "")
        items.append(f"<li class='product{' positive' if p['positive'] else ''}' data-product-id='{_a(p['id'])}' "
                     f"data-rank='{p['rank']}' data-d-star='{p['d_star']:.6f}'>"
                     + _figure(p["thumb"], alt, f"#{p['rank']} {_pid(p['id'], p['thumb'])}"
                               f"d* = {p['d_star']:.3f}{mark}")
                     + "</li>")
    if not cat["products"]:
        note = f"No {_a(name)} products in the index."
    elif not cat["is_positive_category"]:
        note = f"Top {len(cat['products'])} of {cat['size']} {_a(name)} products."
    elif cat["positive_rank"] is None:
        note = f"The ground truth {_a(scene['positive_id'])} is not in the index."
    else:
        top = len(cat["products"])
        shown = f"in the top {top}" if cat["positive_rank"] <= top else f"not in the top {top}"
        note = f"Ground truth ranked #{cat['positive_rank']} of {cat['size']} ({shown})."
    asked = " asked" if cat["is_positive_category"] else ""
    return (f"<section class='category{asked}' id='{_a(anchor)}' data-category='{_a(name)}' "
            f"aria-labelledby='{_a(anchor)}-h'><h3 id='{_a(anchor)}-h'>{_a(name)}"
            f"{' (the cropped-out product)' if asked else ''}</h3><div class='row'>{attention}"
            f"<ol class='products' aria-label='top {_a(name)} products, most compatible first'>{''.join(items)}</ol>"
            f"</div><p class='note'>{note}</p></section>")


def _scene(i: int, scene: dict) -> str:
    title = f"Scene {i}: {scene['scene_id']}"
    head = (_figure(scene["image"], f"Scene {scene['scene_id']} with its {scene['positive_category']} cropped out "
                    "(the view the model sees)", "cropped scene", "big")
            + _figure(scene["positive_thumb"], f"Ground-truth {scene['positive_category']} product "
                      f"{scene['positive_id']}", f"ground truth ({_a(scene['positive_category'])}): "
                      f"{_pid(scene['positive_id'], scene['positive_thumb'])}"))
    body = "".join(_category(i, scene, cat) for cat in scene["categories"])
    return (f"<section class='scene' id='scene-{i}' data-scene-id='{_a(scene['scene_id'])}' "
            f"data-pair-id='{scene['pair_id']}' data-positive='{_a(scene['positive_id'])}' "
            f"data-positive-category='{_a(scene['positive_category'])}' aria-labelledby='scene-{i}-h'>"
            f"<h2 id='scene-{i}-h'>{_a(title)}</h2><p class='note'>Pair {scene['pair_id']}; the "
            f"{_a(scene['positive_category'])} product was cropped out. <a href='#toc'>Back to contents</a></p>"
            f"<div class='head'>{head}</div>{body}</section>")


def render(page: dict) -> str:
    """The whole page. `page` is what report_page.build_report assembles."""
    scenes = page["scenes"]
    toc = "".join(
        f"<li><a href='#scene-{i}'>Scene {i}: {_a(s['scene_id'])}</a> ("
        + ", ".join(f"<a href='#{_a(_anchor(i, c['name']))}'>{_a(c['name'])}</a>" for c in s["categories"])
        + ")</li>" for i, s in enumerate(scenes, start=1))
    shown = f"{len(scenes)} {page['split']} scenes" + (
        f" (asked for {page['asked']}; the split has only {len(scenes)})" if len(scenes) < page["asked"] else "")
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>Complete the Look report: {_a(page['variant'])}</title><style>{_CSS}</style></head><body>"
        "<a class='skip' href='#scenes'>Skip to the scenes</a><header><h1>Complete the Look: recommendations</h1>"
        f"<p>Model <code>{_a(page['model_dir'])}</code>, index <code>{_a(page['index'])}</code> "
        f"({page['index_size']} products), {_a(shown)}, top {page['k']} per category. "
        "d* = 2 − q·f<sub>p</sub>: lower is more compatible. Each scene is shown as the model sees it, with "
        "one product cropped out; that product is the ground truth.</p></header>"
        f"<nav id='toc' aria-label='Contents'><h2>Contents</h2><ol><li><a href='#summary'>Run summary</a></li>"
        f"{toc}</ol></nav><main id='scenes'>{_summary(page)}"
        + "".join(_scene(i, s) for i, s in enumerate(scenes, start=1))
        + "</main></body></html>\n")
