"""CatalogIndex: atomic save/load, torn-file detection, compatibility checks."""

import json

import numpy as np
import pytest

from ctl_keras.retrieval.index import CatalogIndex, check_compatible, index_paths, load_index, save_index

CATS = ("tops", "pants", "shoes")


def _index(n=5, d=4, seed=0, **meta):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, d)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    meta = {"tower_version": 3, "model_fingerprint": "abc", **meta}
    return CatalogIndex(np.array([f"p{i}" for i in range(n)]), np.arange(n) % 3, emb, CATS, meta)


def test_save_load_round_trip(tmp_path):
    index = _index()
    npz, js = save_index(index, tmp_path / "cat")
    assert (npz, js) == index_paths(tmp_path / "cat.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cat.json", "cat.npz"]  # no temp files left
    back = load_index(tmp_path / "cat.json")
    np.testing.assert_array_equal(back.embeddings, index.embeddings)
    assert list(back.product_ids) == ["p0", "p1", "p2", "p3", "p4"]
    assert list(back.category_ids) == [0, 1, 2, 0, 1]
    assert back.categories == CATS and back.meta["tower_version"] == 3 and back.embedding_dim == 4


def test_npz_from_another_write_is_refused(tmp_path):
    """The json holds the npz's sha256: an npz swapped under it (torn overwrite) is detected."""
    save_index(_index(seed=0), tmp_path / "a")
    save_index(_index(seed=1), tmp_path / "b")
    (tmp_path / "b.npz").replace(tmp_path / "a.npz")
    with pytest.raises(ValueError, match="does not match .*rebuild"):
        load_index(tmp_path / "a")


def test_missing_index_names_the_file_and_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.npz not found.*recommend index"):
        load_index(tmp_path / "nope")


def test_failed_save_leaves_previous_index(tmp_path, monkeypatch):
    save_index(_index(seed=0), tmp_path / "a")
    before = (tmp_path / "a.json").read_text()
    monkeypatch.setattr(json, "dump", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        save_index(_index(seed=1), tmp_path / "a")
    assert (tmp_path / "a.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.npz"]
    load_index(tmp_path / "a")  # still consistent


def test_unknown_category_lists_valid_names():
    with pytest.raises(ValueError, match="unknown category 'dresses'; valid: tops, pants, shoes"):
        _index().category_id("dresses")


@pytest.mark.parametrize("tower, problem", [
    ({"embedding_dim": 8, "version": 3, "model_fingerprint": "abc"}, "embedding size 4 vs 8"),
    ({"embedding_dim": 4, "version": 4, "model_fingerprint": "abc"}, "tower version 3 vs 4"),
    ({"embedding_dim": 4, "version": 3, "model_fingerprint": "xyz"}, "model weights differ"),
])
def test_mismatched_tower_is_refused(tower, problem):
    with pytest.raises(ValueError, match=f"index does not match the scene tower.*{problem}"):
        check_compatible(_index(), dict(tower, categories=list(CATS)))


def test_matching_tower_is_accepted():
    check_compatible(_index(), {"embedding_dim": 4, "version": 3, "model_fingerprint": "abc", "categories": list(CATS)})


def test_inconsistent_arrays_are_rejected():
    with pytest.raises(ValueError, match="index arrays disagree"):
        CatalogIndex(np.array(["a", "b"]), np.array([0, 1]), np.zeros((3, 4)), CATS)


def test_files_that_are_not_an_index_of_ours_are_never_replaced(tmp_path):
    """`--index=notes` beside the user's notes.json / notes.npz used to overwrite them.
    Now refused in one line naming the file, the file untouched; an index of ours is replaced; a
    user's notes.g2.npz is not taken for a stale generation."""
    index = CatalogIndex(np.array(["a", "b"]), np.array([0, 1]), np.eye(2, dtype=np.float32), ("x", "y"))
    (tmp_path / "notes.json").write_text('{"todo": ["buy milk"]}')
    with pytest.raises(ValueError, match=r"notes\.json exists and is not a ctl_keras catalog index; refusing"):
        save_index(index, tmp_path / "notes")
    assert (tmp_path / "notes.json").read_text() == '{"todo": ["buy milk"]}' and not (tmp_path / "notes.npz").exists()
    np.savez(tmp_path / "data.npz", weights=np.ones(3))
    with pytest.raises(ValueError, match=r"data\.npz exists and is not a ctl_keras catalog index"):
        save_index(index, tmp_path / "data")
    (tmp_path / "cat.g2.npz").write_bytes(b"user bytes")
    save_index(index, tmp_path / "cat")
    save_index(index, tmp_path / "cat")  # ours: replaced by design
    assert (tmp_path / "cat.g2.npz").read_bytes() == b"user bytes"
    assert list(load_index(tmp_path / "cat").product_ids) == ["a", "b"]
