"""Shared bits of the play unit tests: a fixed node and manifest loading with defaults."""

from __future__ import annotations

from typing import Any

import yaml

from cri_py.play.defaults import apply_defaults
from cri_py.play.manifest import load_documents
from cri_py.play.node import NodeInfo
from cri_py.play.translate import PlayContext

NODE = NodeInfo(
    name="node1",
    cpus=4,
    memory_bytes=8 * 2**30,
    hugepage_sizes=("2MB", "1GB"),
    swap_controller=True,
    resolv_conf="nameserver 192.0.2.53\nnameserver 192.0.2.54\nsearch example.org corp.example.org.\noptions ndots:2 edns0\n",
    etc_hosts="127.0.0.1\tlocalhost\n",
)
CTX = PlayContext(
    node=NODE, root_dir="/var/lib/play", pod_logs_dir="/var/log/pods", seen="2026-01-02T03:04:05Z"
)
UID = "0123456789abcdef0123456789abcdef"


def load_pod(text: str, uid: str = UID) -> Any:
    doc = yaml.safe_load(text)
    doc.setdefault("metadata", {}).setdefault("uid", uid)
    pod = load_documents(yaml.safe_dump(doc), "/m.yaml", NODE.name)[0].pod
    apply_defaults(pod)
    return pod
