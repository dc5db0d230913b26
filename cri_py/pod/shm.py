"""The pod's IPC and UTS namespaces pinned to files, and its /dev/shm, without a process.

A pinned namespace lives as long as its bind mount, so a pod needs no pause process to hold
them (only a shared PID namespace needs one). A short-lived thread of ours unshares, sets the
hostname, pins its namespaces and exits: no fork, a few hundred microseconds.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import threading
from pathlib import Path

from cri_py.storage import mount as sysmount

_CLONE_NEWUTS = 0x04000000
_CLONE_NEWIPC = 0x08000000
_MS_BIND = 4096
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_NOEXEC = 8

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def pin_ipc_uts(ipc_pin: Path | None, uts_pin: Path | None, hostname: str) -> None:
    """Create new IPC and/or UTS namespaces (UTS with `hostname`) pinned at the given files."""
    flags = (_CLONE_NEWIPC if ipc_pin else 0) | (_CLONE_NEWUTS if uts_pin else 0)
    if not flags:
        return
    for pin in (ipc_pin, uts_pin):
        if pin is not None:
            pin.touch(mode=0o444, exist_ok=True)
    failure: list[BaseException] = []

    def work() -> None:
        # the thread's namespaces die with it; the bind mounts keep them alive
        try:
            _check(_libc.unshare(flags), "unshare")
            if uts_pin is not None:
                name = hostname.encode()
                _check(_libc.sethostname(name, len(name)), "sethostname")
                _bind(b"/proc/thread-self/ns/uts", uts_pin)
            if ipc_pin is not None:
                _bind(b"/proc/thread-self/ns/ipc", ipc_pin)
        except BaseException as exc:  # noqa: BLE001 - carried to the caller
            failure.append(exc)

    thread = threading.Thread(target=work, name="cri-py-pin-ns", daemon=True)
    thread.start()
    thread.join()
    if failure:
        unpin(ipc_pin)
        unpin(uts_pin)
        raise failure[0]


def _bind(source: bytes, target: Path) -> None:
    _check(_libc.mount(source, str(target).encode(), b"none", _MS_BIND, None), f"pin {target}")


def unpin(pin: Path | None) -> None:
    if pin is None:
        return
    try:
        sysmount.umount(pin, sysmount.MNT_DETACH)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOENT):
            raise
    with contextlib.suppress(FileNotFoundError):
        pin.unlink()


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
