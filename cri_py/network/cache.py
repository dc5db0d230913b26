"""What was attached to each pod, kept on disk so DEL works after a daemon restart.

An entry is written before ADD starts (without a result) and completed after it; a crash in
between still leaves enough to run DEL. The network's configuration is stored with the
entry, so a changed or removed conf file does not stop the teardown.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cri_py.network.conf import ConfError, NetworkConfList, parse_conf

_KIND = "cri-py-cni-v1"
_POD_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class Attachment:
    pod_id: str
    network: NetworkConfList
    ifname: str
    netns: str
    netns_inode: int | None
    cni_args: list[tuple[str, str]]
    capability_args: dict[str, Any]
    result: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": _KIND,
            "podId": self.pod_id,
            "networkName": self.network.name,
            "cniVersion": self.network.cni_version,
            "configSource": str(self.network.source),
            "config": self.network.raw.decode(),
            "ifName": self.ifname,
            "netns": self.netns,
            "netnsInode": self.netns_inode,
            "cniArgs": [list(kv) for kv in self.cni_args],
            "capabilityArgs": self.capability_args,
            "result": self.result,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Attachment:
        if doc.get("kind") != _KIND:
            raise ValueError(f"unknown cache entry kind {doc.get('kind')!r}")
        source = Path(str(doc["configSource"]))
        network = parse_conf(source, str(doc["config"]).encode())
        network = network.with_version(str(doc.get("cniVersion") or network.cni_version))
        inode = doc.get("netnsInode")
        return cls(
            pod_id=str(doc["podId"]),
            network=network,
            ifname=str(doc["ifName"]),
            netns=str(doc.get("netns") or ""),
            netns_inode=inode if isinstance(inode, int) else None,
            cni_args=[(str(k), str(v)) for k, v in doc.get("cniArgs", [])],
            capability_args=dict(doc.get("capabilityArgs") or {}),
            result=doc.get("result"),
        )


class AttachmentCache:
    def __init__(self, cache_dir: Path) -> None:
        self.dir = cache_dir / "results"

    def _path(self, pod_id: str) -> Path:
        if not _POD_ID_RE.match(pod_id):
            raise ValueError(f"invalid pod id {pod_id!r}")
        return self.dir / f"{pod_id}.json"

    def save(self, attachment: Attachment) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self._path(attachment.pod_id)
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(attachment.to_dict(), out, separators=(",", ":"))
        os.replace(tmp, path)

    def load(self, pod_id: str) -> Attachment | None:
        try:
            doc = json.loads(self._path(pod_id).read_bytes())
        except FileNotFoundError:
            return None
        try:
            return Attachment.from_dict(doc)
        except (KeyError, TypeError, ValueError, ConfError) as exc:
            raise ValueError(f"corrupt CNI cache entry for {pod_id}: {exc}") from exc

    def delete(self, pod_id: str) -> None:
        try:
            self._path(pod_id).unlink()
        except FileNotFoundError:
            pass

    def pod_ids(self) -> list[str]:
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return sorted(n[: -len(".json")] for n in names if n.endswith(".json") and not n.startswith("."))
