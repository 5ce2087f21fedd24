"""One command for the paper's experiments (§5): every method trained on cropped and on full scenes.

    python -m ctl_keras.experiments --dataset=synthetic --out=runs/experiments [--methods=hybrid,ibr]
                                    [--scenes=cropped,full] [--num_views=4] [--smoke]

Methods: ours (hybrid, global, local, local_uniform) and the baselines of ctl_keras.baselines (random,
popularity, imagenet: no training; ibr, bpr_dae, siamese: trained). All share the data, the frozen
backbone, one feature cache per scene mode and the test questions. What is done, exactly:
- Features: the frozen backbone's pool5 / conv4 features, computed once per image into the feature cache:
  --num_views augmented views (random crop of the resized image + mirror) per TRAIN image, drawn once
  and reused; each epoch picks one of them at random per image (the paper draws fresh crops every
  epoch: more views come closer). Val/test images: the center view.
- Training, the same for ours, IBR and BPR-DAE (training.step: one step function, each method supplies
  its per-example loss): batch config.batch_size (16, the paper's), config.epochs epochs, Adam; shuffled
  pairs, a fresh negative per pair and epoch (a product of the category outside the pair's scene), full
  batches only; validation AUC every config.eval_every epochs (10) and at the last epoch, and the best
  validation epoch is the model reported (results: fit.best_epoch, fit.val_auc). Losses: ours the
  triplet hinge with margin 0.2 on unit embeddings; IBR logistic; BPR-DAE BPR + reconstruction.
- Siamese goes through the same step, batch size and selection, with a contrastive loss of margin 0.2
  on unit embeddings, but fine-tunes only conv5 + a projection on center-view conv4 maps (no
  augmentation), for --siamese_epochs (default min(epochs, 5)) epochs: the CPU cost of conv5.
- Scenes: the scene mode is what a method is TRAINED on ("full": uncropped train scenes); every method,
  in both modes, is validated and scored on the CTL-cropped scenes, since the task is recommending a
  product that is not visible. Top-K ranks all test products of the asked category except the
  scene's other products of that category (evaluation.scoring).
Writes into --out:
    <scenes>/<method>/eval.json   one method's numbers (a method with this file is skipped on re-run)
    <scenes>/<method>/model/      our models' model_dirs
    results.json                  every number, timings included
    table.md                      Table-2-like: rows = methods, columns = AUC and Top-K per training mode
    topk.png                      Top-K curves (Figure 5 analog)
    categories.png                AUC and Top-10 per category, every method (bars)
"""

from __future__ import annotations

import json
import os
import time

from absl import flags, logging

from ctl_keras import atomic, cli, progress
from ctl_keras.config import VARIANTS

FLAGS = flags.FLAGS
OURS = VARIANTS  # our model's variants are methods of the table
OUR_TITLES = {"hybrid": "Ours (hybrid)", "global": "Ours (global only)", "local": "Ours (local only)",
              "local_uniform": "Ours (local, uniform attention)"}
SCENES = ("cropped", "full")
# eval.json written under another protocol is rerun, not mixed into a table (v2: every trained method
# through training.step, batch 16, best validation epoch; v1 had no marker).
PROTOCOL = "ctl_keras experiments v2"
FOOTNOTE = ("Protocol: ours, IBR, BPR-DAE and Siamese train through one step (training.step) with batch "
            "{batch}, validation AUC every {every} epochs and at the last, best validation epoch reported; "
            "margin {margin} for the metric-embedding methods (ours, Siamese). {views} cached augmented views per "
            "train image (the paper draws fresh ones each epoch).")
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


class Runner:
    """Runs methods one at a time, sharing a feature cache per scene mode; writes reports after each."""

    def __init__(self, config, data_dir, out, feature_cache_root=None, baseline_epochs=None, siamese_epochs=None):
        self.config, self.data_dir, self.out = config, data_dir, out
        self.feature_cache_root = feature_cache_root
        self.baseline_epochs, self.siamese_epochs = baseline_epochs, siamese_epochs
        self._backbone = None
        self._caches: dict = {}

    def cache_dir(self, full_scene: bool) -> str:
        from ctl_keras.feature_cache import default_cache_dir

        path = default_cache_dir(self.config, self.data_dir, full_scene)
        return os.path.join(self.feature_cache_root, os.path.basename(path)) if self.feature_cache_root else path

    def backbone(self):
        from ctl_keras.model.backbone import seeded_backbone

        if self._backbone is None:
            self._backbone = seeded_backbone(self.config)
        return self._backbone

    def cache(self, full_scene: bool):
        from ctl_keras.feature_cache import FeatureCache

        if full_scene not in self._caches:
            self._caches[full_scene] = FeatureCache.build_or_load(
                self.config, self.data_dir, self.cache_dir(full_scene), self.backbone(), full_scene=full_scene)
        return self._caches[full_scene]

    def run_ours(self, variant: str, full_scene: bool, path: str) -> dict:
        from ctl_keras.evaluation import model_eval
        from ctl_keras.training import loop

        model_dir = os.path.join(os.path.dirname(path), "model")
        cache_dir = self.cache_dir(full_scene)
        self.cache(full_scene)  # built once, with the shared backbone
        options = loop.RunOptions(data_dir=self.data_dir, model_dir=model_dir, feature_cache=True,
                                  full_scene=full_scene, feature_cache_dir=cache_dir)
        trained = loop.train(self.config.replace(variant=variant), options)
        # Cropped test scenes whatever the training scenes (the cache's val/test scenes are cropped).
        result = model_eval.evaluate_model(model_dir, self.data_dir, feature_cache=True, feature_cache_dir=cache_dir,
                                           out=os.path.join(model_dir, model_eval.EVAL_FILE))
        result["fit"] = {k: trained.get(k) for k in ("val_auc", "best_epoch", "epochs_run", "train_seconds")}
        return result

    def run_baseline(self, name: str, full_scene: bool) -> dict:
        """Fit on the train features of the mode's cache, score on its (always cropped) test scenes."""
        from ctl_keras.baselines import registry
        from ctl_keras.baselines.base import split_features
        from ctl_keras.data import dataset_dir

        cache = self.cache(full_scene)
        kwargs = {"epochs": self.siamese_epochs if name == "siamese" else self.baseline_epochs}
        if name == "siamese":
            kwargs["backbone"] = self.backbone()
        method = registry.create(name, self.config, **kwargs)
        fit = method.fit(split_features(cache, "train", self.data_dir), split_features(cache, "val", self.data_dir))
        result = method.score(split_features(cache, "test", self.data_dir), dataset_dir.load_questions(self.data_dir, "test"))
        result["fit"] = fit
        return result

    def run_one(self, method: str, scene: str) -> dict:
        from ctl_keras.evaluation.report import CANDIDATES_NOTE

        path = os.path.join(self.out, scene, method, "eval.json")
        if os.path.exists(path):
            with open(path) as f:
                done = json.load(f)
            if done.get("protocol") == PROTOCOL:
                logging.info("%s/%s: already done (%s), skipping", scene, method, path)
                return done
            # Another protocol (older training, or scored on full scenes): not comparable, run again.
            logging.warning("%s: written under protocol %r, not %r; running %s/%s again", path,
                            done.get("protocol"), PROTOCOL, scene, method)
        start = time.time()
        full = scene == "full"
        result = self.run_ours(method, full, path) if method in OURS else self.run_baseline(method, full)
        result.update({"method": method, "scenes": scene, "trained_on": scene, "scored_on": "cropped",
                       "protocol": PROTOCOL,
                       "seconds": round(time.time() - start, 1), "candidate_set": CANDIDATES_NOTE})
        atomic.write_json(path, result)
        return result


def run_experiments(dataset: str, out: str, methods, scenes, *, data_dir=None, smoke=False, epochs=None,
                    baseline_epochs=None, siamese_epochs=None, feature_cache_root=None, num_views=None) -> dict:
    """Run every (scene mode, method) not already in `out`; write results.json, table.md, topk.png,
    categories.png, and, when hybrid is trained on cropped scenes, the attention analysis and figures
    (attention/, figures/)."""
    from ctl_keras import config as config_lib
    from ctl_keras.baselines.registry import TITLES
    from ctl_keras.baselines.siamese import DEFAULT_EPOCHS
    from ctl_keras.evaluation.model_eval import check_split_nonempty
    from ctl_keras.evaluation.report import markdown_table, plot_categories, plot_topk

    methods, scenes = list(methods), list(scenes)
    check_methods(methods, scenes)
    overrides = {k: v for k, v in (("epochs", epochs), ("num_views", num_views)) if v}
    config = config_lib.get_config(dataset, smoke=smoke, **overrides)
    explicit, data_dir = data_dir is not None, data_dir or os.path.join("tf_records", dataset)
    if config.dataset == "synthetic":
        from ctl_keras.build_dataset import ensure_synthetic

        ensure_synthetic(data_dir, seed=config.seed, smoke=smoke, explicit=explicit, log=logging.info)
    check_split_nonempty(data_dir, "test")
    runner = Runner(config, data_dir, out, feature_cache_root, baseline_epochs, siamese_epochs)
    titles = {**TITLES, **OUR_TITLES}
    results: dict = {s: {} for s in scenes}
    total, start = len(methods) * len(scenes), time.time()
    bar = progress.Progress(total=total, desc="experiments", unit="method")  # methods done / total, ETA
    for i, (scene, method) in enumerate([(s, m) for s in scenes for m in methods], 1):
        logging.info("[%d/%d] trained on %s scenes: %s", i, total, scene, method)
        r = results[scene][method] = runner.run_one(method, scene)
        top10 = r["topk"][min(10, r["k_max"]) - 1]
        progress.write(f"[{i}/{total}] trained on {scene:<7} {titles.get(method, method):<32} AUC {r['auc']:.4f}  "
                       f"Top-{min(10, r['k_max'])} {top10:.4f}  ({r.get('seconds', 0):.0f} s)")
        bar.update(1, last=f"{scene}/{method}")
        summary = {"dataset": dataset, "data_dir": os.path.abspath(data_dir), "smoke": smoke,
                   "config": config.to_dict(), "methods": methods, "scenes": scenes, "scored_on": "cropped",
                   "results": results,
                   "wall_seconds_this_run": round(time.time() - start, 1)}
        atomic.write_json(os.path.join(out, "results.json"), summary)
        footnote = FOOTNOTE.format(batch=config.batch_size, every=config.eval_every, views=config.num_views,
                                   margin=config.margin)
        if "siamese" in methods:
            footnote += SIAMESE_NOTE.format(siamese=siamese_epochs or min(config.epochs, DEFAULT_EPOCHS))
        atomic.write_text(os.path.join(out, "table.md"), markdown_table(results, titles, scenes) + "\n" + footnote + "\n")
        plot_topk(results, titles, scenes, os.path.join(out, "topk.png"))
        plot_categories(results, titles, scenes, os.path.join(out, "categories.png"))
    bar.close()
    if "hybrid" in methods and "cropped" in scenes:
        _analyse(os.path.join(out, "cropped", "hybrid", "model"), out, data_dir)
    return summary


def _analyse(model_dir: str, out: str, data_dir: str) -> None:
    """Table 3 / Figures 6-7 for our hybrid model: attention hit rates + overlays, best/worst products."""
    from ctl_keras.analysis import jobs as analysis

    logging.info("attention analysis and figures of %s", model_dir)
    result = analysis.run_attention(model_dir, os.path.join(out, "attention"), data_dir=data_dir)
    analysis.run_figures(model_dir, os.path.join(out, "figures"), data_dir=data_dir)
    print(f"attention analysis: {os.path.join(out, 'attention', 'attention.md')} "
          f"({result['pairs']} test pairs); figures: {os.path.join(out, 'figures')}", flush=True)


def main(argv):
    cli.require("out")
    cli.check_output_dir(FLAGS.out, "out")  # before hours of training, not at the first write
    cli.check_output_dir(FLAGS.feature_cache_root, "feature_cache_root")
    run_experiments(FLAGS.dataset, FLAGS.out, FLAGS.methods, FLAGS.scenes, data_dir=FLAGS.data_dir,
                    smoke=FLAGS.smoke, epochs=FLAGS.epochs, baseline_epochs=FLAGS.baseline_epochs,
                    siamese_epochs=FLAGS.siamese_epochs, feature_cache_root=FLAGS.feature_cache_root,
                    num_views=FLAGS.num_views)
    print(open(os.path.join(FLAGS.out, "table.md")).read())
    print(f"wrote {FLAGS.out}/table.md, topk.png, categories.png, results.json")


def define_flags() -> None:
    """Flags exist only when run as a script (build_dataset and train define --dataset/--out too)."""
    from ctl_keras import spec as spec_lib

    flags.DEFINE_string("dataset", "synthetic", "A built-in dataset (" + ", ".join(spec_lib.builtin_names())
                        + ") or a dataset spec file.")
    flags.DEFINE_string("data_dir", None, "Built dataset (default: tf_records/<dataset>; synthetic is built if missing).")
    flags.DEFINE_string("out", None, "Output directory for every method's results, table.md, topk.png, results.json.")
    flags.DEFINE_list("methods", list(all_methods()), "Methods to run (baselines and our variants).")
    flags.DEFINE_list("scenes", list(SCENES), "Scenes the methods are TRAINED on: cropped (CTL crop), full "
                      "(uncropped scene). Every method is scored on the cropped test scenes.")
    flags.DEFINE_bool("smoke", False, "Tiny config (64 px, d=16, 2 epochs) for quick checks.")
    flags.DEFINE_integer("epochs", None, "Epochs of our models and the trained baselines (default: the config's).")
    flags.DEFINE_integer("baseline_epochs", None, "Epochs of IBR and BPR-DAE (default: --epochs / the config's). "
                         "Validation every eval_every epochs and at the last; the best epoch is reported.")
    flags.DEFINE_integer("siamese_epochs", None, "Epochs of the Siamese conv5 fine-tuning (default: min(epochs, 5)).")
    flags.DEFINE_integer("num_views", None, "Views cached per TRAIN image (scene and product). A view is one "
                         "augmented copy of the image: resized to the config's resize_size, a random image_size "
                         "crop, mirrored with probability 1/2, passed once through the frozen backbone and its "
                         "features stored. Views are drawn once, at cache build; each epoch uses one of them at "
                         "random per image. Val/test images have one view, the center crop. More views come "
                         "closer to the paper's fresh augmentation per epoch, at the cost of a longer cache build "
                         "and a larger cache (linear in the views). Default: the config's (4).", lower_bound=1)
    flags.DEFINE_string("feature_cache_root", None, "Directory holding the feature caches, one per scene mode "
                        "(default: <data_dir>/feature_cache).")


if __name__ == "__main__":
    cli.run(main, "experiments", define_flags=define_flags)
