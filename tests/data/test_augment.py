"""Preprocessing ops: each checked eagerly and inside tf.data (big_vision pp/ops_image_test style)."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from ctl_keras.config import get_config
from ctl_keras.data import augment

CONFIG = get_config("synthetic", smoke=True)  # image_size 64, resize_size 72


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _in_tf_data(op, d: dict) -> dict:
    """Run a dict->dict op inside a tf.data map (graph mode) and return the single element."""
    ds = tf.data.Dataset.from_tensors(d).map(op)
    return next(iter(ds))


def _noise(h=80, w=96, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_decode_image_gives_float_rgb_for_grey_png():
    """A 5x7 greyscale PNG decodes to float32 [5,7,3] with the grey value copied to R, G and B."""
    grey = np.arange(35, dtype=np.uint8).reshape(5, 7)
    image = augment.decode_image(tf.constant(_png(grey)))
    assert image.dtype == tf.float32 and image.shape == (5, 7, 3)
    np.testing.assert_array_equal(image.numpy()[..., 1], grey.astype(np.float32))


def test_eval_view_is_the_exact_center_crop_when_no_resize_is_needed():
    """resize_size == input size (72) makes resize the identity, so the view is rows/cols 4..67."""
    image = tf.constant(_noise(72, 72).astype(np.float32))
    view = augment.eval_view(image, CONFIG).numpy()
    np.testing.assert_allclose(view, image.numpy()[4:68, 4:68], atol=1e-3)


def test_train_view_shape_range_and_seed_dependence():
    image = augment.decode_image(tf.constant(_png(_noise())))
    a = augment.train_view(image, tf.constant([1, 2], tf.int64), CONFIG).numpy()
    b = augment.train_view(image, tf.constant([1, 2], tf.int64), CONFIG).numpy()
    c = augment.train_view(image, tf.constant([1, 3], tf.int64), CONFIG).numpy()
    assert a.shape == (64, 64, 3) and a.dtype == np.float32
    assert 0.0 <= a.min() and a.max() <= 255.0
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_train_view_covers_crops_and_mirrors():
    """Over 40 seeds a noise image gives many distinct crops, and a left-right ramp gets mirrored."""
    ramp = np.tile(np.arange(72, dtype=np.float32)[None, :, None], (72, 1, 3))
    views = [augment.train_view(tf.constant(ramp), tf.constant([s, 0], tf.int64), CONFIG).numpy()
             for s in range(40)]
    increasing = [v[0, -1, 0] > v[0, 0, 0] for v in views]
    assert any(increasing) and not all(increasing)
    assert len({float(v[0, 0, 0]) for v in views}) > 3


def test_element_seeds_depend_on_seed_epoch_and_pair():
    s = augment.element_seeds(0, 0, tf.constant(5, tf.int64), 3).numpy()
    assert s.shape == (3, 2) and len({tuple(r) for r in s}) == 3
    np.testing.assert_array_equal(s, augment.element_seeds(0, 0, tf.constant(5, tf.int64), 3).numpy())
    for other in [(1, 0, 5), (0, 1, 5), (0, 0, 6)]:
        assert not np.array_equal(s, augment.element_seeds(other[0], other[1], tf.constant(other[2], tf.int64), 3))


@pytest.mark.parametrize("run", [lambda op, d: op(d), _in_tf_data], ids=["eager", "tf.data"])
def test_decode_op(run):
    d = {"jpeg": tf.constant(_png(_noise(10, 12))), "pair_id": tf.constant(3, tf.int64)}
    out = run(augment.decode_op({"image": "jpeg"}), d)
    assert set(out) == {"image", "pair_id"} and out["image"].shape == (10, 12, 3)
    np.testing.assert_array_equal(out["image"].numpy(), _noise(10, 12).astype(np.float32))


@pytest.mark.parametrize("run", [lambda op, d: op(d), _in_tf_data], ids=["eager", "tf.data"])
def test_seeds_and_train_view_ops(run):
    image = tf.constant(_noise().astype(np.float32))
    op = augment.chain(augment.seeds_op(7, 2, 2), augment.train_view_op(["a", "b"], CONFIG))
    out = run(op, {"a": image, "b": image, "pair_id": tf.constant(11, tf.int64)})
    seeds = augment.element_seeds(7, 2, tf.constant(11, tf.int64), 2)
    assert set(out) == {"a", "b", "pair_id"}  # the seeds are consumed
    np.testing.assert_array_equal(out["a"].numpy(), augment.train_view(image, seeds[0], CONFIG).numpy())
    np.testing.assert_array_equal(out["b"].numpy(), augment.train_view(image, seeds[1], CONFIG).numpy())
    assert not np.array_equal(out["a"].numpy(), out["b"].numpy())


@pytest.mark.parametrize("run", [lambda op, d: op(d), _in_tf_data], ids=["eager", "tf.data"])
def test_eval_view_and_rename_ops(run):
    image = tf.constant(_noise().astype(np.float32))
    op = augment.chain(augment.eval_view_op(["x"], CONFIG), augment.rename_op({"x": "image"}, keep=["id"]))
    out = run(op, {"x": image, "id": tf.constant(b"p1"), "dropped": tf.constant(1)})
    assert set(out) == {"image", "id"}
    np.testing.assert_array_equal(out["image"].numpy(), augment.eval_view(image, CONFIG).numpy())


def test_views_are_identical_under_unordered_parallel_map():
    """Stateless seeds: 8 elements mapped with 4 parallel calls and deterministic=False, then matched
    by pair_id, equal the eagerly computed views."""
    image = tf.constant(_noise().astype(np.float32))
    op = augment.chain(augment.seeds_op(0, 1, 1), augment.train_view_op(["x"], CONFIG))
    ds = tf.data.Dataset.range(8).map(lambda i: {"x": image, "pair_id": i})
    got = {int(d["pair_id"]): d["x"].numpy()
           for d in ds.map(op, num_parallel_calls=4, deterministic=False)}
    for i in range(8):
        np.testing.assert_array_equal(got[i], op({"x": image, "pair_id": tf.constant(i, tf.int64)})["x"].numpy())
