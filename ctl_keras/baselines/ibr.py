"""IBR (McAuley et al., SIGIR 2015): a learned linear "style space" on frozen visual features.

E is a K×F matrix (K = config.embedding_dim); d(s, p) = ‖E x_s − E x_p‖² is the paper's
Mahalanobis-like distance with the low-rank metric EᵀE. As in IBR, P(compatible) = σ(c − d) with a
learned shift c, trained by logistic loss on the positive and one sampled negative per pair.
Features are the frozen pool5 of the shared backbone, standardized with train statistics.
"""

from __future__ import annotations

import keras
from keras import ops

from ctl_keras.baselines.trained import FeatureTripletBaseline
from ctl_keras.config import POOL5_DIM
from ctl_keras.evaluation.scoring import squared_l2_distance


class IBR(FeatureTripletBaseline):
    name = "ibr"

    def build(self) -> None:
        self.projection = keras.layers.Dense(self.config.embedding_dim, use_bias=False, name="ibr_E")
        self.projection.build((None, POOL5_DIM))
        self.shift = keras.Variable(1.0, name="ibr_c")
        self.layers, self.extra_variables = [self.projection], [self.shift]

    def _d(self, a, b):
        return ops.sum(ops.square(self.projection(a) - self.projection(b)), axis=-1)

    def compute_loss(self, batch, training: bool):
        # Per example: binary cross-entropy of σ(c − d), label 1 for the positive, 0 for the negative.
        pos_logit = self.shift - self._d(batch["scene"], batch["positive"])
        neg_logit = self.shift - self._d(batch["scene"], batch["negative"])
        return ops.softplus(-pos_logit) + ops.softplus(neg_logit)

    def embed_scene(self, x):
        return self.projection(x)

    def embed_product(self, x):
        return self.projection(x)

    def distances(self, scene_reps, product_reps):
        return squared_l2_distance(scene_reps, product_reps)
