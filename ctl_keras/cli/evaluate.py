"""Evaluate a trained model_dir on the fixed test questions and by Top-K retrieval; write eval.json.

    ctl evaluate --model_dir=runs/synthetic-hybrid [--data_dir=tf_records/synthetic]

The dataset is --data_dir, else the one training recorded in results.json, else tf_records/<dataset>.

Metrics (paper §5.2):
  AUC    binary-choice accuracy on the split's fixed questions (scene + category, positive vs a
         negative of the same category): the fraction where d*(s, p+) < d*(s, p−), ties 1/2.
  Top-K  for every pair of the split, the products of the asked category in the same split are
         ranked by d* (the positive included, no other categories) except the scene's other products
         of that category: they are correct answers too, so they are left out of that pair's
         candidates (eval.json: "excluded_candidates", "candidate_set"). Top-K is the fraction of
         pairs whose positive is among the first K, K = 1..config.topk_max. Ties count against the model.
Both are also reported per category. <model_dir>/eval.json is written atomically, and beside it
eval_topk.png (Top-K vs K) and eval_categories.png (AUC and Top-10 per category); with --out=X.json:
X_topk.png, X_categories.png. Embedding shows progress (a bar on a terminal, else a log line per ~10 s).

Scenes: the CTL-cropped test scenes, whatever the model was trained on (paper Table 2 trains some
models on full images but scores all on cropped scenes: the product must not be visible). eval.json
records `trained_on` and `scored_on`. `--full_scene` scores uncropped scenes instead: an analysis, NOT
the CTL task (the product is visible in them), and only through the image path.
"""

from __future__ import annotations

import os

from absl import flags

from ctl_keras import cli
from ctl_keras.cli import options as config_flags
from ctl_keras.evaluation.model_eval import evaluate_model
from ctl_keras.model.run_dir import EVAL_FILE

FLAGS = flags.FLAGS


def main(argv):
    cli.require("model_dir")
    cli.check_output_file(FLAGS.out, "out")  # before scoring, not at the final write
    result = evaluate_model(FLAGS.model_dir, FLAGS.data_dir, FLAGS.split, FLAGS.full_scene, FLAGS.feature_cache,
                            FLAGS.feature_cache_dir, FLAGS.backbone_weights, FLAGS.which, FLAGS.out,
                            cross_dataset=FLAGS.cross_dataset)
    from ctl_keras.evaluation.report import eval_table

    print(f"{result['method']} (trained on {result['trained_on']} scenes) on the {result['split']} split "
          f"({result['scored_on']} scenes): AUC {result['auc']:.4f} over {result['num_questions']} questions")
    if "note" in result:
        print(f"NOTE: {result['note']}")
    if "cross_dataset" in result:
        from ctl_keras.evaluation.seen_scenes import describe

        print(describe(result["cross_dataset"], result["split"]))
    print(eval_table(result))
    print(result["candidate_set"])
    path = FLAGS.out or os.path.join(FLAGS.model_dir, EVAL_FILE)
    from ctl_keras.evaluation.report import eval_plot_paths

    print(f"wrote {path}, {', '.join(eval_plot_paths(path))}")


def define_flags() -> None:
    """Flags exist only when run as a script, so importing this module never clashes with other CLIs."""
    # --backbone_weights overrides the model's recorded value.
    config_flags.define("model_dir", "data_dir", "split", "full_scene", "feature_cache", "feature_cache_dir",
                        "backbone_weights", "which", "out", help_texts={
        "data_dir": "Built dataset directory (default: results.json's data_dir, else tf_records/<dataset>).",
        "full_scene": "Analysis only: score uncropped scenes; the product is visible in them, so this is NOT the "
                      "CTL task. Needs the image path (no --feature_cache). Default: the cropped scenes, whatever "
                      "the model was trained on.",
        "feature_cache": "Embed from the frozen-feature cache (default: as trained; never with --full_scene).",
        "feature_cache_dir": "The feature cache's directory (default: the one train uses).",
        "out": "Where to write the JSON (default: <model_dir>/eval.json)."})
    flags.DEFINE_bool("cross_dataset", False, "Score on a dataset other than the one the model trained on "
                      "(refused otherwise); the output says how many of its scenes the model trained on.")

if __name__ == "__main__":
    cli.run(main, "evaluate", define_flags=define_flags)
