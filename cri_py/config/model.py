"""The typed configuration the daemon runs with. Every path the daemon touches is a key."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RuntimeHandler:
    """An OCI runtime binary behind a CRI runtime handler (Kubernetes RuntimeClass)."""

    name: str
    path: Path
    # the runtime's state directory (`--root`); empty = a directory under run_dir
    root: Path | None = None
    # how a pod and its containers run (RUNTIME_TYPES): "oci" = a runc-compatible binary under
    # conmon, the pod's namespaces shared by its containers; "gvisor" = runsc under conmon, the
    # pod one gVisor sandbox its containers join; "vm" = a containerd shim v2 binary (Kata's
    # containerd-shim-kata-v2), the pod one VM its containers are created in
    type: str = "oci"
    # extra global arguments before the subcommand (e.g. runsc's --platform)
    runtime_args: tuple[str, ...] = ()
    # the runtime and kernel can make bind mounts recursively read-only; None: ask the runtime
    # (`<runtime> features` lists `rro`) and the kernel (mount_setattr)
    recursive_read_only_mounts: bool | None = None
    # only checked for existence when the handler is used (kata has no package here)
    optional: bool = False
    # processes run in the runtime's own kernel with pids of their own (gVisor): exec asks for
    # the internal pid (--internal-pid-file) and kills by it (`kill --pid`); the loader sets it
    # for type gvisor
    sandbox_pids: bool = False


RUNTIME_TYPES = ("oci", "gvisor", "vm")


@dataclass(frozen=True)
class CniConfig:
    conf_dir: Path = Path("/etc/cni/net.d")
    bin_dirs: tuple[Path, ...] = (Path("/usr/lib/cni"), Path("/opt/cni/bin"))
    cache_dir: Path = Path("/var/lib/cri-py/cni")
    # where host-local's IPAM state lives is the plugin's own business (its dataDir)


@dataclass(frozen=True)
class StreamingConfig:
    address: str = "127.0.0.1"
    port: int = 0  # 0 picks a free port


@dataclass(frozen=True)
class MetricsConfig:
    """The Prometheus endpoint for operators: off unless enabled, loopback unless told."""

    enabled: bool = False
    address: str = "127.0.0.1"
    port: int = 9090  # 0 picks a free port (the daemon logs it)


@dataclass(frozen=True)
class RegistryConfig:
    """cri-py's own `registries.<host>` entry; None = the key is not set (registries.conf decides)."""

    insecure: bool | None = None
    # URLs ("http://127.0.0.1:5000", "https://mirror/prefix"): a scheme, a path before /v2/
    mirrors: tuple[str, ...] | None = None
    # never fall back to the host itself after the mirrors failed
    mirror_only: bool = False


PULL_FROM_MIRROR = ("all", "digest-only", "tag-only")
SHORT_NAME_MODES = ("enforcing", "permissive", "disabled")


@dataclass(frozen=True)
class Mirror:
    """One `[[registry.mirror]]` (or a cri-py mirror URL)."""

    location: str  # host[:port][/namespace...]: the reference is rewritten onto it
    insecure: bool = False
    pull_from_mirror: str = "all"  # or "digest-only", "tag-only"
    # cri-py mirror URLs only: an explicit scheme and a path in front of /v2/
    scheme: str | None = None
    url_path: str = ""


@dataclass(frozen=True)
class RegistryRule:
    """One `[[registry]]` table: the longest `prefix` matching a reference decides."""

    prefix: str
    location: str  # "" only for a `*.domain` prefix: the reference is used as it is
    insecure: bool = False
    blocked: bool = False
    mirror_by_digest_only: bool = False
    mirrors: tuple[Mirror, ...] = ()
    mirror_only: bool = False  # cri-py's `mirror_only`: the location itself is never tried
    source: str = ""  # the file(s) that said so


@dataclass(frozen=True)
class RegistriesConf:
    """What containers-registries.conf(5) and its drop-ins say (or the merge with cri-py's keys)."""

    rules: tuple[RegistryRule, ...] = ()
    # None: no file sets unqualified-search-registries, and short names mean docker.io
    search: tuple[str, ...] | None = None
    search_source: str = ""
    short_name_mode: str = "permissive"
    aliases: dict[str, str] = field(default_factory=dict)
    files: tuple[str, ...] = ()
    # settings read but not acted on (said by `cri-py config` and logged at start)
    ignored: tuple[str, ...] = ()


OWN_REGISTRIES = "cri-py registries"


def merge_registries(system: RegistriesConf, own: dict[str, RegistryConfig]) -> RegistriesConf:
    """cri-py's `registries.<host>` keys merged over registries.conf's `[[registry]]` of that
    exact prefix: where both say something, cri-py's key wins; a narrower registries.conf prefix
    (`docker.io/library/x`) still wins for the references under it, as the man page says."""
    if not own:
        return system
    rules = {rule.prefix: rule for rule in system.rules}
    for host, entry in own.items():
        base = rules.get(host) or RegistryRule(prefix=host, location=host)
        changes: dict[str, Any] = {}
        if entry.insecure is not None:
            changes["insecure"] = entry.insecure
        if entry.mirrors is not None:
            changes["mirrors"] = tuple(_own_mirror(url, entry.insecure or False) for url in entry.mirrors)
        if entry.mirror_only:
            changes["mirror_only"] = True
        source = f"{base.source}, {OWN_REGISTRIES}" if base.source else OWN_REGISTRIES
        rules[host] = dataclasses.replace(base, source=source, **changes)
    return dataclasses.replace(system, rules=tuple(rules[p] for p in sorted(rules)))


def _own_mirror(url: str, insecure: bool) -> Mirror:
    from urllib.parse import urlsplit

    parts = urlsplit(url if "://" in url else f"//{url}")
    return Mirror(
        location=parts.netloc, insecure=insecure, scheme=parts.scheme or None, url_path=parts.path.rstrip("/")
    )


@dataclass(frozen=True)
class Config:
    listen: str = "unix:///run/cri-py/cri-py.sock"
    root: Path = Path("/var/lib/cri-py")
    run_dir: Path = Path("/run/cri-py")
    log_level: str = "info"
    cgroup_driver: str = "cgroupfs"
    cgroup_parent: str = "/cri-py"  # default pod cgroup parent when kubelet gives none
    conmon: Path = Path("/usr/bin/conmon")
    default_runtime: str = "runc"
    runtimes: dict[str, RuntimeHandler] = field(default_factory=dict)
    pause_image: str = "localhost/cri-py/pause:3.10"
    catatonit: Path = Path("/usr/bin/catatonit")
    storage_driver: str = "overlay"  # or "vfs"
    log_size_max: int = -1  # bytes per container log file; -1 = unlimited
    cni: CniConfig = field(default_factory=CniConfig)
    streaming: StreamingConfig = field(default_factory=StreamingConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    registries: dict[str, RegistryConfig] = field(default_factory=dict)
    # containers-registries.conf(5) and its `.d` drop-ins; None = not read
    registries_conf: Path | None = Path("/etc/containers/registries.conf")
    system_registries: RegistriesConf = field(default_factory=RegistriesConf)
    # containers-auth.json(5) or Docker config.json, for pulls without credentials; None = none
    auth_file: Path | None = Path("/etc/containers/auth.json")
    # containers-policy.json(5); None or an absent file = accept every image
    signature_policy: Path | None = Path("/etc/containers/policy.json")
    # images kubelet's garbage collection must keep: exact names, `prefix*`, `*keyword*`
    pinned_images: tuple[str, ...] = ()
    # CRI-O's container inspect API for kubelet's cAdvisor (metrics/inspect_api.py), served on
    # this socket, and containers' cgroups named crio-<id>.scope (oci/cgroups.py); None = neither
    inspect_socket: Path | None = None

    @functools.cached_property
    def effective_registries(self) -> RegistriesConf:
        """registries.conf merged with cri-py's own `registries` keys (what pulls use)."""
        return merge_registries(self.system_registries, self.registries)

    @property
    def socket_path(self) -> Path:
        return Path(self.listen.removeprefix("unix://"))

    def handler(self, name: str) -> RuntimeHandler | None:
        return self.runtimes.get(name or self.default_runtime)

    def to_json(self) -> dict[str, Any]:
        def convert(value: Any) -> Any:
            if isinstance(value, Path):
                return str(value)
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
            if isinstance(value, dict):
                return {k: convert(v) for k, v in value.items()}
            if isinstance(value, tuple | list):
                return [convert(v) for v in value]
            return value

        out: dict[str, Any] = convert(self)
        for handler in out["runtimes"].values():
            handler.pop("name", None)
        for entry in out["registries"].values():
            for key in [k for k, v in entry.items() if v is None]:
                del entry[key]
        del out["system_registries"]
        # derived, not a key: what registries.conf and `registries` say together
        out["effective_registries"] = convert(self.effective_registries)
        return out
