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

import io
import os
from typing import Iterable, Mapping, Sequence

from ctl_keras.utils import logs

logs.quiet_tensorflow_startup()

Scene = "str | os.PathLike | bytes | numpy.ndarray"  # what `look` and `query` accept (see _scene_bytes)


def _scene_bytes(scene) -> tuple[str, bytes]:
    """(name for error messages, encoded JPEG/PNG bytes) for a path, encoded bytes or an HxWx3 uint8 array."""
    import numpy as np

    from ctl_keras.data.encoding import looks_like_image
    from ctl_keras.retrieval.scene_query import read_scene

    if isinstance(scene, (str, os.PathLike)):
        return os.fspath(scene), read_scene(os.fspath(scene))
    if isinstance(scene, (bytes, bytearray, memoryview)):
        data = bytes(scene)
        if not looks_like_image(data):
            raise ValueError("scene bytes are not a JPEG or PNG image")
        return "<bytes>", data
    if isinstance(scene, np.ndarray):
        if scene.ndim != 3 or scene.shape[-1] != 3 or scene.dtype != np.uint8:
            raise ValueError(f"scene array must be HxWx3 uint8, got shape {scene.shape} dtype {scene.dtype}")
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(scene).save(buffer, format="PNG")
        return "<array>", buffer.getvalue()
    raise TypeError(f"scene must be a path, JPEG/PNG bytes or an HxWx3 uint8 array, not {type(scene).__name__}")


class Recommender:
    """Complete the look for scene photos: an exported scene tower and a catalog index, loaded once.

    `Recommender.load(export_dir, index)`: `index` is the path stem `recommend index` wrote
    (STEM.npz + STEM.json); the scene tower version is the one the index was embedded with, and a
    tower whose weights differ from the index's is refused.
    """

    def __init__(self, engine):
        self._engine = engine

    @classmethod
    def load(cls, export_dir: str | os.PathLike | None, index: str | os.PathLike, *, version: int | None = None,
             backend: str | None = None) -> "Recommender":
        """`export_dir=None` uses the export dir the index records. `backend`: numpy, tf, faiss
        (exact) or the indexed backend the index was built with; default what the index holds."""
        from ctl_keras.retrieval.scene_query import SceneRecommender

        return cls(SceneRecommender(os.fspath(index), export_dir=export_dir and os.fspath(export_dir),
                                    version=version, backend=backend))

    @property
    def categories(self) -> list[str]:
        """The category names the index knows, in label order."""
        return list(self._engine.index.categories)

    def look(self, scene, categories: str | Iterable[str] | None = None, k: int = 10) -> dict[str, list[dict]]:
        """{category: [{"product_id", "d_star"}, ...]} for every category (or the named ones), at most
        `k` each, most compatible (lowest d* = 2 - q·f_p) first. `scene`: a path, JPEG/PNG bytes or
        an HxWx3 uint8 array."""
        from ctl_keras.retrieval.scene_query import parse_categories

        names = parse_categories(self._engine.index, categories)
        name, image = _scene_bytes(scene)
        return self._engine.look(name, _check_k(k), names, image=image)

    def query(self, scene, category: str, k: int = 10) -> list[dict]:
        """The `look` list of one category (the scene tower's serving_default signature)."""
        self._engine.index.category_id(category)
        name, image = _scene_bytes(scene)
        return self._engine.query(name, category, _check_k(k), image=image)


def _check_k(k: int) -> int:
    if int(k) < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return int(k)


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
          steps_per_execution: int = 1, **overrides) -> dict:
    """Train into `model_dir` (resumes a finished epoch like `ctl train`); returns results.json's dict.
    The dataset is the one `data_dir` was built from (`dataset`, if given, must agree); `overrides`
    are Config fields (epochs, batch_size, learning_rate, lr_schedule, variant, ...). `feature_cache`:
    as `ctl train --feature_cache` (None: as the run being resumed recorded it, else on)."""
    from ctl_keras.config import get_config
    from ctl_keras.data.resolve import resolve_dataset
    from ctl_keras.training import loop

    spec, data_dir = resolve_dataset(dataset, os.fspath(data_dir))
    config = get_config(spec, smoke=smoke, **overrides)
    options = loop.RunOptions(data_dir=data_dir, model_dir=os.fspath(model_dir),
                              feature_cache=feature_cache, full_scene=full_scene,
                              steps_per_execution=steps_per_execution)
    return loop.train(config, options)


def evaluate(model_dir: str | os.PathLike, data_dir: str | os.PathLike | None = None, split: str = "test",
             **options) -> dict:
    """AUC and Top-K of a trained model_dir (writes <model_dir>/eval.json, like `ctl evaluate`); returns it.
    `options`: full_scene, feature_cache, feature_cache_dir, backbone_weights, which, out."""
    from ctl_keras.evaluation.model_eval import evaluate_model

    return evaluate_model(os.fspath(model_dir), data_dir and os.fspath(data_dir), split, **options)


def export(model_dir: str | os.PathLike, export_dir: str | os.PathLike, *, catalog_index: str | None = None,
           top_k: int = 10) -> dict[str, str]:
    """Export the towers (and the recommender, given a catalog index) as TF Serving SavedModels;
    {model: version dir}, like `ctl export`."""
    from ctl_keras.retrieval.bundle import export_towers

    return export_towers(os.fspath(model_dir), os.fspath(export_dir), catalog_index=catalog_index, top_k=top_k)


def index_catalog(export_dir: str | os.PathLike, products: str, index: str | os.PathLike, *,
                  backend: str = "numpy", beam_args: Sequence[str] = ()) -> str:
    """Embed a catalog (image dir or tf_records/NAME[:split]) with the product tower on Beam and save
    the index STEM.npz + STEM.json (`ctl recommend index`) searched with `backend` (numpy: exact; ivf,
    hnsw, ivf_sq8, ivf_pq: FAISS; milvus); returns the .npz path."""
    from ctl_keras.retrieval.jobs import run_index

    return run_index(os.fspath(export_dir), products, os.fspath(index), backend=backend, beam_args=beam_args)


__all__ = ["Recommender", "build_dataset", "train", "evaluate", "export", "index_catalog"]
