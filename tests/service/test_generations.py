"""How a running service picks up the generations written beside it: thumbnails from the sources the
index records (built from a relative path, the server started in another directory, an update from a
second directory), a generation deployed by copying (json first) loaded as soon as its arrays are
complete, and a full rebuild seen as a new generation number."""

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
from tests.helpers.serve_testing import ENV, Server, call

from ctl_keras.retrieval.catalog import iter_products
from ctl_keras.retrieval.index import load_index

pytestmark = pytest.mark.slow


def _index(cwd, *args) -> str:
    proc = subprocess.run([sys.executable, "-m", "ctl_keras.recommend", "index", *args], cwd=cwd,
                          capture_output=True, text=True, env=ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _ready(server) -> dict:
    return json.loads(call(server.url + "/readyz")[2])


def _wait_generation(server, number: int, timeout: float) -> float:
    """Seconds until /readyz names generation `number`; fails after `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if _ready(server).get("index_generation") == number:
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"generation {number} not served after {timeout} s: {_ready(server)}")


@pytest.fixture(scope="module")
def live(serve_setup, tmp_path_factory):
    """A server started in `elsewhere/` on an index built in `work/` from the relative `--products=A`."""
    export_dir, stem, data_dir, _ = serve_setup
    tmp = tmp_path_factory.mktemp("generations")
    products = list(iter_products(f"{data_dir}:test", load_index(stem).categories))
    for name, part in (("A", products[:-3]), ("B", products[-3:])):
        for product_id, category, image in part:
            os.makedirs(tmp / "work" / name / category, exist_ok=True)
            (tmp / "work" / name / category / f"{product_id}.jpg").write_bytes(image)
    _index(tmp / "work", f"--export_dir={export_dir}", "--products=A", "--index=catalog", "--batch_size=8")
    (tmp / "elsewhere").mkdir()
    server = Server(f"--index={tmp / 'work' / 'catalog'}", "--watch_seconds=0.5", cwd=tmp / "elsewhere",
                    log_path=tmp / "server.log")
    yield server, tmp, products
    server.stop()


def _image(server, product_id):
    status, _, body = call(server.url + f"/v1/products/{product_id}/image")
    return status, body


def test_thumbnails_from_any_cwd_and_after_an_update_from_another_dir(live):
    server, tmp, products = live
    assert json.loads(call(server.url + "/v1/categories")[2])["thumbnails"] is True
    assert _image(server, products[0][0]) == (200, products[0][2])
    assert _image(server, products[-1][0])[0] == 404  # not in the catalog yet
    _index(tmp / "work", "--update", "--products=B", "--index=catalog")
    _wait_generation(server, 2, 60)
    for product_id, _, image in products[-3:]:
        assert _image(server, product_id) == (200, image)
    assert _image(server, products[0][0]) == (200, products[0][2])
    assert "have no image" not in (tmp / "server.log").read_text()


def test_generation_deployed_by_copying_loads_once_complete(live):
    """The json copied first names arrays not there yet (refused, old generation kept), then the arrays
    arrive in two writes 1.5 s apart (a torn file: refused again): loaded within a few polls of the
    copy's end, without /admin/reload, and the removed products are gone."""
    server, tmp, products = live
    assert _ready(server)["index_generation"] == 2
    staging = tmp / "staging"
    staging.mkdir()
    meta = json.loads((tmp / "work" / "catalog.json").read_text())
    for name in ("catalog.json", meta["npz_file"]):
        shutil.copyfile(tmp / "work" / name, staging / name)
    removed = [p[0] for p in products[:2]]
    (staging / "ids.txt").write_text("\n".join(removed) + "\n")
    assert "generation 3: " in _index(staging, "--update", "--remove=ids.txt", "--index=catalog")
    npz = json.loads((staging / "catalog.json").read_text())["npz_file"]
    data = (staging / npz).read_bytes()
    shutil.copyfile(staging / "catalog.json", tmp / "work" / "catalog.json")
    time.sleep(2.0)
    ready = _ready(server)
    assert ready["index_generation"] == 2 and npz in ready["last_reload_error"], ready
    with open(tmp / "work" / npz, "wb") as f:
        f.write(data[: len(data) // 2])
        f.flush()
        time.sleep(1.5)
        f.write(data[len(data) // 2:])
    assert _wait_generation(server, 3, 30) < 4.0  # a few 0.5 s polls (0.1 s measured), not a retry timer
    assert _ready(server).get("last_reload_error") is None
    for product_id in removed:
        assert _image(server, product_id)[0] == 404


def test_full_rebuild_is_a_new_generation(live):
    """`recommend index` over the existing index continues its numbering (it wrote generation 1 again:
    the same number for other content)."""
    server, tmp, _ = live
    export_dir = load_index(tmp / "work" / "catalog").meta["export_dir"]
    _index(tmp / "work", f"--export_dir={export_dir}", "--products=B", "--index=catalog")
    assert load_index(tmp / "work" / "catalog").meta["generation"] == 4
    _wait_generation(server, 4, 60)
    assert json.loads(call(server.url + "/readyz")[2])["index_generation"] == 4
