"""mount(2) and umount2(2) through libc: no process per container start."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8
# one page: the kernel copies the option string of mount(2) into a single page
MOUNT_DATA_MAX = 4095

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

# statx(2): STATX_ATTR_MOUNT_ROOT (Linux 5.8) says whether a path is a mount's root without
# reading /proc/self/mountinfo, which grows by three lines per pod (rootfs, shm, netns pin) and
# costs ~0.8 ms of Python even on an idle host
_AT_FDCWD = -100
_AT_SYMLINK_NOFOLLOW = 0x100
_AT_NO_AUTOMOUNT = 0x800
_STATX_BASIC_STATS = 0x7FF
_STATX_ATTR_MOUNT_ROOT = 0x2000
_STATX_SIZE = 256
_statx = getattr(_libc, "statx", None)
if _statx is not None:
    _statx.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]


def mount(source: str, target: Path, fstype: str, flags: int = 0, data: str = "") -> None:
    if len(data.encode()) > MOUNT_DATA_MAX:
        raise OSError(errno.E2BIG, f"mount options longer than {MOUNT_DATA_MAX} bytes", str(target))
    rc = _libc.mount(source.encode(), str(target).encode(), fstype.encode(), flags, data.encode() or None)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype} on {target}: {os.strerror(err)}", str(target))


def overlay_in(cwd: Path, lowers: Sequence[str], target: Path, options: Sequence[str] = ()) -> None:
    """An overlay on `target` with its lower dirs (top first) named relative to `cwd`, by a
    `mount` process started there: short relative names keep many layers within the one page
    of options, and the daemon's own cwd is shared by its threads. `options` come before the
    lower dirs (upperdir=, workdir=, or flags such as ro and nosuid)."""
    data = ",".join([*options, "lowerdir=" + ":".join(lowers)])
    if len(data) > MOUNT_DATA_MAX:
        raise OSError(errno.E2BIG, f"{len(lowers)} layers do not fit in one overlay mount", str(target))
    proc = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", data, str(target)],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise OSError(errno.EIO, proc.stderr.strip() or f"mount exited {proc.returncode}", str(target))


def umount(target: Path, flags: int = UMOUNT_NOFOLLOW) -> None:
    rc = _libc.umount2(str(target).encode(), flags)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount {target}: {os.strerror(err)}", str(target))


def is_mountpoint(path: Path) -> bool:
    """True if something is mounted exactly at path (a symlink there is not followed)."""
    known = _mount_root_by_statx(path)
    if known is not None:
        return known
    return _in_mountinfo(path)


def _mount_root_by_statx(path: Path) -> bool | None:
    """statx's answer, or None where the kernel or libc cannot give it."""
    if _statx is None:
        return None
    buf = ctypes.create_string_buffer(_STATX_SIZE)
    flags = _AT_SYMLINK_NOFOLLOW | _AT_NO_AUTOMOUNT
    if _statx(_AT_FDCWD, str(path).encode(), flags, _STATX_BASIC_STATS, buf) != 0:
        err = ctypes.get_errno()
        return False if err in (errno.ENOENT, errno.ENOTDIR) else None
    attributes = int.from_bytes(buf.raw[8:16], "little")
    supported = int.from_bytes(buf.raw[56:64], "little")
    if not supported & _STATX_ATTR_MOUNT_ROOT:
        return None
    return bool(attributes & _STATX_ATTR_MOUNT_ROOT)


def _in_mountinfo(path: Path) -> bool:
    wanted = str(path)
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                fields = line.split(" ", 5)
                if len(fields) > 4 and _unescape(fields[4]) == wanted:
                    return True
    except FileNotFoundError:
        return os.path.ismount(path)
    return False


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes
    if "\\" not in field:
        return field
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
