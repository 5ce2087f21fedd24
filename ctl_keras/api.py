"""The Python API: one import for notebooks and services; the same code the command-line tools run.

    >>> from ctl_keras import Recommender
    >>> rec = Recommender.load(export_dir, index)        # the exported towers + a catalog index
    >>> looks = rec.look(scene_path, k=3)                 # every category, the backbone run once
    >>> sorted(looks) == sorted(rec.categories)
    True
    >>> [len(products) for products in looks.values()]
    [3, 3, 3, 3, 3]
    >>> best = looks["shoes"][0]                          # {"product_id", "d_star"}, lowest d* first
    >>> 0.0 <= best["d_star"] <= 4.0
    True
    >>> ids = lambda products: [p["product_id"] for p in products]
    >>> ids(rec.look(scene_bytes, categories=["shoes"], k=2)["shoes"]) == ids(looks["shoes"][:2])
    True
    >>> ids(rec.query(scene_path, "tops", k=2)) == ids(looks["tops"][:2])  # one category's signature
    True

The job functions, each what its CLI does (`ctl build`, `ctl train`, ... ; `python -m ctl_keras.X`);
training and embedding show Keras's progress bars on stdout (left out of the expected output here):

    >>> import ctl_keras.api as ctl
    >>> manifest = ctl.build_dataset(data_dir, "synthetic", smoke=True,
    ...                              synthetic_kwargs={"num_scenes": 24, "scene_size": 96, "product_size": 64})
    >>> manifest["splits"]["test"]["pairs"] > 0
    True
    >>> results = ctl.train(data_dir, model_dir, smoke=True, feature_cache=True, epochs=1)
    >>> 0.0 <= results["val_auc"] <= 1.0
    True
    >>> scores = ctl.evaluate(model_dir, data_dir)
    >>> len(scores["topk"]) > 0 and 0.0 <= scores["auc"] <= 1.0
    True
    >>> dirs = ctl.export(model_dir, export_dir2)
    >>> sorted(dirs)
    ['product_tower', 'scene_tower']
    >>> index_file = ctl.index_catalog(export_dir2, data_dir + ":test", index2)
    >>> sorted(Recommender.load(export_dir2, index2).look(scene_path, k=1)) == sorted(rec.categories)
    True

Errors are ValueError / FileNotFoundError with one readable line (what the CLIs print), e.g.

    >>> rec.look(scene_path, categories=["hats"])
    Traceback (most recent call last):
    ...
    ValueError: unknown category 'hats'; valid: tops, pants, shoes, handbags, sunglasses

Importing this module (or `from ctl_keras import Recommender`) prints nothing: TensorFlow's C++
start-up lines are filtered (ctl_keras/utils/logs.py) and TensorFlow itself is imported only when a
function needs it.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

from ctl_keras.utils import logs

logs.quiet_tensorflow_startup()

# The recommender is the retrieval package's own class (ctl_keras/retrieval/recommender.py): the CLI's
# `recommend query/look` and this API answer through the same object. Its module imports no TensorFlow.
from ctl_keras.retrieval.recommender import Recommender  # noqa: E402

Scene = "str | os.PathLike | bytes | numpy.ndarray"  # what `look` and `query` accept (scene_tower.scene_bytes)


def build_dataset(out_dir: str | os.PathLike, dataset: str = "synthetic", *, pairs: str | None = None,
                  categories: str | None = None, images_dir: str | None = None, smoke: bool = False,
                  workers: int | None = 1, synthetic_kwargs: Mapping | None = None,
                  beam_args: Sequence[str] = ()) -> dict:
    """Build TFRecords + manifest.json into `out_dir` (what `ctl build_dataset` does); returns the manifest.
    `dataset`: a built-in name or the path of a dataset spec file (README "Your own data").
    `synthetic_kwargs` (num_scenes, scene_size, product_size, seed) size a generated dataset."""
    from ctl_keras.builder import build as builder
    from ctl_keras import spec as spec_lib
    from ctl_keras.config import get_config

    spec = spec_lib.resolve(dataset)
    return builder.build(get_config(spec, smoke=smoke), os.fspath(out_dir), spec=spec, pairs=pairs,
                         categories=categories, images_dir=images_dir,
                         synthetic_kwargs=dict(synthetic_kwargs) if synthetic_kwargs else None, workers=workers,
                         log=lambda line: None, beam_args=beam_args)


def train(data_dir: str | os.PathLike, model_dir: str | os.PathLike, *, dataset: str | None = None,
          smoke: bool = False, feature_cache: bool | None = None, full_scene: bool = False,
          steps_per_execution: int = 1, backbone_precision: str | None = None, **overrides) -> dict:
    """Train into `model_dir` (resumes a finished epoch like `ctl train`); returns results.json's dict.
    The dataset is the one `data_dir` was built from (`dataset`, if given, must agree); `overrides`
    are Config fields (epochs, batch_size, learning_rate, lr_schedule, variant, ...). `feature_cache`:
    as `ctl train --feature_cache` (None: as the run being resumed recorded it, else on).
    `backbone_precision`: the cache's backbone, as `ctl train --backbone_precision` (None: as recorded, else float32)."""
    from ctl_keras.config import get_config
    from ctl_keras.data.resolve import resolve_dataset
    from ctl_keras.training import loop

    spec, data_dir = resolve_dataset(dataset, os.fspath(data_dir))
    config = get_config(spec, smoke=smoke, **overrides)
    options = loop.RunOptions(data_dir=data_dir, model_dir=os.fspath(model_dir),
                              feature_cache=feature_cache, full_scene=full_scene,
                              steps_per_execution=steps_per_execution, backbone_precision=backbone_precision)
    return loop.train(config, options)


def evaluate(model_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None, split: str = "test",
             **options) -> dict:
    """AUC and Top-K of a trained model_dir (writes <model_dir>/eval.json, like `ctl evaluate`); returns it.
    `options`: full_scene, feature_cache, feature_cache_dir, backbone_weights, which, out."""
    from ctl_keras.evaluation.model_eval import evaluate_model

    return evaluate_model(os.fspath(model_dir), data_dir and os.fspath(data_dir), split, **options)


def export(model_dir: str | os.PathLike, export_dir: str | os.PathLike, *, catalog_index: str | None = None,
           top_k: int = 10, backbone_precision: str = "float32",
           min_backbone_agreement: float | None = None) -> dict[str, str]:
    """Export the towers (and the recommender, given a catalog index) as TF Serving SavedModels;
    {model: version dir}, like `ctl export` (its --backbone_precision, --min_backbone_agreement)."""
    from ctl_keras.retrieval.bundle import export_towers

    return export_towers(os.fspath(model_dir), os.fspath(export_dir), catalog_index=catalog_index, top_k=top_k,
                         backbone_precision=backbone_precision, min_agreement=min_backbone_agreement)


def index_catalog(export_dir: str | os.PathLike, products: str, index: str | os.PathLike, *,
                  backend: str = "numpy", beam_args: Sequence[str] = ()) -> str:
    """Embed a catalog (image dir or tf_records/NAME[:split]) with the product tower on Beam and save
    the index STEM.npz + STEM.json (`ctl recommend index`) searched with `backend` (numpy: exact; ivf,
    hnsw, ivf_sq8, ivf_pq: FAISS; milvus); returns the .npz path."""
    from ctl_keras.retrieval.jobs import run_index

    return run_index(os.fspath(export_dir), products, os.fspath(index), backend=backend, beam_args=beam_args)


__all__ = ["Recommender", "build_dataset", "train", "evaluate", "export", "index_catalog"]
