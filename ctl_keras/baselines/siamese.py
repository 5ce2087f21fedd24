"""Siamese nets (Veit et al. 2015 style): one shared CNN tower for scene and product, L2 distance.

The paper fine-tunes the whole CNN; on CPU we fine-tune only the LAST ResNet50 stage (conv5, three
bottleneck blocks, initialized from the shared backbone) plus a linear projection to a unit vector,
on top of the frozen conv4 map. Conv4 maps are computed once per image (center view, no
augmentation) with the shared backbone. Loss: margin-contrastive on the Euclidean distance,
    L = d(s, p+)² + max(0, MARGIN − d(s, p−))²,
with one sampled negative per pair. Scoring distance: ‖t(s) − t(p)‖².
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from keras import ops

from ctl_keras.baselines import Baseline, SplitFeatures, sample_negatives
from ctl_keras.data import pipeline
from ctl_keras.evaluation.scoring import squared_l2_distance
from ctl_keras.model import backbone as backbone_lib

MARGIN = 1.0
DEFAULT_EPOCHS = 5


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


class Siamese(Baseline):
    name = "siamese"
    trainable = True
    learning_rate = 3e-4

    def __init__(self, config, backbone=None, **kwargs):
        super().__init__(config, **kwargs)
        self._backbone = backbone
        self._maps: dict = {}

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
        x = inputs = keras.Input((side, side, 1024), name="conv4")
        x = backbone_lib.conv5_stage(self.backbone())(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        x = keras.layers.Dense(self.config.embedding_dim, name="projection")(x)
        x = keras.layers.UnitNormalization()(x)
        return keras.Model(inputs, x, name="siamese_tower")

    def fit(self, train: SplitFeatures, val: SplitFeatures | None = None) -> dict:
        scenes, products = self._split_maps(train)
        keras.utils.set_random_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        self.tower = self._build_tower(scenes.shape[1])
        optimizer = keras.optimizers.Adam(self.learning_rate)
        variables = self.tower.trainable_variables

        @tf.function(reduce_retracing=True)
        def step(s, p, n):
            with tf.GradientTape() as tape:
                # BatchNorm stays on the backbone's statistics, as in the frozen part of the network.
                ts, tp, tn = (self.tower(x, training=False) for x in (s, p, n))
                d_pos = ops.sum(ops.square(ts - tp), axis=-1)
                d_neg = ops.sqrt(ops.sum(ops.square(ts - tn), axis=-1) + 1e-12)
                loss = ops.mean(d_pos + ops.square(ops.relu(MARGIN - d_neg)))
            optimizer.apply(tape.gradient(loss, variables), variables)
            return loss

        epochs = self.epochs if self.epochs is not None else min(self.config.epochs, DEFAULT_EPOCHS)
        history = []
        for epoch in range(epochs):
            order, negatives = rng.permutation(len(train)), sample_negatives(train, rng)
            order = order[negatives[order] >= 0]  # no valid negative (data.negatives): skipped
            bar = keras.utils.Progbar(len(order), unit_name="pair")
            losses = []
            for start in range(0, len(order), self.batch_size):
                rows = order[start:start + self.batch_size]
                batch = [np.asarray(a[r], np.float32) for a, r in (
                    (scenes, rows), (products, train.positive_rows[rows]), (products, negatives[rows]))]
                losses.append(float(step(*batch)))
                bar.add(len(rows))
            history.append(float(np.mean(losses)))
            logging.info("siamese: epoch %d/%d loss %.4f", epoch + 1, epochs, history[-1])
        return {"epochs": epochs, "loss": history, "fine_tuned": "conv5 + projection"}

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
