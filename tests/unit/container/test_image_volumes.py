"""Image volume sub paths resolve inside the image, whatever its symlinks say."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cri_py.container.image_volumes import secure_join
from cri_py.errors import InvalidArgument, NotFound


def test_symlinks_resolve_within_the_image_root(tmp_path: Path) -> None:
    root = tmp_path / "image"
    (root / "data" / "inner").mkdir(parents=True)
    (root / "etc").mkdir()
    os.symlink("/etc", root / "abs")  # would be the host's /etc outside the image
    os.symlink("../../..", root / "data" / "up")
    os.symlink("data/inner", root / "rel")
    assert secure_join(root, "abs", "img") == root / "etc"
    assert secure_join(root, "data/up/etc", "img") == root / "etc"
    assert secure_join(root, "rel", "img") == root / "data" / "inner"
    assert secure_join(root, "./data//inner/", "img") == root / "data" / "inner"


def test_a_missing_dir_and_a_symlink_loop_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "image"
    root.mkdir()
    (root / "file").write_text("x")
    os.symlink("loop", root / "loop")
    with pytest.raises(NotFound):
        secure_join(root, "nothing", "img")
    with pytest.raises(NotFound):
        secure_join(root, "file", "img")
    with pytest.raises(InvalidArgument):
        secure_join(root, "loop", "img")
