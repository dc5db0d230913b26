"""Interface counters inside a pod's network namespace (netlink; loopback left out)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cri_py.network.netns import run_in_netns


@dataclass(frozen=True)
class LinkCounters:
    rx_bytes: int = 0
    rx_packets: int = 0
    rx_dropped: int = 0
    rx_errors: int = 0
    tx_bytes: int = 0
    tx_packets: int = 0
    tx_dropped: int = 0
    tx_errors: int = 0


def counters_of(stats: dict[str, Any]) -> LinkCounters:
    return LinkCounters(
        *(
            int(stats.get(k, 0))
            for k in (
                "rx_bytes",
                "rx_packets",
                "rx_dropped",
                "rx_errors",
                "tx_bytes",
                "tx_packets",
                "tx_dropped",
                "tx_errors",
            )
        )  # fmt: skip
    )


def link_counters(netns: Path) -> dict[str, LinkCounters]:
    def collect(ipr: Any) -> dict[str, LinkCounters]:
        out: dict[str, LinkCounters] = {}
        for link in ipr.get_links():
            name = link.get_attr("IFLA_IFNAME")
            if name == "lo":
                continue
            out[name] = counters_of(dict(link.get_attr("IFLA_STATS64") or link.get_attr("IFLA_STATS") or {}))
        return out

    return run_in_netns(netns, collect)
