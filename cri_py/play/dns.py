"""The pod's DNS config as kubelet's dns.Configurer builds it, and its hostname and domain."""

from __future__ import annotations

from typing import Any

from cri_py.api import api_pb2
from cri_py.errors import InvalidArgument
from cri_py.play.node import NodeInfo

MAX_NAMESERVERS = 3
MAX_SEARCHES = 32
MAX_SEARCH_CHARS = 2048
DEFAULT_OPTIONS = ("ndots:5",)
MAX_HOSTNAME = 63


def parse_resolv_conf(text: str) -> tuple[list[str], list[str], list[str]]:
    """Nameservers, searches (the last `search` line wins) and options of a resolv.conf."""
    servers: list[str] = []
    searches: list[str] = []
    options: list[str] = []
    for line in text.splitlines():
        if line.startswith(("#", ";")):
            continue
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "nameserver" and len(fields) >= 2:
            servers.append(fields[1])
        elif fields[0] == "search":
            searches = [s.removesuffix(".") for s in fields[1:] if s != "."]
        elif fields[0] == "options":
            options = _merge_options(options, fields[1:])
    return servers, searches, options


def _merge_options(existing: list[str], more: list[str]) -> list[str]:
    merged: dict[str, str] = {}
    for option in [*existing, *more]:
        name, sep, val = option.partition(":")
        merged[name] = val if sep else ""
    return [f"{n}:{v}" if v else n for n, v in merged.items()]


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def dns_type(pod: Any) -> str:
    """'none', 'cluster' or 'host', following getPodDNSType."""
    policy = pod.spec.dns_policy
    if policy == "None":
        return "none"
    if policy == "ClusterFirstWithHostNet":
        return "cluster"
    if policy == "ClusterFirst":
        return "host" if pod.spec.host_network else "cluster"
    if policy == "Default":
        return "host"
    raise InvalidArgument(f"spec.dnsPolicy: Unsupported value {policy!r}")


def pod_dns_config(pod: Any, node: NodeInfo) -> api_pb2.DNSConfig:
    """GetPodDNS: host resolv.conf, cluster DNS when the node has one, then the pod's dnsConfig."""
    servers, searches, options = parse_resolv_conf(node.resolv_conf or "")
    kind = dns_type(pod)
    if kind == "none":
        servers, searches, options = [], [], []
    elif kind == "cluster" and node.cluster_dns:
        servers = list(node.cluster_dns)
        if node.cluster_domain:
            ns = pod.metadata.namespace
            cluster = [f"{ns}.svc.{node.cluster_domain}", f"svc.{node.cluster_domain}", node.cluster_domain]
            searches = _unique([*cluster, *searches])
        options = list(DEFAULT_OPTIONS)
    elif node.resolv_conf is None:
        # kubelet --resolv-conf="" means: resolve through the node itself
        servers, searches = ["127.0.0.1"], ["."]
    extra = pod.spec.dns_config
    if extra is not None:
        servers = _unique([*servers, *(extra.nameservers or [])])
        searches = _unique([*searches, *(extra.searches or [])])
        merged: dict[str, str] = {}
        for option in options:
            name, sep, val = option.partition(":")
            merged[name] = val if sep else ""
        for opt in extra.options or []:
            merged[opt.name] = opt.value or ""
        options = [f"{n}:{v}" if v else n for n, v in merged.items()]
    # formDNSConfigFitsLimits
    servers = servers[:MAX_NAMESERVERS]
    searches = searches[:MAX_SEARCHES]
    while searches and len(" ".join(searches)) > MAX_SEARCH_CHARS:
        searches.pop()
    return api_pb2.DNSConfig(servers=servers, searches=searches, options=options)


def hostname_and_domain(pod: Any, node: NodeInfo) -> tuple[str, str]:
    """GeneratePodHostNameAndDomain: spec.hostname or the pod name, cut to 63; the subdomain's FQDN."""
    hostname = pod.spec.hostname or pod.metadata.name
    if len(hostname) > MAX_HOSTNAME:
        hostname = hostname[:MAX_HOSTNAME].rstrip("-.")
    domain = ""
    if pod.spec.subdomain:
        domain = f"{pod.spec.subdomain}.{pod.metadata.namespace}.svc.{node.cluster_domain}"
    return hostname, domain


def kernel_hostname(pod: Any, node: NodeInfo) -> str:
    """GetNodenameForKernel: the FQDN when setHostnameAsFQDN asks for it (at most 64 characters)."""
    hostname, domain = hostname_and_domain(pod, node)
    if pod.spec.set_hostname_as_fqdn and domain:
        fqdn = f"{hostname}.{domain}"
        if len(fqdn) > 64:
            raise InvalidArgument(f"spec.setHostnameAsFQDN: FQDN {fqdn!r} is longer than 64 characters")
        return fqdn
    return hostname
