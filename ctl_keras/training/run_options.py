"""RunOptions: how `ctl train` runs, outside Config; checked here, without TensorFlow, so a bad value
fails before anything is imported or written (the CLI's flags and the Python API alike)."""

from __future__ import annotations

import dataclasses

from ctl_keras.config import BACKBONE_PRECISIONS, STRATEGIES, check_agreement_floor
from ctl_keras.training.cluster import ClusterTask


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """Run settings that are not part of Config (Config is what the model_dir's config.json holds).

    feature_cache: train the heads from cached frozen-backbone features; None: as the run being resumed
    in model_dir recorded it, else on (loop.train resolves it, checkpointing.recorded_option).
    full_scene: train on uncropped scenes; val/test are scored on cropped scenes either way.
    cluster: this process's task under strategy "multi_worker" (from TF_CONFIG); worker_timeout bounds
    the wait for the other workers at start-up and for a feature cache another worker builds.
    steps_per_execution: train steps per tf.function call (the host dispatches once per N batches; the
    weights do not depend on N). jit_compile: XLA for the train step and the feature-cache backbone.
    backbone_precision: the feature cache's backbone, float32 | bfloat16 | auto (model/precision.py); None:
    as the run being resumed recorded it, else float32. min_backbone_agreement: the cache build's floor.
    """

    data_dir: str
    model_dir: str
    strategy: str = "auto"
    feature_cache: bool | None = False
    full_scene: bool = False
    feature_cache_dir: str | None = None
    cluster: ClusterTask | None = None
    worker_timeout: float = 600.0
    steps_per_execution: int = 1
    jit_compile: bool = False
    backbone_precision: str | None = None
    min_backbone_agreement: float | None = None

    def __post_init__(self):
        """One line naming the flag, as for Config's fields."""
        for name in ("data_dir", "model_dir"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"--{name} must be a non-empty path, got {getattr(self, name)!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        for name in ("feature_cache", "full_scene", "jit_compile"):
            value = getattr(self, name)
            if not isinstance(value, bool) and not (name == "feature_cache" and value is None):
                raise ValueError(f"--{name} must be true or false, got {value!r}")
        if self.backbone_precision not in (None, *BACKBONE_PRECISIONS):
            raise ValueError(f"--backbone_precision must be float32, bfloat16 or auto, got {self.backbone_precision!r}")
        check_agreement_floor(self.min_backbone_agreement)
        if self.backbone_precision == "bfloat16" and self.feature_cache is False:  # auto: float32 there
            raise ValueError("--backbone_precision applies to the feature cache: it needs --feature_cache")
        if isinstance(self.steps_per_execution, bool) or not isinstance(self.steps_per_execution, int) \
                or self.steps_per_execution < 1:
            raise ValueError(f"--steps_per_execution must be at least 1, got {self.steps_per_execution}")
        if isinstance(self.worker_timeout, bool) or not isinstance(self.worker_timeout, (int, float)) \
                or not self.worker_timeout > 0:
            raise ValueError(f"--worker_timeout must be positive, got {self.worker_timeout}")
        if self.cluster is not None and self.strategy != "multi_worker":
            raise ValueError(f"a cluster task (TF_CONFIG) needs --strategy=multi_worker, got {self.strategy!r}")

    def recorded(self) -> dict:
        """The options that change the trained weights, checked on resume. jit_compile is one: XLA's
        stateless RNG draws other dropout masks for the same seeds (tests/training/test_execution.py)."""
        if self.feature_cache is None:
            raise ValueError("feature_cache unresolved: loop.train resolves None from the model_dir")
        if self.backbone_precision not in ("float32", "bfloat16"):
            raise ValueError("backbone_precision unresolved: loop.train resolves None and auto")
        return {"feature_cache": self.feature_cache, "full_scene": self.full_scene, "jit_compile": self.jit_compile,
                "backbone_precision": self.backbone_precision}

    def schedule(self) -> dict:
        """How the steps run, which a resume may change (recorded): steps_per_execution leaves the weights
        as they are; the strategy is where the run executes (other hardware: another sample of the run)."""
        return {"steps_per_execution": self.steps_per_execution, "strategy": self.strategy}
