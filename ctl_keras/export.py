"""Export a trained model for TF Serving: scene tower, product tower and, with a catalog index, the recommender.

  python -m ctl_keras.export --model_dir=runs/synthetic --export_dir=export/demo
  python -m ctl_keras.export --model_dir=runs/synthetic --export_dir=export/demo \
      --catalog_index=export/demo/catalog --top_k=10

Each run writes the next integer version of every model; see export/README.md for serving.
"""

from __future__ import annotations

import os

from absl import flags, logging

from ctl_keras import cli, config_flags

from ctl_keras.serving import DEFAULT_MAX_IMAGE_PIXELS  # the package only: no TensorFlow import

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defined on demand, not at import, so other modules can import run() without flag clashes."""
    flags.DEFINE_string("model_dir", None, "Trained model_dir (config.json + best.weights.h5).")
    flags.DEFINE_string("export_dir", None, "Where scene_tower/, product_tower/ (and recommender/) versions go.")
    config_flags.define_config_flags(fields=("backbone_weights",))  # overrides the model's recorded value
    flags.DEFINE_enum("which", "best", ["best", "last"], "Which head weights of model_dir to export.")
    flags.DEFINE_string("catalog_index", None,
                        "Catalog index (from `python -m ctl_keras.recommend index`) to bundle into recommender/.")
    flags.DEFINE_integer("top_k", 10, "Products the recommender returns per request.", lower_bound=1)
    flags.DEFINE_integer("max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS,
                         "Largest image (width x height, read from the JPEG/PNG header) the serving "
                         "signatures accept; larger ones fail with INVALID_ARGUMENT before decoding.",
                         lower_bound=1)


def run(model_dir: str, export_dir: str, *, backbone_weights=None, which="best", catalog_index=None,
        top_k=10, max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS) -> dict[str, str]:
    """Load, export, and return {model: version dir}. Raises ValueError/FileNotFoundError on bad input."""
    from ctl_keras.model_io import load_trained
    from ctl_keras.serving.exporter import export_models

    index = None
    if catalog_index:
        from ctl_keras.retrieval.index import load_index

        index = load_index(catalog_index)
    config, models = load_trained(model_dir, backbone_weights=backbone_weights, which=which)
    if index is not None:
        from ctl_keras.retrieval.index import check_compatible
        from ctl_keras.serving.exporter import model_fingerprint

        check_compatible(index, {"embedding_dim": config.embedding_dim, "model_fingerprint": model_fingerprint(models),
                                 "categories": list(config.categories)},
                         what="model being exported", check_version=False)
    return export_models(models, config, export_dir, index=index, top_k=top_k, max_image_pixels=max_image_pixels)


def main(argv):
    cli.require("model_dir", "export_dir")
    cli.check_output_dir(FLAGS.export_dir, "export_dir")  # before minutes of loading and tracing
    written = run(FLAGS.model_dir, FLAGS.export_dir, backbone_weights=FLAGS.backbone_weights,
                  which=FLAGS.which, catalog_index=FLAGS.catalog_index, top_k=FLAGS.top_k,
                  max_image_pixels=FLAGS.max_image_pixels)
    for name, path in written.items():
        logging.info("exported %s", path)
        print(f"{name}: {os.path.abspath(path)}")


if __name__ == "__main__":
    cli.run(main, "export", define_flags=define_flags)
