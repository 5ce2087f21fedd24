"""Dataset spec files: validation (one line naming the file and the key), label rules, built-ins."""

import json
import pickle

import pytest

from ctl_keras import spec as spec_lib
from ctl_keras.config import get_config

BASE = {"name": "shop", "pairs_format": "csv", "bbox": "pixel_ltwh",
        "categories": {"boots": ["Shop|Feet|*"], "bags": ["Shop|Bags"]}}


def _write(tmp_path, values, name="shop.json"):
    path = tmp_path / name
    path.write_text(json.dumps(values))
    return str(path)


@pytest.mark.parametrize("change, key, message", [
    ({"colour": "red"}, "colour", "unknown key"),
    ({"categories": {"boots": []}}, "categories.boots", "has no labels"),
    ({"categories": {"boots": ["A|B"], "bags": ["A|B"]}}, "categories.bags", "already claimed by category 'boots'"),
    ({"drop": ["Shop|Bags"]}, "drop", "already claimed by category 'bags'"),
    ({"pairs_format": "xlsx"}, "pairs_format", "unknown format 'xlsx'"),
    ({"bbox": "center_xywh"}, "bbox", "unknown box format"),
    ({"crop_sides": "left"}, "crop_sides", "expected one of top_bottom, all"),
    ({"name": "../etc"}, "name", "must be 1-64 letters"),
    ({"pairs_format": "stl"}, "bbox", "stores normalized_ltrb boxes"),
    ({"defaults": {"epochz": 3}}, "defaults.epochz", "not a setting"),
])
def test_bad_specs_are_one_line_errors_naming_file_and_key(tmp_path, change, key, message):
    path = _write(tmp_path, {**BASE, **change})
    with pytest.raises(ValueError) as err:
        get_config(path)
    text = str(err.value)
    assert text.startswith(f"{path}: {key}: ") and message in text and "\n" not in text


def test_missing_required_key_and_bbox_of_tables(tmp_path):
    with pytest.raises(ValueError, match=r"shop.json: categories: is required"):
        spec_lib.read(_write(tmp_path, {k: v for k, v in BASE.items() if k != "categories"}))
    with pytest.raises(ValueError, match=r"shop.json: bbox: is required for pairs_format 'csv'"):
        spec_lib.read(_write(tmp_path, {k: v for k, v in BASE.items() if k != "bbox"}))


def test_label_rules_most_specific_wins_and_drop_carves_out():
    """Exact over |*, longer |* over shorter: 'Home|Decor|Rugs' is rugs although 'Home|Decor|*' is decor;
    a drop entry under a category's path wins there too; '|*' also matches the path itself."""
    matcher = spec_lib.LabelMatcher(
        (("decor", ("Home|Decor|*",)), ("rugs", ("Home|Decor|Rugs",)), ("lamps", ("Home|Light|*",))),
        drop=("Home|Light|Broken|*",))
    assert matcher("Home|Decor|Vases|Tall") == "decor" and matcher("Home|Decor") == "decor"
    assert matcher("Home|Decor|Rugs") == "rugs"
    assert matcher("Home|Decor|Rugs|Wool") == "decor"  # exact only: not under the rugs label
    assert matcher("Home|Light|Broken|Bulb") is spec_lib.DROP
    assert matcher("Home|DecorX") is None and matcher("Garden") is None
    again = pickle.loads(pickle.dumps(matcher))  # Beam ships it to workers
    assert again("Home|Light|Broken|Bulb") is spec_lib.DROP and again("Home|Decor|Rugs") == "rugs"


def test_builtins_are_specs_round_tripping_through_the_manifest_form():
    assert spec_lib.builtin_names() == ("fashion1", "fashion2", "home", "synthetic")
    for name in spec_lib.builtin_names():
        spec = spec_lib.resolve(name)
        again = spec_lib.resolve(json.loads(json.dumps(spec.to_dict(), sort_keys=True)))
        assert again.identity() == spec.identity() and again.category_names == spec.category_names
    assert get_config("home").crop_sides == ("top", "bottom", "left", "right")
    assert spec_lib.resolve("fashion1").matcher()("dresses") is spec_lib.DROP


def test_spec_defaults_apply_and_flags_override(tmp_path):
    path = _write(tmp_path, {**BASE, "defaults": {"image_size": 112, "resize_size": 128, "epochs": 7}})
    config = get_config(path)
    assert (config.dataset, config.categories) == ("shop", ("boots", "bags"))
    assert (config.image_size, config.epochs) == (112, 7)
    assert get_config(path, epochs=3).epochs == 3


def test_toml_spec(tmp_path):
    path = tmp_path / "shop.toml"
    path.write_text('name = "shop"\npairs_format = "jsonl"\nbbox = "normalized_ltrb"\n'
                    '[categories]\nboots = ["Shop|Feet|*"]\n')
    assert get_config(str(path)).categories == ("boots",)


def test_every_pairs_format_has_a_reader():
    from ctl_keras.data import readers

    assert set(readers.READERS) == set(spec_lib.PAIRS_FORMATS)


def test_missing_or_broken_spec_file_is_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"dataset spec file not found: .*nope\.json"):
        get_config(str(tmp_path / "nope.json"))
    broken = tmp_path / "broken.json"
    broken.write_text('{"name": "shop",')
    with pytest.raises(ValueError, match=r"broken\.json: not a valid spec file") as err:
        get_config(str(broken))
    assert "\n" not in str(err.value)
