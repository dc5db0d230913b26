"""Removing directory trees after the reply: renamed out at once, deleted later.

Deleting a container's writable layer, bundle and state directory is one unlink or rmdir per
entry, and on a journaling filesystem under load each of those takes milliseconds
(RemoveContainer spent ~25 of its ~35 ms there). A rename into a trash directory on the same
filesystem takes microseconds and makes the tree gone from where anyone looks for it; an
owned background task then deletes what the trash holds, and the next start deletes what a
crash left there. A tree that cannot be renamed (another filesystem) is deleted at once.

Only trees with nothing mounted inside may go in: the caller unmounts first.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import shutil
from pathlib import Path

from cri_py.tasks import TaskOwner

log = logging.getLogger(__name__)


class Trash:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._emptying: asyncio.Task[None] | None = None
        self._again = False

    def move(self, tree: Path) -> None:
        """Take `tree` out of its place (blocking: a worker thread's call); absent is fine."""
        if not os.path.lexists(tree):
            return
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            os.rename(tree, self.directory / f"{tree.name}.{secrets.token_hex(4)}")
        except FileNotFoundError:
            return  # gone meanwhile
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                log.warning("cannot move %s to the trash (%s): deleting it now", tree, exc)
            shutil.rmtree(tree, ignore_errors=True)

    def empty(self) -> None:
        """Delete everything in the trash (blocking)."""
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)

    def empty_soon(self, tasks: TaskOwner) -> None:
        """Empty the trash in a worker thread, one run at a time; a call during a run makes
        one more run follow it."""
        if self._emptying is not None and not self._emptying.done():
            self._again = True
            return
        self._emptying = tasks.spawn(self._empty_until_done(), name=f"empty {self.directory}")

    async def _empty_until_done(self) -> None:
        while True:
            self._again = False
            await asyncio.to_thread(self.empty)
            if not self._again:
                return
