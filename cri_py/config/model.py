"""The typed configuration the daemon runs with. Every path the daemon touches is a key."""

from __future__ import annotations

import dataclasses
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
    # "oci" = a runc-compatible binary under conmon; "vm" marks sandboxed runtimes (runsc, kata)
    type: str = "oci"
    # extra global arguments before the subcommand (e.g. runsc's --platform)
    runtime_args: tuple[str, ...] = ()
    # the runtime and kernel can make bind mounts recursively read-only
    recursive_read_only_mounts: bool = False
    # only checked for existence when the handler is used (kata has no package here)
    optional: bool = False


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
class RegistryConfig:
    insecure: bool = False
    mirrors: tuple[str, ...] = ()
    # never fall back to the host itself after the mirrors failed
    mirror_only: bool = False


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
    registries: dict[str, RegistryConfig] = field(default_factory=dict)

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
        return out
