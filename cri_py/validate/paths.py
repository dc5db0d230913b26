"""Paths a request names: checked as text first, then resolved beneath their root on disk.

Two kinds of root. A host root (a pod's log directory) is walked the way the host kernel would
walk it, and a symlink whose target leaves the root is refused. A container root (a rootfs)
is walked the way the kernel inside the container would: an absolute symlink starts again at
the root and `..` stops there, so nothing the image holds can lead outside.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path, PurePosixPath

from cri_py.errors import InvalidArgument

# Linux's PATH_MAX: no longer path can be opened anyway
PATH_MAX = 4096
# Linux follows at most 40 symlinks in one lookup (ELOOP after that)
MAX_SYMLINKS = 40


def _check_text(field: str, value: str) -> None:
    if "\0" in value:
        raise InvalidArgument(f"{field}: must not contain a NUL byte")
    if len(value.encode()) >= PATH_MAX:
        raise InvalidArgument(f"{field}: longer than PATH_MAX ({PATH_MAX} bytes)")


def climbs_out(parts: list[str]) -> bool:
    """Would `..` take this (relative) sequence of components above where it starts?"""
    depth = 0
    for part in parts:
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def check_absolute(field: str, value: str) -> None:
    """A host path the client chooses (a log directory, a seccomp profile): absolute, no `..`."""
    _check_text(field, value)
    if not value.startswith("/"):
        raise InvalidArgument(f"{field}: {value!r} is not an absolute path")
    if ".." in value.split("/"):
        raise InvalidArgument(f"{field}: {value!r} must not contain '..'")


def check_beneath(field: str, value: str, *, absolute: bool | None = None) -> None:
    """A path meant to stay inside a root: `..` must not climb above it.

    absolute=True: must start with `/` (taken from the root); False: must not; None: either
    (a relative container path is taken from the container's `/`, as runc does).
    """
    _check_text(field, value)
    if not value:
        raise InvalidArgument(f"{field}: must not be empty")
    if absolute is True and not value.startswith("/"):
        raise InvalidArgument(f"{field}: {value!r} is not an absolute path")
    if absolute is False and value.startswith("/"):
        raise InvalidArgument(f"{field}: {value!r} must be relative")
    if climbs_out(value.split("/")):
        raise InvalidArgument(f"{field}: {value!r} leads outside its root")


def check_cgroup_parent(field: str, value: str) -> None:
    """A cgroupfs path or a systemd slice name: never `..`, which would leave the hierarchy."""
    _check_text(field, value)
    if ".." in value.replace(":", "/").split("/"):
        raise InvalidArgument(f"{field}: {value!r} must not contain '..'")


def resolve_beneath(root: Path, relative: str, *, field: str, container_root: bool = False) -> Path:
    """The path `relative` names beneath `root`, with every symlink along it resolved.

    Host root (container_root=False): symlinks are followed as the host kernel would follow
    them; one that leads outside `root` (by `..` or by an absolute target elsewhere) raises
    InvalidArgument naming `field` (the root's own path may hold symlinks). Container root: absolute targets restart at `root` and
    `..` stops there, as inside the container. Components that do not exist yet are kept as
    written; the caller creates them beneath the returned path's parent.
    """
    base = Path(os.path.realpath(root))
    base_parts = base.parts  # what an absolute symlink must start with to stay inside
    pending = [p for p in relative.split("/") if p not in ("", ".")]
    pending.reverse()  # a stack: the next component is at the end
    resolved: list[str] = []
    links = 0
    while pending:
        part = pending.pop()
        if part == "..":
            if resolved:
                resolved.pop()
            elif not container_root:
                raise InvalidArgument(f"{field}: {relative!r} leads outside {root}")
            continue
        here = root.joinpath(*resolved, part)
        try:
            mode = os.lstat(here).st_mode
        except FileNotFoundError:
            resolved.append(part)
            continue
        except OSError as exc:
            if exc.errno in (errno.ENOTDIR, errno.ENAMETOOLONG):
                raise InvalidArgument(f"{field}: {relative!r}: {exc.strerror}") from exc
            raise
        if not stat.S_ISLNK(mode):
            resolved.append(part)
            continue
        links += 1
        if links > MAX_SYMLINKS:
            raise InvalidArgument(f"{field}: {relative!r}: too many levels of symbolic links")
        target = os.readlink(here)
        if target.startswith("/"):
            resolved = []
            if not container_root:
                # the host kernel would follow it from `/`: it must lead back into the root
                parts = PurePosixPath(target).parts
                if parts[: len(base_parts)] != base_parts or ".." in parts[: len(base_parts)]:
                    raise InvalidArgument(
                        f"{field}: {relative!r}: symlink {here} leads outside {root} (to {target})"
                    )
                # the rest is walked again: it may hold `..` and symlinks of its own
                target = "/".join(parts[len(base_parts) :])
        pending.extend(reversed([p for p in target.split("/") if p not in ("", ".")]))
    # beneath the root as the caller named it: its own symlinks are the caller's choice
    return root.joinpath(*resolved)


def container_log_path(log_directory: str, log_path: str) -> str:
    """Where conmon writes a container's log: `log_path` resolved beneath the pod's log
    directory (blocking: a few lstat calls). Empty when the container asked for no log."""
    if not log_path:
        return ""
    if not log_directory:
        raise InvalidArgument("config.log_path: set, but the pod sandbox has no log_directory")
    check_beneath("config.log_path", log_path, absolute=False)
    return str(resolve_beneath(Path(log_directory), log_path, field="config.log_path"))
