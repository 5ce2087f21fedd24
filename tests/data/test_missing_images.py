"""A table whose ids do not name its image files: the dry run and the build say which path they looked
for, instead of "520 pairs survive" followed by a build that finds no image."""

import json
import os
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from ctl_keras.builder import build as build_dataset
from ctl_keras import spec as spec_lib
from ctl_keras.builder import dry_run, stages
from ctl_keras.data import readers
from ctl_keras.config import get_config

SPEC = {"name": "shop", "pairs_format": "parquet", "bbox": "normalized_ltrb", "crop_sides": "top_bottom",
        "categories": {"boots": ["Shop|Feet|*"]}}
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _shop(root, scene_ids) -> None:
    """pairs.parquet with the given scene ids (products p<i>), images img_<i>.jpg / p<i>.jpg in images/."""
    images = root / "images"
    images.mkdir()
    rows = []
    for i, scene in enumerate(scene_ids):
        Image.new("RGB", (64, 64), (i, 40, 90)).save(images / f"img_{1001 + i}.jpg")
        Image.new("RGB", (32, 32), (90, i, 40)).save(images / f"p{i}.jpg")
        rows.append({"scene": scene, "product": f"p{i}", "category": "Shop|Feet|Boots",
                     "left": 0.1, "top": 0.7, "right": 0.4, "bottom": 0.95})
    pq.write_table(pa.Table.from_pylist(rows), root / "pairs.parquet")
    (root / "shop.json").write_text(json.dumps(SPEC))


def test_dry_run_and_plan_name_the_first_path_looked_for(tmp_path):
    _shop(tmp_path, [1001.0 + i for i in range(6)])  # the ids name 1001.jpg, the files are img_1001.jpg
    spec = spec_lib.resolve(str(tmp_path / "shop.json"))
    config = get_config(spec, smoke=True)
    read = build_dataset.read_pairs(config, spec, pairs=str(tmp_path / "pairs.parquet"),
                                    images_dir=str(tmp_path / "images"))
    first = str(tmp_path / "images" / "1001.jpg")  # the float id 1001.0 is read as 1001
    head = dry_run.summary_lines(read)[0]
    assert head.endswith(f"12 images to check and encode (6 not found; the first looked for: {first})"), head
    status = dict(stages.check_image(path) for path in read["paths"])
    bundle = {"config": config, "spec": spec, "raw": read["raw"], "skipped": read["skipped"],
              "path_of": read["path_of"], "flags": {}}
    planned = stages.plan(bundle, status)
    assert planned["error"].endswith(f"; 6 images not found, the first looked for: {first}"), planned["error"]


@pytest.mark.slow
def test_dry_run_from_the_data_directory_with_relative_paths(tmp_path):
    """As a user runs it, twice: relative --pairs / --images_dir, the hint names the relative path."""
    _shop(tmp_path, [f"s{i}" for i in range(6)])
    command = [sys.executable, "-m", "ctl_keras.build_dataset", "--dataset=shop.json", "--pairs=pairs.parquet",
               "--images_dir=images", "--dry_run"]
    for _ in range(2):
        done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=ENV, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "(6 not found; the first looked for: images/s0.jpg)" in done.stdout, done.stdout


def test_manifest_counts_missing_images_and_names_the_first(tmp_path):
    _shop(tmp_path, [f"img_{1001 + i}" for i in range(5)] + ["nothere"])
    spec = spec_lib.resolve(str(tmp_path / "shop.json"))
    config = get_config(spec, smoke=True)
    read = build_dataset.read_pairs(config, spec, pairs=str(tmp_path / "pairs.parquet"),
                                    images_dir=str(tmp_path / "images"))
    bundle = {"config": config, "spec": spec, "raw": read["raw"], "skipped": read["skipped"],
              "path_of": read["path_of"], "flags": {}}
    planned = stages.plan(bundle, dict(stages.check_image(path) for path in read["paths"]))
    assert planned["error"] is None and planned["manifest"]["pairs_kept"] == 5
    assert planned["manifest"]["missing_images"] == {"count": 1, "first": str(tmp_path / "images" / "nothere.jpg")}


def test_pixel_boxes_log_the_first_scene_not_found(tmp_path):
    """Pixel boxes read each scene's size while reading the table: a missing scene is logged with its path."""
    _shop(tmp_path, ["img_1001", "gone"])
    spec = spec_lib.from_dict({**SPEC, "bbox": "pixel_ltrb"})
    lines = []
    pairs, skipped, _ = readers.read(spec, readers.Sources(pairs=str(tmp_path / "pairs.parquet"),
                                                         images_dir=str(tmp_path / "images")), lines.append)
    assert dict(skipped) == {"missing_image": 1}
    assert lines == [f"1 scene images not found (their sizes are needed for bbox pixel_ltrb); the first looked "
                     f"for: {tmp_path / 'images' / 'gone.jpg'}"]
