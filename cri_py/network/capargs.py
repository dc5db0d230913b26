"""Capability arguments (CNI CONVENTIONS.md) built from what the sandbox asks for."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

INGRESS_ANNOTATION = "kubernetes.io/ingress-bandwidth"
EGRESS_ANNOTATION = "kubernetes.io/egress-bandwidth"
# kubelet gives no burst; like ocicni, leave it effectively unlimited
UNLIMITED_BURST = 2**31 - 1

_PROTOCOLS = {0: "tcp", 1: "udp", 2: "sctp"}

_SUFFIXES = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
_QUANTITY_RE = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")


class CapabilityError(ValueError):
    """A sandbox setting that cannot be turned into a capability argument."""


@dataclass(frozen=True)
class PortMappingArg:
    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""


def parse_quantity(text: str) -> int:
    """A Kubernetes resource quantity ("10M", "1Gi", "1e6") as an integer, rounded up."""
    match = _QUANTITY_RE.match(text.strip())
    if not match:
        raise CapabilityError(f"invalid quantity {text!r}")
    number, suffix = match.group(1), match.group(2) or ""
    try:
        value = Decimal(number) * _SUFFIXES[suffix]
    except InvalidOperation as exc:
        raise CapabilityError(f"invalid quantity {text!r}") from exc
    if value < 0:
        raise CapabilityError(f"negative quantity {text!r}")
    return int(value.to_integral_value(rounding="ROUND_CEILING"))


def port_mappings_arg(mappings: Iterable[Any]) -> list[dict[str, Any]]:
    """CRI PortMapping messages (or PortMappingArg) as the portMappings capability wants them.

    Mappings without a host port publish nothing and are left out.
    """
    out: list[dict[str, Any]] = []
    for m in mappings:
        if isinstance(m, PortMappingArg):
            arg = m
        else:
            arg = PortMappingArg(
                host_port=int(m.host_port),
                container_port=int(m.container_port),
                protocol=_PROTOCOLS.get(int(m.protocol), "tcp"),
                host_ip=str(m.host_ip),
            )
        if arg.host_port <= 0:
            continue
        if not 0 < arg.container_port < 65536 or arg.host_port > 65535:
            raise CapabilityError(f"invalid port mapping {arg.host_port}:{arg.container_port}")
        out.append(
            {
                "hostPort": arg.host_port,
                "containerPort": arg.container_port,
                "protocol": arg.protocol.lower(),
                "hostIP": arg.host_ip,
            }
        )
    return out


def bandwidth_arg(annotations: Mapping[str, str]) -> dict[str, int] | None:
    """The bandwidth capability from kubernetes.io/{ingress,egress}-bandwidth (bits per second)."""
    out: dict[str, int] = {}
    if INGRESS_ANNOTATION in annotations:
        out["ingressRate"] = parse_quantity(annotations[INGRESS_ANNOTATION])
        out["ingressBurst"] = UNLIMITED_BURST
    if EGRESS_ANNOTATION in annotations:
        out["egressRate"] = parse_quantity(annotations[EGRESS_ANNOTATION])
        out["egressBurst"] = UNLIMITED_BURST
    return out or None


def dns_arg(dns: Any) -> dict[str, list[str]] | None:
    """The dns capability from a CRI DNSConfig (or None)."""
    if dns is None:
        return None
    servers, searches, options = list(dns.servers), list(dns.searches), list(dns.options)
    if not (servers or searches or options):
        return None
    return {"servers": servers, "searches": searches, "options": options}


def runtime_config_for(capabilities: set[str], supplied: Mapping[str, Any]) -> dict[str, Any]:
    """Only the capabilities a plugin declares and the runtime has a value for."""
    return {name: supplied[name] for name in sorted(capabilities) if name in supplied}
