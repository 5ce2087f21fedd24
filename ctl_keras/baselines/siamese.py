"""Siamese nets (Veit et al. 2015 style): one shared CNN tower for scene and product, L2 distance.

The paper fine-tunes the whole CNN; on CPU we fine-tune only the LAST ResNet50 stage (conv5, three
bottleneck blocks, initialized from the shared backbone) plus a linear projection to a unit vector,
on top of the frozen conv4 map. Conv4 maps are computed once per image (center view, no
augmentation: the remaining differences from the paper) with the shared backbone.

Loss: the contrastive loss of Siamese nets on the two pairs of each sampled triplet (the paper adapts
every baseline to "the same sampling strategy as used in our method"), on the squared Euclidean
distance of UNIT embeddings (the paper: "visual embeddings are normalized to have a unit length for
metric embedding based methods, and the margin α is set to 0.2"), per example

    L = d(s, p+)² + max(0, m − d(s, p−))²,   m = √(2 + α),   d ∈ [0, 2]

(Hadsell et al.'s contrastive form, the one Siamese nets use). Why m = √(2 + α) and not α:
unrelated unit vectors are about orthogonal, d² ≈ 2, so a push term max(0, α − d) with α = 0.2 is
zero for almost every negative and the loss only pulls (the previous version's defect). With this m a
negative is pushed until d² ≥ 2 + α, i.e. α beyond orthogonal to the scene on the paper's
squared-distance scale; the push is active at initialization and whenever the embeddings collapse,
and acting on d (not d²) keeps its gradient from vanishing when they do (a unit-length direction). Training is
baselines.trained's (the shared step, batch size, validation and best-epoch selection). Scoring
distance: ‖t(s) − t(p)‖².
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from keras import ops

from ctl_keras.baselines.base import SplitFeatures
from ctl_keras.baselines.trained import TrainedBaseline
from ctl_keras.config import LOCAL_DIM
from ctl_keras.data import pipeline
from ctl_keras.evaluation.scoring import squared_l2_distance
from ctl_keras.model import backbone as backbone_lib

DEFAULT_EPOCHS = 5  # conv5 on CPU: a few epochs unless --siamese_epochs says otherwise
ORTHOGONAL_D2 = 2.0  # squared distance of two orthogonal unit vectors


def contrastive_margin(margin: float) -> float:
    """The contrastive margin on the unit-vector distance: √(2 + α), α beyond orthogonal in d²."""
    return float(np.sqrt(ORTHOGONAL_D2 + margin))


def contrastive_loss(ts, tp, tn, margin: float):
    """Per example d(s,p+)² + [√(2 + margin) − d(s,p−)]₊² on unit embeddings [B, d]."""
    d_pos2 = ops.sum(ops.square(ts - tp), axis=-1)
    d_neg = ops.sqrt(ops.sum(ops.square(ts - tn), axis=-1) + 1e-12)
    return d_pos2 + ops.square(ops.relu(contrastive_margin(margin) - d_neg))


def conv4_maps(backbone, config, data_dir: str, split: str, full_scene: bool) -> tuple[np.ndarray, np.ndarray]:
    """(scene conv4 [N,h,h,1024], product conv4 [M,h,h,1024]) float16, center view, file order.

    `full_scene`: uncropped scenes (SplitFeatures sets it only for the train split of a full-scene run).
    """
    conv4 = backbone_lib.conv4_model(backbone)
    call = tf.function(lambda x: conv4(x, training=False), reduce_retracing=True)
    key = "full_scene_jpeg" if full_scene else "scene_jpeg"

    def run(ds):
        out = [call(b).numpy().astype(np.float16) for b in ds.batch(32).prefetch(2)]
        return np.concatenate(out)

    view = lambda jpeg: pipeline.eval_view(pipeline.decode_image(jpeg), config)
    scenes = run(pipeline.raw_pairs(data_dir, split).map(lambda ex: view(ex[key]), num_parallel_calls=tf.data.AUTOTUNE))
    products = run(pipeline.raw_products(data_dir, split).map(lambda ex: view(ex["product_jpeg"]),
                                                               num_parallel_calls=tf.data.AUTOTUNE))
    return scenes, products


class Siamese(TrainedBaseline):
    name = "siamese"

    def __init__(self, config, backbone=None, maps: dict | None = None, **kwargs):
        """`maps`: a dict shared between instances (experiments' seeds and learning rates) so each
        split's conv4 maps are computed once per backbone."""
        super().__init__(config, **kwargs)
        self._backbone = backbone
        self._maps = {} if maps is None else maps

    def backbone(self) -> keras.Model:
        if self._backbone is None:
            self._backbone = backbone_lib.seeded_backbone(self.config)
        return self._backbone

    def _split_maps(self, split: SplitFeatures):
        key = (split.split, split.full_scene, split.data_dir)
        if key not in self._maps:
            if split.data_dir is None:
                raise ValueError("siamese needs the images: SplitFeatures.data_dir is not set")
            logging.info("siamese: conv4 maps of the %s split", split.split)
            scenes, products = conv4_maps(self.backbone(), self.config, split.data_dir, split.split, split.full_scene)
            if len(scenes) != len(split) or len(products) != len(split.product_ids):
                raise ValueError(f"{split.split}: the images give {len(scenes)} scenes / {len(products)} products "
                                 f"but the feature cache has {len(split)} / {len(split.product_ids)}")
            self._maps[key] = (scenes, products)
        return self._maps[key]

    def _build_tower(self, side: int) -> keras.Model:
        x = inputs = keras.Input((side, side, LOCAL_DIM), name="conv4")
        x = backbone_lib.conv5_stage(self.backbone())(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        x = keras.layers.Dense(self.config.embedding_dim, name="projection")(x)
        x = keras.layers.UnitNormalization()(x)
        return keras.Model(inputs, x, name="siamese_tower")

    def default_epochs(self) -> int:
        return min(self.config.epochs, DEFAULT_EPOCHS)

    def prepare(self, train: SplitFeatures) -> None:
        self._train_maps = self._split_maps(train)
        self.tower = self._build_tower(self._train_maps[0].shape[1])

    def batches(self, train, rows, negatives, rng) -> dict:
        scenes, products = self._train_maps
        return {"scene": np.asarray(scenes[rows], np.float32),
                "positive": np.asarray(products[train.positive_rows[rows]], np.float32),
                "negative": np.asarray(products[negatives], np.float32)}

    def compute_loss(self, batch, training: bool):
        # BatchNorm stays on the backbone's statistics (training=False), as in the frozen part.
        ts, tp, tn = (self.tower(batch[k], training=False) for k in ("scene", "positive", "negative"))
        return contrastive_loss(ts, tp, tn, self.config.margin)

    def trainable_variables(self) -> list:
        return list(self.tower.trainable_variables)

    def state_variables(self) -> list:
        return list(self.tower.variables)

    def fit(self, train: SplitFeatures, val: SplitFeatures | None = None) -> dict:
        return {**super().fit(train, val), "fine_tuned": "conv5 + projection"}

    def _embed(self, maps: np.ndarray) -> np.ndarray:
        if not hasattr(self, "tower"):
            raise ValueError("siamese: call fit(train) before scoring")
        return np.concatenate([np.asarray(self.tower(np.asarray(maps[i:i + 64], np.float32), training=False))
                               for i in range(0, len(maps), 64)])

    def encode_scenes(self, split: SplitFeatures) -> np.ndarray:
        return self._embed(self._split_maps(split)[0])

    def encode_products(self, split: SplitFeatures) -> np.ndarray:
        return self._embed(self._split_maps(split)[1])

    def distances(self, scene_reps, product_reps):
        return squared_l2_distance(scene_reps, product_reps)
