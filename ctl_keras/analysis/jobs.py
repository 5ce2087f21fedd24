"""The analysis jobs as plain library functions (the CLI in analysis/__main__.py parses flags and calls them).

- run_attention: Table 3 (attention / random / saliency hit rates) + Figure 6 overlays.
- run_figures:   Figure 7 (3 most and 3 least compatible test products per scene).
- run_human_kit: the Table 4 kit (human_eval.py; its scorer is human_eval.score_kit, which needs no TF).
"""

from __future__ import annotations

import json
import os

import numpy as np
import tensorflow as tf
from absl import logging

from ctl_keras.utils import atomic
from ctl_keras.evaluation import embed
from ctl_keras.model import run_dir as model_io
from ctl_keras.analysis import attention_hits, figures, human_eval
from ctl_keras.data import dataset_dir, pipeline
from ctl_keras.model.distances import d_star

_BATCH = 16


def resolve_data_dir(model_dir: str, config, data_dir: str | None) -> str:
    """--data_dir, else results.json's "data_dir", else tf_records/<dataset> (train.py's default)."""
    from ctl_keras.model.run_dir import run_data_dir

    return run_data_dir(model_dir, config.dataset, data_dir)


def load_run(model_dir, data_dir, backbone_weights):
    """(config, models, data_dir) of a trained run; the dataset must have the model's categories."""
    config, models = model_io.load_trained(model_dir, backbone_weights=backbone_weights)
    data_dir = resolve_data_dir(model_dir, config, data_dir)
    manifest = dataset_dir.read_manifest(data_dir, config.dataset)
    if tuple(manifest.get("categories", ())) != tuple(config.categories):
        raise ValueError(f"{data_dir} has categories {manifest.get('categories')}, the model in {model_dir} "
                         f"{list(config.categories)}: pass the dataset it was trained on with --data_dir")
    return config, models, data_dir


def _uint8(images) -> np.ndarray:
    return np.clip(np.round(np.asarray(images)), 0, 255).astype(np.uint8)


def scene_records(config, data_dir, split: str):
    """Each pair of `split` in file order: center views of scene and positive, ids, other boxes."""
    def view(ex):
        return {"scene": pipeline.eval_view(pipeline.decode_image(ex["scene_jpeg"]), config),
                "positive": pipeline.eval_view(pipeline.decode_image(ex["product_jpeg"]), config),
                "category": tf.cast(ex["category_index"], tf.int32), "pair_id": ex["pair_id"],
                "scene_id": ex["scene_id"], "other_boxes": ex["other_boxes"]}

    return pipeline.raw_pairs(data_dir, split).map(view, num_parallel_calls=tf.data.AUTOTUNE,
                                                   deterministic=True).prefetch(4).as_numpy_iterator()


def _batches(records, size: int):
    chunk = []
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def run_attention(model_dir, out_dir, *, data_dir=None, split="test", num_overlays=6, seed=0,
                  smooth_samples=0, backbone_weights=None, batch_size=_BATCH) -> dict:
    """Hit rates of attention, random and saliency maps over every pair of `split`; overlays PNGs."""
    from ctl_keras.analysis import spectral_saliency  # OpenCV only when needed
    from ctl_keras.analysis.saliency import SceneSaliency  # tf-keras-vis only when needed

    config, models, data_dir = load_run(model_dir, data_dir, backbone_weights)
    saliency = SceneSaliency(models.scene_tower, config, smooth_samples)
    grid = config.local_grid
    attention, salient, spectral, relevant, coverage_boxes, shown = [], [], [], [], [], []
    for chunk in _batches(scene_records(config, data_dir, split), batch_size):
        images = np.stack([r["scene"] for r in chunk])
        cats = np.array([r["category"] for r in chunk], np.int32)
        scene_out = models.scene_tower({"image": images, "category": cats}, training=False)
        positives = models.product_tower({"image": np.stack([r["positive"] for r in chunk])},
                                         training=False)["product_embedding"]
        attention.append(np.asarray(scene_out["attention"], np.float64))
        salient.append(saliency(images, cats, positives))
        spectral.append(spectral_saliency.grid_maps(images, grid))
        for r in chunk:
            boxes = attention_hits.view_boxes(r["other_boxes"], config.image_size, config.resize_size)
            coverage_boxes.append(boxes)
            relevant.append(attention_hits.relevant_cells(boxes, grid))
            if len(shown) < num_overlays:
                shown.append((len(relevant) - 1, _uint8(r["scene"]), config.categories[int(r["category"])],
                               int(r["pair_id"])))
        logging.info("attention analysis: %d pairs done", len(relevant))
    if not relevant:
        raise ValueError(f"split {split!r} of {data_dir} has no pairs")
    attention, salient, relevant = np.concatenate(attention), np.concatenate(salient), np.stack(relevant)
    spectral = np.concatenate(spectral)
    rows = {"attention (ours)": attention_hits.hit_rates(attention, relevant),
            f"random (seed {seed})": attention_hits.hit_rates(
                attention_hits.random_maps(len(relevant), grid, seed), relevant),
            "random (expectation)": attention_hits.random_expected(relevant),
            "spectral-residual saliency (image only)": attention_hits.hit_rates(spectral, relevant),
            "gradient saliency (sees the positive)": attention_hits.hit_rates(salient, relevant)}
    result = {"model_dir": os.fspath(model_dir), "data_dir": data_dir, "split": split, "pairs": len(relevant),
              "grid": grid, "variant": config.variant, "saliency_method": saliency.method,
              "spectral_saliency_method": spectral_saliency.METHOD,
              "relevance_rule": "the paper's: a cell more than half covered by ONE of the scene's labeled products' "
                                "boxes (mapped through resize + center crop onto the view); every scene counts, one "
                                "without a relevant cell is a miss",
              "rates": rows}
    table = attention_hits.markdown_table(rows)
    without = rows["attention (ours)"]["scenes_without_relevant"]
    note = (f"\n{len(relevant)} {split} pairs (cropped scenes), {grid}x{grid} grid; {without} have no relevant "
            f"cell and count as misses for every method.\nspectral-residual saliency = {spectral_saliency.METHOD}\n"
            f"gradient saliency = {saliency.method}\n")
    os.makedirs(out_dir, exist_ok=True)
    atomic.write_text(os.path.join(out_dir, "attention.json"), json.dumps(result, indent=1) + "\n")
    atomic.write_text(os.path.join(out_dir, "attention.md"), table + note)
    for i, image, category, pair_id in shown:
        figures.attention_overlay(os.path.join(out_dir, "overlays", f"pair_{pair_id}.png"), image,
                                  attention[i], salient[i], coverage_boxes[i], relevant[i],
                                  f"pair {pair_id}, asked: {category}", saliency_title="saliency (tf-keras-vis)")
    result["table"] = table
    return result


def _product_images(config, data_dir, split, wanted: set) -> dict:
    ds = pipeline.raw_products(data_dir, split).filter(
        lambda ex: tf.reduce_any(tf.equal(ex["product_id"], tf.constant(sorted(wanted) or [""]))))
    ds = ds.map(lambda ex: (ex["product_id"], pipeline.eval_view(pipeline.decode_image(ex["product_jpeg"]), config)))
    return {pid.decode(): _uint8(image) for pid, image in ds.as_numpy_iterator()}


def run_figures(model_dir, out_dir, *, num_scenes=4, data_dir=None, split="test", backbone_weights=None,
                top=3) -> str:
    """Figure 7 grid for the first `num_scenes` distinct scenes of `split`; returns the PNG path."""
    if num_scenes <= 0:
        raise ValueError(f"num_scenes must be positive, got {num_scenes}")
    config, models, data_dir = load_run(model_dir, data_dir, backbone_weights)
    chosen, scenes = [], set()
    for record in scene_records(config, data_dir, split):
        if record["scene_id"] not in scenes:
            scenes.add(record["scene_id"])
            chosen.append(record)
        if len(chosen) == num_scenes:
            break
    if not chosen:
        raise ValueError(f"split {split!r} of {data_dir} has no pairs")
    images = np.stack([r["scene"] for r in chosen])
    cats = np.array([r["category"] for r in chosen], np.int32)
    queries = np.asarray(models.scene_tower({"image": images, "category": cats}, training=False)["query"], np.float64)
    ids, prod_cats, matrix = embed.product_embeddings(models, config, data_dir, split)
    ranked = []
    for q, c in zip(queries, cats):
        rows = np.flatnonzero(prod_cats == c)
        d = d_star(q, np.asarray(matrix)[rows])
        order = rows[np.argsort(d, kind="stable")]
        dist = dict(zip(rows, d))
        # With fewer than 2*top candidates the two lists would share products; keep them disjoint.
        worst = [j for j in order[::-1] if j not in set(order[:top])][:top]
        ranked.append(([(ids[j], dist[j]) for j in order[:top]], [(ids[j], dist[j]) for j in worst]))
    pictures = _product_images(config, data_dir, split, {pid for b, w in ranked for pid, _ in b + w})
    grid_rows = [{"scene": _uint8(r["scene"]), "category": config.categories[int(r["category"])],
                  "title": f"pair {int(r['pair_id'])}",
                  "best": [(pictures[p], d) for p, d in best], "worst": [(pictures[p], d) for p, d in worst]}
                 for r, (best, worst) in zip(chosen, ranked)]
    logging.info("figures: %d scenes ranked against the %s products", len(grid_rows), split)
    return figures.compatibility_grid(os.path.join(out_dir, "compatibility.png"), grid_rows)


def _method_choices(methods, model_dir, data_dir, backbone_weights, picked, sides, seed) -> dict:
    """method -> side chosen per question. "ours" = model_dir, "random" = seeded coin, NAME=DIR = another
    trained model_dir (e.g. a variant)."""
    choices = {}
    for spec in methods:
        name, _, path = spec.partition("=")
        if name == "random" and not path:
            coin = np.random.default_rng([seed, 1]).integers(0, 2, len(picked))
            choices[name] = [human_eval.SIDES[k] for k in coin]
            continue
        if name == "ours" and not path:
            path = model_dir
        elif not path:
            raise ValueError(f"unknown method {spec!r}; use ours, random or NAME=MODEL_DIR")
        config, models = model_io.load_trained(path, backbone_weights=backbone_weights)
        queries = embed.scene_queries(models, config, data_dir, "test")
        products = embed.product_embeddings(models, config, data_dir, "test")
        d_pos, d_neg = embed.question_distances(queries, products, picked)
        choices[name] = [human_eval.choice_side(p, n, s) for p, n, s in zip(d_pos, d_neg, sides)]
        logging.info("human kit: method %s scored %d questions", name, len(picked))
    return choices


def run_human_kit(model_dir, out_dir, *, num_questions=50, methods=("ours", "random"), data_dir=None, seed=0,
                  backbone_weights=None) -> dict:
    """index.html + answers.csv + key.json for `num_questions` seeded test questions."""
    config = model_io.read_config(model_dir)
    data_dir = resolve_data_dir(model_dir, config, data_dir)
    picked = human_eval.pick_questions(dataset_dir.load_questions(data_dir, "test"), num_questions, seed)
    sides = [human_eval.SIDES[k] for k in np.random.default_rng([seed, 0]).integers(0, 2, len(picked))]
    choices = _method_choices(methods, model_dir, data_dir, backbone_weights, picked, sides, seed)
    pair_ids = {int(q["pair_id"]) for q in picked}
    scenes = {}
    for ex in pipeline.raw_pairs(data_dir, "test").as_numpy_iterator():
        if int(ex["pair_id"]) in pair_ids:
            scenes[int(ex["pair_id"])] = ex["scene_jpeg"]
    wanted = {str(q[k]) for q in picked for k in ("positive", "negative")}
    products = {}
    for ex in pipeline.raw_products(data_dir, "test").as_numpy_iterator():
        if ex["product_id"].decode() in wanted:
            products[ex["product_id"].decode()] = ex["product_jpeg"]
    items = []
    for q, side in zip(picked, sides):
        other = "B" if side == "A" else "A"
        items.append({**q, "positive_side": side, "scene_jpeg": scenes[int(q["pair_id"])],
                      f"{side}_jpeg": products[str(q["positive"])], f"{other}_jpeg": products[str(q["negative"])]})
    return human_eval.write_kit(out_dir, items, choices, seed)
