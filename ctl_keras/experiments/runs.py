"""The runs behind `ctl experiments`: one (method, scene mode, seed, learning rate) at a time.

`Runner.run_method` runs every seed of a method (the learning-rate grid on the first seed, the best by
validation AUC on the others) and keeps each finished run on disk, so an interrupted command resumes;
`ensure_table_data` generates the table's synthetic set. The command, its flags and the table are in
ctl_keras/experiments/table.py.
"""

from __future__ import annotations

import importlib
import json
import os
import time

from absl import logging

from ctl_keras.utils import atomic
from ctl_keras.config import VARIANTS
from ctl_keras.model.run_dir import EVAL_FILE

OURS = VARIANTS  # our model's variants are methods of the table
# eval.json written under another protocol is rerun, not mixed into a table (v3: seeds, one lr grid for
# every trained method chosen on validation, >= 5 validations per run, per-question outcomes).
PROTOCOL = "ctl_keras experiments v3"


def uses_learning_rate(method: str) -> bool:
    """Ours and the gradient-trained baselines pick a learning rate; random/popularity/imagenet do not."""
    if method in OURS:
        return True
    from ctl_keras.baselines.registry import BASELINES
    from ctl_keras.baselines.trained import TrainedBaseline

    module, cls = BASELINES[method]
    return issubclass(getattr(importlib.import_module(module), cls), TrainedBaseline)


def _read_done(path: str, want: dict) -> dict | None:
    """A finished eval.json of this protocol and these settings, else None (rerun)."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        done = json.load(f)
    if done.get("protocol") == PROTOCOL and all(done.get(k) == v for k, v in want.items()):
        logging.info("%s: already done, kept", path)
        return done
    logging.warning("%s was written under other settings (%r); running it again", path, done.get("protocol"))
    return None


class Runner:
    """Runs one (method, scene mode, seed, learning rate) at a time; a seed's backbone and feature
    caches are shared by every method; each finished unit is kept on disk (resume)."""

    def __init__(self, config, data_dir, out, feature_cache_root=None, baseline_epochs=None, siamese_epochs=None):
        self.config, self.data_dir, self.out = config, data_dir, out
        self.feature_cache_root = feature_cache_root
        self.baseline_epochs, self.siamese_epochs = baseline_epochs, siamese_epochs
        self._backbones: dict = {}
        self._caches: dict = {}
        self._siamese_maps: dict = {}

    def seeded(self, seed: int, learning_rate=None, variant=None):
        """The run's config: the seed (weights, views, data order), the validation period that gives at
        least 5 validations, and the learning rate / variant when given."""
        from ctl_keras.evaluation.selection import validation_every

        overrides = {"seed": seed, "eval_every": validation_every(self.config.epochs, self.config.eval_every)}
        if learning_rate is not None:
            overrides["learning_rate"] = float(learning_rate)
        if variant is not None:
            overrides["variant"] = variant
        return self.config.replace(**overrides)

    def cache_dir(self, full_scene: bool, seed: int) -> str:
        from ctl_keras.feature_cache import default_cache_dir

        path = default_cache_dir(self.config, self.data_dir, full_scene)
        root = self.feature_cache_root or os.path.dirname(path)
        return os.path.join(root, f"{os.path.basename(path)}_seed{seed}")

    def backbone(self, seed: int):
        from ctl_keras.model.backbone import seeded_backbone

        if seed not in self._backbones:
            self._backbones[seed] = seeded_backbone(self.seeded(seed))
        return self._backbones[seed]

    def cache(self, full_scene: bool, seed: int):
        from ctl_keras.feature_cache import FeatureCache

        key = (full_scene, seed)
        if key not in self._caches:
            cache_dir = self.cache_dir(full_scene, seed)
            # The cache is built beside its final name and renamed into place when complete.
            with atomic.full_disk_names(os.path.dirname(cache_dir), "a feature cache (a previous one there, if any, "
                                                                 "is unchanged)"):
                self._caches[key] = FeatureCache.build_or_load(self.seeded(seed), self.data_dir, cache_dir,
                                                               self.backbone(seed), full_scene=full_scene)
        return self._caches[key]

    def run_ours(self, variant: str, full_scene: bool, seed: int, lr: float, unit_dir: str) -> dict:
        from ctl_keras.evaluation import model_eval
        from ctl_keras.training import loop

        model_dir = os.path.join(unit_dir, "model")
        cache_dir = self.cache_dir(full_scene, seed)
        self.cache(full_scene, seed)  # built once per seed, with the shared backbone
        options = loop.RunOptions(data_dir=self.data_dir, model_dir=model_dir, feature_cache=True,
                                  full_scene=full_scene, feature_cache_dir=cache_dir)
        trained = loop.train(self.seeded(seed, lr, variant), options)
        # Cropped test scenes whatever the training scenes (the cache's val/test scenes are cropped).
        result = model_eval.evaluate_model(model_dir, self.data_dir, feature_cache=True, feature_cache_dir=cache_dir,
                                           out=os.path.join(model_dir, EVAL_FILE))
        result["fit"] = {k: trained.get(k) for k in ("val_auc", "best_epoch", "epochs_run", "train_seconds")}
        result["fit"].update(learning_rate=lr, eval_every=self.seeded(seed).eval_every)
        return result

    def run_baseline(self, name: str, full_scene: bool, seed: int, lr: float | None) -> dict:
        """Fit on the train features of the mode's cache, score on its (always cropped) test scenes."""
        from ctl_keras.baselines import registry
        from ctl_keras.baselines.base import split_features
        from ctl_keras.data import dataset_dir

        cache = self.cache(full_scene, seed)
        kwargs = {"epochs": self.siamese_epochs if name == "siamese" else self.baseline_epochs}
        if lr is not None:
            kwargs["learning_rate"] = lr
        if name == "siamese":
            kwargs.update(backbone=self.backbone(seed), maps=self._siamese_maps.setdefault(seed, {}))
        method = registry.create(name, self.seeded(seed), **kwargs)
        fit = method.fit(split_features(cache, "train", self.data_dir), split_features(cache, "val", self.data_dir))
        result = method.score(split_features(cache, "test", self.data_dir), dataset_dir.load_questions(self.data_dir, "test"))
        result["fit"] = fit
        return result

    def run_unit(self, method: str, scene: str, seed: int, lr: float | None) -> dict:
        """One training run, kept in <out>/<scene>/<method>/seed<S>[_lr<LR>]/eval.json."""
        from ctl_keras.evaluation.report import CANDIDATES_NOTE

        unit_dir = os.path.join(self.out, scene, method, f"seed{seed}" + ("" if lr is None else f"_lr{lr:g}"))
        path = os.path.join(unit_dir, EVAL_FILE)
        done = _read_done(path, {"seed": seed, "learning_rate": lr, "epochs": self.config.epochs})
        if done is not None:
            return done
        start = time.time()
        full = scene == "full"
        result = (self.run_ours(method, full, seed, lr, unit_dir) if method in OURS
                  else self.run_baseline(method, full, seed, lr))
        result.update({"method": method, "scenes": scene, "trained_on": scene, "scored_on": "cropped",
                       "protocol": PROTOCOL, "seed": seed, "learning_rate": lr, "epochs": self.config.epochs,
                       "seconds": round(time.time() - start, 1), "candidate_set": CANDIDATES_NOTE})
        atomic.write_json(path, result)
        return result

    def run_method(self, method: str, scene: str, seeds, grid) -> dict:
        """Every seed of one method and scene mode: with a learning rate, the grid is tried on the first
        seed and the best by validation AUC runs the others; writes <out>/<scene>/<method>/eval.json."""
        from ctl_keras.evaluation.selection import pick_learning_rate, summarize

        path = os.path.join(self.out, scene, method, EVAL_FILE)
        want = {"seeds": list(seeds), "lr_grid": list(grid), "epochs": self.config.epochs}
        done = _read_done(path, want)
        if done is not None:
            return done
        start = time.time()
        selection, tried = None, {}
        if uses_learning_rate(method):
            tried = {lr: self.run_unit(method, scene, seeds[0], lr) for lr in grid}
            val = {lr: float(r["fit"]["val_auc"]) for lr, r in tried.items()}
            lr = pick_learning_rate(val)
            selection = {"grid": list(grid), "val_auc": {f"{k:g}": v for k, v in val.items()}, "chosen": lr,
                         "chosen_on": f"validation AUC of seed {seeds[0]}"}
            per_seed = [tried[lr]] + [self.run_unit(method, scene, s, lr) for s in seeds[1:]]
        else:
            lr = None
            per_seed = [self.run_unit(method, scene, s, None) for s in seeds]
        summary = summarize(per_seed)
        result = {**want, **summary, "method": method, "trained_on": scene, "scored_on": "cropped",
                  "protocol": PROTOCOL, "learning_rate": lr, "lr_selection": selection,
                  "k_max": per_seed[0]["k_max"], "per_category": _mean_per_category(per_seed),
                  "per_seed": [{k: r.get(k) for k in ("seed", "auc", "fit", "seconds")} for r in per_seed],
                  "unit_seconds": round(sum(float(r.get("seconds", 0)) for r in per_seed)
                                        + sum(float(r.get("seconds", 0)) for lr_, r in
                                              tried.items() if lr_ != lr), 1),
                  "seconds_this_call": round(time.time() - start, 1)}
        atomic.write_json(path, result)
        return result


def _mean_per_category(runs: list[dict]) -> dict:
    """{category: {"auc", "topk"}} averaged over the seeds' runs (None where a run has no value)."""
    out = {}
    for name in runs[0].get("per_category", {}):
        entries = [r["per_category"][name] for r in runs if name in r.get("per_category", {})]
        aucs = [e["auc"] for e in entries if e.get("auc") is not None]
        curves = [e["topk"] for e in entries if e.get("topk")]
        length = min((len(c) for c in curves), default=0)
        out[name] = {"auc": sum(aucs) / len(aucs) if aucs else None,
                     "topk": [sum(c[i] for c in curves) / len(curves) for i in range(length)] if curves else None}
    return out


def ensure_table_data(data_dir: str, config, *, num_scenes: int, explicit: bool, smoke: bool) -> None:
    """The synthetic set of the table, generated (num_scenes scenes) and built when missing; only into a
    new or empty directory, or the default one."""
    from ctl_keras.data import dataset_dir

    if os.path.exists(os.path.join(data_dir, "manifest.json")):
        return
    if explicit and os.path.isdir(data_dir) and os.listdir(data_dir):
        raise ValueError(f"--data_dir {data_dir} is not empty and has no manifest.json: the synthetic set is "
                         "generated only into a new or empty directory")
    from ctl_keras.builder import build as build_dataset
    from ctl_keras.config import get_config

    kwargs = {**build_dataset.SMOKE_SYNTHETIC, "num_scenes": num_scenes} if smoke else {"num_scenes": num_scenes}
    logging.info("building the table's synthetic set (%d scenes) into %s", num_scenes, data_dir)
    build_dataset.build(get_config("synthetic", smoke=smoke, seed=config.seed), data_dir, synthetic_kwargs=kwargs,
                        log=logging.info)
    dataset_dir.read_manifest(data_dir)
