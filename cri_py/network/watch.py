"""Wake-ups when a directory changes, through inotify on the event loop (no thread, no polling).

Callers still poll slowly as a fallback: the directory may not exist yet (inotify needs it),
and a plugin binary appearing in a bin dir is not watched.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
from pathlib import Path

_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = os.O_CLOEXEC
_IN_MODIFY = 0x002
_IN_ATTRIB = 0x004
_IN_CLOSE_WRITE = 0x008
_IN_MOVED_FROM = 0x040
_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_IN_DELETE_SELF = 0x400
_IN_MOVE_SELF = 0x800
_MASK = (
    _IN_MODIFY
    | _IN_ATTRIB
    | _IN_CLOSE_WRITE
    | _IN_MOVED_FROM
    | _IN_MOVED_TO
    | _IN_CREATE
    | _IN_DELETE
    | _IN_DELETE_SELF
    | _IN_MOVE_SELF
)

_libc = ctypes.CDLL(None, use_errno=True)


class DirWatch:
    """An asyncio.Event set whenever something happens in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.changed = asyncio.Event()
        self._fd = -1

    def start(self) -> bool:
        """Begin watching; False when inotify can't watch it (missing dir, no inotify)."""
        self.close()
        fd = _libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            return False
        if _libc.inotify_add_watch(fd, bytes(self.directory), _MASK) < 0:
            os.close(fd)
            return False
        self._fd = fd
        asyncio.get_running_loop().add_reader(fd, self._drain)
        return True

    @property
    def active(self) -> bool:
        return self._fd >= 0

    def _drain(self) -> None:
        try:
            while os.read(self._fd, 65536):
                pass
        except BlockingIOError:
            pass
        except OSError:
            self.close()
        self.changed.set()

    def close(self) -> None:
        if self._fd < 0:
            return
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._fd)
        os.close(self._fd)
        self._fd = -1

    async def wait(self, at_most: float) -> bool:
        """Wait for a change or the timeout; True when something changed."""
        try:
            await asyncio.wait_for(self.changed.wait(), at_most)
        except TimeoutError:
            return False
        self.changed.clear()
        return True
