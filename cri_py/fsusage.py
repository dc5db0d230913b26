"""Disk usage of a directory tree, counted the way `du` does (blocks, each inode once)."""

from __future__ import annotations

import os
from pathlib import Path


def directory_usage(path: Path) -> tuple[int, int]:
    """(bytes used on disk, inodes) below path, not following symlinks or crossing mounts."""
    seen: set[tuple[int, int]] = set()
    used = 0
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        return 0, 0
    stack = [str(path)]
    while stack:
        current = stack.pop()
        try:
            entries = os.scandir(current)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        with entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                key = (st.st_dev, st.st_ino)
                if key in seen:
                    continue
                seen.add(key)
                used += st.st_blocks * 512
                if entry.is_dir(follow_symlinks=False) and st.st_dev == top.st_dev:
                    stack.append(entry.path)
    return used + top.st_blocks * 512, len(seen) + 1
