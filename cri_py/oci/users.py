"""Resolving a container user against the image's /etc/passwd and /etc/group."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cri_py.errors import InvalidArgument
from cri_py.validate.paths import resolve_beneath


@dataclass(frozen=True)
class ResolvedUser:
    uid: int
    gid: int
    additional_gids: list[int] = field(default_factory=list)  # sorted, the primary gid included
    username: str = ""


# an /etc/passwd larger than this is not read (a hostile image could hold gigabytes)
ACCOUNT_FILE_MAX = 8 << 20


def _safe_read(rootfs: Path, rel: str) -> list[list[str]]:
    """The entries of an account file of the image; [] when it is missing or not a plain file.

    The image's symlinks are followed as inside the container (never out of the rootfs), and
    a FIFO or device in its place is not opened for reading (it could block or never end).
    """
    try:
        path = resolve_beneath(rootfs, rel, field=rel, container_root=True)
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return []  # not even opened: opening a device can have effects of its own
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, InvalidArgument):
        return []
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return []  # replaced since the check
        text = f.read(ACCOUNT_FILE_MAX).decode(errors="replace")
    return [line.split(":") for line in text.splitlines() if line and line[0] != "#"]


def resolve_user(
    rootfs: Path,
    *,
    uid: int | None,
    username: str,
    gid: int | None,
    image_user: str,
    supplemental: list[int],
    strict: bool,
) -> ResolvedUser:
    passwd = _safe_read(rootfs, "etc/passwd")
    groups = _safe_read(rootfs, "etc/group")
    user_part, _, group_part = image_user.partition(":")
    if uid is None and not username:
        if user_part.isdigit():
            uid = int(user_part)
        elif user_part:
            username = user_part
        else:
            uid = 0
        if gid is None and group_part:
            if group_part.isdigit():
                gid = int(group_part)
            else:
                match = [g for g in groups if len(g) >= 3 and g[0] == group_part]
                if not match:
                    raise InvalidArgument(f"group {group_part!r} not found in the image")
                gid = int(match[0][2])
    name = ""
    primary = 0
    if username:
        entries = [e for e in passwd if len(e) >= 4 and e[0] == username]
        if not entries:
            raise InvalidArgument(f"user {username!r} not found in the image's /etc/passwd")
        uid = int(entries[0][2])
        primary = int(entries[0][3])
        name = username
    else:
        assert uid is not None
        entries = [e for e in passwd if len(e) >= 4 and e[2] == str(uid)]
        if entries:
            name = entries[0][0]
            primary = int(entries[0][3])
    final_gid = gid if gid is not None else primary
    # the process's groups as the kernel will hold them (and ContainerStatus reports them):
    # the primary group, under the Merge policy the groups /etc/group lists the user in, the
    # pod's supplemental groups; sorted
    extra = {final_gid, *supplemental}
    if not strict and name:
        for g in groups:
            if len(g) >= 4 and name in g[3].split(",") and g[2].isdigit():
                extra.add(int(g[2]))
    return ResolvedUser(uid, final_gid, sorted(extra), name)
