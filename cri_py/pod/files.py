"""The files a pod gives its containers: resolv.conf, hosts, hostname."""

from __future__ import annotations

import os
from pathlib import Path

from cri_py.api import api_pb2

HOST_RESOLV_CONF = Path("/etc/resolv.conf")
HOST_HOSTS = Path("/etc/hosts")


def resolv_conf_text(dns: api_pb2.DNSConfig | None, host_file: Path = HOST_RESOLV_CONF) -> str:
    if dns is None or not (dns.servers or dns.searches or dns.options):
        try:
            return host_file.read_text()
        except OSError:
            return ""
    lines = [f"nameserver {s}" for s in dns.servers]
    if dns.searches:
        lines.append("search " + " ".join(dns.searches))
    if dns.options:
        lines.append("options " + " ".join(dns.options))
    return "\n".join(lines) + "\n"


def hosts_text(hostname: str, ip: str, host_network: bool, host_file: Path = HOST_HOSTS) -> str:
    if host_network:
        try:
            return host_file.read_text()
        except OSError:
            pass
    lines = [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "fe00::0\tip6-mcastprefix",
        "fe00::1\tip6-allnodes",
        "fe00::2\tip6-allrouters",
    ]
    if ip and hostname:
        lines.append(f"{ip}\t{hostname}")
    return "\n".join(lines) + "\n"


def write_file(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
