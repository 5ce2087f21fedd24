"""`analysis report`: a static, offline HTML page of what a trained model recommends for test scenes.

For the first pair of each of N distinct scenes of a split (file order, like `figures`), the page shows
the CTL-cropped scene the model sees, and for EVERY category: the attention map of that category's
query over the scene and the top-K products of the index with d* = 2 - q·f_p (exact numpy search,
retrieval.search), the pair's ground-truth product marked where it appears (and its rank otherwise).
The run's AUC / Top-K numbers come from <model_dir>/eval.json and results.json when present.

Images are written as relative files under <out>/images/ (each atomically), index.html last, so a
crash never leaves a page pointing at half-written images. Thumbnails come from the dataset's
product TFRecords (or from the index's image-directory source); none is fetched from the network.
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import os
import sys

import numpy as np
import tensorflow as tf
from absl import logging
from PIL import Image

from ctl_keras.utils import atomic
from ctl_keras.analysis import jobs
from ctl_keras.analysis import report_html
from ctl_keras.data import dataset_dir, pipeline, tfrecords
from ctl_keras.retrieval.index import check_compatible, load_index
from ctl_keras.retrieval.search import open_backend

THUMB_PX = 128
_BATCH = 32


def _stderr(message: str) -> None:
    print(f"analysis report: {message}", file=sys.stderr, flush=True)


def choose_scenes(config, data_dir: str, split: str, num_scenes: int) -> list[dict]:
    """First pair of each distinct scene of `split`, at most `num_scenes`: center view + ids."""
    ds = pipeline.raw_pairs(data_dir, split).map(
        lambda ex: {"scene": pipeline.eval_view(pipeline.decode_image(ex["scene_jpeg"]), config),
                    "category": tf.cast(ex["category_index"], tf.int32), "pair_id": ex["pair_id"],
                    "scene_id": ex["scene_id"], "positive_id": ex["product_id"]},
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    chosen, seen = [], set()
    for r in ds.as_numpy_iterator():
        if r["scene_id"] in seen:
            continue
        seen.add(r["scene_id"])
        # The model gets the float view (as evaluate does); uint8 is for display only.
        chosen.append({"view": r["scene"], "image": np.clip(np.round(r["scene"]), 0, 255).astype(np.uint8),
                       "category": int(r["category"]), "pair_id": int(r["pair_id"]),
                       "scene_id": r["scene_id"].decode(), "positive_id": r["positive_id"].decode()})
        if len(chosen) == num_scenes:
            break
    return chosen


def whole_look(models, images: np.ndarray, num_categories: int) -> tuple[np.ndarray, np.ndarray]:
    """queries [N, C, d] and attention [N, C, g, g]: every scene asked for every category."""
    n = len(images)
    flat_images = np.repeat(images.astype(np.float32), num_categories, axis=0)
    flat_cats = np.tile(np.arange(num_categories, dtype=np.int32), n)
    queries, attention = [], []
    for start in range(0, len(flat_cats), _BATCH):
        out = models.scene_tower({"image": flat_images[start:start + _BATCH],
                                  "category": flat_cats[start:start + _BATCH]}, training=False)
        queries.append(np.asarray(out["query"], np.float32))
        attention.append(np.asarray(out["attention"], np.float32))
    q, a = np.concatenate(queries), np.concatenate(attention)
    return q.reshape(n, num_categories, -1), a.reshape(n, num_categories, *a.shape[1:])


def rank_all(index, queries: np.ndarray, k: int) -> dict:
    """{category: (ids [N, m], d* [N, m])}, the whole category ranked (m = its size, 0 when empty)."""
    backend, ranked = open_backend(index, "numpy"), {}
    for c, name in enumerate(index.categories):
        size = int(np.sum(index.category_ids == c))
        if size == 0:  # an empty category is shown as such, not an error
            ranked[name] = (np.zeros((len(queries), 0), str), np.zeros((len(queries), 0), np.float32))
        else:
            ranked[name] = backend.search(queries[:, c], name, size)
    return ranked


def product_jpegs(data_dir: str, index, wanted: set) -> dict:
    """product id -> image bytes, from the dataset's product TFRecords (every split that has them),
    then from the index's image-directory source (<dir>/<category>/<id>.jpg)."""
    found: dict[str, bytes] = {}
    splits = dataset_dir.read_manifest(data_dir).get("splits", {})
    for split in tfrecords.SPLITS:
        if len(found) == len(wanted) or not splits.get(split, {}).get("products"):
            continue
        for ex in pipeline.raw_products(data_dir, split).as_numpy_iterator():
            pid = ex["product_id"].decode()
            if pid in wanted and pid not in found:
                found[pid] = ex["product_jpeg"]
    source = index.meta.get("source")
    if isinstance(source, str) and os.path.isdir(source):
        cats = dict(zip(index.product_ids, index.category_ids))
        for pid in wanted - set(found):
            if pid in cats:
                paths = glob.glob(os.path.join(glob.escape(source), index.categories[cats[pid]],
                                               glob.escape(pid) + ".*"))
                if paths:
                    with open(sorted(paths)[0], "rb") as f:
                        found[pid] = f.read()
    return found


def _write_image(out_dir: str, name: str, image: Image.Image, fmt: str) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **({"quality": 88} if fmt == "JPEG" else {}))
    atomic.write_bytes(os.path.join(out_dir, "images", name), buffer.getvalue())
    return f"images/{name}"


def attention_overlay(image: np.ndarray, cell_map: np.ndarray) -> Image.Image:
    """Scene with the g x g map stretched over it (nearest cells, jet colours, max = red)."""
    from matplotlib import colormaps

    size = image.shape[:2]
    scaled = np.asarray(cell_map, np.float64) / max(float(np.max(cell_map)), 1e-12)
    cells = Image.fromarray(np.uint8(np.round(scaled * 255))).resize((size[1], size[0]), Image.NEAREST)
    heat = colormaps["jet"](np.asarray(cells) / 255.0)[..., :3] * 255
    return Image.fromarray(np.uint8(np.round(0.55 * image + 0.45 * heat)))


def _thumbnail(data: bytes) -> Image.Image | None:
    try:
        image = Image.open(io.BytesIO(data)).convert("RGB")
    except Exception:
        return None
    image.thumbnail((THUMB_PX, THUMB_PX))
    return image


def _summary(model_dir: str) -> dict:
    found = {}
    for name in ("results.json", "eval.json"):
        path = os.path.join(model_dir, name)
        if os.path.isfile(path):
            try:
                with open(path) as f:
                    found[name] = json.load(f)
            except json.JSONDecodeError as e:
                logging.warning("ignoring %s: not JSON (%s)", path, e)
    return found


def build_report(model_dir: str, index_path: str, out_dir: str, *, num_scenes: int = 4, k: int = 5,
                 data_dir: str | None = None, split: str = "test", backbone_weights: str | None = None,
                 warn=_stderr) -> dict:
    """Write <out_dir>/index.html (+ images/, topk.png, categories.png); returns counts and the page path.
    Asking for more scenes than the split has shows them all and says so once through `warn`."""
    if num_scenes < 1 or k < 1:
        raise ValueError(f"num_scenes and k must be >= 1, got num_scenes={num_scenes}, k={k}")
    index = load_index(index_path)  # a missing / torn index fails before the model is built
    config, models, data_dir = jobs.load_run(model_dir, data_dir, backbone_weights)
    from ctl_keras.savedmodel.exporter import model_fingerprint

    check_compatible(index, {"embedding_dim": config.embedding_dim, "model_fingerprint": model_fingerprint(models),
                             "categories": list(config.categories)},
                     what=f"model in {model_dir}", check_version=False)
    scenes = choose_scenes(config, data_dir, split, num_scenes)
    if not scenes:
        raise ValueError(f"split {split!r} of {data_dir} has no pairs")
    if len(scenes) < num_scenes:
        warn(f"asked for {num_scenes} scenes but the {split} split of {data_dir} has {len(scenes)}; "
             f"showing {len(scenes)}")
    queries, attention = whole_look(models, np.stack([s["view"] for s in scenes]), len(config.categories))
    ranked = rank_all(index, queries, k)
    wanted = {str(p) for ids, _ in ranked.values() for p in ids[:, :k].reshape(-1)}
    wanted |= {s["positive_id"] for s in scenes}
    jpegs = product_jpegs(data_dir, index, wanted)
    os.makedirs(out_dir, exist_ok=True)
    thumbs, missing = {}, 0
    for pid in sorted(wanted):
        image = _thumbnail(jpegs[pid]) if pid in jpegs else None
        if image is None:
            missing += 1
            continue
        thumbs[pid] = _write_image(out_dir, f"p_{hashlib.sha1(pid.encode()).hexdigest()[:16]}.jpg", image, "JPEG")
    if missing:
        logging.warning("report: %d product images not found in %s or the index source; shown as text", missing,
                        data_dir)
    page_scenes = []
    for i, s in enumerate(scenes):
        categories = []
        for c, name in enumerate(config.categories):
            ids, d = ranked[name]
            order = [str(p) for p in ids[i]]
            rank = order.index(s["positive_id"]) + 1 if s["positive_id"] in order else None
            categories.append({
                "name": name, "size": len(order), "attention": _write_image(
                    out_dir, f"s{i}_attention_{c}.png", attention_overlay(s["image"], attention[i, c]), "PNG"),
                "attention_peak": divmod(int(np.argmax(attention[i, c])), attention.shape[-1]),
                "is_positive_category": c == s["category"], "positive_rank": rank,
                "products": [{"id": p, "d_star": float(dd), "rank": r + 1, "thumb": thumbs.get(p),
                              "positive": p == s["positive_id"] and c == s["category"]}
                             for r, (p, dd) in enumerate(zip(order[:k], d[i, :k]))]})
        page_scenes.append({**{key: s[key] for key in ("pair_id", "scene_id", "positive_id")},
                            "positive_category": config.categories[s["category"]],
                            "positive_thumb": thumbs.get(s["positive_id"]),
                            "image": _write_image(out_dir, f"s{i}_scene.png", Image.fromarray(s["image"]), "PNG"),
                            "categories": categories})
    summary = _summary(model_dir)
    curve = bars = None
    evaluation = summary.get("eval.json")
    if evaluation and evaluation.get("topk"):
        from ctl_keras.evaluation.report import plot_categories, plot_topk

        trained_on = evaluation.get("trained_on", "unknown")
        drawn = {trained_on: {evaluation.get("method", config.variant): evaluation}}
        plot_topk(drawn, {}, [trained_on], os.path.join(out_dir, "topk.png"))
        curve = "topk.png"
        if evaluation.get("per_category"):
            plot_categories(drawn, {}, [trained_on], os.path.join(out_dir, "categories.png"))
            bars = "categories.png"
    html = report_html.render({
        "model_dir": os.path.abspath(model_dir), "index": os.path.abspath(index_path), "data_dir": data_dir,
        "split": split, "k": k, "asked": num_scenes, "variant": config.variant, "scenes": page_scenes,
        "summary": summary, "topk_curve": curve, "category_bars": bars, "index_size": len(index)})
    path = os.path.join(out_dir, "index.html")
    atomic.write_text(path, html)  # last: the page only ever points at images already written
    logging.info("report: %d scenes x %d categories written to %s", len(scenes), len(config.categories), path)
    return {"html": path, "scenes": len(scenes), "asked": num_scenes, "capped": len(scenes) < num_scenes,
            "missing_thumbnails": missing, "categories": list(config.categories)}
