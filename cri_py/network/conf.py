"""Parsing CNI network configuration files (no I/O beyond what the caller hands in).

A `.conflist` is a list of plugins; a `.conf`/`.json` holding a single plugin is wrapped into
a list of one, as libcni does.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONF_SUFFIXES = (".conflist", ".conf", ".json")

# versions whose results we can read; 1.1.0 adds STATUS and GC
SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

_VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


class ConfError(ValueError):
    """A configuration file that cannot be used; the message says why."""


def version_key(version: str) -> tuple[int, int, int]:
    match = _VERSION_RE.match(version)
    if not match:
        raise ConfError(f"invalid cniVersion {version!r}")
    major, minor, patch = (int(g) for g in match.groups())
    return major, minor, patch


def version_at_least(version: str, minimum: str) -> bool:
    return version_key(version) >= version_key(minimum)


@dataclass(frozen=True)
class NetworkConfList:
    """One network: the list of plugins that ADD runs in order and DEL in reverse."""

    name: str
    cni_version: str
    plugins: tuple[dict[str, Any], ...]
    disable_check: bool
    disable_gc: bool
    # versions offered by `cniVersions` (1.1); the chosen one is `cni_version`
    cni_versions: tuple[str, ...]
    source: Path
    raw: bytes

    @property
    def plugin_types(self) -> tuple[str, ...]:
        return tuple(str(p["type"]) for p in self.plugins)

    def capabilities(self, index: int) -> set[str]:
        caps = self.plugins[index].get("capabilities")
        if not isinstance(caps, dict):
            return set()
        return {name for name, on in caps.items() if on is True}

    def with_version(self, version: str) -> NetworkConfList:
        return NetworkConfList(
            self.name,
            version,
            self.plugins,
            self.disable_check,
            self.disable_gc,
            self.cni_versions,
            self.source,
            self.raw,
        )


def _check_plugin(plugin: Any, where: str) -> dict[str, Any]:
    if not isinstance(plugin, dict):
        raise ConfError(f"{where}: a plugin must be a JSON object")
    kind = plugin.get("type")
    if not isinstance(kind, str) or not kind:
        raise ConfError(f"{where}: plugin has no type")
    if "/" in kind or kind in (".", ".."):
        raise ConfError(f"{where}: invalid plugin type {kind!r}")
    return plugin


def _pick_version(doc: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    offered = doc.get("cniVersions")
    if offered is not None:
        if not isinstance(offered, list) or not all(isinstance(v, str) for v in offered):
            raise ConfError("cniVersions must be a list of strings")
        usable = [v for v in offered if v in SUPPORTED_VERSIONS]
        if usable:
            return max(usable, key=version_key), tuple(offered)
    version = doc.get("cniVersion")
    if not isinstance(version, str):
        raise ConfError("cniVersion missing")
    version_key(version)
    if version not in SUPPORTED_VERSIONS:
        raise ConfError(f"cniVersion {version} not supported (we speak {', '.join(SUPPORTED_VERSIONS)})")
    return version, tuple(offered or ())


def parse_conf(source: Path, raw: bytes) -> NetworkConfList:
    """Parse a .conflist, .conf or .json file's bytes into a network."""
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfError(f"not valid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfError("not a JSON object")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise ConfError("network has no name")
    version, offered = _pick_version(doc)
    if source.suffix == ".conflist" or "plugins" in doc:
        plugins = doc.get("plugins")
        if not isinstance(plugins, list) or not plugins:
            raise ConfError("plugins missing or empty")
        checked = tuple(_check_plugin(p, f"plugins[{i}]") for i, p in enumerate(plugins))
        return NetworkConfList(
            name=name,
            cni_version=version,
            plugins=checked,
            disable_check=doc.get("disableCheck") is True,
            disable_gc=doc.get("disableGC") is True,
            cni_versions=offered,
            source=source,
            raw=raw,
        )
    single = _check_plugin(doc, "network")
    plugin = {k: v for k, v in single.items() if k not in ("cniVersion", "cniVersions", "name")}
    return NetworkConfList(
        name=name,
        cni_version=version,
        plugins=(plugin,),
        disable_check=False,
        disable_gc=False,
        cni_versions=offered,
        source=source,
        raw=raw,
    )


def plugin_stdin(
    network: NetworkConfList,
    index: int,
    *,
    prev_result: dict[str, Any] | None,
    runtime_config: dict[str, Any] | None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    """The JSON a plugin reads on stdin: its own object plus the list's version and name."""
    doc = dict(network.plugins[index])
    doc["cniVersion"] = network.cni_version
    doc["name"] = network.name
    # the spec says capabilities are not for the plugin; the arguments go in runtimeConfig
    doc.pop("capabilities", None)
    if runtime_config:
        doc["runtimeConfig"] = runtime_config
    if prev_result is not None:
        doc["prevResult"] = prev_result
    if extra:
        doc.update(extra)
    return json.dumps(doc, separators=(",", ":")).encode()
