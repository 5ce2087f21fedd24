"""Export a trained model for TF Serving: scene tower, product tower and, with a catalog index, the recommender.

  ctl export --model_dir=runs/synthetic --export_dir=export/demo
  ctl export --model_dir=runs/synthetic --export_dir=export/demo \
      --catalog_index=export/demo/catalog --top_k=10

Each run writes the next integer version of every model; see export/README.md for serving.
"""

from __future__ import annotations

import os

from absl import flags, logging

from ctl_keras import cli
from ctl_keras.cli import options as config_flags

from ctl_keras.savedmodel import DEFAULT_MAX_IMAGE_PIXELS  # the package only: no TensorFlow import
from ctl_keras.retrieval.bundle import export_towers

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defined on demand, not at import, so other modules can import export_towers() without flag clashes."""
    # --backbone_weights overrides the model's recorded value.
    config_flags.define("model_dir", "export_dir", "backbone_weights", "which", "backbone_precision",
                        "min_backbone_agreement", help_texts={
        "export_dir": "Where scene_tower/, product_tower/ (and recommender/) versions go.",
        "which": "Which head weights of model_dir to export."})
    flags.DEFINE_string("catalog_index", None,
                        "Catalog index (from `ctl recommend index`) to bundle into recommender/.")
    flags.DEFINE_integer("top_k", 10, "Products the recommender returns per request.", lower_bound=1)
    flags.DEFINE_integer("max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS,
                         "Largest image (width x height, read from the JPEG/PNG header) the serving "
                         "signatures accept; larger ones fail with INVALID_ARGUMENT before decoding.",
                         lower_bound=1)


def main(argv):
    cli.require("model_dir", "export_dir")
    cli.check_output_dir(FLAGS.export_dir, "export_dir")  # before minutes of loading and tracing
    written = export_towers(FLAGS.model_dir, FLAGS.export_dir, backbone_weights=FLAGS.backbone_weights,
                  which=FLAGS.which, catalog_index=FLAGS.catalog_index, top_k=FLAGS.top_k,
                  max_image_pixels=FLAGS.max_image_pixels, backbone_precision=FLAGS.backbone_precision,
                  min_agreement=FLAGS.min_backbone_agreement)
    for name, path in written.items():
        logging.info("exported %s", path)
        print(f"{name}: {os.path.abspath(path)}")


if __name__ == "__main__":
    cli.run(main, "export", define_flags=define_flags)
