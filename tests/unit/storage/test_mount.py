"""is_mountpoint: statx's mount-root attribute agrees with /proc/self/mountinfo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cri_py.storage import mount as sysmount


@pytest.mark.parametrize("path", ["/", "/proc", "/dev", "/etc", "/nonexistent/child", "/proc/self/mountinfo"])
def test_agrees_with_mountinfo(path: str) -> None:
    assert sysmount.is_mountpoint(Path(path)) == sysmount._in_mountinfo(Path(path))


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")
def test_a_fresh_tmpfs_and_its_removal(tmp_path: Path) -> None:
    target = tmp_path / "m"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    assert not sysmount.is_mountpoint(target)
    sysmount.mount("tmpfs", target, "tmpfs", data="size=1m")
    try:
        assert sysmount.is_mountpoint(target)
        assert sysmount._in_mountinfo(target)
        assert not sysmount.is_mountpoint(link)  # a symlink to a mount is not one
        assert not sysmount.is_mountpoint(target / "inside")
    finally:
        sysmount.umount(target)
    assert not sysmount.is_mountpoint(target)
