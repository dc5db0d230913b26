"""Idmapped mounts (Linux 5.12+): a bind mount whose files' owners are shifted by a user
namespace's mappings, so a pod in that namespace sees the image's root-owned files as its own
root's, without copying or chowning anything.

The new mount API does it: open_tree(2) clones the source tree detached, mount_setattr(2)
attaches the user namespace's mappings to the clone, move_mount(2) puts it on the target.
An overlay mount itself cannot be idmapped (the kernel refuses it); its layers can, and the
overlay keeps private clones of them, so the idmapped layer mounts can go once it is up.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

# the same numbers on every architecture's unified syscall table
SYS_OPEN_TREE = 428
SYS_MOVE_MOUNT = 429
SYS_MOUNT_SETATTR = 442

AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x00000004
MOUNT_ATTR_IDMAP = 0x00100000

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def _check(result: int, what: str, path: Path) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what} {path}: {os.strerror(err)}", str(path))
    return result


def idmapped_clone(source: Path, userns: Path, *, recursive: bool = True) -> int:
    """A detached copy of the mount tree at `source`, idmapped with the mappings of the user
    namespace at `userns` (a /proc/<pid>/ns/user or a pin of one); returns its fd."""
    flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (AT_RECURSIVE if recursive else 0)
    tree = _check(_libc.syscall(SYS_OPEN_TREE, AT_FDCWD, str(source).encode(), flags), "open_tree", source)
    try:
        userns_fd = os.open(userns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            attr = _MountAttr(MOUNT_ATTR_IDMAP, 0, 0, userns_fd)
            setattr_flags = AT_EMPTY_PATH | (AT_RECURSIVE if recursive else 0)
            _check(
                _libc.syscall(
                    SYS_MOUNT_SETATTR, tree, b"", setattr_flags, ctypes.byref(attr), ctypes.sizeof(attr)
                ),
                "mount_setattr (idmap)",
                source,
            )
        finally:
            os.close(userns_fd)
    except BaseException:
        os.close(tree)
        raise
    return tree


def attach(tree: int, target: Path) -> None:
    """Mount a detached tree (from `idmapped_clone`) on `target`, which must exist."""
    _check(
        _libc.syscall(SYS_MOVE_MOUNT, tree, b"", AT_FDCWD, str(target).encode(), MOVE_MOUNT_F_EMPTY_PATH),
        "move_mount",
        target,
    )


def idmapped_bind(source: Path, target: Path, userns: Path, *, recursive: bool = True) -> None:
    """Bind `source` on `target` (created as a file or directory like the source) idmapped with
    the user namespace's mappings."""
    if not target.exists():
        if source.is_dir():
            target.mkdir(parents=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
    tree = idmapped_clone(source, userns, recursive=recursive)
    try:
        attach(tree, target)
    finally:
        os.close(tree)


@contextlib.contextmanager
def idmapped_layers(layers: Sequence[Path], staging: Path, userns: Path) -> Iterator[list[str]]:
    """Each layer bound, idmapped, at staging/0, staging/1, ... in the order given; yields
    those names (relative to `staging`) for an overlay mounted over them in the block. The
    binds go when it ends: the overlay keeps private clones of its layers."""
    staging.mkdir(parents=True, exist_ok=True)
    names = [str(i) for i in range(len(layers))]
    try:
        for name, layer in zip(names, layers, strict=True):
            idmapped_bind(layer, staging / name, userns, recursive=False)
        yield names
    finally:
        release(staging)


def supported(path: Path, userns: Path) -> bool:
    """The filesystem under `path` takes idmapped mounts (the clone is made and dropped)."""
    try:
        tree = idmapped_clone(path, userns, recursive=False)
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.EPERM, errno.ENOSYS, errno.EOPNOTSUPP):
            return False
        raise
    with contextlib.suppress(OSError):
        os.close(tree)
    return True


def release(directory: Path) -> None:
    """Unmount the idmapped mounts made as entries of `directory`, then delete the entries and
    the directory. Never a recursive delete: it would reach through a mount still there into
    the host's files; a mount that does not go raises instead."""
    if not directory.is_dir():
        return
    for entry in directory.iterdir():
        with contextlib.suppress(OSError):
            _umount_detach(entry)
        try:
            if entry.is_dir() and not entry.is_symlink():
                entry.rmdir()
            else:
                entry.unlink()
        except FileNotFoundError:
            pass
    directory.rmdir()


def _umount_detach(path: Path) -> None:
    _check(_libc.umount2(str(path).encode(), 2 | 8), "umount", path)  # MNT_DETACH | UMOUNT_NOFOLLOW
