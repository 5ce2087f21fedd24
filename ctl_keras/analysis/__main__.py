"""python -m ctl_keras.analysis COMMAND [flags]

  attention    --model_dir=DIR --out=DIR         Table 3 hit rates + Figure 6 overlays
  figures      --model_dir=DIR --out=DIR --num_scenes=N   Figure 7 grid
  human-kit    --model_dir=DIR --out=DIR --num_questions=M [--methods=ours,random,NAME=DIR]
  human-score  --kit=DIR --sheets=a.csv,b.csv    Table 4 from filled answer sheets
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

from ctl_keras import logs

COMMANDS = ("attention", "figures", "human-kit", "human-score")

flags.DEFINE_string("model_dir", None, "Trained model_dir (config.json + best.weights.h5).")
flags.DEFINE_string("data_dir", None, "Built dataset (default: results.json's data_dir, else tf_records/<dataset>).")
flags.DEFINE_string("out", None, "Output directory (human-score: default --kit).")
flags.DEFINE_string("split", "test", "Split analysed by attention and figures.")
flags.DEFINE_integer("num_scenes", 4, "figures: scenes in the grid.")
flags.DEFINE_integer("num_overlays", 6, "attention: overlay PNGs written for the first pairs.")
flags.DEFINE_integer("smooth_samples", 0, "attention: SmoothGrad samples (0 = vanilla gradient saliency).")
flags.DEFINE_integer("num_questions", 50, "human-kit: questions exported.")
flags.DEFINE_list("methods", ["ours", "random"], "human-kit: ours, random, or NAME=MODEL_DIR of another model.")
flags.DEFINE_integer("seed", 0, "Seed of random rankings, question sampling and A/B sides.")
flags.DEFINE_string("backbone_weights", None, "Override the config's backbone weights (imagenet|none|path.h5).")
flags.DEFINE_string("kit", None, "human-score: directory written by human-kit.")
flags.DEFINE_list("sheets", [], "human-score: filled answer sheets (CSV), one per annotator.")

FLAGS = flags.FLAGS


def _need(*names):
    for name in names:
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required for this command")


def _run(command: str) -> None:
    if command == "human-score":  # pure Python: no TF import
        from ctl_keras.analysis import human_eval

        _need("kit", "sheets")
        print(human_eval.markdown(human_eval.score_kit(FLAGS.kit, FLAGS.sheets, FLAGS.out)), end="")
        return
    from ctl_keras.analysis import cli  # TF loads only after flags parsed

    common = dict(data_dir=FLAGS.data_dir, backbone_weights=FLAGS.backbone_weights)
    if command == "attention":
        _need("model_dir", "out")
        result = cli.run_attention(FLAGS.model_dir, FLAGS.out, split=FLAGS.split, seed=FLAGS.seed,
                                   num_overlays=FLAGS.num_overlays, smooth_samples=FLAGS.smooth_samples, **common)
        print(result["table"] + f"saliency = {result['saliency_method']}\nwritten to {FLAGS.out}")
    elif command == "figures":
        _need("model_dir", "out")
        print(cli.run_figures(FLAGS.model_dir, FLAGS.out, num_scenes=FLAGS.num_scenes, split=FLAGS.split, **common))
    elif command == "human-kit":
        _need("model_dir", "out")
        key = cli.run_human_kit(FLAGS.model_dir, FLAGS.out, num_questions=FLAGS.num_questions,
                                methods=FLAGS.methods, seed=FLAGS.seed, **common)
        print(f"{key['num_questions']} questions, methods {', '.join(key['methods'])}: open "
              f"{os.path.join(FLAGS.out, 'index.html')}; keep key.json hidden from annotators")


def main(argv):
    logs.quiet_library_info()
    if len(argv) != 2 or argv[1] not in COMMANDS:
        raise app.UsageError(f"expected one command out of {', '.join(COMMANDS)}; got {argv[1:]}")
    try:
        _run(argv[1])
    except (ValueError, FileNotFoundError) as err:
        logging.debug("analysis failed", exc_info=True)
        print(f"analysis {argv[1]}: error: {' '.join(str(err).split())}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
