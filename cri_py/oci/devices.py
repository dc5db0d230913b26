"""Device nodes for the OCI spec: one named by the CRI request, or all of the host's for a
privileged container (as containerd and CRI-O give them)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from cri_py.errors import InvalidArgument

# not devices of the host's own: per-mount pseudo filesystems and container tooling's leftovers
_SKIPPED_DIRS = frozenset({"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"})
_SKIPPED_FILES = frozenset({"console"})


def _entry(st: os.stat_result, container_path: str) -> dict[str, Any] | None:
    if stat.S_ISCHR(st.st_mode):
        typ = "c"
    elif stat.S_ISBLK(st.st_mode):
        typ = "b"
    else:
        return None
    return {
        "path": container_path,
        "type": typ,
        "major": os.major(st.st_rdev),
        "minor": os.minor(st.st_rdev),
        "fileMode": stat.S_IMODE(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
    }


def device_entry(host_path: str, container_path: str = "") -> dict[str, Any]:
    """The spec entry for one host device node; InvalidArgument if it is none."""
    try:
        st = os.stat(host_path)
    except OSError as exc:
        raise InvalidArgument(f"device {host_path!r}: {exc.strerror}") from exc
    entry = _entry(st, container_path or host_path)
    if entry is None:
        raise InvalidArgument(f"{host_path!r} is not a device")
    return entry


def host_devices(dev: Path = Path("/dev")) -> list[dict[str, Any]]:
    """Every character and block device under /dev (symlinks are not followed)."""
    found: list[dict[str, Any]] = []
    for dirpath, dirnames, filenames in os.walk(dev):
        if Path(dirpath) == dev:
            dirnames[:] = [d for d in dirnames if d not in _SKIPPED_DIRS]
        for name in sorted(filenames):
            if Path(dirpath) == dev and name in _SKIPPED_FILES:
                continue
            path = os.path.join(dirpath, name)
            try:
                st = os.lstat(path)
            except OSError:  # gone meanwhile
                continue
            entry = _entry(st, path)
            if entry is not None:
                found.append(entry)
    return found
