"""The exported SavedModels under TF Serving's own loader: tests/serving/cc/run_savedmodel.cc, built
with g++ against the TensorFlow wheel's libtensorflow_cc.so.2 and headers (tf.sysconfig), loads each
model with tensorflow::LoadSavedModel, runs every warmup request of assets.extra (so every serving
signature), and its outputs must match the Python SavedModel loader's to 1e-5."""

import os
import shutil
import subprocess

import numpy as np
import pytest
from tests.helpers.smoke_catalog_export import export_smoke_catalog
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

from ctl_keras.savedmodel import exporter, warmup

SOURCE = os.path.join(os.path.dirname(__file__), "cc", "run_savedmodel.cc")


def compile_command(source: str, binary: str) -> list[str]:
    """g++ with the wheel's own flags; libtensorflow_cc.so.2 (LoadSavedModel, DirectSession) is linked
    with --no-as-needed: nothing references its session factory's static registration, and without it
    the load fails with "No session factory registered"."""
    lib_dir = os.path.dirname(tf.__file__)
    return (["g++", "-O1", "-w", source, "-o", binary, *tf.sysconfig.get_compile_flags(),
             f"-L{lib_dir}", "-Wl,--no-as-needed", "-l:libtensorflow_cc.so.2"]
            + tf.sysconfig.get_link_flags() + [f"-Wl,-rpath,{lib_dir}"])


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.fail("g++ not found: `apt-get install -y g++` (.ci/run installs it)")
    binary = str(tmp_path_factory.mktemp("cc_build") / "run_savedmodel")
    proc = subprocess.run(compile_command(SOURCE, binary), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return binary


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Scene tower, product tower and recommender of a seeded smoke model with a 6-product catalog."""
    return export_smoke_catalog(str(tmp_path_factory.mktemp("export")), top_k=3)[3]


def _write_requests(version_dir: str, requests_dir: str) -> list[tuple[str, dict]]:
    """The warmup records as run_savedmodel's request files; [(signature, inputs)] in file order."""
    os.makedirs(requests_dir)
    requests, lines = [], []
    for i, log in enumerate(warmup.read_warmup(warmup.warmup_path(version_dir))):
        request = log.predict_log.request
        for key, proto in request.inputs.items():
            with open(os.path.join(requests_dir, f"{i}.{key}.pb"), "wb") as f:
                f.write(proto.SerializeToString())
        requests.append((request.model_spec.signature_name,
                         {k: tf.make_ndarray(v) for k, v in request.inputs.items()}))
        lines.append(" ".join([str(i), request.model_spec.signature_name, *request.inputs]))
    with open(os.path.join(requests_dir, "requests.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return requests


def _read_tensor(path: str) -> np.ndarray:
    with open(path, "rb") as f:
        return tf.make_ndarray(tensor_pb2.TensorProto.FromString(f.read()))


@pytest.mark.slow
@pytest.mark.parametrize("model", [exporter.SCENE, exporter.PRODUCT, exporter.RECOMMENDER])
def test_tensorflow_cc_loader_matches_python(model, runner, exported, tmp_path):
    version_dir = exported[model]
    requests = _write_requests(version_dir, str(tmp_path / "requests"))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.run([runner, version_dir, str(tmp_path / "requests"), str(out_dir)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = proc.stdout.splitlines()
    signatures = {line.split()[1] for line in lines if line.startswith("signature ")} - {"__saved_model_init_op"}
    ran = [line.split()[2] for line in lines if line.startswith("ran ")]
    assert len(ran) == len(requests) and set(ran) == signatures  # every signature, every warmup request

    loaded = tf.saved_model.load(version_dir)
    compared = 0
    for i, (signature, inputs) in enumerate(requests):
        expected = loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
        assert expected, signature
        for key, value in expected.items():
            got, want = _read_tensor(str(out_dir / f"{i}.{key}.pb")), value.numpy()
            assert got.shape == want.shape and got.dtype == want.dtype, (signature, key)
            if want.dtype.kind == "f":
                np.testing.assert_allclose(got, want, rtol=0, atol=1e-5, err_msg=f"{signature}/{key}")
            else:
                np.testing.assert_array_equal(got, want, err_msg=f"{signature}/{key}")
            compared += 1
    assert compared >= len(requests)
