"""The catalog jobs behind `ctl recommend`: index a catalog, query or look for one scene.
The CLI (ctl_keras/cli/recommend.py) and the Python API call these."""

from __future__ import annotations

import os

from absl import logging

from ctl_keras.retrieval.backend import FAISS_BACKENDS


TOWER_DIRS = ("scene_tower", "product_tower", "recommender")


def check_index_location(index_path: str) -> None:
    """Refuse an index inside an export's tower directory (export/x/scene_tower/99/catalog): the
    directory it creates there would look like a model version to TF Serving and to the next export."""
    path = os.path.dirname(os.path.abspath(index_path))
    while True:
        if os.path.basename(path) in TOWER_DIRS:
            raise ValueError(f"--index={index_path} is inside the export's tower directory {path}, where a "
                             "directory counts as a model version; put the index beside the towers "
                             "(e.g. export/NAME/catalog)")
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent


def run_index(export_dir: str, products: str, index_path: str, *, version=None, batch_size=32,
              beam_args=(), ann_min_size=10_000, backend: str | None = None,
              options: dict | None = None) -> str:
    """Embed the catalog on Beam, build the search backend, save both; returns the .npz path."""
    from ctl_keras.retrieval.backend import backend_class
    from ctl_keras.retrieval.beam_embed import build_index
    from ctl_keras.retrieval.index import check_replaceable, index_paths, save_index
    from ctl_keras.retrieval.index_lock import index_writer, next_generation

    backend = backend or "numpy"
    cls = backend_class(backend)
    check_index_location(index_path)
    check_replaceable(index_path)  # before minutes of embedding
    if options is None:
        options = {"min_size": ann_min_size} if backend in FAISS_BACKENDS else {}
        if backend == "milvus":
            options = {"stem": index_path}
    staging_parent = os.path.dirname(os.path.abspath(index_paths(index_path)[0]))
    with index_writer(index_path):  # one writer per index (index_lock.py); refused at once if busy
        index = build_index(export_dir, products, version=version, batch_size=batch_size, beam_args=beam_args,
                            staging_parent=staging_parent)
        logging.info("indexed %d products (skipped: %s)", len(index), index.meta["skipped"])
        index.meta["generation"] = next_generation(index_path)  # a rebuild continues the numbering
        engine = cls.build(index, **options)
        try:
            return save_index(index, index_path, search=engine)[0]
        finally:
            engine.close()


def run_query(index_path: str, scene: str, category: str, k: int = 10, *, export_dir=None, version=None,
              backend: str | None = None) -> list[dict]:
    """[{"product_id", "d_star"}] sorted by d_star ascending; ValueError/FileNotFoundError on bad input."""
    from ctl_keras.retrieval.index import load_index
    from ctl_keras.retrieval.recommender import Recommender
    from ctl_keras.retrieval.scene_tower import read_scene

    index = load_index(index_path)
    index.category_id(category)  # unknown name -> one-line error before any TF work
    read_scene(scene)
    recommender = Recommender.load(export_dir, index, version=version, backend=backend)
    return recommender.query(scene, category, k)


def run_look(index_path: str, scene: str, k: int = 10, categories=None, *, export_dir=None, version=None,
             backend: str | None = None) -> dict[str, list[dict]]:
    """{category: the list run_query gives for it}, for every category (default) or the named ones;
    the scene tower's backbone runs once (its complete_look signature)."""
    from ctl_keras.retrieval.index import load_index
    from ctl_keras.retrieval.recommender import Recommender, parse_categories
    from ctl_keras.retrieval.scene_tower import read_scene

    index = load_index(index_path)
    names = parse_categories(index, categories)  # unknown names -> one line before any TF work
    read_scene(scene)
    recommender = Recommender.load(export_dir, index, version=version, backend=backend)
    return recommender.look(scene, names, k)
