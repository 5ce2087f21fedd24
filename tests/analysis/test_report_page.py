"""`analysis report` on the synthetic fixture: the page is parsed with html.parser and checked against an
independent ranking (embed.scene_queries + the index's embeddings), never against its own text."""

import base64
import io
import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from ctl_keras.analysis import report_page

VOID = {"img", "meta", "br", "link", "input", "hr", "source", "wbr"}


class Page(HTMLParser):
    """Every <img> and product <li>, with the scene / category <section> enclosing it."""

    def __init__(self):
        super().__init__()
        self.stack, self.images, self.products, self.scenes, self.links = [], [], [], [], []
        self.categories, self.text, self.ids = [], [], set()

    def _inside(self, cls):
        for tag, attrs in reversed(self.stack):
            if tag == "section" and cls in attrs.get("class", "").split():
                return attrs
        return {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            assert " " not in attrs["id"] and attrs["id"] not in self.ids, attrs["id"]
            self.ids.add(attrs["id"])
        where = (self._inside("scene").get("id"), self._inside("category").get("data-category"))
        for key in ("href", "src"):
            if key in attrs:
                self.links.append(attrs[key])
        if tag == "img":
            self.images.append((attrs, where))
        if tag == "li" and "product" in attrs.get("class", "").split():
            self.products.append((attrs, where))
        if tag == "section" and "scene" in attrs.get("class", "").split():
            self.scenes.append(attrs)
        if tag == "section" and "category" in attrs.get("class", "").split():
            self.categories.append((where[0], attrs["data-category"]))
        if tag not in VOID:
            self.stack.append((tag, attrs))

    def handle_endtag(self, tag):
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data):
        self.text.append(data)


def _parse(path):
    page = Page()
    with open(path, encoding="utf-8") as f:
        page.feed(f.read())
    return page


@pytest.fixture(scope="module")
def setup(synthetic_data, untrained_model, tmp_path_factory):
    """A model_dir copy with results.json + a real eval.json, and an index of the val+test products
    embedded by the model's own product tower (fingerprint recorded, as retrieval.catalog does)."""
    from ctl_keras.evaluation import embed
    from ctl_keras.evaluation import model_eval as evaluate
    from ctl_keras.model import run_dir as model_io
    from ctl_keras.retrieval.index import CatalogIndex, save_index
    from ctl_keras.savedmodel.exporter import model_fingerprint

    config, data_dir = synthetic_data
    root = tmp_path_factory.mktemp("report")
    model_dir = str(root / "model")
    shutil.copytree(untrained_model[2], model_dir)
    with open(os.path.join(model_dir, "results.json"), "w") as f:
        json.dump({"data_dir": data_dir, "variant": config.variant, "dataset": "synthetic", "trained_on": "cropped",
                   "val_auc": 0.5, "test_auc": 0.5, "best_epoch": 1}, f)
    evaluate.evaluate_model(model_dir)  # writes eval.json with the real Top-K curve
    _, models = model_io.load_trained(model_dir)
    ids, cats, rows = [], [], []
    for split in ("test", "val"):
        i, c, m = embed.product_embeddings(models, config, data_dir, split)
        keep = [j for j, p in enumerate(i) if p not in set(ids)]
        ids += [str(i[j]) for j in keep]
        cats.append(c[keep])
        rows.append(m[keep])
    index = CatalogIndex(np.array(ids), np.concatenate(cats), np.concatenate(rows), config.categories,
                         {"model_fingerprint": model_fingerprint(models)})
    stem = str(root / "catalog")
    save_index(index, stem)
    queries = embed.scene_queries(models, config, data_dir, "test")
    return {"config": config, "data_dir": data_dir, "model_dir": model_dir, "index": index, "stem": stem,
            "queries": queries, "root": root}


@pytest.fixture(scope="module")
def capped(setup):
    """More scenes asked than the test split has (the fixture has 5 test scenes), top 2."""
    said = []
    out = str(setup["root"] / "page_k2")
    done = report_page.build_report(setup["model_dir"], setup["stem"], out, num_scenes=99, k=2, warn=said.append)
    return done, said, out


def _expected(setup, pair_id, k):
    """Independent top-k of the pair's own category: d* = 2 - q.f_p over the index rows, stable order."""
    q = setup["queries"]
    row = int(np.flatnonzero(q.pair_ids == pair_id)[0])
    index, cat = setup["index"], int(q.categories[row])
    rows = np.flatnonzero(index.category_ids == cat)
    d = 2.0 - index.embeddings[rows].astype(np.float64) @ np.asarray(q.query[row], np.float64)
    order = np.argsort(d, kind="stable")
    return [str(index.product_ids[rows[j]]) for j in order[:k]], dict(zip(index.product_ids[rows], d)), \
        setup["config"].categories[cat], str(q.positive_ids[row])


def _check_images(page, out):
    assert page.images
    for attrs, _ in page.images:
        src = attrs["src"]
        assert attrs.get("alt"), src
        if src.startswith("data:"):
            data = io.BytesIO(base64.b64decode(src.split(",", 1)[1]))
        else:
            data = os.path.join(out, src)
            assert os.path.isfile(data), src
        with Image.open(data) as image:
            image.load()
            assert image.size[0] > 0


@pytest.mark.slow
def test_capped_scene_count_is_said_once(setup, capped):
    done, said, _ = capped
    scenes = len({str(s) for s in setup["queries"].scene_ids})
    assert done["scenes"] == scenes < 99 and done["capped"]
    assert said == [f"asked for 99 scenes but the test split of {setup['data_dir']} has {scenes}; showing {scenes}"]


def test_page_structure_images_and_offline(setup, capped):
    done, _, out = capped
    page = _parse(done["html"])
    _check_images(page, out)
    assert len(page.scenes) == done["scenes"]
    categories = list(setup["config"].categories)
    for scene in page.scenes:  # every scene has every category, in order, each with K products
        assert [c for s, c in page.categories if s == scene["id"]] == categories
        for c in categories:
            assert len([p for p, (s, pc) in page.products if s == scene["id"] and pc == c]) == 2
    assert not [u for u in page.links if u.lower().startswith(("http:", "https:", "//"))]
    html = open(done["html"], encoding="utf-8").read()
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert {u[1:] for u in page.links if u.startswith("#")} <= page.ids  # every in-page link lands
    toc = {u for u in page.links if u.startswith("#scene-")}
    assert {f"#{s['id']}" for s in page.scenes} <= toc
    assert "topk.png" in {a["src"] for a, _ in page.images}  # eval.json's curve
    assert "Run summary" in "".join(page.text)


@pytest.mark.parametrize("k", [2, 50])
def test_positive_marked_exactly_when_in_top_k(setup, capped, k, tmp_path):
    if k == 2:
        done, out = capped[0], capped[2]
    else:  # K above every category size: every positive is shown, so the marking is exercised
        out = str(tmp_path / "page")
        done = report_page.build_report(setup["model_dir"], setup["stem"], out, num_scenes=3, k=k)
    page = _parse(done["html"])
    marked_somewhere = 0
    for scene in page.scenes:
        top, dist, category, positive = _expected(setup, int(scene["data-pair-id"]), k)
        assert scene["data-positive"] == positive and scene["data-positive-category"] == category
        shown = [(p, c) for p, (s, c) in page.products if s == scene["id"]]
        asked = [p for p, c in shown if c == category]
        assert [p["data-product-id"] for p in asked] == top
        for p in asked:
            assert abs(float(p["data-d-star"]) - dist[p["data-product-id"]]) < 1e-4
        marked = [p["data-product-id"] for p, _ in shown if "positive" in p["class"].split()]
        assert marked == ([positive] if positive in top else [])
        marked_somewhere += len(marked)
    if k == 50:
        assert marked_somewhere == len(page.scenes)


def test_index_of_another_model_is_refused(setup, tmp_path):
    from ctl_keras.retrieval.index import CatalogIndex, save_index

    index = setup["index"]
    other = CatalogIndex(index.product_ids, index.category_ids, index.embeddings, index.categories,
                         {"model_fingerprint": "0" * 64})
    save_index(other, str(tmp_path / "other"))
    with pytest.raises(ValueError, match="model weights differ"):
        report_page.build_report(setup["model_dir"], str(tmp_path / "other"), str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out" / "index.html")


@pytest.mark.slow
def test_cli_report_caps_with_one_stderr_line(setup, tmp_path):
    out = tmp_path / "cli"
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(report_page.__file__)).rsplit(os.sep, 1)[0])
    proc = subprocess.run([sys.executable, "-m", "ctl_keras.analysis", "report", f"--model_dir={setup['model_dir']}",
                           f"--index={setup['stem']}", f"--out={out}", "--num_scenes=40", "--k=1"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "asked for 40 scenes" in line]
    assert len(lines) == 1 and lines[0].startswith("analysis report: ")
    assert "open" in proc.stdout and (out / "index.html").is_file()


def test_empty_category_is_shown_as_such_not_an_error():
    """Index without 'light fixtures' products: rank_all gives it no columns; the page says so, lists none,
    and its anchor (a name with a space) still resolves."""
    from ctl_keras.analysis import report_html
    from ctl_keras.retrieval.index import CatalogIndex

    index = CatalogIndex(np.array(["p0", "p1"]), np.array([0, 0]), np.array([[1, 0], [0, 1]], np.float32),
                         ("a", "light fixtures"))
    ranked = report_page.rank_all(index, np.array([[[0.0, 1.0], [1.0, 0.0]]], np.float32), k=5)
    assert ranked["a"][0].tolist() == [["p1", "p0"]] and ranked["light fixtures"][0].shape == (1, 0)
    scene = {"pair_id": 1, "scene_id": "s", "positive_id": "p1", "positive_category": "a", "positive_thumb": None,
             "image": "images/s.png", "categories": [
                 {"name": n, "size": len(ranked[n][0][0]), "attention": "images/a.png", "attention_peak": (0, 0),
                  "is_positive_category": n == "a", "positive_rank": 1 if n == "a" else None,
                  "products": [{"id": p, "d_star": float(d), "rank": r + 1, "thumb": None, "positive": p == "p1"}
                               for r, (p, d) in enumerate(zip(ranked[n][0][0], ranked[n][1][0]))]}
                 for n in ("a", "light fixtures")]}
    html = report_html.render({"model_dir": "m", "index": "i", "data_dir": "d", "split": "test", "k": 5, "asked": 1,
                               "variant": "hybrid", "scenes": [scene], "summary": {}, "topk_curve": None,
                               "index_size": 2})
    page = Page()
    page.feed(html)
    assert [c for _, (_, c) in page.products] == ["a", "a"] and ("scene-1", "light fixtures") in page.categories
    assert "No light fixtures products in the index." in "".join(page.text)
    # No thumbnail: the id is plain text, still cut to its cell, whole in its tooltip.
    assert "<span class='pid' title='p1'>p1</span>" in html and "class='pid' href" not in html
    assert {u[1:] for u in page.links if u.startswith("#")} <= page.ids
    assert [p["data-product-id"] for p, _ in page.products if "positive" in p["class"].split()] == ["p1"]


def test_thumbnails_fall_back_to_the_index_image_directory(synthetic_data, tmp_path):
    from ctl_keras.retrieval.index import CatalogIndex

    config, data_dir = synthetic_data
    category = config.categories[0]
    (tmp_path / category).mkdir()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(tmp_path / category / "x1.png")
    index = CatalogIndex(np.array(["x1"]), np.array([0]), np.ones((1, 4), np.float32), config.categories,
                         {"source": str(tmp_path)})
    found = report_page.product_jpegs(data_dir, index, {"x1", "absent"})
    assert set(found) == {"x1"} and found["x1"].startswith(b"\x89PNG")


CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Every caption inside its cell: (1) the caption does not scroll sideways, (2) its box and every box
# inside it lie within the figure (1 px for subpixel rounding), (3) ids are cut by an ellipsis, not
# by wrapping or spilling: text-overflow is 'ellipsis', one line, the link/tooltip hold the whole id.
_LAYOUT_JS = """
const out = {captions: [], ids: [], plots: []};
const inside = (a, b) => a.left >= b.left - 1 && a.right <= b.right + 1 && a.top >= b.top - 1 && a.bottom <= b.bottom + 1;
for (const fig of document.querySelectorAll('figure')) {
  const cap = fig.querySelector('figcaption');
  if (!cap) continue;
  const box = fig.getBoundingClientRect();
  const bad = [...cap.querySelectorAll('*')].filter(e => !inside(e.getBoundingClientRect(), box)).map(e => e.outerHTML);
  out.captions.push({text: cap.textContent, scroll: cap.scrollWidth, client: cap.clientWidth,
                     inside: inside(cap.getBoundingClientRect(), box), bad: bad});
}
for (const e of document.querySelectorAll('.pid')) {
  const s = getComputedStyle(e), r = e.getBoundingClientRect();
  out.ids.push({text: e.textContent, title: e.title, href: e.getAttribute('href'), overflow: s.textOverflow,
                height: r.height, line: parseFloat(s.lineHeight) || 20, clipped: e.scrollWidth > e.clientWidth});
}
for (const img of document.querySelectorAll('figure.plot img'))
  out.plots.push({src: img.getAttribute('src'), width: img.getBoundingClientRect().width, natural: img.naturalWidth});
return out;
"""


def _chromium(width: int, profile: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                 f"--window-size={width},900", "--allow-file-access-from-files"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@pytest.mark.slow
def test_report_in_chromium_at_1280px_keeps_captions_in_their_cells(setup, tmp_path):
    """The real page (5 scenes x every category, top 5, 32-character ids) in headless Chromium at a
    1280 px window: no caption overflows its cell, ids end in an ellipsis with the full id in the
    tooltip and the link, and the Top-K plot is drawn at a readable width. A screenshot is kept."""
    pytest.importorskip("selenium")
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail(f"needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver; .ci/run does)")
    out = tmp_path / "page"
    done = report_page.build_report(setup["model_dir"], setup["stem"], str(out), num_scenes=5, k=5)
    ids = {a["data-product-id"] for a, _ in _parse(done["html"]).products}
    assert ids and {len(i) for i in ids} == {32}  # the long ids this test is about
    driver = _chromium(1280, str(tmp_path / "profile"))
    try:
        driver.get(f"file://{done['html']}")
        assert driver.execute_script("return window.innerWidth") == 1280
        driver.execute_script("document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
        driver.execute_script("return Promise.all([...document.images].map(i => i.decode().catch(() => 0)))")
        layout = driver.execute_script(_LAYOUT_JS)
        # Screenshots to look at (CTL_REPORT_SCREENSHOT=DIR keeps them): the plots, the first scene.
        shots = os.environ.get("CTL_REPORT_SCREENSHOT", str(tmp_path))
        for name, selector in (("summary", "figure.plot"), ("scene", "#scene-1 section.category")):
            driver.execute_script("document.querySelector(arguments[0]).scrollIntoView()", selector)
            assert driver.save_screenshot(os.path.join(shots, f"report_1280_{name}.png"))
    finally:
        driver.quit()
    assert len(layout["captions"]) > 5 * len(setup["config"].categories) * 5
    spilled = [c for c in layout["captions"] if c["scroll"] > c["client"] or not c["inside"] or c["bad"]]
    assert not spilled, spilled[:3]
    assert len(layout["ids"]) >= len(ids)
    for e in layout["ids"]:
        assert e["overflow"] == "ellipsis" and e["clipped"], e  # 32 characters are shortened visibly
        assert e["title"] == e["text"] and len(e["text"]) == 32 and e["height"] <= 1.5 * e["line"], e
        assert e["href"] is None or e["href"].startswith("images/")
    assert [p["src"] for p in layout["plots"]] == ["topk.png", "categories.png"]
    for p in layout["plots"]:
        assert p["width"] >= 480 and p["natural"] >= 640, p  # drawn and shown at a readable size
