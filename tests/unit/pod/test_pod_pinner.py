"""Namespace pinners against the real kernel: what each pins, who owns it, what a failure leaves."""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import threading
from pathlib import Path

import pytest

from cri_py.pod.pinner import ForkPinner, IdMapping, PinRequest, ThreadPinner, UserNamespace

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="pinning namespaces needs root")

NS_GET_USERNS = 0xB701  # _IO(0xb7, 0x1): the user namespace that owns a namespace


def _inode(path: Path | str) -> int:
    return os.stat(path).st_ino


def _owner_inode(pin: Path) -> int:
    fd = os.open(pin, os.O_RDONLY)
    try:
        owner = fcntl.ioctl(fd, NS_GET_USERNS)
        try:
            return os.fstat(owner).st_ino
        finally:
            os.close(owner)
    finally:
        os.close(fd)


def _in(flag: str, pin: Path, *cmd: str) -> str:
    return subprocess.run(
        ["nsenter", f"{flag}={pin}", *cmd], capture_output=True, text=True, check=True
    ).stdout


def _is_pinned(pin: Path) -> bool:
    return pin.exists() and os.stat(pin).st_dev != os.stat(pin.parent).st_dev


def _request(tmp_path: Path, user: bool) -> PinRequest:
    return PinRequest(
        ipc=tmp_path / "ipc",
        uts=tmp_path / "uts",
        net=tmp_path / "net",
        user=tmp_path / "user" if user else None,
        user_ns=UserNamespace((IdMapping(0, 200000, 65536),), (IdMapping(0, 300000, 65536),))
        if user
        else None,
        hostname="pinned-pod",
    )


def test_thread_pinner_pins_new_ipc_uts_and_net(tmp_path: Path) -> None:
    pinner = ThreadPinner()
    request = _request(tmp_path, user=False)
    pinner.pin(request)
    try:
        assert _inode(tmp_path / "ipc") != _inode("/proc/self/ns/ipc")
        assert _inode(tmp_path / "net") != _inode("/proc/self/ns/net")
        assert _in("--uts", tmp_path / "uts", "cat", "/proc/sys/kernel/hostname").strip() == "pinned-pod"
        assert "UP" in _in("--net", tmp_path / "net", "ip", "-o", "link", "show", "lo")
        # owned by the host's user namespace
        assert _owner_inode(tmp_path / "ipc") == _inode("/proc/self/ns/user")
    finally:
        pinner.unpin(pin for _, pin in request.pins())
    assert not any(p.exists() for _, p in request.pins())


def test_thread_pinner_cannot_make_a_user_namespace(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ForkPinner"):
        ThreadPinner().pin(_request(tmp_path, user=True))
    assert list(tmp_path.iterdir()) == []


def test_fork_pinner_makes_the_user_namespace_first_and_the_others_inside_it(tmp_path: Path) -> None:
    pinner = ForkPinner()
    request = _request(tmp_path, user=True)
    pinner.pin(request)
    try:
        user = tmp_path / "user"
        assert all(_is_pinned(pin) for _, pin in request.pins())
        assert _inode(user) != _inode("/proc/self/ns/user")
        for name in ("ipc", "uts", "net"):
            assert _owner_inode(tmp_path / name) == _inode(user), f"{name} is not inside the user namespace"
        assert _in("--user", user, "cat", "/proc/self/uid_map").split() == ["0", "200000", "65536"]
        assert _in("--user", user, "cat", "/proc/self/gid_map").split() == ["0", "300000", "65536"]
        assert _in("--uts", tmp_path / "uts", "cat", "/proc/sys/kernel/hostname").strip() == "pinned-pod"
        assert "UP" in _in("--net", tmp_path / "net", "ip", "-o", "link", "show", "lo")
    finally:
        pinner.unpin(pin for _, pin in request.pins())
    assert not any(p.exists() for _, p in request.pins())


def test_fork_pinner_failure_leaves_no_pin(tmp_path: Path) -> None:
    # overlapping ranges: the kernel refuses the map, after the helper made its namespace
    bad = UserNamespace((IdMapping(0, 200000, 10), IdMapping(5, 300000, 10)), (IdMapping(0, 300000, 10),))
    request = PinRequest(user=tmp_path / "user", user_ns=bad, ipc=tmp_path / "ipc")
    with pytest.raises(OSError):
        ForkPinner().pin(request)
    assert list(tmp_path.iterdir()) == []


def test_a_user_namespace_needs_its_pin_and_its_mappings(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        PinRequest(user=tmp_path / "user")
    with pytest.raises(ValueError):
        IdMapping(0, 0, 0)


def test_fork_pinner_works_from_a_worker_thread_of_a_multithreaded_daemon(tmp_path: Path) -> None:
    """Where the daemon calls it: asyncio.to_thread, with other threads running."""
    stop = threading.Event()
    busy = threading.Thread(target=stop.wait)
    busy.start()
    pinner = ForkPinner()
    request = _request(tmp_path, user=True)
    try:
        asyncio.run(asyncio.to_thread(pinner.pin, request))
        assert all(_is_pinned(pin) for _, pin in request.pins())
    finally:
        stop.set()
        busy.join()
        pinner.unpin(pin for _, pin in request.pins())


def test_fork_pinner_works_beside_grpc_threads(tmp_path: Path) -> None:
    """gRPC's fork handlers re-create its threads in a forked child, so a fork of the daemon
    cannot make a user namespace; the helper is a fresh process (critest found this)."""
    import grpc

    async def scenario() -> None:
        server = grpc.aio.server()
        server.add_insecure_port(f"unix://{tmp_path}/grpc.sock")
        await server.start()
        pinner = ForkPinner()
        request = _request(tmp_path / "pins", user=True)
        try:
            await asyncio.to_thread(pinner.pin, request)
            assert all(_is_pinned(pin) for _, pin in request.pins())
        finally:
            pinner.unpin(pin for _, pin in request.pins())
            await server.stop(0)

    asyncio.run(scenario())
