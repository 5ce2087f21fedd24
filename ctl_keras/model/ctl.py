"""The CTL model: frozen backbone, three heads, category attention, and the towers built on them.

Every Keras model here shares one set of head layers, so training the triplet model trains the towers.
Variants (docs/design.md §3, the ablation table): `hybrid` (paper), `global`, `local` (attention, no global),
`local_uniform` (local with equal region weights). Queries make d*(s,p) = 2 - q·f_p exact:
global q = 2 f_s; local q = 2 Σ a_i f_i; local_uniform q = 2 mean f_i; hybrid q = f_s + Σ a_i f_i.
"""

from __future__ import annotations

import dataclasses
import os

import h5py
import keras

from ctl_keras.utils.atomic import atomic_write
from ctl_keras.config import LOCAL_DIM, POOL5_DIM, Config
from ctl_keras.model.attention import CategoryAttention
from ctl_keras.model.backbone import build_backbone
from ctl_keras.model.category_embedding import CategoryEmbedding
from ctl_keras.model.distances import PairDistance, check_variant, uniform_attention
from ctl_keras.model.heads import EmbeddingHead



class CTLHeads(keras.Model):
    """Container of the trainable head layers; the unit saved by save_heads and checkpoints.

    `global_head` g(Θg) embeds pool5 of scenes and products; `local_head` g(Θl) the scene regions;
    `attention_head` g(Θâ) the attention keys; `category_embedding` ê_c. Variants leave unused ones None.
    """

    def __init__(self, config: Config, **kwargs):
        super().__init__(name="ctl_heads", **kwargs)
        variant = check_variant(config.variant)
        # Only the heads' matmuls run in the mixed policy; their outputs are float32 (EmbeddingHead).
        sizes = dict(embedding_dim=config.embedding_dim, hidden_dim=config.hidden_dim, dropout=config.dropout,
                     dtype=config.precision)
        self.global_head = EmbeddingHead(name="global_head", product_norm=True, **sizes)
        self.local_head = EmbeddingHead(name="local_head", **sizes) if variant != "global" else None
        uses_attention = variant in ("hybrid", "local")
        self.attention_head = EmbeddingHead(name="attention_head", **sizes) if uses_attention else None
        self.category_embedding = (
            CategoryEmbedding(len(config.categories), config.embedding_dim, name="category_embedding")
            if uses_attention
            else None
        )


def _scene_graph(heads: CTLHeads, config: Config, pool5, local, category, scene_embedding=None) -> dict:
    """Scene side on symbolic tensors: f_s, region embeddings f_i [B,N,d] and attention a [B,N].

    `scene_embedding`: f_s computed by the caller (the training graph embeds scenes and products in one
    global-head call); None embeds `pool5` here. The local and attention heads see each scene's regions
    in this one call, at training and at inference alike.
    """
    grid = config.local_grid
    regions = keras.layers.Reshape((grid * grid, LOCAL_DIM), name="regions")(local)
    out = {"scene_embedding": heads.global_head(pool5) if scene_embedding is None else scene_embedding}
    if heads.local_head is not None:
        out["local_embeddings"] = heads.local_head(regions)
    if heads.attention_head is not None:
        keys = heads.attention_head(regions)
        out["attention"] = CategoryAttention(name="attention")(keys, heads.category_embedding(category))
    else:
        # No attention in this variant: report equal weights so the map still has one meaning.
        out["attention"] = uniform_attention(regions)
    return out


def _query(variant: str, scene: dict):
    """q with d*(s,p) = 2 - q·f_p for the variant (see the module docstring)."""
    f_s = scene["scene_embedding"]
    if variant == "global":
        return 2.0 * f_s
    pooled = keras.ops.sum(keras.ops.expand_dims(scene["attention"], -1) * scene["local_embeddings"], axis=1)
    return pooled + f_s if variant == "hybrid" else 2.0 * pooled


def _global_embeddings(heads: CTLHeads, scene_pool5, pos_pool5, neg_pool5):
    """f_s from the global head's scene normalisation; f_p+, f_p- from ONE call with its product
    normalisation on the concatenated [2B, 2048] products, split afterwards.

    Why: in training mode BatchNorm normalises by the statistics of the batch it is called on, and at
    inference by the moving averages of those batches. Scenes and products each get their own
    BatchNorm, so training and inference normalise every domain alike (the scene tower with the scene
    averages, the product tower with the product averages); one call on p+ and p- together makes the
    product statistics those of the products the product tower will see, not of each half alone
    (tests/model/test_ctl.py). One joint call on all 3B rows also keeps train and inference consistent
    but measured 0.10 AUC worse. Under MirroredStrategy the synchronized
    BatchNorm pools the rows of every replica, as one device would.
    """
    products = heads.global_head(keras.ops.concatenate([pos_pool5, neg_pool5], axis=0), product=True)
    f_pos, f_neg = keras.ops.split(products, 2, axis=0)
    return heads.global_head(scene_pool5), f_pos, f_neg


def _feature_inputs(config: Config, prefix: str):
    grid = config.local_grid
    pool5 = keras.Input((POOL5_DIM,), name=f"{prefix}pool5")
    local = keras.Input((grid, grid, LOCAL_DIM), name=f"{prefix}local")
    return pool5, local


@dataclasses.dataclass
class CTLModels:
    """All Keras models of one CTL instance; they share `heads` (and `backbone`)."""

    config: Config
    backbone: keras.Model
    heads: CTLHeads
    scene_head: keras.Model
    product_head: keras.Model
    scene_tower: keras.Model
    product_tower: keras.Model

    def triplet_model(self, from_features: bool = False) -> keras.Model:
        """Training graph -> {"d_pos": [B], "d_neg": [B]}, computed with the distances of docs/design.md §3.

        Images: {"scene", "positive", "negative", "category"}; features:
        {"scene_pool5", "scene_local", "positive_pool5", "negative_pool5", "category"}.
        """
        config, heads = self.config, self.heads
        category = keras.Input((), dtype="int32", name="category")
        if from_features:
            scene_pool5, scene_local = _feature_inputs(config, "scene_")
            pos_pool5 = keras.Input((POOL5_DIM,), name="positive_pool5")
            neg_pool5 = keras.Input((POOL5_DIM,), name="negative_pool5")
            inputs = {"scene_pool5": scene_pool5, "scene_local": scene_local,
                      "positive_pool5": pos_pool5, "negative_pool5": neg_pool5, "category": category}
        else:
            shape = (config.image_size, config.image_size, 3)
            inputs = {name: keras.Input(shape, name=name) for name in ("scene", "positive", "negative")}
            inputs["category"] = category
            # The backbone is frozen: no gradient enters it. Without stop_gradient the tape would still
            # record its ops (its variables are read inside the tape) and build a backward for them that
            # plain graphs prune but XLA compiles, and refuses (MaxPoolGrad under op determinism).
            frozen = lambda image: {k: keras.ops.stop_gradient(v)
                                    for k, v in self.backbone(image, training=False).items()}
            scene_features = frozen(inputs["scene"])
            scene_pool5, scene_local = scene_features["pool5"], scene_features["local"]
            pos_pool5 = frozen(inputs["positive"])["pool5"]
            neg_pool5 = frozen(inputs["negative"])["pool5"]
        f_s, f_pos, f_neg = _global_embeddings(heads, scene_pool5, pos_pool5, neg_pool5)
        scene = _scene_graph(heads, config, scene_pool5, scene_local, category, scene_embedding=f_s)
        distance = PairDistance(config.variant, name="pair_distance")
        d_pos = distance({**scene, "product_embedding": f_pos})
        d_neg = distance({**scene, "product_embedding": f_neg})
        name = "ctl_triplet_features" if from_features else "ctl_triplet"
        return keras.Model(inputs, {"d_pos": d_pos, "d_neg": d_neg}, name=name)

    def save_heads(self, path: str) -> None:
        """Write the head weights (never the backbone) to `path` (*.weights.h5), atomically."""
        path = os.fspath(path)
        if not path.endswith(".weights.h5"):
            raise ValueError(f"head weights path {path} must end in .weights.h5")
        atomic_write(path, self.heads.save_weights, suffix=".weights.h5")

    def load_heads(self, path: str) -> None:
        """Load head weights written by save_heads; a file from another variant or size is refused."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"head weights file {path} does not exist")
        expected = {v.path: tuple(v.shape) for v in self.heads.weights}
        try:
            found = _h5_variable_shapes(path)
        except OSError as err:
            raise ValueError(f"head weights file {path} is not a readable .weights.h5 file: {err}") from None
        if sorted(found.values()) != sorted(expected.values()) or len(found) != len(expected):
            cfg = self.config
            raise ValueError(
                f"head weights file {path} does not match this model (variant={cfg.variant}, "
                f"embedding_dim={cfg.embedding_dim}, hidden_dim={cfg.hidden_dim}, "
                f"{len(cfg.categories)} categories): it holds {len(found)} arrays, the model {len(expected)}"
            )
        self.heads.load_weights(path)


def _h5_variable_shapes(path: str) -> dict[str, tuple]:
    shapes: dict[str, tuple] = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            shapes[name] = obj.shape

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return shapes


def build_ctl(config: Config) -> CTLModels:
    """Build backbone, heads and every model of docs/design.md §3 for `config`.

    Seeds with keras.utils.set_random_seed(config.seed) (Python, NumPy, TF and Keras global seeds), so the
    same config gives the same random backbone and head initialization.
    """
    variant = check_variant(config.variant)
    keras.utils.set_random_seed(config.seed)

    # Section 1: frozen backbone and the trainable heads.
    backbone = build_backbone(config.image_size, config.local_grid, config.backbone_weights)
    heads = CTLHeads(config)

    # Section 2: heads on backbone features (what the feature cache feeds).
    pool5, local = _feature_inputs(config, "")
    category = keras.Input((), dtype="int32", name="category")
    scene = _scene_graph(heads, config, pool5, local, category)
    grid = config.local_grid
    attention_map = keras.layers.Reshape((grid, grid), name="attention_map")(scene["attention"])
    scene_out = {"query": _query(variant, scene), "scene_embedding": scene["scene_embedding"],
                 "attention": attention_map}
    scene_head = keras.Model({"pool5": pool5, "local": local, "category": category}, scene_out,
                             name="scene_head")
    product_pool5 = keras.Input((POOL5_DIM,), name="pool5")
    product_head = keras.Model({"pool5": product_pool5},
                               {"product_embedding": heads.global_head(product_pool5, product=True)},
                               name="product_head")
    heads.built = True  # every head layer is built by the graphs above

    # Section 3: towers, image in, embeddings out (what export serves).
    size = config.image_size
    image = keras.Input((size, size, 3), name="image")
    tower_category = keras.Input((), dtype="int32", name="category")
    features = backbone(image, training=False)
    scene_tower = keras.Model(
        {"image": image, "category": tower_category},
        scene_head({"pool5": features["pool5"], "local": features["local"], "category": tower_category}),
        name="scene_tower",
    )
    product_image = keras.Input((size, size, 3), name="image")
    product_tower = keras.Model(
        {"image": product_image},
        product_head({"pool5": backbone(product_image, training=False)["pool5"]}),
        name="product_tower",
    )
    return CTLModels(config, backbone, heads, scene_head, product_head, scene_tower, product_tower)
