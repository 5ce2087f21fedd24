"""Example encode/parse round trips, file names and the atomic writer."""

import os

import numpy as np
import pytest
import tensorflow as tf

from ctl_keras.data import tfrecords

PAIR = dict(pair_id=7, scene_id="scene", product_id="prod", category="shoes", category_index=2,
            scene_jpeg=b"S", full_scene_jpeg=b"F", product_jpeg=b"P", product_box=(0.1, 0.2, 0.3, 0.4),
            crop_box=(0.0, 0.0, 1.0, 0.5))


def test_pair_round_trip_with_other_boxes():
    record = tfrecords.encode_pair(**PAIR, other_boxes=[(0.0, 0.1, 0.5, 0.6), (0.2, 0.2, 0.4, 0.9)],
                                   other_categories=["tops", "pants"])
    parsed = tfrecords.parse_pair(tf.constant(record))
    assert int(parsed["pair_id"]) == 7 and int(parsed["category_index"]) == 2
    assert parsed["scene_id"].numpy() == b"scene" and parsed["category"].numpy() == b"shoes"
    assert parsed["scene_jpeg"].numpy() == b"S" and parsed["full_scene_jpeg"].numpy() == b"F"
    np.testing.assert_allclose(parsed["crop_box"], [0.0, 0.0, 1.0, 0.5])
    np.testing.assert_allclose(parsed["other_boxes"], [[0.0, 0.1, 0.5, 0.6], [0.2, 0.2, 0.4, 0.9]])
    assert parsed["other_categories"].numpy().tolist() == [b"tops", b"pants"]


def test_pair_without_other_boxes_parses_to_empty_k_by_4_inside_tf_data():
    record = tfrecords.encode_pair(**PAIR)
    dataset = tf.data.Dataset.from_tensors(record).map(tfrecords.parse_pair)
    assert dataset.element_spec["other_boxes"].shape.as_list() == [None, 4]
    parsed = next(iter(dataset))
    assert parsed["other_boxes"].shape == (0, 4) and parsed["other_categories"].shape == (0,)


def test_pair_rejects_mismatched_others():
    with pytest.raises(ValueError, match="other"):
        tfrecords.encode_pair(**PAIR, other_boxes=[(0, 0, 1, 1)], other_categories=[])


def test_product_round_trip_and_deterministic_bytes():
    kwargs = dict(product_id="p", category="tops", category_index=0, product_jpeg=b"J")
    record = tfrecords.encode_product(**kwargs)
    assert record == tfrecords.encode_product(**kwargs)
    parsed = tfrecords.parse_product(tf.constant(record))
    assert parsed["product_id"].numpy() == b"p" and int(parsed["category_index"]) == 0
    assert parsed["product_jpeg"].numpy() == b"J"


def test_file_names():
    assert tfrecords.pair_shard_name("train", 3, 16) == "pairs-train-00003-of-00016.tfrecord"
    assert tfrecords.product_file_name("val", 4) == "products-val-04.tfrecord"
    assert tfrecords.questions_file_name("test") == "questions-test.json"


def test_write_records_counts_and_reads_back(tmp_path):
    path = tmp_path / "x.tfrecord"
    assert tfrecords.write_records(path, [b"a", b"bb", b"ccc"]) == 3
    assert [r.numpy() for r in tf.data.TFRecordDataset(str(path))] == [b"a", b"bb", b"ccc"]


def test_write_records_interrupted_leaves_nothing(tmp_path):
    def records():
        yield b"a"
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        tfrecords.write_records(tmp_path / "x.tfrecord", records())
    assert os.listdir(tmp_path) == []
