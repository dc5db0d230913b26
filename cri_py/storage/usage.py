"""Disk usage measured from the directories themselves (what ImageFsInfo reports)."""

from __future__ import annotations

import os
from pathlib import Path


def disk_usage(root: Path) -> tuple[int, int]:
    """Allocated bytes and inodes under root (root included), each hard-linked inode once."""
    try:
        st = os.lstat(root)
    except FileNotFoundError:
        return 0, 0
    seen: set[tuple[int, int]] = {(st.st_dev, st.st_ino)}
    total = st.st_blocks * 512
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen:
                continue
            seen.add(key)
            total += st.st_blocks * 512
    return total, len(seen)
