"""ctl analysis COMMAND [flags]

  attention    --model_dir=DIR --out=DIR         Table 3 hit rates + Figure 6 overlays
  figures      --model_dir=DIR --out=DIR --num_scenes=N   Figure 7 grid
  human-kit    --model_dir=DIR --out=DIR --num_questions=M [--methods=ours,random,NAME=DIR]
  human-score  --kit=DIR --sheets=a.csv,b.csv    Table 4 from filled answer sheets
  report       --model_dir=DIR --index=STEM --out=DIR [--num_scenes=N] [--k=K]   offline HTML page
"""

from __future__ import annotations

import os

from absl import flags

from ctl_keras import cli
from ctl_keras.cli import options as config_flags

COMMANDS = ("attention", "figures", "human-kit", "human-score", "report")

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defined when run as a command only (cli.run calls this), like every other CLI."""
    # --backbone_weights overrides the model's recorded value.
    config_flags.define("model_dir", "data_dir", "out", "split", "num_scenes", "index", "k", "methods", "seed",
                        "backbone_weights", defaults={
                            "num_scenes": 4, "k": 5, "methods": ["ours", "random"], "seed": 0}, help_texts={
        "data_dir": "Built dataset (default: results.json's data_dir, else tf_records/<dataset>).",
        "out": "Output directory (human-score: default --kit).",
        "split": "Split analysed by attention and figures.",
        "num_scenes": "figures: scenes in the grid; report: scenes on the page.",
        "index": "report: catalog index stem (STEM.npz + STEM.json) to rank.",
        "k": "report: products shown per category.",
        "methods": "human-kit: ours, random, or NAME=MODEL_DIR of another model.",
        "seed": "Seed of random rankings, question sampling and A/B sides."})
    flags.DEFINE_integer("num_overlays", 6, "attention: overlay PNGs written for the first pairs.")
    flags.DEFINE_integer("smooth_samples", 0, "attention: SmoothGrad samples (0 = vanilla gradient saliency).")
    flags.DEFINE_integer("num_questions", 50, "human-kit: questions exported.")
    flags.DEFINE_string("kit", None, "human-score: directory written by human-kit.")
    flags.DEFINE_list("sheets", [], "human-score: filled answer sheets (CSV), one per annotator.")


def main(argv):
    """argv[1] is one of COMMANDS (checked by cli.run)."""
    command = argv[1]
    if command == "human-score":  # pure Python: no TF import
        from ctl_keras.analysis import human_eval

        cli.require("kit", "sheets")
        cli.check_output_dir(FLAGS.out, "out")
        print(human_eval.markdown(human_eval.score_kit(FLAGS.kit, FLAGS.sheets, FLAGS.out)), end="")
        return
    cli.require("model_dir", "out", *(["index"] if command == "report" else []))
    cli.check_output_dir(FLAGS.out, "out")  # before the model is loaded and scored
    from ctl_keras.analysis import jobs as analysis  # TF loads only after the flags are checked

    common = dict(data_dir=FLAGS.data_dir, backbone_weights=FLAGS.backbone_weights)
    if command == "attention":
        result = analysis.run_attention(FLAGS.model_dir, FLAGS.out, split=FLAGS.split, seed=FLAGS.seed,
                                        num_overlays=FLAGS.num_overlays, smooth_samples=FLAGS.smooth_samples,
                                        **common)
        print(result["table"] + f"written to {FLAGS.out}")
    elif command == "figures":
        print(analysis.run_figures(FLAGS.model_dir, FLAGS.out, num_scenes=FLAGS.num_scenes, split=FLAGS.split,
                                   **common))
    elif command == "human-kit":
        key = analysis.run_human_kit(FLAGS.model_dir, FLAGS.out, num_questions=FLAGS.num_questions,
                                     methods=FLAGS.methods, seed=FLAGS.seed, **common)
        print(f"{key['num_questions']} questions, methods {', '.join(key['methods'])}: open "
              f"{os.path.join(FLAGS.out, 'index.html')}; keep key.json hidden from annotators")
    elif command == "report":
        from ctl_keras.analysis import report_page

        done = report_page.build_report(FLAGS.model_dir, FLAGS.index, FLAGS.out, num_scenes=FLAGS.num_scenes,
                                        k=FLAGS.k, split=FLAGS.split, **common)
        print(f"{done['scenes']} scenes x {len(done['categories'])} categories: open {done['html']} in a browser")


if __name__ == "__main__":
    cli.run(main, "analysis", define_flags=define_flags, commands=COMMANDS)
