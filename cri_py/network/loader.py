"""Loading the networks of a CNI conf dir: parse, find the plugin binaries, check versions.

Plugin versions are asked (CNI VERSION) once per binary and remembered by the binary's
identity, so pod set-up never spends an exec on it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cri_py.network.conf import (
    CONF_SUFFIXES,
    SUPPORTED_VERSIONS,
    ConfError,
    NetworkConfList,
    parse_conf,
    version_key,
)
from cri_py.network.plugin import CniPluginError, PluginEnv, exec_plugin, find_plugin

log = logging.getLogger(__name__)

VERSION_TIMEOUT = 10.0

_BinaryKey = tuple[str, int, int, int]  # path, inode, size, mtime


@dataclass
class LoadedNetworks:
    conf_dir: Path
    networks: list[NetworkConfList] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    binaries: dict[str, Path] = field(default_factory=dict)
    supported: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def default(self) -> NetworkConfList | None:
        return self.networks[0] if self.networks else None

    def by_name(self, name: str) -> NetworkConfList | None:
        return next((n for n in self.networks if n.name == name), None)


def conf_dir_signature(conf_dir: Path) -> tuple[tuple[str, int, int], ...]:
    """Cheap fingerprint of the conf files: a change means a reload."""
    entries: list[tuple[str, int, int]] = []
    try:
        with os.scandir(conf_dir) as it:
            for entry in it:
                if not entry.name.endswith(CONF_SUFFIXES):
                    continue
                try:
                    st = entry.stat()
                except OSError:
                    continue
                entries.append((entry.name, st.st_mtime_ns, st.st_size))
    except OSError:
        return ()
    return tuple(sorted(entries))


class VersionCache:
    """supportedVersions per plugin binary, asked once per binary identity."""

    def __init__(self) -> None:
        self._known: dict[_BinaryKey, tuple[str, ...]] = {}

    async def supported(self, binary: Path, cni_path: str) -> tuple[str, ...]:
        st = os.stat(binary)
        key = (str(binary), st.st_ino, st.st_size, st.st_mtime_ns)
        if key in self._known:
            return self._known[key]
        doc = await exec_plugin(
            binary,
            PluginEnv("VERSION"),
            json.dumps({"cniVersion": "1.0.0"}).encode(),
            cni_path=cni_path,
            time_limit=VERSION_TIMEOUT,
        )
        versions = doc.get("supportedVersions") if doc else None
        if not isinstance(versions, list):
            raise CniPluginError(binary.name, "VERSION", 6, "no supportedVersions in the answer")
        found = tuple(str(v) for v in versions)
        self._known[key] = found
        return found


def _read_confs(conf_dir: Path) -> list[tuple[Path, bytes | OSError]]:
    try:
        names = sorted(n for n in os.listdir(conf_dir) if n.endswith(CONF_SUFFIXES))
    except OSError:
        return []
    out: list[tuple[Path, bytes | OSError]] = []
    for name in names:
        path = conf_dir / name
        try:
            out.append((path, path.read_bytes()))
        except OSError as exc:
            out.append((path, exc))
    return out


async def load_networks(conf_dir: Path, bin_dirs: Sequence[Path], versions: VersionCache) -> LoadedNetworks:
    loaded = LoadedNetworks(conf_dir)
    cni_path = ":".join(str(d) for d in bin_dirs)
    files = await asyncio.to_thread(_read_confs, conf_dir)
    parsed: list[NetworkConfList] = []
    for path, data in files:
        if isinstance(data, OSError):
            loaded.skipped[path.name] = f"unreadable: {data}"
            continue
        try:
            parsed.append(parse_conf(path, data))
        except ConfError as exc:
            loaded.skipped[path.name] = str(exc)

    kinds = {kind for net in parsed for kind in net.plugin_types}
    for kind in sorted(kinds):
        binary = await asyncio.to_thread(find_plugin, kind, bin_dirs)
        if binary is not None:
            loaded.binaries[kind] = binary

    async def ask(kind: str, binary: Path) -> None:
        try:
            loaded.supported[kind] = await versions.supported(binary, cni_path)
        except (OSError, CniPluginError) as exc:
            log.warning("CNI plugin %s: VERSION failed: %s", binary, exc)

    async with asyncio.TaskGroup() as group:
        for kind, binary in loaded.binaries.items():
            group.create_task(ask(kind, binary))

    names: set[str] = set()
    for net in parsed:
        reason = _why_unusable(net, loaded, cni_path)
        if reason is None and net.name in names:
            reason = f"network name {net.name!r} already defined by an earlier file"
        if reason is not None:
            loaded.skipped[net.source.name] = reason
            continue
        names.add(net.name)
        loaded.networks.append(_settle_version(net, loaded))
    for name, reason in loaded.skipped.items():
        log.warning("CNI config %s skipped: %s", conf_dir / name, reason)
    return loaded


def _settle_version(net: NetworkConfList, loaded: LoadedNetworks) -> NetworkConfList:
    """With `cniVersions` (1.1), use the highest version every plugin supports."""
    if not net.cni_versions:
        return net
    common = [
        v for v in net.cni_versions if all(v in loaded.supported.get(kind, ()) for kind in net.plugin_types)
    ]
    common = [v for v in common if v in SUPPORTED_VERSIONS]
    if common:
        return net.with_version(max(common, key=version_key))
    return net


def _why_unusable(net: NetworkConfList, loaded: LoadedNetworks, cni_path: str) -> str | None:
    missing = [k for k in net.plugin_types if k not in loaded.binaries]
    if missing:
        return f"plugin binaries not found: {', '.join(missing)} (looked in {cni_path})"
    candidates = net.cni_versions or (net.cni_version,)
    for kind in net.plugin_types:
        supported = loaded.supported.get(kind)
        if supported is None:
            return f"plugin {kind} did not answer VERSION"
        if not any(v in supported for v in candidates):
            return f"plugin {kind} does not support cniVersion {net.cni_version} (supports {' '.join(supported)})"
    return None
