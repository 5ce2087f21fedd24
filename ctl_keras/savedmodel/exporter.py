"""Write the servable SavedModels of one trained model: scene tower, product tower, recommender.

Layout (what TF Serving's models.config points at):
  <export_dir>/scene_tower/<v>/   <export_dir>/product_tower/<v>/   [<export_dir>/recommender/<v>/]
each with `assets.extra/tf_serving_warmup_requests` and `assets.extra/ctl_export.json` (metadata:
version, embedding size, categories, image sizes and a fingerprint of the model weights, which the
catalog index uses to refuse embeddings made by another model).
"""

from __future__ import annotations

import hashlib
import json
import os

import tensorflow as tf
from absl import logging

from ctl_keras.utils.atomic import write_json
from ctl_keras.savedmodel import DEFAULT_MAX_IMAGE_PIXELS
from ctl_keras.savedmodel import signatures as sig
from ctl_keras.savedmodel import versions, warmup

SCENE, PRODUCT, RECOMMENDER = "scene_tower", "product_tower", "recommender"
META_NAME = "ctl_export.json"


def model_fingerprint(models) -> str:
    """sha256 over every weight of both towers: equal iff the towers compute the same function.

    Variables are taken in model order, not by name: Keras numbers auto-named layers per process.
    Dropout seed-generator states are skipped; they never affect inference.
    """
    digest, seen = hashlib.sha256(), set()
    for model in (models.scene_tower, models.product_tower):
        for v in model.variables:
            if id(v) in seen or "seed_generator" in v.path:
                continue
            seen.add(id(v))
            value = v.numpy()
            digest.update(f"{value.dtype}{value.shape}".encode())
            digest.update(value.tobytes())
    return digest.hexdigest()


def meta_path(version_dir: str) -> str:
    return os.path.join(version_dir, "assets.extra", META_NAME)


def read_meta(version_dir: str) -> dict:
    path = meta_path(version_dir)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} is missing: {version_dir} was not written by ctl_keras.export")
    with open(path) as f:
        return json.load(f)


def resolve_version_dir(export_dir: str, model: str, version: int | None = None) -> str:
    """`<export_dir>/<model>/<version or latest>` with a clear error when absent."""
    base = os.path.join(export_dir, model)
    version = versions.latest_version(base) if version is None else int(version)
    path = os.path.join(base, str(version))
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path} does not exist; versions there: {versions.existing_versions(base)}")
    return path


def _write(module, directory: str, model: str, config, meta: dict) -> None:
    logging.info("writing %s to %s", model, directory)
    tf.saved_model.save(module, directory, signatures=sig.signatures(module))
    warmup.write_warmup(directory, warmup.module_requests(model, module, config))
    # The last file of a version: written atomically and fsynced (the whole version is fsynced before
    # its rename, versions.staged_versions).
    write_json(meta_path(directory), meta, indent=1)


def export_models(models, config, export_dir: str, *, index=None, top_k: int = 10,
                  max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS, backbone_precision: str = "float32",
                  min_agreement: float | None = None, data_dir: str | None = None) -> dict[str, str]:
    """Export the towers (and the recommender when `index` is a CatalogIndex); {model: version dir}.

    The caller checks that `index` was embedded by these towers (export.run does, with
    retrieval.index.check_compatible: serving never imports retrieval, which builds on it).

    `max_image_pixels`: the image_bytes signatures refuse larger images (signatures.py).

    All versions are built under hidden names and renamed together at the end (versions.py).

    `backbone_precision` float32 | bfloat16 | auto (model/precision.py): under bfloat16 the towers' ResNet50
    computes in bfloat16 (signatures stay float32), after the agreement with float32 is measured on a
    sample (precision_check.py; of `data_dir`'s test split when given) and recorded in the metadata;
    below `min_agreement` (the worst cosine) nothing is written (ValueError).
    """
    names = [SCENE, PRODUCT] + ([RECOMMENDER] if index is not None else [])
    fingerprint = model_fingerprint(models)
    bf16, extra_meta = _bf16_backbone(models, config, backbone_precision, min_agreement, data_dir, index)
    with versions.staged_versions(export_dir, names) as (version, staging):
        base_meta = {"version": version, "embedding_dim": config.embedding_dim,
                     "categories": list(config.categories), "image_size": config.image_size,
                     "resize_size": config.resize_size, "local_grid": config.local_grid,
                     "variant": config.variant, "model_fingerprint": fingerprint,
                     "tensorflow_version": tf.__version__, "max_image_pixels": int(max_image_pixels), **extra_meta}
        _write(sig.scene_tower_module(models.scene_tower, config, max_image_pixels, bf16), staging[SCENE], SCENE,
               config, dict(base_meta, model=SCENE, outputs=list(sig.SCENE_OUTPUTS)))
        _write(sig.product_tower_module(models.product_tower, config, max_image_pixels, bf16), staging[PRODUCT],
               PRODUCT, config, dict(base_meta, model=PRODUCT, outputs=list(sig.PRODUCT_OUTPUTS)))
        if index is not None:
            _write(sig.recommender_module(models.scene_tower, config, index, top_k, max_image_pixels, bf16),
                   staging[RECOMMENDER], RECOMMENDER, config,
                   dict(base_meta, model=RECOMMENDER, top_k=int(min(top_k, len(index))),
                        outputs=["product_ids", "d_star", "num_results"],
                        catalog={"num_products": len(index), "source": index.meta.get("source"),
                                 "index_tower_version": index.meta.get("tower_version")}))
    return {name: os.path.join(export_dir, name, str(version)) for name in names}


def _bf16_backbone(models, config, choice: str, floor: float | None, data_dir: str | None, index):
    """(the bfloat16 backbone or None, metadata entries); raises before anything is written."""
    from ctl_keras.config import check_agreement_floor  # noqa: PLC0415

    check_agreement_floor(floor)
    from ctl_keras.model import agreement, precision  # noqa: PLC0415
    from ctl_keras.savedmodel import precision_check  # noqa: PLC0415

    resolved = precision.resolve_and_log(choice, "export")
    if resolved == "float32":
        return None, {"backbone_precision": "float32"}
    bf16 = precision.bf16_backbone(models.backbone)
    sample = agreement.dataset_sample(config, data_dir)
    catalog = None if index is None else index.embeddings
    result = precision_check.measure(models, bf16, sample, catalog)
    logging.info("export: %s (sample: %s)", agreement.line(result), result["sample"])
    agreement.check_floor(result, floor, "export refused")
    return bf16, {"backbone_precision": "bfloat16", "backbone_agreement": result,
                  "cpu_bf16_flags": precision.reported_cpu_flags()}
