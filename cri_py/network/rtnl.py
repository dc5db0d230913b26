"""Reading a pod's interfaces over a netlink socket kept open inside its network namespace.

PodSandboxStatus checks the pod's addresses against its netns and ListPodSandboxStats reads its
interface counters: kubelet asks for both every few seconds for every pod. Entering the netns on
a fresh thread and parsing the dump with pyroute2 costs 2-3 ms per call (pyroute2's parser alone
takes ~0.5 ms per link message); a socket opened once in the namespace, asked for a dump from the
caller's thread and read for the two or three attributes we need takes ~0.1 ms. A new pod
namespace's loopback is brought up here too (set_link_up): ordinary pods then never load
pyroute2 (~8 MiB resident once imported); the stand-in namespaces of netns.py still use it.

The socket holds a reference to the namespace: close() must run when the pod's network goes.
It is also subscribed to the namespace's address changes, so address_set() dumps again only
after the kernel said an address came or went (a pod's addresses change at set-up, then almost
never): polling PodSandboxStatus then costs one non-blocking read per call, not a dump.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import threading
from pathlib import Path

_NLMSG_HDR = struct.Struct("=LHHLL")  # len, type, flags, seq, pid
_RTA_HDR = struct.Struct("=HH")  # len, type
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_RTM_NEWLINK, _RTM_GETLINK, _RTM_NEWADDR, _RTM_GETADDR = 16, 18, 20, 22
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_IFADDRMSG = struct.Struct("=BBBBI")  # family, prefixlen, flags, scope, index
_IFLA_IFNAME, _IFLA_STATS64 = 3, 23
_IFA_ADDRESS, _IFA_LOCAL = 1, 2
_RTMGRP_IPV4_IFADDR, _RTMGRP_IPV6_IFADDR = 0x10, 0x100
_RTNL_STATS64 = struct.Struct("=4Q")  # rx_packets, tx_packets, rx_bytes, tx_bytes (first fields)


def _attrs(data: bytes, start: int, end: int) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    while start + 4 <= end:
        length, kind = _RTA_HDR.unpack_from(data, start)
        if length < 4:
            break
        found.setdefault(kind & 0x3FFF, data[start + 4 : start + length])
        start += (length + 3) & ~3
    return found


def _address(family: int, raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if family == socket.AF_INET else socket.AF_INET6, raw)


class NetnsReader:
    """A NETLINK_ROUTE socket bound to one network namespace, for link and address dumps."""

    def __init__(self, netns: Path) -> None:
        self.netns = netns
        self._lock = threading.Lock()
        self._seq = 0
        # the last address dump, and whether the kernel announced a change since
        self._addresses: frozenset[str] | None = None
        self._changed = False
        from cri_py.network.netns import run_in_netns_raw  # netns.py uses set_link_up from here

        self._sock = run_in_netns_raw(netns, self._open)

    @staticmethod
    def _open() -> socket.socket:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
        sock.bind((0, _RTMGRP_IPV4_IFADDR | _RTMGRP_IPV6_IFADDR))
        return sock

    def close(self) -> None:
        self._sock.close()

    def _dump(self, kind: int, body: bytes) -> list[tuple[int, bytes, int, int]]:
        """(message type, buffer, payload start, payload end) of every message of a dump."""
        with self._lock:
            self._seq += 1
            seq = self._seq
            request = _NLMSG_HDR.pack(_NLMSG_HDR.size + len(body), kind, _NLM_F_REQUEST | _NLM_F_DUMP, seq, 0)
            self._sock.send(request + body)
            messages: list[tuple[int, bytes, int, int]] = []
            while True:
                try:
                    data = self._sock.recv(65536)
                except OSError as exc:
                    if exc.errno != errno.ENOBUFS:
                        raise
                    self._changed = True  # announcements were lost: the next look dumps
                    continue
                offset = 0
                while offset + _NLMSG_HDR.size <= len(data):
                    length, mtype, _flags, mseq, _pid = _NLMSG_HDR.unpack_from(data, offset)
                    if length < _NLMSG_HDR.size:
                        raise OSError("netlink: malformed message")
                    if mseq == seq:
                        if mtype == _NLMSG_DONE:
                            return messages
                        if mtype == _NLMSG_ERROR:
                            (code,) = struct.unpack_from("=i", data, offset + _NLMSG_HDR.size)
                            if code:
                                raise OSError(-code, os.strerror(-code))
                        else:
                            messages.append((mtype, data, offset + _NLMSG_HDR.size, offset + length))
                    else:
                        self._changed = True  # an announcement (or an older dump's leftover)
                    offset += (length + 3) & ~3

    def _drain(self) -> None:
        """Read what the kernel announced since the last look (never waits)."""
        while True:
            try:
                data = self._sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                data = b"lost"
            if not data:
                return
            self._changed = True

    def address_set(self) -> set[str]:
        """Every address in the namespace: the last dump's, unless the kernel announced a
        change since (then one dump; no interface names needed)."""
        with self._lock:
            self._drain()
            if self._addresses is not None and not self._changed:
                return set(self._addresses)
            self._changed = False
        found = self._dump_addresses()
        self._addresses = frozenset(found)
        return found

    def _dump_addresses(self) -> set[str]:
        found: set[str] = set()
        for mtype, data, start, end in self._dump(_RTM_GETADDR, _IFADDRMSG.pack(0, 0, 0, 0, 0)):
            if mtype != _RTM_NEWADDR:
                continue
            family = data[start]
            attrs = _attrs(data, start + _IFADDRMSG.size, end)
            raw = attrs.get(_IFA_ADDRESS) or attrs.get(_IFA_LOCAL)
            if raw is not None:
                found.add(_address(family, raw))
        return found

    def addresses(self) -> dict[str, list[str]]:
        """The addresses on each interface (by name), as pyroute2's IFA_ADDRESS would give them."""
        names = {index: name for index, name, _ in self._links()}
        found: dict[str, list[str]] = {}
        for mtype, data, start, end in self._dump(_RTM_GETADDR, _IFADDRMSG.pack(0, 0, 0, 0, 0)):
            if mtype != _RTM_NEWADDR:
                continue
            family, _plen, _flags, _scope, index = _IFADDRMSG.unpack_from(data, start)
            attrs = _attrs(data, start + _IFADDRMSG.size, end)
            raw = attrs.get(_IFA_ADDRESS) or attrs.get(_IFA_LOCAL)
            if raw is not None:
                found.setdefault(names.get(index, str(index)), []).append(_address(family, raw))
        return found

    def interface_stats(self) -> dict[str, tuple[int, int]]:
        """Received and transmitted bytes per interface (loopback left out)."""
        return {name: counters for _index, name, counters in self._links() if name != "lo"}

    def _links(self) -> list[tuple[int, str, tuple[int, int]]]:
        links = []
        for mtype, data, start, end in self._dump(_RTM_GETLINK, _IFINFOMSG.pack(0, 0, 0, 0, 0)):
            if mtype != _RTM_NEWLINK:
                continue
            _family, _type, index, _flags, _change = _IFINFOMSG.unpack_from(data, start)
            attrs = _attrs(data, start + _IFINFOMSG.size, end)
            name = attrs.get(_IFLA_IFNAME, b"").rstrip(b"\0").decode(errors="replace")
            stats = attrs.get(_IFLA_STATS64, b"")
            rx = tx = 0
            if len(stats) >= _RTNL_STATS64.size:
                _rxp, _txp, rx, tx = _RTNL_STATS64.unpack_from(stats)
            links.append((index, name, (rx, tx)))
        return links


_NLM_F_ACK = 0x4
_IFF_UP = 0x1


def set_link_up(index: int) -> None:
    """Bring interface `index` up in the calling thread's network namespace (RTM_NEWLINK, acked).

    A new pod namespace needs only its loopback up; pyroute2 (~8 MiB resident once imported)
    is then not needed for ordinary pods at all.
    """
    with socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
    ) as sock:
        sock.bind((0, 0))
        body = _IFINFOMSG.pack(socket.AF_UNSPEC, 0, index, _IFF_UP, _IFF_UP)
        header = _NLMSG_HDR.pack(_NLMSG_HDR.size + len(body), _RTM_NEWLINK, _NLM_F_REQUEST | _NLM_F_ACK, 1, 0)
        sock.send(header + body)
        data = sock.recv(4096)
        _length, mtype, _flags, _seq, _pid = _NLMSG_HDR.unpack_from(data, 0)
        if mtype != _NLMSG_ERROR:
            raise OSError(f"netlink: unexpected answer type {mtype} to RTM_NEWLINK")
        (code,) = struct.unpack_from("=i", data, _NLMSG_HDR.size)
        if code:
            raise OSError(-code, f"bring link {index} up: {os.strerror(-code)}")
