"""One smoke export + catalog index for the serve tests (built once per session), and a batched server."""

import subprocess
import sys

import pytest
from tests.helpers.serve_testing import ENV, Server


@pytest.fixture(scope="session")
def serve_setup(synthetic_data, untrained_model, tmp_path_factory):
    """(export_dir, index stem, data_dir, {name: scene JPEG path}): the untrained smoke model exported,
    the test split's products indexed by `recommend index`, two test scenes written out."""
    from ctl_keras.retrieval import bundle
    from ctl_keras.data.pipeline import raw_pairs

    _, data_dir = synthetic_data
    _, _, model_dir = untrained_model
    tmp = tmp_path_factory.mktemp("serve")
    export_dir = str(tmp / "export")
    bundle.export_towers(str(model_dir), export_dir)
    stem = str(tmp / "catalog")
    proc = subprocess.run([sys.executable, "-m", "ctl_keras.recommend", "index", f"--export_dir={export_dir}",
                           f"--products={data_dir}:test", f"--index={stem}"], capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    scenes, seen = {}, set()
    for p in raw_pairs(data_dir, "test"):
        scene_id = p["scene_id"].numpy().decode()
        if scene_id not in seen and len(scenes) < 3:
            seen.add(scene_id)
            path = tmp / f"scene{len(scenes)}.jpg"
            path.write_bytes(p["scene_jpeg"].numpy())
            scenes[scene_id] = str(path)
    return export_dir, stem, data_dir, list(scenes.values())


@pytest.fixture(scope="session")
def batched_server(serve_setup, tmp_path_factory):
    export_dir, stem, data_dir, _ = serve_setup
    log = tmp_path_factory.mktemp("logs") / "batched.log"
    server = Server(f"--export_dir={export_dir}", f"--index={stem}", "--max_batch=8", "--max_wait_ms=30",
                    f"--product_images={data_dir}:test", "--max_body_bytes=300000", "--max_pixels=250000",
                    log_path=log)
    yield server
    server.stop()
