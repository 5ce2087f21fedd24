import json
import os

import pytest

from ctl_keras import config
from ctl_keras import spec as spec_lib

FIXTURE = os.path.join(os.path.dirname(__file__), "data", "fixtures", "stl_category_paths.json")


@pytest.mark.parametrize("dataset,products,n_categories", [("fashion2", 38111, 10), ("home", 41306, 11)])
def test_every_real_stl_category_path_maps_to_a_paper_category(dataset, products, n_categories):
    """Every distinct path of the released <dataset>-cat.json (38,111 / 41,306 products) maps to one of
    the paper's 10 / 11 categories, and every category receives products."""
    with open(FIXTURE) as f:
        paths = json.load(f)["paths"][dataset]
    assert sum(paths.values()) == products
    spec = spec_lib.resolve(dataset)
    matcher = spec.matcher()
    unmapped = {path for path in paths if matcher(path) in (None, spec_lib.DROP)}
    assert not unmapped, unmapped
    per_category = {}
    for path, count in paths.items():
        per_category[matcher(path)] = per_category.get(matcher(path), 0) + count
    assert sorted(per_category) == sorted(config.get_config(dataset).categories)
    assert len(per_category) == n_categories


def test_config_round_trips_and_rejects_unknown_names():
    """to_dict/from_dict is the identity; unknown dataset, variant and keys are one-line errors."""
    cfg = config.get_config("home", smoke=True, variant="local")
    assert config.Config.from_dict(cfg.to_dict()) == cfg
    assert cfg.crop_sides == ("top", "bottom", "left", "right")
    with pytest.raises(ValueError, match="unknown dataset 'shoes': expected one of fashion1, fashion2, home, synthetic"):
        config.get_config("shoes")
    with pytest.raises(ValueError, match="unknown variant"):
        config.get_config("home", variant="attention")
    with pytest.raises(ValueError, match="unknown lr_schedule 'linear'; expected one of constant, cosine"):
        config.get_config("home", lr_schedule="linear")
    with pytest.raises(ValueError, match="unknown config keys: bogus"):
        config.Config.from_dict({**cfg.to_dict(), "bogus": 1})


def test_grid_must_divide_the_conv4_map():
    """224 px gives a 14x14 conv4 map: a 7x7 grid pools 2x2; a 5x5 grid cannot."""
    assert config.get_config("home").local_grid == 7
    with pytest.raises(ValueError, match="cannot be pooled to a 5x5 grid"):
        config.get_config("home", local_grid=5)


def test_seed_split_and_crop_sides_are_checked_up_front():
    """Each would otherwise fail deep in NumPy seeding, the splitter or the cropper."""
    with pytest.raises(ValueError, match="seed -1 must be in"):
        config.get_config("synthetic", seed=-1)
    with pytest.raises(ValueError, match="split_fractions .* summing to 1"):
        config.get_config("synthetic", split_fractions=(0.8, 0.6, 0.6))
    with pytest.raises(ValueError, match="crop_sides"):
        config.get_config("synthetic", crop_sides=("middle",))
    assert config.get_config("home").crop_sides == ("top", "bottom", "left", "right")
