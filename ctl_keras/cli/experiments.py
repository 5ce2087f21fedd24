"""`ctl experiments`: every method and baseline of Table 2 in one command (ctl_keras/experiments/table.py
says what is done, exactly).

    ctl experiments --dataset=synthetic --out=runs/table2 [--methods=hybrid,ibr]
        [--scenes=cropped,full] [--seeds=0,1,2] [--lr_grid=0.0001,0.0003,0.001] [--num_views=4] [--smoke]
"""

from __future__ import annotations

import os

from absl import flags

from ctl_keras import cli
from ctl_keras.experiments.table import SCENES, SEEDS, TABLE_SCENES, all_methods, run_experiments
from ctl_keras.utils import atomic

FLAGS = flags.FLAGS
def _numbers(values, name: str, kind):
    try:
        return [kind(v) for v in values]
    except ValueError:
        raise ValueError(f"--{name}={','.join(values)}: every entry must be a number") from None


def main(argv):
    cli.require("out")
    cli.check_output_dir(FLAGS.out, "out")  # before hours of training, not at the first write
    cli.check_output_dir(FLAGS.feature_cache_root, "feature_cache_root")
    # Every run's files are written atomically and kept once finished; the dataset and the feature
    # caches name their own directories (an inner full_disk_names wins).
    with atomic.full_disk_names(FLAGS.out, "the experiments (finished runs are kept: rerun the same command to "
                                        "resume)"):
        run_experiments(FLAGS.dataset, FLAGS.out, FLAGS.methods, FLAGS.scenes, data_dir=FLAGS.data_dir,
                        smoke=FLAGS.smoke, epochs=FLAGS.epochs, baseline_epochs=FLAGS.baseline_epochs,
                        siamese_epochs=FLAGS.siamese_epochs, feature_cache_root=FLAGS.feature_cache_root,
                        num_views=FLAGS.num_views, seeds=_numbers(FLAGS.seeds, "seeds", int),
                        lr_grid=FLAGS.lr_grid and _numbers(FLAGS.lr_grid, "lr_grid", float),
                        synthetic_scenes=FLAGS.synthetic_scenes)
    print(open(os.path.join(FLAGS.out, "table.md")).read())
    print(f"wrote {FLAGS.out}/table.md, topk.png, categories.png, results.json")


def define_flags() -> None:
    """Flags exist only when run as a script (build_dataset and train define --dataset/--out too)."""
    from ctl_keras.cli import options as config_flags

    config_flags.define("dataset", "data_dir", "smoke", "out", "methods", "epochs", "num_views",
                        defaults={"methods": list(all_methods())}, help_texts={
        "out": "Output directory for every method's results, table.md, topk.png, results.json.",
        "methods": "Methods to run (baselines and our variants).",
        "epochs": "Epochs of our models and the trained baselines. Default: the dataset's.",
        "num_views": "Augmented views cached per TRAIN image. Default: the dataset's."})
    flags.DEFINE_list("scenes", list(SCENES), "Scenes the methods are TRAINED on: cropped (CTL crop), full "
                      "(uncropped scene). Every method is scored on the cropped test scenes.")
    flags.DEFINE_integer("baseline_epochs", None, "Epochs of IBR and BPR-DAE (default: --epochs / the config's). "
                         "Validation every eval_every epochs and at the last; the best epoch is reported.")
    flags.DEFINE_integer("siamese_epochs", None, "Epochs of the Siamese conv5 fine-tuning (default: min(epochs, 5)).")
    flags.DEFINE_string("feature_cache_root", None, "Directory holding the feature caches, one per scene mode "
                        "and seed (default: <data_dir>/feature_cache).")
    flags.DEFINE_list("seeds", [str(s) for s in SEEDS], "Seeds; the first also chooses each method's learning rate.")
    flags.DEFINE_list("lr_grid", None, "Adam learning rates every trained method chooses from on validation AUC "
                      "(default: evaluation.selection.LR_GRID).")
    flags.DEFINE_integer("synthetic_scenes", TABLE_SCENES, "Scenes of the generated synthetic set (when "
                         "--data_dir has no dataset yet).", lower_bound=48)


if __name__ == "__main__":
    cli.run(main, "experiments", define_flags=define_flags)
