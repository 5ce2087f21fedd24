"""The builder on Beam: worker counts, recorded runner, pipeline options, interruption, user files."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import tensorflow as tf

from ctl_keras.builder import build as build_dataset
from ctl_keras.builder import records
from ctl_keras.data import tfrecords

QUIET = dict(log=lambda message: None)
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def raw_inputs(data_dir):
    raw = os.path.join(data_dir, "raw")
    return dict(pairs=os.path.join(raw, "pairs.json"), categories=os.path.join(raw, "categories.json"),
                images_dir=os.path.join(raw, "images"))


def snapshot(directory):
    return {name: open(os.path.join(directory, name), "rb").read()
            for name in sorted(os.listdir(directory)) if os.path.isfile(os.path.join(directory, name))}


def pairs_by_id(data_dir, manifest):
    """pair_id -> every field of the record (JPEGs included), over all splits."""
    out = {}
    for split, info in manifest["splits"].items():
        for r in tf.data.TFRecordDataset([os.path.join(data_dir, f) for f in info["pair_shards"]]):
            parsed = {k: v.numpy() for k, v in tfrecords.parse_pair(r).items()}
            parsed = {k: v.tolist() if hasattr(v, "tolist") else v for k, v in parsed.items()}
            out[parsed["pair_id"]] = (split, parsed)
    return out


def cli(out, inputs, *extra):
    return [sys.executable, "-m", "ctl_keras.build_dataset", "--dataset=synthetic", "--smoke", f"--out={out}",
            *(f"--{k}={v}" for k, v in inputs.items()), *extra]


def test_tfrecord_framing_is_tensorflows(tmp_path):
    """The TF-free writer the Beam workers use gives the bytes of tf.io.TFRecordWriter."""
    values = [b"", b"a", bytes(range(256)) * 40]
    with tf.io.TFRecordWriter(str(tmp_path / "tf.tfrecord")) as writer:
        for v in values:
            writer.write(v)
    with open(tmp_path / "ours.tfrecord", "wb") as f:
        assert records.write_records(f, values) == 3
    assert (tmp_path / "ours.tfrecord").read_bytes() == (tmp_path / "tf.tfrecord").read_bytes()


def _tf_example(features: dict) -> bytes:
    """The reference: TensorFlow's own Example proto, deterministic serialization."""
    feature = {}
    for key, value in features.items():
        if key in ("pair_id", "category_index"):
            feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        elif key in ("product_box", "crop_box", "other_boxes"):
            flat = [v for item in value for v in (item if isinstance(item, list) else [item])]
            feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=flat))
        else:
            values = value if isinstance(value, list) else [value]
            feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(
                value=[v.encode() if isinstance(v, str) else v for v in values]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)


@pytest.mark.parametrize("others", [0, 1, 3])
def test_tf_free_encoding_gives_tensorflows_bytes(others):
    """Beam workers encode without TF; the bytes must still be tf.train.Example's (unicode ids, an
    empty other_boxes list, a pair_id past 2**32, "category" next to "category_index")."""
    pair = dict(pair_id=2**40 + 7, scene_id="s\u00e9", product_id="p1", category="tops", category_index=3,
                scene_jpeg=bytes(range(256)), full_scene_jpeg=b"", product_jpeg=b"\xff\xd8" * 90,
                product_box=[0.3, 0.8, 0.7, 0.95], crop_box=[0.0, 0.0, 1.0, 0.75],
                other_boxes=[[0.1 * i, 0.2, 0.3 + 0.1 * i, 0.9] for i in range(others)],
                other_categories=["shoes"] * others)
    assert tfrecords.encode_pair(**pair) == _tf_example(pair)
    product = dict(product_id="p1", category="tops", category_index=3, product_jpeg=b"jpeg")
    assert tfrecords.encode_product(**product) == _tf_example(product)


def test_manifest_records_runner_and_pipeline_options(synthetic_data, tmp_path):
    config, data_dir = synthetic_data
    manifest = json.load(open(os.path.join(data_dir, "manifest.json")))
    assert manifest["flags"]["runner"] == "FnApiRunner" and manifest["flags"]["pipeline_options"] == {}
    again = build_dataset.build(config, tmp_path, workers=1, **raw_inputs(data_dir), **QUIET,
                                beam_args=["--job_name=ctl-test", "--direct_num_workers=1"])
    # Local parallelism is not part of the dataset's identity; other options are recorded.
    assert again["flags"]["pipeline_options"] == {"job_name": "ctl-test"}
    assert again["splits"] == manifest["splits"]


@pytest.mark.slow
def test_one_and_two_workers_give_the_same_dataset(synthetic_data, tmp_path):
    """--direct_num_workers=1 (in process) and =2 (two worker processes): same pair records keyed by
    pair_id, same manifest counts, same questions and products; in fact the same bytes."""
    config, data_dir = synthetic_data
    one = build_dataset.build(config, tmp_path / "one", workers=1, **raw_inputs(data_dir), **QUIET)
    two = build_dataset.build(config, tmp_path / "two", workers=2, **raw_inputs(data_dir), **QUIET)
    assert {k: v for k, v in one.items() if k != "flags"} == {k: v for k, v in two.items() if k != "flags"}
    by_id = pairs_by_id(tmp_path / "one", one)
    assert by_id == pairs_by_id(tmp_path / "two", two) and len(by_id) == one["pairs_kept"] > 100
    assert snapshot(tmp_path / "one") == snapshot(tmp_path / "two")


@pytest.mark.slow
def test_sigterm_during_rebuild_keeps_the_old_dataset_and_rerun_completes(synthetic_data, tmp_path):
    """The build is signalled as soon as the directory changes in any way (the pre-Beam
    builder removed the manifest first, so this caught it deleting the dataset)."""
    _, data_dir = synthetic_data
    inputs, out = raw_inputs(data_dir), tmp_path / "out"
    subprocess.run(cli(out, inputs, "--workers=1"), env=ENV, capture_output=True, check=True, timeout=300)
    before, listing = snapshot(out), sorted(os.listdir(out))
    process = subprocess.Popen(cli(out, inputs, "--workers=1"), env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    while process.poll() is None and sorted(os.listdir(out)) == listing:
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode != 0, "the build finished before the signal: nothing was tested"
    assert "Traceback" not in stderr and "interrupted" in stderr
    assert snapshot(out) == before and sorted(os.listdir(out)) == listing  # no staging left behind
    rerun = subprocess.run(cli(out, inputs, "--workers=1"), env=ENV, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert snapshot(out) == before


@pytest.mark.slow
def test_rebuild_deletes_only_files_a_manifest_listed(synthetic_data, tmp_path):
    """a rebuild with fewer shards removes the old shards, never the user's own files
    that merely look like ours."""
    config, data_dir = synthetic_data
    inputs, out = raw_inputs(data_dir), tmp_path / "out"
    first = build_dataset.build(config.replace(num_shards=4), out, workers=1, **inputs, **QUIET)
    mine = {"pairs-notes.txt": b"mine", "products-draft.tfrecord": b"also mine", "questions-x.json": b"[]",
            "scores.tmp-123": b"keep", ".staging-mine": b"a file, not our staging dir"}
    for name, data in mine.items():
        (out / name).write_bytes(data)
    (out / ".staging-killed").mkdir()  # a SIGKILLed build's staging dir carries the marker: removed
    (out / ".staging-killed" / "CTL_KERAS_STAGING").write_bytes(b"")
    (out / ".staging-user").mkdir()  # the same name pattern without the marker is the user's: kept
    second = build_dataset.build(config.replace(num_shards=1), out, workers=1, **inputs, **QUIET)
    assert not (out / ".staging-killed").exists() and (out / ".staging-user").is_dir()
    (out / ".staging-user").rmdir()
    names = set(os.listdir(out))
    assert all((out / name).read_bytes() == data for name, data in mine.items())
    assert not set(first["splits"]["train"]["pair_shards"]) & names
    assert set(second["splits"]["train"]["pair_shards"]) <= names
    assert names == set(mine) | {"manifest.json"} | {
        f for info in second["splits"].values() for f in info["pair_shards"] + info["product_files"]} | {
        tfrecords.questions_file_name(s) for s in ("val", "test")}


@pytest.mark.parametrize("option, message", [
    ("--no_such_option=1", "Unparseable pipeline argument: --no_such_option=1"),
    ("--runner=NoSuchRunner", "Unexpected pipeline runner: NoSuchRunner"),
])
@pytest.mark.slow
def test_bad_pipeline_option_is_one_line_before_any_output(synthetic_data, tmp_path, option, message):
    _, data_dir = synthetic_data
    out = tmp_path / "out"
    result = subprocess.run(cli(out, raw_inputs(data_dir), option), env=ENV, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("build_dataset: error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert not out.exists()
