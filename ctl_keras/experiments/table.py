"""One command for the whole Table 2 (§5): every method, trained on cropped and on full scenes, >= 3 seeds.

    ctl experiments --dataset=synthetic --out=runs/table2 [--methods=hybrid,ibr]
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

from absl import logging

from ctl_keras.experiments.runs import OURS, PROTOCOL, Runner, ensure_table_data  # noqa: F401 (PROTOCOL: API)
from ctl_keras.utils import atomic, progress

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
    from ctl_keras.data.resolve import resolve_dataset

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
