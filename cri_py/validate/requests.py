"""The checks each request gets before anything is created: one function per RPC.

Each handler calls its function first; what needs the disk (a log path beneath the pod's log
directory) is resolved by the service before it stores anything, with `paths.resolve_beneath`.
"""

from __future__ import annotations

import ipaddress
import re

from cri_py.api import api_pb2
from cri_py.errors import InvalidArgument
from cri_py.validate import metadata, paths

# Linux: sethostname(2) takes at most 64 bytes; kubelet sends a DNS label (63) or the node's name
HOSTNAME_MAX = 64
# characters that would end a line or a field of the resolv.conf / hosts files we write
_LINE_BREAKING = re.compile(r"[\s\x00-\x1f\x7f]")


def run_pod_sandbox(request: api_pb2.RunPodSandboxRequest) -> None:
    if not request.HasField("config"):
        raise InvalidArgument("RunPodSandbox: config is required")
    config = request.config
    md = config.metadata
    metadata.pod_name("config.metadata.name", md.name)
    metadata.namespace("config.metadata.namespace", md.namespace)
    metadata.uid("config.metadata.uid", md.uid)
    metadata.attempt("config.metadata.attempt", md.attempt)
    metadata.map_size("config.labels", config.labels)
    metadata.map_size("config.annotations", config.annotations)
    if config.hostname:
        _word("config.hostname", config.hostname, HOSTNAME_MAX)
    if config.log_directory:
        paths.check_absolute("config.log_directory", config.log_directory)
    if config.HasField("dns_config"):
        _dns("config.dns_config", config.dns_config)
    linux = config.linux
    if linux.cgroup_parent:
        paths.check_cgroup_parent("config.linux.cgroup_parent", linux.cgroup_parent)
    sc = linux.security_context
    _seccomp(
        "config.linux.security_context",
        sc.seccomp if sc.HasField("seccomp") else None,
        sc.seccomp_profile_path,
    )


def create_container(request: api_pb2.CreateContainerRequest) -> None:
    if not request.pod_sandbox_id:
        raise InvalidArgument("CreateContainer: pod_sandbox_id is required")
    if not request.HasField("config"):
        raise InvalidArgument("CreateContainer: config is required")
    config = request.config
    md = config.metadata
    metadata.container_name("config.metadata.name", md.name)
    metadata.attempt("config.metadata.attempt", md.attempt)
    metadata.map_size("config.labels", config.labels)
    metadata.map_size("config.annotations", config.annotations)
    if not config.image.image:
        raise InvalidArgument("config.image.image: is required")
    if config.log_path:
        # relative to the pod's log directory; symlinks are resolved beneath it by the service
        paths.check_beneath("config.log_path", config.log_path, absolute=False)
    if config.working_dir:
        paths.check_beneath("config.working_dir", config.working_dir, absolute=True)
    for i, mount in enumerate(config.mounts):
        field = f"config.mounts[{i}]"
        paths.check_beneath(f"{field}.container_path", mount.container_path)
        if mount.host_path:
            paths.check_absolute(f"{field}.host_path", mount.host_path)
        if mount.image_sub_path:
            paths.check_beneath(f"{field}.image_sub_path", mount.image_sub_path, absolute=False)
    for i, device in enumerate(config.devices):
        paths.check_absolute(f"config.devices[{i}].host_path", device.host_path)
        if device.container_path:
            paths.check_beneath(f"config.devices[{i}].container_path", device.container_path, absolute=True)
    sc = config.linux.security_context
    for name in ("masked_paths", "readonly_paths"):
        for i, path in enumerate(getattr(sc, name)):
            paths.check_beneath(f"config.linux.security_context.{name}[{i}]", path, absolute=True)
    _seccomp(
        "config.linux.security_context",
        sc.seccomp if sc.HasField("seccomp") else None,
        sc.seccomp_profile_path,
    )


def _word(field: str, value: str, limit: int) -> None:
    if len(value.encode()) > limit:
        raise InvalidArgument(f"{field}: must be at most {limit} bytes (got {len(value.encode())})")
    if _LINE_BREAKING.search(value):
        raise InvalidArgument(f"{field}: {value[:80]!r} must not contain spaces or control characters")


def _dns(field: str, dns: api_pb2.DNSConfig) -> None:
    for i, server in enumerate(dns.servers):
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise InvalidArgument(f"{field}.servers[{i}]: {server[:80]!r} is not an IP address") from None
    for i, search in enumerate(dns.searches):
        _word(f"{field}.searches[{i}]", search, metadata.DNS1123_SUBDOMAIN_MAX)
    for i, option in enumerate(dns.options):
        _word(f"{field}.options[{i}]", option, metadata.DNS1123_SUBDOMAIN_MAX)


def _seccomp(field: str, profile: api_pb2.SecurityProfile | None, legacy_path: str) -> None:
    """A Localhost profile is a file on the host: kubelet names it by its absolute path."""
    if profile is not None and profile.profile_type == api_pb2.SecurityProfile.Localhost:
        paths.check_absolute(f"{field}.seccomp.localhost_ref", profile.localhost_ref)
    if legacy_path.startswith("localhost/"):
        paths.check_absolute(f"{field}.seccomp_profile_path", legacy_path.removeprefix("localhost/"))
