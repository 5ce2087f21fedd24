"""One exported smoke model with a seeded 6-product catalog, shared by the SavedModel tests (Python's
loader and TF Serving's C++ loader test the same artifacts)."""

import numpy as np

from ctl_keras.config import get_config
from ctl_keras.model.ctl import build_ctl
from ctl_keras.retrieval.index import CatalogIndex
from ctl_keras.savedmodel import exporter


def export_smoke_catalog(export_dir: str, top_k: int):
    """-> (config, models, catalog index, {model: version dir}): scene tower, product tower, recommender."""
    config = get_config("synthetic", smoke=True)
    models = build_ctl(config)
    rng = np.random.default_rng(0)
    catalog = rng.uniform(0, 255, (6, config.image_size, config.image_size, 3)).astype(np.float32)
    index = CatalogIndex(np.array([f"p{i}" for i in range(6)]), np.array([0, 2, 2, 1, 2, 0], np.int32),
                         models.product_tower({"image": catalog})["product_embedding"].numpy(),
                         config.categories, {"model_fingerprint": exporter.model_fingerprint(models)})
    return config, models, index, exporter.export_models(models, config, export_dir, index=index, top_k=top_k)
