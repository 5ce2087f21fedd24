"""BPR-DAE visual module (Song et al., "NeuroStylist", MM 2017), on frozen pool5 features.

Two denoising autoencoders — one for scenes, one for products, as the paper has one per item side —
map standardized pool5 (corrupted by dropout noise while training) to a K-dim code and back.
Compatibility is the inner product of codes, m(s, p) = c_s · c_p, trained with BPR,
−log σ(m(s, p+) − m(s, p−)), jointly with the reconstruction error of the clean input.
Its distance is −m (lower = more compatible).
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from ctl_keras.baselines.trained import FeatureTripletBaseline
from ctl_keras.config import POOL5_DIM

RECONSTRUCTION_WEIGHT = 0.1
NOISE = 0.2


class BPRDAE(FeatureTripletBaseline):
    name = "bpr_dae"

    def build(self) -> None:
        k, hidden = self.config.embedding_dim, self.config.hidden_dim

        def mlp(out, last, name):
            return keras.Sequential([keras.Input((out[0],)),
                                     keras.layers.Dense(hidden, activation="relu"),
                                     keras.layers.Dense(out[1], activation=last)], name=name)

        self.noise = keras.layers.Dropout(NOISE, seed=self.seed)
        f = POOL5_DIM
        self.scene_enc, self.scene_dec = mlp((f, k), "tanh", "scene_enc"), mlp((k, f), None, "scene_dec")
        self.product_enc, self.product_dec = mlp((f, k), "tanh", "product_enc"), mlp((k, f), None, "product_dec")
        self.layers = [self.scene_enc, self.scene_dec, self.product_enc, self.product_dec]
        self.extra_variables = []

    def compute_loss(self, batch, training: bool):
        """Per example: BPR on the codes + RECONSTRUCTION_WEIGHT × the three inputs' mean squared error."""
        codes, recon = [], 0.0
        for key, enc, dec in (("scene", self.scene_enc, self.scene_dec), ("positive", self.product_enc, self.product_dec),
                              ("negative", self.product_enc, self.product_dec)):
            x = batch[key]
            code = enc(self.noise(x, training=training))
            recon = recon + ops.mean(ops.square(dec(code) - x), axis=-1)
            codes.append(code)
        m_pos = ops.sum(codes[0] * codes[1], axis=-1)
        m_neg = ops.sum(codes[0] * codes[2], axis=-1)
        return ops.softplus(m_neg - m_pos) + RECONSTRUCTION_WEIGHT * recon

    def embed_scene(self, x):
        return self.scene_enc(x)

    def embed_product(self, x):
        return self.product_enc(x)

    def distances(self, scene_reps, product_reps):
        return -np.asarray(scene_reps, np.float64) @ np.asarray(product_reps, np.float64).T
