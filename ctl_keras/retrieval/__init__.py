"""Catalog retrieval: the product-embedding index and per-category inner-product search behind one
backend contract (backend.py). Entry point: `ctl_keras.retrieval.load(STEM[, backend]).search(queries,
category, k)` -> (product_ids, d_star)."""


def load(stem, backend=None):
    """The index at STEM with its search backend (or `backend`): a backend.SearchBackend."""
    from ctl_keras.retrieval.search import load as load_backend

    return load_backend(stem, backend)
