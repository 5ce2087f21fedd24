"""The Python API (ctl_keras/api.py): its docstring examples run as a doctest on a tiny smoke export,
and importing it prints nothing from TensorFlow's start-up."""

import doctest
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _clean_env():
    """The environment of a user's shell: no TF_CPP_MIN_LOG_LEVEL (conftest sets one for the tests)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(scope="module")
def smoke_export(synthetic_data, untrained_model, tmp_path_factory):
    """The doctest's globals: a smoke export + catalog index of the test split, a test scene."""
    from ctl_keras import api
    from ctl_keras.data import pipeline

    _, data_dir = synthetic_data
    _, _, model_dir = untrained_model
    tmp = tmp_path_factory.mktemp("api")
    export_dir, index = str(tmp / "export"), str(tmp / "export" / "catalog")
    api.export(model_dir, export_dir)
    api.index_catalog(export_dir, f"{data_dir}:test", index)
    scene_bytes = next(iter(pipeline.raw_pairs(data_dir, "test")))["scene_jpeg"].numpy()
    scene_path = tmp / "scene.jpg"
    scene_path.write_bytes(scene_bytes)
    return {"export_dir": export_dir, "index": index, "scene_path": str(scene_path), "scene_bytes": scene_bytes,
            "data_dir": str(tmp / "data"), "model_dir": str(tmp / "model"),
            "export_dir2": str(tmp / "export2"), "index2": str(tmp / "export2" / "catalog")}


class _NoProgressBars(doctest.OutputChecker):
    """Compares outputs without Keras's progress-bar lines (`12/18 ━━━━ 1s 59ms/step`): their
    timings differ on every run, and the docstrings leave them out."""

    def check_output(self, want, got, optionflags):
        kept = "".join(line for line in got.splitlines(keepends=True)
                       if "\u2501" not in line and line.strip("\b\r\n\t "))
        return super().check_output(want, kept, optionflags)


@pytest.mark.slow
def test_api_docstring_examples(smoke_export):
    """Every example in ctl_keras/api.py's docstrings, from building a dataset to a look, as written."""
    from ctl_keras import api

    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(checker=_NoProgressBars(), optionflags=doctest.ELLIPSIS)
    tests = [t for t in finder.find(api, globs=dict(smoke_export)) if t.examples]
    assert sum(len(t.examples) for t in tests) >= 20
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctest examples failed (output above)"


@pytest.mark.slow
def test_scene_inputs_are_checked(smoke_export):
    """A path, bytes and an array give the same ranking; bad inputs get one clear error."""
    import numpy as np
    from PIL import Image

    from ctl_keras import Recommender

    rec = Recommender.load(smoke_export["export_dir"], smoke_export["index"])
    pixels = np.asarray(Image.open(smoke_export["scene_path"]).convert("RGB"))
    by_path = rec.query(smoke_export["scene_path"], "shoes", k=3)
    by_array = rec.query(pixels, "shoes", k=3)
    assert [r["product_id"] for r in by_path] == [r["product_id"] for r in by_array]  # PNG of the decoded JPEG
    with pytest.raises(ValueError, match="not a JPEG or PNG"):
        rec.look(b"GIF89a....")
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        rec.look(pixels.astype(np.float32))
    with pytest.raises(FileNotFoundError, match="missing.jpg does not exist"):
        rec.look("missing.jpg")
    with pytest.raises(ValueError, match="k must be at least 1"):
        rec.look(smoke_export["scene_bytes"], k=0)


@pytest.mark.slow
def test_import_prints_nothing_from_tensorflow():
    """`import ctl_keras` does not load TensorFlow; after `from ctl_keras import Recommender` the first
    `import tensorflow` (and an op) prints nothing on stderr: no oneDNN line, no cuInit error."""
    code = ("import sys, ctl_keras; assert 'tensorflow' not in sys.modules, 'ctl_keras imported TF'\n"
            "from ctl_keras import Recommender; assert 'tensorflow' not in sys.modules, 'api imported TF'\n"
            "import tensorflow as tf; print(float(tf.constant(1.0) + 1))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_clean_env(), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "2.0"
    assert "oneDNN" not in proc.stderr and proc.stderr == "", proc.stderr


@pytest.mark.slow
def test_bare_tensorflow_import_prints_the_onednn_line():
    """The control: without ctl_keras's filter the same import prints TensorFlow's oneDNN line, twice
    (port.cc is in libtensorflow_framework.so.2 and in _pywrap_profiler_plugin.so), so the test above
    can fail."""
    proc = subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True, text=True,
                          env=_clean_env(), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("oneDNN custom operations are on") == 2, proc.stderr
