"""The learned baselines' training: the same step, epoch and model selection as our model.

`TrainedBaseline.fit` is `training.step` driven by the baseline as a task: the subclass builds its
model (`prepare`), yields triplet batches (`batches`) and defines the per-example `compute_loss`;
the step (`make_train_step`, default strategy), the epoch (`run_epoch`), the batch size
(config.batch_size, the paper's 16), the epochs (config.epochs) and the selection (validation AUC
every config.eval_every epochs and at the last, the best epoch's weights kept: `BestEpoch`) are
shared with training/loop.py. As for ours, only full batches train. Validation runs every
`selection.validation_every(epochs, config.eval_every)` epochs, so at least 5 times per run whatever
the epoch count. The Adam learning rate is the constructor's `learning_rate` (default: the config's,
as for our model); ctl_keras.experiments picks it for every method from one grid on validation AUC.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from ctl_keras.baselines.base import Baseline, SplitFeatures, pick_views, sample_negatives, view0


class TrainedBaseline(Baseline):
    def __init__(self, config, learning_rate: float | None = None, **kwargs):
        super().__init__(config, **kwargs)
        self.learning_rate = float(config.learning_rate if learning_rate is None else learning_rate)
        if not self.learning_rate > 0:
            raise ValueError(f"{self.name}: learning rate must be positive, got {self.learning_rate}")

    # ------------------------------------------------------------ what a subclass provides
    def prepare(self, train: SplitFeatures) -> None:
        """Build the model (and whatever the batches need) from the train split."""
        raise NotImplementedError

    def batches(self, train: SplitFeatures, rows: np.ndarray, negatives: np.ndarray,
                rng: np.random.Generator) -> dict:
        """The triplet batch of pair `rows` with product rows `negatives`: a dict of float32 arrays."""
        raise NotImplementedError

    def compute_loss(self, batch: dict, training: bool):
        """Per-example losses [B] (training.step's task interface)."""
        raise NotImplementedError

    def trainable_variables(self) -> list:
        raise NotImplementedError

    def state_variables(self) -> list:
        """Everything the best-epoch snapshot must restore (default: the trainable variables)."""
        return self.trainable_variables()

    def default_epochs(self) -> int:
        return self.config.epochs

    # ------------------------------------------------------------ shared
    def _epoch_batches(self, train: SplitFeatures, rng: np.random.Generator) -> Iterator[dict]:
        """One epoch: shuffled pairs with a fresh negative each (data.negatives; pairs without one are
        skipped), full batches only."""
        order, negatives = rng.permutation(len(train)), sample_negatives(train, rng)
        order = order[negatives[order] >= 0]
        for start in range(0, len(order) - self.batch_size + 1, self.batch_size):
            rows = order[start:start + self.batch_size]
            yield self.batches(train, rows, negatives[rows], rng)

    def validation_auc(self, val: SplitFeatures, questions: list[dict]) -> float:
        return float(self.score(val, questions, k_max=1)["auc"])

    def fit(self, train: SplitFeatures, val: SplitFeatures | None = None) -> dict:
        """Train; with `val`, validate every config.eval_every epochs and keep the best epoch."""
        import keras
        import tensorflow as tf
        from absl import logging

        from ctl_keras.data import dataset_dir
        from ctl_keras.evaluation.selection import validation_every
        from ctl_keras.training.step import BestEpoch, batches_dataset, is_eval_epoch, make_train_step, run_epoch

        keras.utils.set_random_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        self.prepare(train)
        variables = self.trainable_variables()
        optimizer = keras.optimizers.Adam(self.learning_rate)
        optimizer.build(variables)
        step = make_train_step(tf.distribute.get_strategy(), self, optimizer, variables, self.batch_size)
        best = BestEpoch(self.state_variables())
        questions = dataset_dir.load_questions(val.data_dir, "val") if val is not None else None
        epochs = self.epochs if self.epochs is not None else self.default_epochs()
        every = validation_every(epochs, self.config.eval_every)
        steps = sum(1 for _ in range(0, len(train) - self.batch_size + 1, self.batch_size))
        history = []
        for epoch in range(1, epochs + 1):
            loss, _, _ = run_epoch(step, batches_dataset(self._epoch_batches(train, rng)), epoch, steps)
            history.append(loss)
            if questions is not None and is_eval_epoch(epoch, epochs, every):
                auc = self.validation_auc(val, questions)
                best.update(epoch, auc)
                logging.info("%s: epoch %d/%d loss %.4f, val AUC %.4f (best %.4f at epoch %d)", self.name, epoch,
                             epochs, loss, auc, best.auc, best.epoch)
        best.restore()
        return {"epochs": epochs, "loss": history, "batch_size": self.batch_size,
                "learning_rate": self.learning_rate, "eval_every": every,
                "best_epoch": best.epoch if questions is not None else epochs,
                "val_auc": best.auc if questions is not None else None, "val_history": best.history}


class FeatureTripletBaseline(TrainedBaseline):
    """A small Keras model on standardized frozen pool5 (a random cached view per image and epoch).

    Subclasses create their layers in `build` (setting `self.layers`, `self.extra_variables`) and define
    `compute_loss` on {"scene", "positive", "negative"} [B, 2048], `embed_scene`, `embed_product`
    (float32 tensors) and `distances` (numpy).
    """

    def build(self) -> None:
        raise NotImplementedError

    def embed_scene(self, x):
        raise NotImplementedError

    def embed_product(self, x):
        raise NotImplementedError

    def _standardize(self, x: np.ndarray) -> np.ndarray:
        # Per-dimension z-scores, scaled to unit expected norm: with raw z-scores (norm ~ sqrt(2048))
        # the initial distances / inner products are in the hundreds and the logistic and BPR losses
        # saturate (measured on synthetic: IBR AUC 0.54 -> 0.74, BPR-DAE 0.47 -> 0.85).
        return ((x - self.mean) / (self.std * float(np.sqrt(x.shape[-1])))).astype(np.float32)

    def prepare(self, train: SplitFeatures) -> None:
        both = np.concatenate([view0(train.scene_pool5), view0(train.product_pool5)])
        self.mean, self.std = both.mean(0), both.std(0) + 1e-6
        self.build()

    def batches(self, train, rows, negatives, rng) -> dict:
        return {k: self._standardize(pick_views(a, r, rng)) for k, a, r in (
            ("scene", train.scene_pool5, rows), ("positive", train.product_pool5, train.positive_rows[rows]),
            ("negative", train.product_pool5, negatives))}

    def trainable_variables(self) -> list:
        return [v for layer in self.layers for v in layer.trainable_variables] + list(self.extra_variables)

    def _encode(self, fn, array: np.ndarray) -> np.ndarray:
        if not hasattr(self, "mean"):
            raise ValueError(f"{self.name}: call fit(train) before scoring")
        x = self._standardize(view0(array))
        return np.concatenate([np.asarray(fn(x[i:i + 256])) for i in range(0, len(x), 256)])

    def encode_scenes(self, split: SplitFeatures) -> np.ndarray:
        return self._encode(self.embed_scene, split.scene_pool5)

    def encode_products(self, split: SplitFeatures) -> np.ndarray:
        return self._encode(self.embed_product, split.product_pool5)
