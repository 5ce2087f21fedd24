"""export/models.config and export/batching.config, parsed by TF Serving's own protos: ModelServerConfig
from tensorflow-serving-api, BatchingParameters compiled from session_bundle_config.proto with
grpcio-tools (tests/serving/protos; the generated module goes to a temp dir, not the repo)."""

import importlib.resources
import importlib.util
import os
import subprocess
import sys

import pytest
from google.protobuf import text_format

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
PROTOS = os.path.join(os.path.dirname(__file__), "protos")
SESSION_BUNDLE = "tensorflow_serving/servables/tensorflow/session_bundle_config.proto"


def _read(name):
    with open(os.path.join(ROOT, "export", name)) as f:
        return f.read()


@pytest.fixture(scope="module")
def session_bundle_config_pb2(tmp_path_factory):
    import grpc_tools

    out = tmp_path_factory.mktemp("protos")
    well_known = str(importlib.resources.files(grpc_tools) / "_proto")  # google/protobuf/wrappers.proto
    # protoc in its own process: in-process (grpc_tools.protoc.main) it segfaults once TensorFlow's
    # protobuf runtime is loaded, as it is when this test runs inside the whole suite.
    done = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTOS}", f"-I{well_known}",
                           f"--python_out={out}", SESSION_BUNDLE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"protoc failed on {SESSION_BUNDLE}: {done.stderr[-2000:]}"
    path = out / SESSION_BUNDLE.replace(".proto", "_pb2.py")
    # Loaded by file: the package name tensorflow_serving is the installed API's, which has no servables/.
    spec = importlib.util.spec_from_file_location("ctl_test_session_bundle_config_pb2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_batching_config_parses_as_batching_parameters(session_bundle_config_pb2):
    """Every field of the file is a BatchingParameters field (text_format refuses unknown ones), the
    values are set and consistent the way the server checks them: allowed sizes strictly increasing,
    the last equal to max_batch_size."""
    params = text_format.Parse(_read("batching.config"), session_bundle_config_pb2.BatchingParameters())
    for wrapped in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"):
        assert params.HasField(wrapped) and getattr(params, wrapped).value > 0, wrapped
    sizes = list(params.allowed_batch_sizes)
    assert sizes == sorted(set(sizes)) and sizes[0] >= 1
    assert sizes[-1] == params.max_batch_size.value
    assert params.pad_variable_length_inputs is False
    assert params.max_batch_size.value == 32 and params.batch_timeout_micros.value == 2000  # export/README §3


def test_batching_parameters_parser_is_strict(session_bundle_config_pb2):
    """The check above can fail: a misspelled field or a bare value for a wrapped one is refused."""
    message = session_bundle_config_pb2.BatchingParameters
    with pytest.raises(text_format.ParseError, match="max_batch_sizes"):
        text_format.Parse("max_batch_sizes { value: 32 }", message())
    with pytest.raises(text_format.ParseError):
        text_format.Parse("max_batch_size: 32", message())


def test_models_config_parses_as_model_server_config():
    """export/models.config is a ModelServerConfig naming the exported models where the README mounts
    them; its commented-out recommender block parses too once uncommented."""
    from tensorflow_serving.config import model_server_config_pb2

    from ctl_keras.savedmodel.exporter import PRODUCT, RECOMMENDER, SCENE

    text = _read("models.config")
    config = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    models = {m.name: m for m in config.model_config_list.config}
    assert list(models) == [SCENE, PRODUCT]
    for name, model in models.items():
        assert model.base_path == f"/models/ctl/{name}" and model.model_platform == "tensorflow"
        # a re-export must not unload the version the catalog index was embedded with
        assert model.model_version_policy.WhichOneof("policy_choice") == "latest", name
        assert model.model_version_policy.latest.num_versions == 2, name
    uncommented = "\n".join(line.replace("# ", "", 1) if line.strip().startswith(("# config", "#   ", "# }"))
                            else line for line in text.splitlines())
    with_recommender = text_format.Parse(uncommented, model_server_config_pb2.ModelServerConfig())
    assert [m.name for m in with_recommender.model_config_list.config] == [SCENE, PRODUCT, RECOMMENDER]
    assert with_recommender.model_config_list.config[2].base_path == f"/models/ctl/{RECOMMENDER}"
