"""Score a trained model_dir (AUC + Top-K on cropped scenes) and write eval.json: the library behind
`ctl evaluate` (its --help has the metric definitions) and ctl_keras.experiments."""

from __future__ import annotations

import os

from ctl_keras.model.run_dir import EVAL_FILE
FULL_SCENE_NOTE = "scored on uncropped scenes: the product is visible in them, so this is NOT the CTL task"


def check_split_nonempty(data_dir: str, split: str) -> None:
    """A clear error for a split with no pairs or no questions (nothing to evaluate)."""
    from ctl_keras.data import dataset_dir

    info = dataset_dir.read_manifest(data_dir).get("splits", {}).get(split, {})
    if not info.get("pairs") or not info.get("questions"):
        raise ValueError(f"the {split} split of {data_dir} is empty ({info.get('pairs', 0)} pairs, "
                         f"{info.get('questions', 0)} questions): nothing to evaluate")


def _recorded(model_dir: str) -> dict:
    from ctl_keras.model.run_dir import read_results

    return read_results(model_dir)


def _trained_on(recorded: dict, model_dir: str) -> str:
    if "trained_on" in recorded:
        return recorded["trained_on"]
    if recorded:  # results.json of an earlier ctl_keras: no compatibility path
        raise ValueError(f"{model_dir}/results.json was written by an earlier ctl_keras (no trained_on); "
                         "retrain with `ctl train` into a new --model_dir")
    return "unknown"  # no results.json: a model_dir not written by train


def cache_for(config, data_dir: str, trained_on_full: bool, feature_cache_dir: str | None, backbone):
    """The feature cache training used (same default directory as `train --feature_cache`); its
    val/test scenes are cropped either way, so reusing it only saves a rebuild."""
    from ctl_keras.feature_cache import FeatureCache, default_cache_dir

    cache_dir = feature_cache_dir or default_cache_dir(config, data_dir, trained_on_full)
    return FeatureCache.build_or_load(config, data_dir, cache_dir, backbone, full_scene=trained_on_full)


def score_model(models, config, data_dir: str, split: str, features=None, full_scene: bool = False) -> dict:
    """AUC + Top-K (+ per category) of loaded CTL models, d* = 2 − q·f_p (docs/design.md §3), on cropped scenes
    (`full_scene=True`: uncropped ones, image path only)."""
    from ctl_keras.evaluation import embed
    from ctl_keras.data import dataset_dir
    from ctl_keras.evaluation.scoring import ScoreTable, inner_product_distance, score_split

    from ctl_keras.utils.progress import Progress

    check_split_nonempty(data_dir, split)
    info = dataset_dir.read_manifest(data_dir)["splits"][split]
    with Progress(total=info["pairs"] + info.get("products", 0), desc=f"evaluate: embed {split}",
                  unit="image") as bar:
        queries = embed.scene_queries(models, config, data_dir, split, features=features, full_scene=full_scene,
                                      progress=bar.update)
        ids, cats, matrix = embed.product_embeddings(models, config, data_dir, split, features=features,
                                                     progress=bar.update)
    table = ScoreTable(queries.pair_ids, queries.categories, list(queries.positive_ids), queries.query,
                       list(ids), cats, matrix, scene_ids=list(queries.scene_ids))
    return score_split(table, inner_product_distance(2.0), dataset_dir.load_questions(data_dir, split),
                       config.categories, config.topk_max)


def evaluate_model(model_dir: str, data_dir: str | None = None, split: str = "test", full_scene: bool = False,
                   feature_cache: bool | None = None, feature_cache_dir: str | None = None,
                   backbone_weights: str | None = None, which: str = "best", out: str | None = None,
                   cross_dataset: bool = False) -> dict:
    """Score <model_dir> on cropped scenes (`full_scene=True`: uncropped, an analysis) and write eval.json
    (atomically); returns what was written. `feature_cache` defaults to what training used.

    Data whose fingerprint is not the model's training data is refused, unless `cross_dataset`: then
    the result's "cross_dataset" says how many of the split's scenes the model trained on."""
    from ctl_keras.model import run_dir as model_io
    from ctl_keras.utils.atomic import write_json
    from ctl_keras.evaluation.report import CANDIDATES_NOTE
    from ctl_keras.model.run_dir import run_data_dir

    recorded = _recorded(model_dir)
    if full_scene and feature_cache:
        raise ValueError("--full_scene scores uncropped scenes, which needs the image path: drop --feature_cache "
                         "(feature caches hold only cropped val/test scenes)")
    if feature_cache is None:
        feature_cache = bool(recorded.get("feature_cache", False)) and not full_scene
    config, models = model_io.load_trained(model_dir, backbone_weights=backbone_weights, which=which)
    trained_on = _trained_on(recorded, model_dir)
    # The run's own dataset: another build under the default path may have a different split.
    explicit = data_dir is not None
    data_dir = run_data_dir(model_dir, config.dataset, data_dir)
    check_split_nonempty(data_dir, split)
    if not explicit and recorded.get("data_fingerprint"):  # the default must be the run's own data
        from ctl_keras.data.fingerprint import dataset_fingerprint

        if dataset_fingerprint(data_dir) != recorded["data_fingerprint"]:
            raise ValueError(f"{model_dir} was trained on dataset {recorded['data_fingerprint']}, but its "
                             f"recorded data_dir {data_dir} now holds dataset {dataset_fingerprint(data_dir)} "
                             "(rebuilt since?); pass --data_dir explicitly and --cross_dataset to score on it anyway")
    cross = None
    if explicit:
        from ctl_keras.evaluation.seen_scenes import check_dataset

        cross = check_dataset(model_dir, recorded, data_dir, split, cross_dataset)
    features = (cache_for(config, data_dir, trained_on == "full", feature_cache_dir, models.backbone)
                if feature_cache else None)
    result = score_model(models, config, data_dir, split, features=features, full_scene=full_scene)
    result.update({"method": config.variant, "model_dir": os.path.abspath(model_dir), "split": split,
                   "data_dir": os.path.abspath(data_dir), "trained_on": trained_on,
                   "scored_on": "full" if full_scene else "cropped", "weights": which,
                   "candidate_set": CANDIDATES_NOTE})
    if full_scene:
        result["note"] = FULL_SCENE_NOTE
    if cross is not None:
        result["cross_dataset"] = cross
    path = out or os.path.join(model_dir, EVAL_FILE)
    write_json(path, result)
    from ctl_keras.evaluation.report import write_eval_plots

    write_eval_plots(result, path)  # <stem>_topk.png, <stem>_categories.png beside the JSON
    return result
