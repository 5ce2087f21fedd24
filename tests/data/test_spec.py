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


def test_duplicate_key_in_a_json_spec_is_one_line_naming_it(tmp_path):
    """JSON keeps the last of two equal keys: "shoes" would train on the second list while the real
    shoe rows became unknown_category. Refused wherever it is (categories, defaults, top level)."""
    cases = {
        "categories.shoes": '{"name": "shop", "pairs_format": "csv", "bbox": "pixel_ltwh", "categories": '
                            '{"shoes": ["Shop|Feet|*"], "bags": ["Shop|Bags"], "shoes": ["Shop|Hats"]}}',
        "defaults.epochs": '{"name": "shop", "pairs_format": "csv", "bbox": "pixel_ltwh", "categories": '
                           '{"shoes": ["Shop|Feet|*"]}, "defaults": {"epochs": 3, "epochs": 40}}',
        "name": '{"name": "shop", "pairs_format": "csv", "name": "shop2", "bbox": "pixel_ltwh", '
                '"categories": {"shoes": ["Shop|Feet|*"]}}',
    }
    for key, text in cases.items():
        path = tmp_path / "dup.json"
        path.write_text(text)
        with pytest.raises(ValueError) as err:
            get_config(str(path))
        assert str(err.value).startswith(f"{path}: {key}: is given twice") and "\n" not in str(err.value)


def test_duplicate_key_in_a_toml_spec_is_one_line_naming_it(tmp_path):
    """tomllib already refuses a duplicate key ("Cannot overwrite a value (at line 6, column 22)");
    the line says which key."""
    path = tmp_path / "dup.toml"
    path.write_text('name = "shop"\npairs_format = "jsonl"\nbbox = "normalized_ltrb"\n'
                    '[categories]\nshoes = ["Shop|Feet|*"]\nshoes = ["Shop|Hats"]\n')
    with pytest.raises(ValueError) as err:
        get_config(str(path))
    assert str(err.value) == f"{path}: categories.shoes: is given twice (line 6); TOML allows a key once"
    path.write_text('name = "shop"\npairs_format = "jsonl"\nbbox = "normalized_ltrb"\n'
                    '[categories]\nshoes = ["Shop|Feet|*"]\n[categories]\nbags = ["Shop|Bags"]\n')
    with pytest.raises(ValueError, match=r"dup\.toml: not a valid spec file: Cannot declare \('categories',\) "
                                         r"twice \(at line 6, column 12\)$"):
        get_config(str(path))


@pytest.mark.parametrize("name, problem", [
    ("pants,shorts", "contains ','"),
    (" shoes ", "starts or ends with whitespace"),
    ("shoes\t", "starts or ends with whitespace"),
    ("shoes\tboots", "contains '\\t'"),
    ("", "is empty"),
    ("   ", "is empty"),
    ("a/b", "contains '/'"),
    ("..", "must start with a letter or a digit"),
    ("x" * 65, "is longer than 64 characters"),
])
def test_category_names_the_service_could_never_ask_for_are_refused(tmp_path, name, problem):
    """The service, the look page and `recommend look --categories` split the asked names on commas and
    strip them: such a category could never be asked for (and '/' could not be an image catalog's
    category directory)."""
    path = _write(tmp_path, {**BASE, "categories": {"boots": ["Shop|Feet|*"], name: ["Shop|Bags"]}})
    with pytest.raises(ValueError) as err:
        get_config(path)
    text = str(err.value)
    assert text.startswith(f"{path}: categories: category name {name!r} {problem}") and "\n" not in text
    assert "letters, digits" in text


def test_usable_category_names_and_old_manifests(tmp_path):
    """Spaces inside, '_-.&' and non-ASCII letters are fine; every built-in passes (home's
    "light fixtures"). A manifest written before the rule is still read: its data stays usable."""
    names = ("light fixtures", "t-shirts", "bags_&_co.", "chaussures d'été".replace("'", ""), "7up")
    path = _write(tmp_path, {**BASE, "categories": {n: [f"Shop|{i}"] for i, n in enumerate(names)}})
    assert get_config(path).categories == names
    assert "light fixtures" in spec_lib.resolve("home").category_names
    old = {**spec_lib.resolve(path).to_dict(), "categories": [["pants,shorts", ["Shop|P"]], [" shoes ", ["Shop|S"]]]}
    assert spec_lib.resolve(old).category_names == ("pants,shorts", " shoes ")
