"""A hostile image's account files: symlinks out of the rootfs, FIFOs and devices in their place."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cri_py.errors import InvalidArgument
from cri_py.oci.users import resolve_user


def resolve(rootfs: Path, username: str = "", uid: int | None = None) -> tuple[int, int, str]:
    user = resolve_user(
        rootfs, uid=uid, username=username, gid=None, image_user="", supplemental=[], strict=False
    )
    return user.uid, user.gid, user.username


def test_etc_as_an_absolute_symlink_stays_in_the_image(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "usr" / "etc").mkdir(parents=True)
    (rootfs / "usr" / "etc" / "passwd").write_text("app:x:1000:1001::/home/app:/bin/sh\n")
    # inside the container /etc -> /usr/etc; read from the host it would be the host's /etc
    (rootfs / "etc").symlink_to("/usr/etc")
    assert resolve(rootfs, username="app") == (1000, 1001, "app")
    with pytest.raises(InvalidArgument, match="root"):
        resolve(rootfs, username="root")  # the host's root user is not the image's


def test_passwd_climbing_out_is_read_inside(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    (tmp_path / "passwd").write_text("evil:x:0:0::/:/bin/sh\n")
    (rootfs / "etc" / "passwd").symlink_to("../../../../../passwd")  # stops at the rootfs' `/`
    with pytest.raises(InvalidArgument, match="evil"):
        resolve(rootfs, username="evil")


def test_a_fifo_or_device_as_passwd_is_not_read(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True)
    os.mkfifo(rootfs / "etc" / "passwd")  # reading it would block the daemon's thread for ever
    assert resolve(rootfs, uid=5) == (5, 0, "")
    os.unlink(rootfs / "etc" / "passwd")
    (rootfs / "etc" / "passwd").symlink_to("/dev/zero")  # endless: taken as the rootfs' /dev/zero
    assert resolve(rootfs, uid=5) == (5, 0, "")
