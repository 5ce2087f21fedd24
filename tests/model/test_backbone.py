"""Frozen ResNet50 backbone: shapes, frozen BatchNorm, and every way of getting its weights (no network)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import socket

import h5py
import keras
import numpy as np
import pytest
from keras.src.legacy.saving import legacy_h5_format

from ctl_keras.model import backbone as backbone_lib
from ctl_keras.model.backbone import IMAGENET_FILE, build_backbone, pool_size_for_grid


def _images(n=3, size=64, seed=0):
    return np.random.RandomState(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def _unused_local_origin() -> str:
    """A URL on a 127.0.0.1 port nobody listens on, so a download is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/{IMAGENET_FILE}"


@pytest.fixture(scope="module")
def random_backbone():
    keras.utils.set_random_seed(1)
    return build_backbone(64, 4, "none")


@pytest.fixture(scope="module")
def legacy_h5(random_backbone, tmp_path_factory):
    """The random ResNet50 weights in the legacy .h5 layout of Keras's ImageNet file."""
    path = tmp_path_factory.mktemp("weights") / IMAGENET_FILE
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, random_backbone.get_layer("resnet50_features"))
    return str(path)


@pytest.fixture
def offline(monkeypatch):
    """No proxy and a refused origin: a download attempt fails fast instead of waiting on the network."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(backbone_lib, "IMAGENET_ORIGIN", _unused_local_origin())


def test_shapes_at_64_and_112_and_frozen(random_backbone):
    """64 px: conv4 4x4 -> grid 4 (pool 1), conv5 2x2 -> pool5; 112 px: conv4 7x7 -> grid 7."""
    out = random_backbone(_images())
    assert out["pool5"].shape == (3, 2048) and out["local"].shape == (3, 4, 4, 1024)
    assert random_backbone.trainable_weights == [] and not random_backbone.trainable
    keras.utils.set_random_seed(0)
    out112 = build_backbone(112, 7, "none")(_images(1, 112))
    assert out112["pool5"].shape == (1, 2048) and out112["local"].shape == (1, 7, 7, 1024)


def test_batchnorm_in_inference_mode_even_when_training(random_backbone):
    """An image's features do not depend on its batch mates, with training=True or False."""
    images = _images(4)
    alone = random_backbone(images[:1], training=False)
    for training in (False, True):
        together = random_backbone(images, training=training)
        for key in ("pool5", "local"):
            np.testing.assert_allclose(np.asarray(together[key])[:1], np.asarray(alone[key]), rtol=1e-4, atol=1e-4)


def test_grid_must_divide_conv4():
    """224 px -> 14x14 conv4: pool 2 for grid 7; grid 4 does not divide 14; 100 px is not a multiple of 16."""
    assert pool_size_for_grid(224, 7) == 2 and pool_size_for_grid(112, 7) == 1
    with pytest.raises(ValueError, match="14x14 conv4 map"):
        pool_size_for_grid(224, 4)
    with pytest.raises(ValueError, match="not a multiple of 16"):
        build_backbone(100, 5, "none")


def test_h5_path_reproduces_outputs(random_backbone, legacy_h5):
    """A differently seeded build that loads the saved .h5 gives the saved model's outputs exactly."""
    keras.utils.set_random_seed(2)
    loaded = build_backbone(64, 4, legacy_h5)
    images = _images()
    np.testing.assert_allclose(np.asarray(loaded(images)["local"]), np.asarray(random_backbone(images)["local"]),
                               rtol=1e-5, atol=1e-5)


def test_imagenet_uses_keras_home_cache_without_network(random_backbone, legacy_h5, tmp_path, monkeypatch, offline):
    """KERAS_HOME/models/<imagenet file> is used as is; the refused origin proves no download ran."""
    (tmp_path / "models").mkdir()
    os.link(legacy_h5, tmp_path / "models" / IMAGENET_FILE)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    keras.utils.set_random_seed(3)
    loaded = build_backbone(64, 4, "imagenet")
    images = _images()
    np.testing.assert_allclose(np.asarray(loaded(images)["pool5"]), np.asarray(random_backbone(images)["pool5"]),
                               rtol=1e-5, atol=1e-5)


def test_imagenet_missing_and_unreachable_gives_one_line_error(tmp_path, monkeypatch, offline):
    """Empty KERAS_HOME + refused origin: FileNotFoundError naming the cache file and both flags."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        build_backbone(64, 4, "imagenet")
    message = str(info.value)
    assert str(tmp_path / "models" / IMAGENET_FILE) in message
    assert "--backbone_weights=PATH" in message and "--backbone_weights=none" in message
    assert "\n" not in message
    assert not (tmp_path / "models" / IMAGENET_FILE).exists()


def test_bad_paths_are_named(tmp_path):
    """A missing file -> FileNotFoundError; a file that is not HDF5 -> ValueError; both name the path."""
    missing = tmp_path / "missing.h5"
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        build_backbone(64, 4, str(missing))
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="garbage.h5"):
        build_backbone(64, 4, str(garbage))


def test_caffe_preprocess_matches_keras():
    """RGB (10,20,30) -> BGR (30,20,10) - (103.939,116.779,123.68) = (-73.939,-96.779,-113.68), as Keras does."""
    pixel = np.array([[[[10.0, 20.0, 30.0]]]], "float32")
    out = np.asarray(backbone_lib.CaffePreprocess()(pixel))
    np.testing.assert_allclose(out, [[[[-73.939, -96.779, -113.68]]]], atol=1e-4)
    images = _images(2, 8)
    expected = keras.applications.resnet50.preprocess_input(images.copy())
    np.testing.assert_allclose(np.asarray(backbone_lib.CaffePreprocess()(images)), expected, atol=1e-4)


def test_conv4_model_and_conv5_stage_reproduce_pool5_and_train_apart(random_backbone):
    """conv5_stage(conv4_model(x)) pooled is the backbone's pool5; a gradient step on the copy leaves
    the backbone's weights unchanged (the Siamese baseline fine-tunes conv5 without touching it)."""
    images = _images()
    conv4 = backbone_lib.conv4_model(random_backbone)(images)
    stage = backbone_lib.conv5_stage(random_backbone)
    pooled = np.asarray(stage(conv4, training=False)).mean(axis=(1, 2))
    np.testing.assert_allclose(pooled, np.asarray(random_backbone(images)["pool5"]), rtol=1e-4, atol=1e-4)
    before = [np.array(w) for w in random_backbone.weights]
    for w in stage.trainable_weights:
        w.assign(w + 1.0)
    assert all(np.array_equal(a, np.array(b)) for a, b in zip(before, random_backbone.weights))
