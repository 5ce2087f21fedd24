"""A scene photo against a catalog index: the one recommender behind `recommend query/look`, the
Python API (`from ctl_keras import Recommender`) and benchmarks/complete_look.py.

Two layers between a caller and the matmul: this class (the scene tower, scene_tower.py, and the
index's search backend, loaded once so a caller can ask many questions) and the backend
(backend.py). `query` runs the tower's serving_default for one category; `look` runs its
complete_look_categories signature (savedmodel/look.py: the backbone once per image) and searches
every asked category: both give [{"product_id", "d_star"}] lists ranked by d* = 2 - q·f_p ascending
(search.ranked; docs/design.md §3).
"""

from __future__ import annotations

import os
from typing import Iterable

from ctl_keras.retrieval.index import CatalogIndex, check_compatible, load_index
from ctl_keras.retrieval.scene_tower import BadImage, SceneTower, scene_bytes


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


def check_k(k: int) -> int:
    if int(k) < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return int(k)


class Recommender:
    """Complete the look for scene photos: an exported scene tower and a catalog index, loaded once.

    `Recommender.load(export_dir, index)`: `index` is the path stem `recommend index` wrote
    (STEM.npz + STEM.json); the scene tower version is the one the index was embedded with, and a
    tower whose weights differ from the index's is refused.
    """

    def __init__(self, index: CatalogIndex, tower: SceneTower, backend):
        self.index, self.tower, self.backend = index, tower, backend

    @classmethod
    def load(cls, export_dir: str | os.PathLike | None, index: str | os.PathLike | CatalogIndex, *,
             version: int | None = None, backend: str | None = None) -> "Recommender":
        """`export_dir=None` uses the export dir the index records. `backend`: numpy, tf, faiss
        (exact) or the indexed backend the index was built with; default what the index holds.
        `index` may also be a CatalogIndex already loaded."""
        from ctl_keras.retrieval.search import open_backend
        from ctl_keras.savedmodel.exporter import SCENE, read_meta, resolve_version_dir

        index = index if isinstance(index, CatalogIndex) else load_index(os.fspath(index))
        export_dir = (export_dir and os.fspath(export_dir)) or index.meta.get("export_dir")
        if not export_dir:
            raise ValueError("the index does not record its export dir; pass --export_dir")
        tower_version = index.meta.get("tower_version") if version is None else version
        version_dir = resolve_version_dir(export_dir, SCENE, tower_version)
        check_compatible(index, read_meta(version_dir))
        searcher = open_backend(index, backend)  # a backend the index cannot serve: refused before the tower
        return cls(index, SceneTower(version_dir), searcher)

    @property
    def categories(self) -> list[str]:
        """The category names the index knows, in label order."""
        return list(self.index.categories)

    def look(self, scene, categories: str | Iterable[str] | None = None, k: int = 10) -> dict[str, list[dict]]:
        """{category: [{"product_id", "d_star"}, ...]} for every category (or the named ones), at most
        `k` each, most compatible (lowest d* = 2 - q·f_p) first; a category with no product in the
        catalog gets an empty list. `scene`: a path, JPEG/PNG bytes or an HxWx3 uint8 array."""
        from ctl_keras.retrieval.search import ranked

        names = parse_categories(self.index, categories)
        name, image = scene_bytes(scene)
        k = check_k(k)
        if "complete_look_categories" not in self.tower.signatures:
            raise ValueError("this scene tower was exported before complete_look existed; re-export it "
                             "(ctl export) and re-index, or use `recommend query`")
        queries = self._call(name, "complete_look_categories", image_bytes=[image], categories=names)[0]  # [C, d]
        return {n: ranked(self.backend, queries[j:j + 1], n, k)[0] for j, n in enumerate(names)}

    def query(self, scene, category: str, k: int = 10) -> list[dict]:
        """The `look` list of one category (the scene tower's serving_default signature)."""
        from ctl_keras.retrieval.search import ranked

        self.index.category_id(category)
        name, image = scene_bytes(scene)
        k = check_k(k)
        return ranked(self.backend, self._call(name, "serving_default", image_bytes=[image], category=[category]),
                      category, k)[0]

    def _call(self, scene: str, signature: str, **inputs):
        try:
            return self.tower.call(signature, **inputs)["query"]
        except BadImage as err:
            raise ValueError(f"scene {scene} cannot be decoded (truncated or corrupt image): "
                             f"{err.detail.strip().splitlines()[-1][:200]}") from None

    def close(self) -> None:
        """Release the backend's connections (a Milvus Lite database is held by one process at a time)."""
        self.backend.close()
