"""One command for the whole Table 2 (§5): every method, trained on cropped and on full scenes, >= 3 seeds.

    python -m ctl_keras.experiments --dataset=synthetic --out=runs/table2 [--methods=hybrid,ibr]
        [--scenes=cropped,full] [--seeds=0,1,2] [--lr_grid=0.0001,0.0003,0.001] [--num_views=4] [--smoke]

Methods: ours (hybrid, global, local, local_uniform) and the baselines of ctl_keras.baselines (random,
popularity, imagenet: no training; ibr, bpr_dae, siamese: trained). What is done, exactly:
- Data: synthetic is generated with --synthetic_scenes scenes (default 2500: >= 1,000 test questions)
  into tf_records/synthetic-table2 when missing. Every method of a seed shares the seed's frozen
  backbone and its feature cache per scene mode (--num_views augmented views per TRAIN image, drawn
  once; val/test images: the center view).
- Seeds: each seed changes the random frozen backbone (backbone_weights=none), the cached views, the
  heads' initialization, dropout and the data order: the spread is the whole pipeline's.
- Training, the same for every trained method (training.step; each method supplies its per-example loss):
  batch config.batch_size, config.epochs epochs, Adam; a fresh negative per pair and epoch; validation
  AUC at least 5 times per run (evaluation.selection.validation_every) and the best validation epoch
  is the model reported. Learning rate: ONE policy for every trained method, ours included: the first
  seed tries every rate of --lr_grid, the best by validation AUC trains the other seeds (eval.json
  "lr_selection"). Losses: ours the triplet hinge with margin 0.2 on unit embeddings; IBR logistic;
  BPR-DAE BPR + reconstruction; Siamese contrastive, negatives pushed to d² ≥ 2 + 0.2 on unit
  vectors (baselines/siamese.py says why), fine-tuning only conv5 + a projection on center-view conv4
  maps, for --siamese_epochs (default min(epochs, 5)) epochs: the CPU cost of conv5.
- Scenes: the scene mode is what a method is TRAINED on ("full": uncropped train scenes); every method,
  in both modes, is validated and scored on the CTL-cropped scenes. Top-K ranks all test products of
  the asked category except the scene's other products of that category (evaluation.scoring).
- Statistics: mean ± std of the test AUC over seeds, and a 95% bootstrap interval over test questions
  (evaluation.selection.summarize).
Resumable: every run is kept as it finishes, and a rerun of the same command skips finished runs (an
interrupted run of ours resumes from its last epoch). Writes into --out:
    <scene>/<method>/seed<S>[_lr<LR>]/eval.json   one run (our models' model_dir next to it: model/)
    <scene>/<method>/eval.json                    the method's summary over seeds + its lr selection
    results.json, table.md, topk.png              every number (timings included), the table, Top-K curves
"""

from __future__ import annotations

import os
import time

from absl import flags, logging

from ctl_keras import atomic, cli, progress
from ctl_keras.experiment_runs import OURS, PROTOCOL, Runner, ensure_table_data  # noqa: F401 (PROTOCOL: API)

FLAGS = flags.FLAGS
OUR_TITLES = {"hybrid": "Ours (hybrid)", "global": "Ours (global only)", "local": "Ours (local only)",
              "local_uniform": "Ours (local, uniform attention)"}
SCENES = ("cropped", "full")
SEEDS = (0, 1, 2)
TABLE_SCENES = 2500  # generated synthetic scenes: ~10% are test scenes, giving >= 1,000 test questions
FOOTNOTE = ("Protocol: every trained method (ours, IBR, BPR-DAE, Siamese) trains through one step "
            "(training.step) with batch {batch}, validates at least 5 times per run (every {every} of {epochs} "
            "epochs) and reports its best validation epoch; its learning rate is picked from {grid} on validation "
            "AUC. Margin {margin} on unit embeddings for ours; Siamese: contrastive loss pushing negatives to a squared "
            "unit-vector distance of at least 2 + {margin}. {views} cached augmented views per train image (the paper draws fresh "
            "ones each epoch).")
SIAMESE_NOTE = (" Siamese fine-tunes only conv5 + a projection on center-view conv4 maps (no augmentation), "
                "{siamese} epochs, on CPU; the paper fine-tunes the whole CNN.")


def all_methods() -> tuple[str, ...]:
    from ctl_keras.baselines.registry import BASELINES

    return (*BASELINES, *OURS)


def check_methods(methods, scenes) -> None:
    valid = all_methods()
    unknown = [m for m in methods if m not in valid]
    if unknown:
        raise ValueError(f"unknown method {unknown[0]!r}; valid names: {', '.join(valid)}")
    bad = [s for s in scenes if s not in SCENES]
    if bad:
        raise ValueError(f"unknown scene mode {bad[0]!r}; valid: {', '.join(SCENES)}")
    if not methods or not scenes:
        raise ValueError("nothing to run: --methods and --scenes must name at least one each")


def run_experiments(dataset: str, out: str, methods, scenes, *, data_dir=None, smoke=False, epochs=None,
                    baseline_epochs=None, siamese_epochs=None, feature_cache_root=None, num_views=None,
                    seeds=SEEDS, lr_grid=None, synthetic_scenes=TABLE_SCENES) -> dict:
    """Run every (scene mode, method, seed[, learning rate]) not already in `out`; write results.json,
    table.md, topk.png, and, when hybrid is trained on cropped scenes, the attention analysis of its
    first seed (attention/, figures/)."""
    from ctl_keras import config as config_lib
    from ctl_keras.evaluation.selection import LR_GRID, check_grid, validation_every

    # Every argument is checked before TensorFlow is imported (a bad name fails in a second, in one line).
    methods, scenes, seeds = list(methods), list(scenes), [int(s) for s in seeds]
    check_methods(methods, scenes)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {seeds} must be distinct and at least one")
    grid = list(check_grid(LR_GRID if lr_grid is None else lr_grid))
    from ctl_keras.baselines.registry import TITLES
    from ctl_keras.baselines.siamese import DEFAULT_EPOCHS
    from ctl_keras.evaluation import table2
    from ctl_keras.evaluation.model_eval import check_split_nonempty
    from ctl_keras.evaluation.report import plot_categories, plot_topk
    from ctl_keras.config_flags import resolve_dataset

    # Checked like train's flags (Config refuses epochs=0 or a negative count, naming the flag).
    overrides = {k: v for k, v in (("epochs", epochs), ("num_views", num_views)) if v is not None}
    explicit = data_dir is not None
    if data_dir is None and dataset in (None, "synthetic"):
        data_dir = os.path.join("tf_records", "synthetic-table2")  # the >= 1,000-question set, not the demo's
    spec, data_dir = resolve_dataset(dataset, data_dir)  # the data's manifest names its dataset
    config = config_lib.get_config(spec, smoke=smoke, **overrides)
    if spec.generator:
        ensure_table_data(data_dir, config, num_scenes=synthetic_scenes, explicit=explicit, smoke=smoke)
    check_split_nonempty(data_dir, "test")
    runner = Runner(config, data_dir, out, feature_cache_root, baseline_epochs, siamese_epochs)
    titles = {**TITLES, **OUR_TITLES}
    results: dict = {s: {} for s in scenes}
    total, start = len(methods) * len(scenes), time.time()
    footnote = FOOTNOTE.format(batch=config.batch_size, every=validation_every(config.epochs, config.eval_every),
                               epochs=config.epochs, grid=grid, views=config.num_views, margin=config.margin)
    if "siamese" in methods:
        footnote += SIAMESE_NOTE.format(siamese=siamese_epochs or min(config.epochs, DEFAULT_EPOCHS))
    bar = progress.Progress(total=total, desc="experiments", unit="method")  # methods done / total, ETA
    for i, (scene, method) in enumerate([(s, m) for s in scenes for m in methods], 1):
        logging.info("[%d/%d] trained on %s scenes: %s", i, total, scene, method)
        r = results[scene][method] = runner.run_method(method, scene, seeds, grid)
        low, high = r["auc_ci95"]
        progress.write(f"[{i}/{total}] trained on {scene:<7} {titles.get(method, method):<32} AUC {r['auc_mean']:.4f} "
                       f"± {r['auc_std']:.4f} [{low:.4f}, {high:.4f}]  lr {r['learning_rate']}  "
                       f"({r['unit_seconds']:.0f} s)")
        bar.update(1)
        summary = {"dataset": config.dataset, "data_dir": os.path.abspath(data_dir), "smoke": smoke,
                   "config": config.to_dict(), "methods": methods, "scenes": scenes, "seeds": seeds,
                   "lr_grid": grid, "scored_on": "cropped", "results": results,
                   "compute_seconds": round(sum(x["unit_seconds"] for by in results.values() for x in by.values()), 1),
                   "wall_seconds_this_run": round(time.time() - start, 1)}
        atomic.write_json(os.path.join(out, "results.json"), summary)
        atomic.write_text(os.path.join(out, "table.md"), table2.markdown(results, titles, scenes) + "\n" + footnote + "\n")
        plot_topk(table2.plot_rows(results), titles, scenes, os.path.join(out, "topk.png"))
        plot_categories(table2.plot_rows(results), titles, scenes, os.path.join(out, "categories.png"))
    bar.close()
    if "hybrid" in methods and "cropped" in scenes:
        lr = results["cropped"]["hybrid"]["learning_rate"]
        _analyse(os.path.join(out, "cropped", "hybrid", f"seed{seeds[0]}_lr{lr:g}", "model"), out, data_dir)
    return summary


def _analyse(model_dir: str, out: str, data_dir: str) -> None:
    """Table 3 / Figures 6-7 for our hybrid model: attention hit rates + overlays, best/worst products."""
    from ctl_keras.analysis import jobs as analysis

    logging.info("attention analysis and figures of %s", model_dir)
    result = analysis.run_attention(model_dir, os.path.join(out, "attention"), data_dir=data_dir)
    analysis.run_figures(model_dir, os.path.join(out, "figures"), data_dir=data_dir)
    print(f"attention analysis: {os.path.join(out, 'attention', 'attention.md')} "
          f"({result['pairs']} test pairs); figures: {os.path.join(out, 'figures')}", flush=True)


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
    with cli.full_disk_names(FLAGS.out, "the experiments (finished runs are kept: rerun the same command to "
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
    from ctl_keras import config_flags

    config_flags.define_dataset_flags(smoke=False)  # --dataset (a name or spec file), --data_dir
    flags.DEFINE_string("out", None, "Output directory for every method's results, table.md, topk.png, results.json.")
    flags.DEFINE_list("methods", list(all_methods()), "Methods to run (baselines and our variants).")
    flags.DEFINE_list("scenes", list(SCENES), "Scenes the methods are TRAINED on: cropped (CTL crop), full "
                      "(uncropped scene). Every method is scored on the cropped test scenes.")
    flags.DEFINE_bool("smoke", False, "Tiny config (64 px, d=16, 2 epochs) for quick checks.")
    config_flags.define_config_flags(fields=("epochs",))  # of our models and the trained baselines
    flags.DEFINE_integer("baseline_epochs", None, "Epochs of IBR and BPR-DAE (default: --epochs / the config's). "
                         "Validation every eval_every epochs and at the last; the best epoch is reported.")
    flags.DEFINE_integer("siamese_epochs", None, "Epochs of the Siamese conv5 fine-tuning (default: min(epochs, 5)).")
    config_flags.define_config_flags(fields=("num_views",))  # augmented views cached per TRAIN image
    flags.DEFINE_string("feature_cache_root", None, "Directory holding the feature caches, one per scene mode "
                        "and seed (default: <data_dir>/feature_cache).")
    flags.DEFINE_list("seeds", [str(s) for s in SEEDS], "Seeds; the first also chooses each method's learning rate.")
    flags.DEFINE_list("lr_grid", None, "Adam learning rates every trained method chooses from on validation AUC "
                      "(default: evaluation.selection.LR_GRID).")
    flags.DEFINE_integer("synthetic_scenes", TABLE_SCENES, "Scenes of the generated synthetic set (when "
                         "--data_dir has no dataset yet).", lower_bound=48)


if __name__ == "__main__":
    cli.run(main, "experiments", define_flags=define_flags)
