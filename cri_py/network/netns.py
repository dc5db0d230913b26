"""Pinned network namespaces, created and inspected without forking.

A pod's namespace gets its loopback up through rtnl.py's one netlink request; stand-in
namespaces (an interface and addresses to configure) and the inspection helpers use pyroute2.

Namespaces belong to threads on Linux: a short-lived thread of our own unshares or joins a
namespace, does its netlink work there and goes back, so the daemon never forks (pyroute2's
own netns helpers start a child process for each call, which costs tens of milliseconds).
The thread is never reused, so a failed return to the host namespace cannot leak into other
work.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from cri_py.network import rtnl

if TYPE_CHECKING:
    from pyroute2 import IPRoute

T = TypeVar("T")

_CLONE_NEWNET = 0x40000000
_MS_BIND = 4096
_MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str, path: Path | str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", str(path))


def _iproute() -> IPRoute:
    # pyroute2 costs ~10 MiB of RSS: an idle daemon with no pods never loads it
    from pyroute2 import IPRoute

    return IPRoute()


def _in_thread(work: Callable[[], T]) -> T:
    """Run `work` on a fresh thread and hand back its result or exception."""
    box: list[T] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            box.append(work())
        except BaseException as exc:  # noqa: BLE001 - carried over to the caller
            failure.append(exc)

    thread = threading.Thread(target=run, name="cri-py-netns", daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return box[0]


def pinned_netns_path(run_dir: Path, pod_id: str) -> Path:
    return run_dir / "netns" / f"cri-py-{pod_id}"


def create_pinned_netns(run_dir: Path, pod_id: str) -> Path:
    """Create a new network namespace with loopback up, pinned under run_dir/netns/."""
    return _create_pinned(pinned_netns_path(run_dir, pod_id), None)


def create_stand_in_netns(run_dir: Path, pod_id: str, ifname: str, cidrs: list[str]) -> Path:
    """A namespace that looks like the pod's after its own is gone: `ifname` with its addresses.

    Plugins such as bridge find the pod's addresses in the namespace during DEL and only then
    remove their per-address rules (ipMasq); without a namespace those rules would stay.
    """

    def prepare(ipr: IPRoute) -> None:
        # a veth pair rather than a dummy: kernels without the dummy module have veth (CNI needs it)
        ipr.link("add", ifname=ifname, kind="veth", peer="standin0")
        index = ipr.link_lookup(ifname=ifname)[0]
        for cidr in cidrs:
            address, _, prefix = cidr.partition("/")
            ipr.addr("add", index=index, address=address, prefixlen=int(prefix or 32))
        ipr.link("set", index=index, state="up")

    return _create_pinned(stand_in_netns_path(run_dir, pod_id), prepare)


def stand_in_netns_path(run_dir: Path, pod_id: str) -> Path:
    return run_dir / "netns" / f"cri-py-del-{pod_id}"


def stand_in_pins(run_dir: Path) -> list[Path]:
    try:
        return sorted((run_dir / "netns").glob("cri-py-del-*"))
    except OSError:
        return []


def _create_pinned(path: Path, prepare: Callable[[IPRoute], None] | None) -> Path:
    # No shared bind mount of the directory as iproute2 makes: runtimes pivot away from the
    # host's mounts, so no other mount namespace keeps a copy of a pin, and the daemon
    # leaves no mount of its own behind.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444)
    os.close(fd)

    def work() -> None:
        host = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            _check(_libc.unshare(_CLONE_NEWNET), "unshare netns", path)
            try:
                if prepare is None:
                    # loopback is interface 1 in a new namespace
                    rtnl.set_link_up(1)
                else:
                    with _iproute() as ipr:
                        ipr.link("set", index=1, state="up")
                        prepare(ipr)
                own = b"/proc/thread-self/ns/net"
                _check(_libc.mount(own, bytes(path), b"none", _MS_BIND, None), "pin netns", path)
            finally:
                _check(_libc.setns(host, _CLONE_NEWNET), "return to host netns", path)
        finally:
            os.close(host)

    try:
        _in_thread(work)
    except BaseException:
        remove_pinned_netns(path)
        raise
    return path


def remove_pinned_netns(path: Path) -> None:
    """Unpin and delete a namespace; nothing happens if it is gone already."""
    if _libc.umount2(bytes(path), _MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise OSError(err, f"unmount netns: {os.strerror(err)}", str(path))
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def is_pinned_netns(path: Path) -> bool:
    """True when `path` is a live namespace pin (an nsfs mount), not a leftover file."""
    # a bind-mounted nsfs inode lives on another device than the directory holding it
    try:
        return os.stat(path).st_dev != os.stat(path.parent).st_dev
    except OSError:
        return False


def netns_inode(path: Path) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def run_in_netns_raw(path: Path, work: Callable[[], T]) -> T:
    """Call `work` on a short-lived thread inside the namespace pinned at `path`.

    What `work` opens there (a netlink socket) stays bound to the namespace after the thread
    went back to the host's.
    """

    def inside() -> T:
        target = os.open(path, os.O_RDONLY)
        host = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            _check(_libc.setns(target, _CLONE_NEWNET), "enter netns", path)
            try:
                return work()
            finally:
                _check(_libc.setns(host, _CLONE_NEWNET), "return to host netns", path)
        finally:
            os.close(target)
            os.close(host)

    return _in_thread(inside)


def run_in_netns(path: Path, work: Callable[[IPRoute], T]) -> T:
    """Call `work` with a pyroute2 socket inside the namespace pinned at `path`.

    `work` runs on the thread that entered the namespace: pyroute2 0.9 opens its socket at the
    first request, so an IPRoute made there and used after the thread went back would read the
    host's interfaces.
    """

    def inside() -> T:
        with _iproute() as ipr:
            return work(ipr)

    return run_in_netns_raw(path, inside)


def interface_stats(path: Path) -> dict[str, tuple[int, int]]:
    """Received and transmitted bytes per interface inside the namespace (loopback left out)."""

    def collect(ipr: IPRoute) -> dict[str, tuple[int, int]]:
        stats: dict[str, tuple[int, int]] = {}
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            if name == "lo":
                continue
            counters = link.get_attr("IFLA_STATS64") or link.get_attr("IFLA_STATS") or {}
            stats[name] = (int(counters.get("rx_bytes", 0)), int(counters.get("tx_bytes", 0)))
        return stats

    return run_in_netns(path, collect)


def interface_addresses(path: Path) -> dict[str, list[str]]:
    """The addresses (without prefix length) on each interface inside the namespace."""

    def collect(ipr: IPRoute) -> dict[str, list[str]]:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        found: dict[str, list[str]] = {}
        for addr in ipr.get_addr():
            name = names.get(addr["index"], str(addr["index"]))
            found.setdefault(name, []).append(addr.get_attr("IFA_ADDRESS"))
        return found

    return run_in_netns(path, collect)
