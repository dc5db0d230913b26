"""The netlink reader agrees with pyroute2, in a network namespace of the test's own."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cri_py.network import netns as netns_ops
from cri_py.network.rtnl import NetnsReader

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


@pytest.fixture
def pod_netns(tmp_path: Path) -> Iterator[Path]:
    """A pinned netns with loopback up and `eth0` (one end of a veth pair) carrying two addresses."""
    path = netns_ops.create_pinned_netns(tmp_path, "rtnl-test")

    def configure(ipr: object) -> None:
        ipr.link("add", ifname="eth0", kind="veth", peer="eth1")  # type: ignore[attr-defined]
        index = ipr.link_lookup(ifname="eth0")[0]  # type: ignore[attr-defined]
        ipr.addr("add", index=index, address="10.218.255.5", prefixlen=24)  # type: ignore[attr-defined]
        ipr.addr("add", index=index, address="fd18::5", prefixlen=64)  # type: ignore[attr-defined]
        ipr.link("set", index=index, state="up")  # type: ignore[attr-defined]

    try:
        netns_ops.run_in_netns(path, configure)
        yield path
    finally:
        netns_ops.remove_pinned_netns(path)


def test_addresses_match_pyroute2(pod_netns: Path) -> None:
    reader = NetnsReader(pod_netns)
    try:
        ours = reader.addresses()
    finally:
        reader.close()
    theirs = netns_ops.interface_addresses(pod_netns)
    assert {k: sorted(v) for k, v in ours.items()} == {k: sorted(v) for k, v in theirs.items()}
    assert "10.218.255.5" in ours["eth0"] and "fd18::5" in ours["eth0"]
    assert "127.0.0.1" in ours["lo"]
    reader = NetnsReader(pod_netns)
    try:
        assert reader.address_set() == {a for addrs in theirs.values() for a in addrs}
    finally:
        reader.close()


def test_interface_stats_match_pyroute2_without_loopback(pod_netns: Path) -> None:
    reader = NetnsReader(pod_netns)
    try:
        ours = reader.interface_stats()
        again = reader.interface_stats()  # one socket serves many dumps
    finally:
        reader.close()
    assert ours == netns_ops.interface_stats(pod_netns) == again
    assert set(ours) == {"eth0", "eth1"}


def test_a_closed_reader_refuses(pod_netns: Path) -> None:
    reader = NetnsReader(pod_netns)
    reader.close()
    with pytest.raises(OSError):
        reader.addresses()


def test_address_set_is_kept_until_the_kernel_announces_a_change(pod_netns: Path) -> None:
    reader = NetnsReader(pod_netns)
    try:
        first = reader.address_set()
        dumps = 0
        real_dump = reader._dump_addresses

        def counted() -> set[str]:
            nonlocal dumps
            dumps += 1
            return real_dump()

        reader._dump_addresses = counted  # type: ignore[method-assign]
        assert reader.address_set() == first
        assert reader.interface_stats()  # another dump on the same socket
        assert reader.address_set() == first
        assert dumps == 0

        def drop(ipr: object) -> None:
            index = ipr.link_lookup(ifname="eth0")[0]  # type: ignore[attr-defined]
            ipr.addr("del", index=index, address="10.218.255.5", prefixlen=24)  # type: ignore[attr-defined]

        netns_ops.run_in_netns(pod_netns, drop)
        assert reader.address_set() == first - {"10.218.255.5"}
        assert dumps == 1
    finally:
        reader.close()
