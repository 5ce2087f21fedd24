"""One smoke export + catalog index for the serve tests (built once per session), a batched server, and a
headless chromium (Debian's, through chromedriver and Selenium) that can reach only loopback."""

import os
import shutil
import subprocess
import sys

import pytest
from tests.helpers.serve_testing import ENV, Server

CHROMIUM, DRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


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


@pytest.fixture
def browser(tmp_path):
    """Every host name but loopback resolves to nothing: a page asking a CDN would fail, as offline."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
        pytest.fail(f"{CHROMIUM} / {DRIVER} missing: apt-get install -y chromium chromium-driver (.ci/run does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,900",
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(tmp_path / "profile", ignore_errors=True)
