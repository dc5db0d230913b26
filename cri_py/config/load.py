"""Read the YAML config, merge drop-ins in lexical order, apply flags, validate strictly.

Each file is checked on its own before merging, so an error names the file and the key:
`/etc/cri-py/cri-py.yaml: runtimes.runc.path: /usr/sbin/runc does not exist`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from cri_py.config.errors import ConfigError
from cri_py.config.model import (
    RUNTIME_TYPES,
    CniConfig,
    Config,
    MetricsConfig,
    RegistryConfig,
    RuntimeHandler,
    StreamingConfig,
)
from cri_py.config.registries_conf import read_registries_conf
from cri_py.image.pinning import pinned_pattern_problem

DEFAULT_CONFIG_FILE = Path("/etc/cri-py/cri-py.yaml")
LOG_LEVELS = ("debug", "info", "warning", "error")


# key -> expected kind; nested dicts describe nested sections
_STR, _PATH, _INT, _BOOL, _STRLIST, _PATHLIST = (
    "string",
    "path",
    "integer",
    "boolean",
    "list of strings",
    "list of paths",
)
_RUNTIME_KEYS = {
    "path": _PATH,
    "root": _PATH,
    "type": _STR,
    "runtime_args": _STRLIST,
    "recursive_read_only_mounts": _BOOL,
    "optional": _BOOL,
    "sandbox_pids": _BOOL,
}
_REGISTRY_KEYS = {"insecure": _BOOL, "mirrors": _STRLIST, "mirror_only": _BOOL}
_SCHEMA: dict[str, Any] = {
    "listen": _STR,
    "root": _PATH,
    "run_dir": _PATH,
    "log_level": _STR,
    "cgroup_driver": _STR,
    "cgroup_parent": _STR,
    "conmon": _PATH,
    "default_runtime": _STR,
    "runtimes": ("map", _RUNTIME_KEYS),
    "pause_image": _STR,
    "catatonit": _PATH,
    "storage_driver": _STR,
    "log_size_max": _INT,
    "cni": {"conf_dir": _PATH, "bin_dirs": _PATHLIST, "cache_dir": _PATH},
    "streaming": {"address": _STR, "port": _INT},
    "metrics": {"enabled": _BOOL, "address": _STR, "port": _INT},
    "registries": ("map", _REGISTRY_KEYS),
    # paths of the containers files a CRI-O node already has; "" = do not read one
    "registries_conf": _STR,
    "auth_file": _STR,
    "signature_policy": _STR,
    "pinned_images": _STRLIST,
    # "" = not served
    "inspect_socket": _STR,
}

BUILTIN_RUNTIMES: dict[str, dict[str, Any]] = {
    "runc": {"path": "/usr/sbin/runc"},
    "crun": {"path": "/usr/bin/crun"},
    # runsc (2022) takes every network namespace for the root one on this kernel (it probes
    # /proc/sys/net/core/rmem_default); with host networking it uses the pod's namespace as is.
    # --oci-seccomp: the containers' seccomp profiles are applied inside the sandbox (runsc
    # ignores them otherwise)
    "runsc": {
        "path": "/usr/bin/runsc",
        "type": "gvisor",
        "runtime_args": ["--network=host", "--oci-seccomp"],
    },
    # Kata Containers: its containerd shim v2 (CRI-O's runtime_type "vm"); not packaged here
    "kata": {"path": "/usr/bin/containerd-shim-kata-v2", "type": "vm", "optional": True},
}


def _check_value(source: str, key: str, kind: str, value: Any) -> None:
    ok = {
        _STR: isinstance(value, str),
        _PATH: isinstance(value, str) and value != "",
        _INT: isinstance(value, int) and not isinstance(value, bool),
        _BOOL: isinstance(value, bool),
        _STRLIST: isinstance(value, list) and all(isinstance(v, str) for v in value),
        _PATHLIST: isinstance(value, list) and all(isinstance(v, str) and v for v in value),
    }[kind]
    if not ok:
        raise ConfigError(source, key, f"expected a {kind}, got {type(value).__name__} {value!r}")


def _check_section(source: str, prefix: str, schema: dict[str, Any], data: Any) -> None:
    if not isinstance(data, dict):
        raise ConfigError(source, prefix or "(top level)", f"expected a mapping, got {type(data).__name__}")
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in schema:
            raise ConfigError(source, dotted, "unknown key")
        spec = schema[key]
        if isinstance(spec, dict):
            _check_section(source, dotted, spec, value)
        elif isinstance(spec, tuple):
            if not isinstance(value, dict):
                raise ConfigError(source, dotted, f"expected a mapping, got {type(value).__name__}")
            for name, entry in value.items():
                _check_section(source, f"{dotted}.{name}", spec[1], entry if entry is not None else {})
        else:
            _check_value(source, dotted, spec, value)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), "", f"invalid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    _check_section(str(path), "", _SCHEMA, data)
    return data  # type: ignore[no-any-return]


def config_sources(config_file: Path | None) -> list[Path]:
    """The main file (when present, or when named explicitly) and its drop-ins, in merge order."""
    main = config_file or DEFAULT_CONFIG_FILE
    files: list[Path] = []
    if config_file is not None or main.exists():
        files.append(main)
    dropin_dir = main.parent / (main.stem + ".d")
    if dropin_dir.is_dir():
        files.extend(sorted(dropin_dir.glob("*.yaml")))
    return files


def load_config(config_file: Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    merged: dict[str, Any] = {"runtimes": {k: dict(v) for k, v in BUILTIN_RUNTIMES.items()}}
    for path in config_sources(config_file):
        merged = _merge(merged, _read_yaml(path))
    if overrides:
        _check_section("command line", "", _SCHEMA, overrides)
        merged = _merge(merged, overrides)
    return _build(merged, str(config_file or DEFAULT_CONFIG_FILE))


def _build(data: dict[str, Any], source: str) -> Config:
    defaults = Config()
    log_level = data.get("log_level", defaults.log_level).lower()
    if log_level not in LOG_LEVELS:
        raise ConfigError(source, "log_level", f"must be one of {', '.join(LOG_LEVELS)}")
    cgroup_driver = data.get("cgroup_driver", defaults.cgroup_driver)
    if cgroup_driver not in ("cgroupfs", "systemd"):
        raise ConfigError(source, "cgroup_driver", "must be cgroupfs or systemd")
    storage_driver = data.get("storage_driver", defaults.storage_driver)
    if storage_driver not in ("overlay", "vfs"):
        raise ConfigError(source, "storage_driver", "must be overlay or vfs")
    listen = data.get("listen", defaults.listen)
    if not listen.startswith("unix:///"):
        raise ConfigError(source, "listen", "must be unix:///ABSOLUTE/PATH")

    runtimes: dict[str, RuntimeHandler] = {}
    for name, entry in data["runtimes"].items():
        entry = entry or {}
        if "path" not in entry:
            raise ConfigError(source, f"runtimes.{name}.path", "missing")
        kind = entry.get("type", "oci")
        if kind not in RUNTIME_TYPES:
            raise ConfigError(source, f"runtimes.{name}.type", f"must be one of {', '.join(RUNTIME_TYPES)}")
        if kind != "gvisor" and Path(entry["path"]).name == "runsc":
            raise ConfigError(source, f"runtimes.{name}.type", "runsc is type gvisor")
        runtimes[name] = RuntimeHandler(
            name=name,
            path=Path(entry["path"]),
            root=Path(entry["root"]) if entry.get("root") else None,
            type=kind,
            runtime_args=tuple(entry.get("runtime_args", ())),
            recursive_read_only_mounts=entry.get("recursive_read_only_mounts"),
            optional=entry.get("optional", False),
            sandbox_pids=entry.get("sandbox_pids", kind == "gvisor"),
        )
    default_runtime = data.get("default_runtime", defaults.default_runtime)
    if default_runtime not in runtimes:
        raise ConfigError(source, "default_runtime", f"no runtime named {default_runtime!r} in runtimes")

    cni_data = data.get("cni", {})
    cni = CniConfig(
        conf_dir=Path(cni_data.get("conf_dir", CniConfig.conf_dir)),
        bin_dirs=tuple(Path(p) for p in cni_data.get("bin_dirs", CniConfig.bin_dirs)),
        cache_dir=Path(cni_data.get("cache_dir", Path(data.get("root", defaults.root)) / "cni")),
    )
    streaming_data = data.get("streaming", {})
    port = streaming_data.get("port", StreamingConfig.port)
    if not 0 <= port <= 65535:
        raise ConfigError(source, "streaming.port", "must be 0..65535")
    streaming = StreamingConfig(address=streaming_data.get("address", StreamingConfig.address), port=port)
    metrics_data = data.get("metrics", {})
    metrics = MetricsConfig(
        enabled=metrics_data.get("enabled", MetricsConfig.enabled),
        address=metrics_data.get("address", MetricsConfig.address),
        port=metrics_data.get("port", MetricsConfig.port),
    )
    if not 0 <= metrics.port <= 65535:
        raise ConfigError(source, "metrics.port", "must be 0..65535")
    if not metrics.address:
        raise ConfigError(source, "metrics.address", "must be an IP address or host name")
    registries = {
        host: RegistryConfig(
            insecure=(entry or {}).get("insecure"),
            mirrors=tuple(entry["mirrors"]) if "mirrors" in (entry or {}) else None,
            mirror_only=(entry or {}).get("mirror_only", False),
        )
        for host, entry in data.get("registries", {}).items()
    }
    registries_conf = _optional_path(data, "registries_conf", defaults.registries_conf)
    pinned = tuple(data.get("pinned_images", ()))
    for i, pattern in enumerate(pinned):
        problem = pinned_pattern_problem(pattern)
        if problem:
            raise ConfigError(source, f"pinned_images[{i}]", problem)
    config = Config(
        listen=listen,
        root=Path(data.get("root", defaults.root)),
        run_dir=Path(data.get("run_dir", defaults.run_dir)),
        log_level=log_level,
        cgroup_driver=cgroup_driver,
        cgroup_parent=data.get("cgroup_parent", defaults.cgroup_parent),
        conmon=Path(data.get("conmon", defaults.conmon)),
        default_runtime=default_runtime,
        runtimes=runtimes,
        pause_image=data.get("pause_image", defaults.pause_image),
        catatonit=Path(data.get("catatonit", defaults.catatonit)),
        storage_driver=storage_driver,
        log_size_max=data.get("log_size_max", defaults.log_size_max),
        cni=cni,
        streaming=streaming,
        metrics=metrics,
        registries=registries,
        registries_conf=registries_conf,
        system_registries=read_registries_conf(registries_conf),
        auth_file=_optional_path(data, "auth_file", defaults.auth_file),
        signature_policy=_optional_path(data, "signature_policy", defaults.signature_policy),
        pinned_images=pinned,
        inspect_socket=_optional_path(data, "inspect_socket", defaults.inspect_socket),
    )
    _check_binaries(config, source)
    return config


def _optional_path(data: dict[str, Any], key: str, default: Path | None) -> Path | None:
    if key not in data:
        return default
    return Path(data[key]) if data[key] else None


def _check_binaries(config: Config, source: str) -> None:
    def executable(path: Path) -> bool:
        return path.is_file() and os.access(path, os.X_OK)

    if not executable(config.conmon):
        raise ConfigError(source, "conmon", f"{config.conmon} is not an executable file")
    if not executable(config.catatonit):
        raise ConfigError(source, "catatonit", f"{config.catatonit} is not an executable file")
    for name, handler in config.runtimes.items():
        if not handler.optional and not executable(handler.path):
            raise ConfigError(source, f"runtimes.{name}.path", f"{handler.path} is not an executable file")
