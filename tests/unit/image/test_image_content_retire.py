"""Removing a layer is two steps: it leaves the store at once (RemoveImage answers then), its
files are deleted after; a crash in between leaves only a temporary the next start removes."""

from __future__ import annotations

from pathlib import Path

from cri_py.image.content import ContentStore, remove_retired

CHAIN = "sha256:" + "ab" * 32


def _store_with_layer(tmp_path: Path) -> ContentStore:
    store = ContentStore(tmp_path / "images")
    store.prepare()
    tmp = store.new_layer_tmp()
    (tmp / "diff" / "bin").mkdir(parents=True)
    (tmp / "diff" / "bin" / "sh").write_bytes(b"#!")
    store.commit_layer(tmp, CHAIN)
    assert store.has_layer(CHAIN) and store.layer_link(CHAIN).is_symlink()
    return store


def _leftovers(store: ContentStore) -> list[Path]:
    return list(store.layers_dir.iterdir())


def test_a_retired_layer_is_gone_from_the_store_before_its_files(tmp_path: Path) -> None:
    store = _store_with_layer(tmp_path)
    doomed = store.retire_layer(CHAIN)
    assert doomed is not None
    assert not store.has_layer(CHAIN)
    assert not store.layer_link(CHAIN).exists()
    assert store.layer_ids() == []
    # the files are still there, under a temporary name
    assert (doomed / "x" / "diff" / "bin" / "sh").read_bytes() == b"#!"
    remove_retired([doomed])
    assert _leftovers(store) == []


def test_retiring_a_missing_layer_is_nothing(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "images")
    store.prepare()
    assert store.retire_layer(CHAIN) is None


def test_the_next_start_removes_what_a_crash_left_retired(tmp_path: Path) -> None:
    store = _store_with_layer(tmp_path)
    assert store.retire_layer(CHAIN) is not None
    # the daemon died before deleting the files: a new store on the same root cleans up
    again = ContentStore(tmp_path / "images")
    again.prepare()
    again.cleanup_temporaries()
    assert _leftovers(again) == []
