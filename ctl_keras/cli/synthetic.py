"""Write the synthetic dataset's raw files (STL JSON + images) without building it:
`python -m ctl_keras.cli.synthetic --out=DIR --num_scenes=600`. `ctl build --dataset=synthetic` generates
and builds in one step; this is for inspecting or sharing the raw files. Prints the written paths as JSON.
"""

from __future__ import annotations

import json

from absl import flags

from ctl_keras import cli
from ctl_keras.cli import options

FLAGS = flags.FLAGS


def define_flags() -> None:
    options.define("out", "num_scenes", "seed", defaults={"num_scenes": 600, "seed": 0},
                   help_texts={"seed": "Random seed; the same seed gives the same bytes."})
    flags.DEFINE_integer("num_styles", 8, "Number of latent styles.")
    flags.DEFINE_integer("scene_size", 160, "Scene image side, pixels.")
    flags.DEFINE_integer("product_size", 96, "Product image side, pixels.")
    flags.DEFINE_float("noise", 0.1, "Per-item colour jitter and pixel noise, 0..1.")


def main(argv) -> None:
    from ctl_keras.data import synthetic

    cli.require("out")
    out = synthetic.generate(FLAGS.out, num_scenes=FLAGS.num_scenes, num_styles=FLAGS.num_styles,
                             scene_size=FLAGS.scene_size, product_size=FLAGS.product_size, noise=FLAGS.noise,
                             seed=FLAGS.seed)
    print(json.dumps(out))


if __name__ == "__main__":
    cli.run(main, "synthetic", define_flags=define_flags)
