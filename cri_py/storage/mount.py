"""mount(2) and umount2(2) through libc: no process per container start."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from pathlib import Path

MNT_DETACH = 2
UMOUNT_NOFOLLOW = 8
# one page: the kernel copies the option string of mount(2) into a single page
MOUNT_DATA_MAX = 4095

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def mount(source: str, target: Path, fstype: str, flags: int = 0, data: str = "") -> None:
    if len(data.encode()) > MOUNT_DATA_MAX:
        raise OSError(errno.E2BIG, f"mount options longer than {MOUNT_DATA_MAX} bytes", str(target))
    rc = _libc.mount(source.encode(), str(target).encode(), fstype.encode(), flags, data.encode() or None)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype} on {target}: {os.strerror(err)}", str(target))


def umount(target: Path, flags: int = UMOUNT_NOFOLLOW) -> None:
    rc = _libc.umount2(str(target).encode(), flags)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"umount {target}: {os.strerror(err)}", str(target))


def is_mountpoint(path: Path) -> bool:
    """True if something is mounted exactly at path (from /proc/self/mountinfo)."""
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
