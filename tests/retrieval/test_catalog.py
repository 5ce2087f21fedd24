"""Catalog sources for `recommend index`: an image directory laid out by category, and its errors."""

import pytest

from ctl_keras.retrieval.catalog import iter_products

CATS = ("tops", "shoes")


def test_image_dir_yields_id_category_bytes(tmp_path):
    """shoes/b.JPG and tops/a.png are products; notes.txt is not an image extension and is ignored."""
    (tmp_path / "shoes").mkdir()
    (tmp_path / "tops").mkdir()
    (tmp_path / "shoes" / "b.JPG").write_bytes(b"\xff\xd8\xff1")
    (tmp_path / "tops" / "a.png").write_bytes(b"\x89PNG2")
    (tmp_path / "tops" / "notes.txt").write_text("x")
    assert list(iter_products(str(tmp_path), CATS)) == [("b", "shoes", b"\xff\xd8\xff1"), ("a", "tops", b"\x89PNG2")]


def test_unknown_category_dir_lists_valid_names(tmp_path):
    (tmp_path / "hats").mkdir()
    with pytest.raises(ValueError, match="sub-directories hats are not categories of the model; valid: tops, shoes"):
        list(iter_products(str(tmp_path), CATS))


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither an image directory nor a tf_records"):
        iter_products(str(tmp_path / "nope"), CATS)


def test_tfrecord_dir_without_products_names_the_build_command(tmp_path):
    (tmp_path / "pairs-train-00000-of-00001.tfrecord").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="ctl build"):
        list(iter_products(f"{tmp_path}:test", CATS))
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        list(iter_products(f"{tmp_path}:dev", CATS))
