"""Namespace pinning: new namespaces for a pod, each kept alive by a bind mount on a file.

A pinned namespace lives as long as its bind mount, so a pod needs no process to hold it.
Two ways to make them, behind one interface:

- `ThreadPinner`: a short-lived thread of ours unshares IPC/UTS/net, sets the hostname and
  pins its own namespaces (no fork: a few hundred microseconds). A thread cannot create a
  user namespace (`unshare(CLONE_NEWUSER)` fails with EINVAL in a multithreaded process).
- `ForkPinner` (as CRI-O's `pinns -U`): a helper process (pin_helper.py, a fresh
  interpreter: a fork of the daemon would not be single-threaded) creates the user namespace
  first; the daemon, in the parent user namespace, writes its uid/gid maps; the helper then
  creates the other namespaces inside it (so they belong to it), sets the hostname and brings
  lo up; the daemon bind-mounts /proc/<helper>/ns/* onto the pins and lets the helper exit.

Both are blocking calls (run them in a thread) and take the same `PinRequest`; a failure
removes every pin the call made.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import subprocess
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cri_py.pod import pin_helper
from cri_py.storage import mount as sysmount

CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = pin_helper.CLONE_NEWUSER
CLONE_NEWNET = 0x40000000
_MS_BIND = 4096
HELPER = pin_helper.__file__

_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class IdMapping:
    """`size` ids from `container_id` inside the namespace are `host_id`... outside."""

    container_id: int
    host_id: int
    size: int

    def __post_init__(self) -> None:
        if self.container_id < 0 or self.host_id < 0 or self.size <= 0:
            raise ValueError(f"invalid id mapping {self}")


@dataclass(frozen=True)
class UserNamespace:
    uid_mappings: tuple[IdMapping, ...]
    gid_mappings: tuple[IdMapping, ...]

    def __post_init__(self) -> None:
        if not self.uid_mappings or not self.gid_mappings:
            raise ValueError("a user namespace needs uid and gid mappings")


@dataclass(frozen=True)
class PinRequest:
    """Which new namespaces to pin where; None leaves that namespace the caller's (host's)."""

    ipc: Path | None = None
    uts: Path | None = None
    net: Path | None = None
    # with `user_ns`: pin the user namespace here; the others are created inside it
    user: Path | None = None
    user_ns: UserNamespace | None = None
    hostname: str = ""

    def __post_init__(self) -> None:
        if (self.user is None) != (self.user_ns is None):
            raise ValueError("a user namespace needs both its pin and its mappings")

    def pins(self) -> list[tuple[str, Path]]:
        """(namespace name in /proc/<pid>/ns, pin), the user namespace first."""
        named = [("user", self.user), ("ipc", self.ipc), ("uts", self.uts), ("net", self.net)]
        return [(name, pin) for name, pin in named if pin is not None]

    def flags(self) -> int:
        """The unshare flags for everything but the user namespace."""
        return (
            (CLONE_NEWIPC if self.ipc else 0)
            | (CLONE_NEWUTS if self.uts else 0)
            | (CLONE_NEWNET if self.net else 0)
        )


class NamespacePinner(Protocol):
    def pin(self, request: PinRequest) -> None:
        """Create and pin the requested namespaces (blocking); on failure nothing stays pinned."""
        ...

    def unpin(self, pins: Iterable[Path | None]) -> None:
        """Unmount and delete pins; idempotent."""
        ...


class _PinFiles:
    """Unpinning, shared by both pinners."""

    def unpin(self, pins: Iterable[Path | None]) -> None:
        for pin in pins:
            if pin is None:
                continue
            try:
                sysmount.umount(pin, sysmount.MNT_DETACH)
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOENT):
                    raise
            with contextlib.suppress(FileNotFoundError):
                pin.unlink()


class ThreadPinner(_PinFiles):
    def pin(self, request: PinRequest) -> None:
        if request.user_ns is not None:
            raise ValueError("a thread cannot create a user namespace: use ForkPinner")
        if not request.flags():
            return
        _make_pin_files(request)
        failure: list[BaseException] = []

        def work() -> None:
            # the thread's namespaces die with it; the bind mounts keep them alive
            try:
                _check(_libc.unshare(request.flags()), "unshare")
                _inside_new_namespaces(request)
                for name, pin in request.pins():
                    _bind(f"/proc/thread-self/ns/{name}".encode(), pin)
            except BaseException as exc:  # noqa: BLE001 - carried to the caller
                failure.append(exc)

        thread = threading.Thread(target=work, name="cri-py-pin-ns", daemon=True)
        thread.start()
        thread.join()
        if failure:
            self.unpin(pin for _, pin in request.pins())
            raise failure[0]


class ForkPinner(_PinFiles):
    """Pins a user namespace and the others inside it, through a helper process."""

    def pin(self, request: PinRequest) -> None:
        if request.user_ns is None and not request.flags():
            return
        _make_pin_files(request)
        try:
            self._pin_through_helper(request)
        except BaseException:
            self.unpin(pin for _, pin in request.pins())
            raise

    def _pin_through_helper(self, request: PinRequest) -> None:
        to_parent_r, to_parent_w = os.pipe()
        to_child_r, to_child_w = os.pipe()
        args = [
            str(to_parent_w),
            str(to_child_r),
            str(request.flags()),
            "1" if request.user_ns is not None else "0",
            "1" if request.net is not None else "0",
            request.hostname if request.uts is not None else "",
        ]
        try:
            helper = subprocess.Popen(
                [sys.executable, "-I", "-S", HELPER, *args],
                pass_fds=(to_parent_w, to_child_r),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        finally:
            os.close(to_parent_w)
            os.close(to_child_r)
        try:
            if request.user_ns is not None:
                _expect(to_parent_r, b"U")  # the helper is in its new user namespace
                _write_maps(helper.pid, request.user_ns)
                os.write(to_child_w, b"M")
            _expect(to_parent_r, b"N")  # and in the other new namespaces
            for name, pin in request.pins():
                _bind(f"/proc/{helper.pid}/ns/{name}".encode(), pin)
            os.write(to_child_w, b"D")
        finally:
            os.close(to_parent_r)
            os.close(to_child_w)
            status = helper.wait()
        if status != 0:
            raise OSError(errno.ECHILD, f"the namespace helper exited with status {status}")


def _expect(fd: int, token: bytes) -> None:
    data = os.read(fd, 512)
    if data[:1] != token:
        detail = data[1:].decode(errors="replace") if data[:1] == b"E" else "it exited"
        raise OSError(errno.EIO, f"namespace helper: {detail}")


def _write_maps(pid: int, user_ns: UserNamespace) -> None:
    for name, mappings in (("uid_map", user_ns.uid_mappings), ("gid_map", user_ns.gid_mappings)):
        text = "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in mappings)
        # one write: the kernel takes a map whole, once
        with open(f"/proc/{pid}/{name}", "w") as f:
            f.write(text)


def _inside_new_namespaces(request: PinRequest) -> None:
    """What a new namespace needs from inside: its hostname, its loopback up."""
    if request.uts is not None and request.hostname:
        pin_helper.set_hostname(request.hostname)
    if request.net is not None:
        pin_helper.loopback_up()


def _make_pin_files(request: PinRequest) -> None:
    for _, pin in request.pins():
        pin.parent.mkdir(parents=True, exist_ok=True)
        pin.touch(mode=0o444, exist_ok=True)


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _bind(source: bytes, target: Path) -> None:
    _check(_libc.mount(source, str(target).encode(), b"none", _MS_BIND, None), f"pin {target}")
