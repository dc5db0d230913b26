"""Reading a pod's addresses out of a CNI result (any result version we speak)."""

from __future__ import annotations

import ipaddress
from typing import Any


def _strip_prefix(address: str) -> str | None:
    try:
        return str(ipaddress.ip_interface(address).ip)
    except ValueError:
        return None


def _sandbox_interfaces(result: dict[str, Any], ifname: str) -> set[int]:
    """Indexes of the interfaces that sit inside the pod (`sandbox` set), ours first."""
    interfaces = result.get("interfaces")
    if not isinstance(interfaces, list):
        return set()
    inside = {i for i, iface in enumerate(interfaces) if isinstance(iface, dict) and iface.get("sandbox")}
    named = {i for i in inside if interfaces[i].get("name") == ifname}
    return named or inside


def result_addresses(result: dict[str, Any], ifname: str = "eth0") -> list[str]:
    """The pod's addresses in result order, without prefix length.

    Results that name interfaces count only addresses on the pod's own interface; results
    without interfaces (IPAM-only plugins, 0.1/0.2 results) count every address.
    """
    stripped = (_strip_prefix(cidr) for cidr in result_cidrs(result, ifname))
    return list(dict.fromkeys(a for a in stripped if a is not None))


def result_cidrs(result: dict[str, Any], ifname: str = "eth0") -> list[str]:
    """Like result_addresses, with the prefix length ("10.88.0.2/16")."""
    addresses: list[str] = []
    ips = result.get("ips")
    if isinstance(ips, list):
        inside = _sandbox_interfaces(result, ifname)
        for entry in ips:
            if not isinstance(entry, dict):
                continue
            index = entry.get("interface")
            if inside and isinstance(index, int) and index not in inside:
                continue
            if isinstance(entry.get("address"), str) and _strip_prefix(entry["address"]):
                addresses.append(entry["address"])
    for legacy in ("ip4", "ip6"):  # 0.1.0 / 0.2.0
        block = result.get(legacy)
        if isinstance(block, dict) and isinstance(block.get("ip"), str) and _strip_prefix(block["ip"]):
            addresses.append(block["ip"])
    return list(dict.fromkeys(addresses))


def primary_and_additional(addresses: list[str]) -> tuple[str, list[str]]:
    """kubelet takes the first address as the pod IP; IPv4 goes first as in CRI-O."""
    if not addresses:
        return "", []
    v4 = [a for a in addresses if ipaddress.ip_address(a).version == 4]
    v6 = [a for a in addresses if ipaddress.ip_address(a).version == 6]
    ordered = v4 + v6
    return ordered[0], ordered[1:]


def result_interfaces(result: dict[str, Any]) -> list[str]:
    interfaces = result.get("interfaces")
    if not isinstance(interfaces, list):
        return []
    return [str(i.get("name")) for i in interfaces if isinstance(i, dict) and i.get("name")]
