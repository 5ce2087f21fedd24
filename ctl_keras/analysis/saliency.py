"""Gradient saliency of the scene tower with tf-keras-vis: the stand-in for DeepSaliency (Table 3).

Score: the compatibility of the scene with its own positive product, q(s, c) . f_p+ = 2 - d*(s, p+)
(docs/design.md §3), so the map shows which pixels make the scene match the product it was paired with. The
query norm would be a class-agnostic alternative but is constant for the `global` variant (q = 2 f_s
with |f_s| = 1), which would give a zero map. The pixel map is |gradient| max over RGB
(tf_keras_vis.saliency.Saliency, vanilla, or SmoothGrad with smooth_samples > 0), mean-pooled over
the cells of the g x g grid so it ranks the same regions as the attention map.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from tf_keras_vis.saliency import Saliency


def method_name(smooth_samples: int = 0) -> str:
    kind = f"SmoothGrad, {smooth_samples} samples" if smooth_samples else "vanilla gradient"
    return (f"tf_keras_vis.saliency.Saliency ({kind}; score q.f_p+ of the positive product; "
            f"|grad| max over RGB, mean-pooled to the grid)")


def pool_to_grid(pixel_maps, grid: int) -> np.ndarray:
    """[B, S, S] -> [B, g, g] cell means (S must be a multiple of g, as image_size always is)."""
    pixel_maps = np.asarray(pixel_maps, np.float64)
    b, h, w = pixel_maps.shape
    if h % grid or w % grid:
        raise ValueError(f"saliency map {h}x{w} cannot be pooled to a {grid}x{grid} grid")
    return pixel_maps.reshape(b, grid, h // grid, grid, w // grid).mean(axis=(2, 4))


def _fixed_category_tower(scene_tower: keras.Model, image_size: int, category: int) -> keras.Model:
    """image -> query with the category fixed: tf-keras-vis differentiates w.r.t. every model input,
    and an int32 category input has no gradient."""
    image = keras.Input((image_size, image_size, 3), name="image")
    cat = keras.layers.Lambda(
        lambda x: keras.ops.cast(keras.ops.zeros_like(x[:, 0, 0, 0]), "int32") + category,
        name="fixed_category")(image)
    return keras.Model([image], scene_tower({"image": image, "category": cat})["query"],
                       name=f"scene_tower_category_{category}")


class SceneSaliency:
    """Callable: (images [B,S,S,3], categories [B], positive embeddings [B,d]) -> pooled maps [B,g,g]."""

    def __init__(self, scene_tower: keras.Model, config, smooth_samples: int = 0):
        self.scene_tower, self.config, self.smooth_samples = scene_tower, config, int(smooth_samples)
        self._by_category: dict[int, Saliency] = {}
        self.method = method_name(self.smooth_samples)

    def _saliency(self, category: int) -> Saliency:
        if category not in self._by_category:
            model = _fixed_category_tower(self.scene_tower, self.config.image_size, category)
            self._by_category[category] = Saliency(model, clone=False)
        return self._by_category[category]

    def pixel_maps(self, images, categories, positives) -> np.ndarray:
        """[B, S, S] unnormalized |d(q.f_p+)/d pixel| (max over channels)."""
        images = np.asarray(images, np.float32)
        categories = np.asarray(categories).astype(int)
        positives = np.asarray(positives, np.float32)
        out = np.zeros(images.shape[:3], np.float32)
        for c in np.unique(categories):
            rows = np.flatnonzero(categories == c)
            target = tf.constant(positives[rows])
            maps = self._saliency(int(c))(
                lambda q, target=target: tf.reduce_sum(q * target, axis=-1),
                tf.constant(images[rows]), smooth_samples=self.smooth_samples,
                gradient_modifier=tf.abs, normalize_map=False)
            out[rows] = np.asarray(maps, np.float32)
        return out

    def __call__(self, images, categories, positives) -> np.ndarray:
        return pool_to_grid(self.pixel_maps(images, categories, positives), self.config.local_grid)
