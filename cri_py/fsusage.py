"""Disk usage of a directory tree, counted the way `du` does (blocks, each inode once)."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
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


def _top_signature(path: Path, depth: int) -> tuple[tuple[str, int], ...]:
    """mtimes of the directories down to `depth` below path: entries added or removed there change them."""
    found: list[tuple[str, int]] = []
    level = [str(path)]
    for current_depth in range(depth + 1):
        below: list[str] = []
        for current in level:
            try:
                found.append((current, os.stat(current).st_mtime_ns))
                if current_depth < depth:
                    with os.scandir(current) as entries:
                        below += [e.path for e in entries if e.is_dir(follow_symlinks=False)]
            except OSError:
                found.append((current, -1))
        level = below
    return tuple(sorted(found))


@dataclass(frozen=True)
class Measured:
    used: int
    inodes: int
    at_ns: int  # wall clock of the walk: what ImageFsInfo reports as the timestamp
    at: float  # monotonic
    signature: tuple[tuple[str, int], ...]


REFRESH_DELAY = 0.2


class TreeUsage:
    """directory_usage of one tree for ImageFsInfo, which kubelet asks every 10 seconds.

    A walk of the image store and the containers' writable layers takes milliseconds of Python
    per call. The last walk is kept: a new one runs at once when directories near the top
    changed (an image pulled or removed, a container made or removed), and in the background,
    with the kept answer served meanwhile, once it is older than `max_age` (files written deep
    inside a container's layer). containerd answers from usage it collects every 10 s too.
    """

    def __init__(self, path: Path, depth: int, max_age: float = 10.0) -> None:
        self.path = path
        self.depth = depth  # how deep below path entries come and go (see _top_signature)
        self.max_age = max_age
        self._last: Measured | None = None
        self._refresh: asyncio.Task[None] | None = None

    def _walk(self) -> Measured:
        signature = _top_signature(self.path, self.depth)
        used, inodes = directory_usage(self.path)
        return Measured(used, inodes, time.time_ns(), time.monotonic(), signature)

    async def measure(self) -> Measured:
        last = self._last
        if last is None or _top_signature(self.path, self.depth) != last.signature:
            last = self._last = await asyncio.to_thread(self._walk)
        elif time.monotonic() - last.at > self.max_age and self._refresh is None:
            self._refresh = asyncio.create_task(self._refresh_in_background())
        return last

    async def _refresh_in_background(self) -> None:
        try:
            # after the answer that found the walk old has gone out: the walk holds the GIL
            await asyncio.sleep(REFRESH_DELAY)
            self._last = await asyncio.to_thread(self._walk)
        finally:
            self._refresh = None
