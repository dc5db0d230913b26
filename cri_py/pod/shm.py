"""The pod's /dev/shm: a tmpfs of its own, shared by its containers (namespaces: pinner.py)."""

from __future__ import annotations

import errno
from pathlib import Path

from cri_py.storage import mount as sysmount

_MS_NOSUID = 2
_MS_NODEV = 4
_MS_NOEXEC = 8


def mount_shm(path: Path, size_bytes: int = 64 * 1024 * 1024) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if sysmount.is_mountpoint(path):
        return
    sysmount.mount("shm", path, "tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, f"mode=1777,size={size_bytes}")


def unmount_shm(path: Path) -> None:
    while sysmount.is_mountpoint(path):
        try:
            sysmount.umount(path, sysmount.MNT_DETACH)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT):
                break
            raise
