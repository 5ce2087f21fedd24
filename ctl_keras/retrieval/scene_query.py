"""A scene photo against a catalog index: the engine behind `recommend query` and `recommend look`.

`SceneRecommender` loads the index, the scene tower it was embedded for (refusing another tower, as
check_compatible says) and a Searcher once, so a caller (the CLI, benchmarks/complete_look.py) can
ask many questions without reloading. `query` runs the tower's serving_default for one category;
`look` runs its complete_look_categories signature (savedmodel/look.py: the backbone once per image)
and searches every asked category: both give [{"product_id", "d_star"}] lists ranked by
d* = 2 - q·f_p ascending (docs/design.md §3).
"""

from __future__ import annotations

import os

import numpy as np

from ctl_keras.data.encoding import looks_like_image
from ctl_keras.retrieval.index import check_compatible, load_index



def read_scene(scene: str) -> bytes:
    """The photo's bytes; one-line errors for a missing file or one that is no JPEG/PNG."""
    if not os.path.isfile(scene):
        raise FileNotFoundError(f"scene image {scene} does not exist")
    with open(scene, "rb") as f:
        image = f.read()
    if not looks_like_image(image):
        raise ValueError(f"scene {scene} is not a JPEG or PNG image")
    return image


def parse_categories(index, categories) -> list[str]:
    """None/"" -> every category of the index; "a,b" or [a, b] -> those, each checked (one line listing
    the valid names otherwise)."""
    if not categories:
        return list(index.categories)
    names = [c.strip() for c in categories.split(",")] if isinstance(categories, str) else list(categories)
    names = list(dict.fromkeys(names))  # a repeated name is asked once (the answer is a mapping)
    unknown = [c for c in names if c not in index.categories]
    if unknown or not names:
        raise ValueError(f"unknown categor{'y' if len(unknown) == 1 else 'ies'} {', '.join(map(repr, unknown))}; "
                         f"valid: {', '.join(index.categories)}")
    return names


class SceneRecommender:
    def __init__(self, index_path: str, *, export_dir=None, version=None, backend=None, index=None):
        import tensorflow as tf

        from ctl_keras.retrieval.search import Searcher
        from ctl_keras.savedmodel.exporter import SCENE, read_meta, resolve_version_dir

        self.index = index if index is not None else load_index(index_path)
        export_dir = export_dir or self.index.meta.get("export_dir")
        if not export_dir:
            raise ValueError("the index does not record its export dir; pass --export_dir")
        tower_version = self.index.meta.get("tower_version") if version is None else version
        version_dir = resolve_version_dir(export_dir, SCENE, tower_version)
        check_compatible(self.index, read_meta(version_dir))
        self.searcher = Searcher(self.index, backend)  # a backend the index cannot serve: refused before the tower
        self.tower = tf.saved_model.load(version_dir)

    def _call(self, scene: str, signature: str, **inputs):
        import tensorflow as tf

        try:
            return self.tower.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
        except tf.errors.InvalidArgumentError as err:
            raise ValueError(f"scene {scene} cannot be decoded (truncated or corrupt image): "
                             f"{err.message.strip().splitlines()[-1][:200]}") from None

    def _ranked(self, query: np.ndarray, category: str, k: int) -> list[dict]:
        ids, d_star = self.searcher.search(query, category, k)
        return [{"product_id": str(p), "d_star": float(d)} for p, d in zip(ids[0], d_star[0])]

    def query(self, scene: str, category: str, k: int, image: bytes | None = None) -> list[dict]:
        self.index.category_id(category)
        image = read_scene(scene) if image is None else image
        out = self._call(scene, "serving_default", image_bytes=[image], category=[category])
        return self._ranked(out["query"].numpy(), category, k)

    def look(self, scene: str, k: int, categories=None, image: bytes | None = None) -> dict[str, list[dict]]:
        """{category: ranked list} for every asked category (default all), in the asked order. A category
        with no product in the catalog gets an empty list (the recommender SavedModel pads it)."""
        names = parse_categories(self.index, categories)
        if "complete_look_categories" not in self.tower.signatures:
            raise ValueError("this scene tower was exported before complete_look existed; re-export it "
                             "(ctl export) and re-index, or use `recommend query`")
        image = read_scene(scene) if image is None else image
        queries = self._call(scene, "complete_look_categories", image_bytes=[image], categories=names)["query"]
        queries = queries.numpy()[0]  # [C, d]
        return {name: self._ranked(queries[j:j + 1], name, k) for j, name in enumerate(names)}
