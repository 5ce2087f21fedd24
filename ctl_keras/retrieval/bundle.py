"""Export a trained run: the scene and product towers, and with a catalog index the recommender that
bundles it. Retrieval owns the bundle (it checks the index against the model); the SavedModels
themselves are ctl_keras.savedmodel's. `ctl export` and the Python API call export_towers."""

from __future__ import annotations

from ctl_keras.savedmodel import DEFAULT_MAX_IMAGE_PIXELS


def export_towers(model_dir: str, export_dir: str, *, backbone_weights=None, which="best", catalog_index=None,
        top_k=10, max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS, backbone_precision="float32",
        min_agreement=None) -> dict[str, str]:
    """Load, export, and return {model: version dir}. Raises ValueError/FileNotFoundError on bad input.

    `backbone_precision` / `min_agreement`: exporter.export_models; the bfloat16 check samples the run's
    dataset (run_dir.run_data_dir) when it is on this machine."""
    from ctl_keras.model.run_dir import load_trained, run_data_dir
    from ctl_keras.savedmodel.exporter import export_models

    index = None
    if catalog_index:
        from ctl_keras.retrieval.index import load_index

        index = load_index(catalog_index)
    config, models = load_trained(model_dir, backbone_weights=backbone_weights, which=which)
    if index is not None:
        from ctl_keras.retrieval.index import check_compatible
        from ctl_keras.savedmodel.exporter import model_fingerprint

        check_compatible(index, {"embedding_dim": config.embedding_dim, "model_fingerprint": model_fingerprint(models),
                                 "categories": list(config.categories)},
                         what="model being exported", check_version=False)
    return export_models(models, config, export_dir, index=index, top_k=top_k, max_image_pixels=max_image_pixels,
                         backbone_precision=backbone_precision, min_agreement=min_agreement,
                         data_dir=run_data_dir(model_dir, config.dataset))
