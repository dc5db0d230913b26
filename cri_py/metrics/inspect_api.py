"""CRI-O's container inspect API, so that kubelet's cAdvisor knows cri-py's containers.

kubelet's built-in cAdvisor serves /metrics/cadvisor (the container_* series Prometheus
scrapes) and labels a container with its pod, namespace and name only when one of its runtime
handlers claims the cgroup: containerd's (over containerd's own gRPC API) or CRI-O's. The
CRI-O handler is a small HTTP contract over a unix socket at a fixed path,
/var/run/crio/crio.sock: GET /info (storage driver and root) and GET /containers/<id> (labels,
annotations, image, init pid, rootfs, log path, IPs), for cgroups whose name starts with
`crio` and holds the 64-hex id. With `inspect_socket` set, the daemon answers that contract
there and names its containers' cgroups `crio-<id>.scope`, which kubelet's summary API can also
match to the CRI's containers (oci/cgroups.py); without, cAdvisor sees cri-py's cgroups as
anonymous ones: /metrics/cadvisor has no pod, namespace or container labels, and kubelet's
summary has the CRI's figures alone.

A pod is answered for too (as `POD`, CRI-O's infra container), which cAdvisor finds as the
cgroup named for the sandbox id: its infra process's, or the empty one a pod without an infra
process gets in its place (SandboxRecord.stats_cgroup). cAdvisor reads the pod's network
counters through the pid answered: the infra process, else (as CRI-O does for a pod whose
infra container it drops) a running container of the pod, which is in the pod's network
namespace too; 0 while there is none, and cAdvisor asks again.
Only GET is served; everything is read from the committed records, nothing changes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

from cri_py.container.model import ContainerRecord
from cri_py.container.state import ContainerState
from cri_py.container.store import ContainerStore
from cri_py.metrics import http
from cri_py.pod.model import SandboxRecord
from cri_py.pod.store import SandboxStore
from cri_py.storage.rootfs import RootfsManager

log = logging.getLogger("cri_py.metrics")

# labels kubelet puts on every container; cAdvisor names metrics after them
POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
POD_UID = "io.kubernetes.pod.uid"
CONTAINER_NAME = "io.kubernetes.container.name"


class InspectAPI:
    def __init__(
        self,
        path: Path,
        containers: ContainerStore,
        sandboxes: SandboxStore,
        rootfs: RootfsManager,
    ) -> None:
        self.path = path
        self.containers = containers
        self.sandboxes = sandboxes
        self.rootfs = rootfs
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._server = await asyncio.start_unix_server(self._serve, str(self.path), limit=http.HEAD_LIMIT)
        os.chmod(self.path, 0o660)
        log.info("serving the container inspect API for cAdvisor", extra={"socket": str(self.path)})

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
            self.path.unlink(missing_ok=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await http.serve_one(reader, writer, self._answer)

    async def _answer(self, writer: asyncio.StreamWriter, method: str, path: str) -> None:
        if method not in ("GET", "HEAD"):
            await http.reply(writer, 405, b"method not allowed\n", extra=b"Allow: GET, HEAD\r\n")
            return
        document = self.document(path)
        if document is None:
            await http.reply(writer, 404, b"not found\n")
            return
        body = json.dumps(document).encode()
        await http.reply(writer, 200, body if method == "GET" else b"", "application/json", len(body))

    def document(self, path: str) -> dict[str, Any] | None:
        """The JSON answer for a request path; None = 404."""
        if path == "/info":
            return self.info()
        prefix = "/containers/"
        if path.startswith(prefix) and "/" not in path[len(prefix) :]:
            return self.container(path[len(prefix) :])
        return None

    def info(self) -> dict[str, Any]:
        return {
            "storage_driver": self.rootfs.driver,
            "storage_root": str(self.rootfs.mountpoint()),
            "storage_image": "",
        }

    def container(self, cid: str) -> dict[str, Any] | None:
        """A container (or a pod's infra process) by its full id, as CRI-O describes one."""
        if not cid:
            return None
        rec = self.containers.current(cid)
        if rec is not None:
            return container_document(rec, self.sandboxes.current(rec.pod_id), self.rootfs)
        pod = self.sandboxes.current(cid)
        if pod is not None and (pod.infra or pod.stats_cgroup):
            return infra_document(pod, pod.infra_pid or self._network_pid(pod.id))
        return None

    def _network_pid(self, pod_id: str) -> int:
        """The pid of a running container of the pod (the longest running first), 0 = none."""
        running = [r for r in self.containers.in_pod(pod_id) if r.state == ContainerState.RUNNING and r.pid]
        return min(running, key=lambda r: r.started_at).pid if running else 0


def _ips(pod: SandboxRecord | None) -> tuple[str, list[str]]:
    if pod is None or not pod.ip:
        return "", []
    return pod.ip, [pod.ip, *pod.additional_ips]


def container_document(
    rec: ContainerRecord, pod: SandboxRecord | None, rootfs: RootfsManager
) -> dict[str, Any]:
    cfg = rec.config()
    labels = dict(cfg.labels)
    ip, ips = _ips(pod)
    return {
        "name": _name(labels.get(CONTAINER_NAME, rec.name), labels, rec.attempt),
        "pid": rec.pid,
        "image": rec.image_name,
        "created_time": rec.created_at,
        "labels": labels,
        "annotations": dict(cfg.annotations),
        "log_path": rec.log_path,
        "root": str(rootfs.rootfs_path(rec.id)),
        "ip_address": ip,
        "ip_addresses": ips,
    }


def infra_document(pod: SandboxRecord, pid: int) -> dict[str, Any]:
    cfg = pod.config()
    labels = {
        **dict(cfg.labels),
        POD_NAME: pod.name,
        POD_NAMESPACE: pod.namespace,
        POD_UID: pod.uid,
        CONTAINER_NAME: "POD",
    }
    ip, ips = _ips(pod)
    return {
        "name": _name("POD", labels, pod.attempt),
        "pid": pid,
        "image": "",
        "created_time": pod.created_at,
        "labels": labels,
        "annotations": dict(cfg.annotations),
        "log_path": "",
        "root": "",
        "ip_address": ip,
        "ip_addresses": ips,
    }


def _name(container: str, labels: dict[str, str], attempt: int) -> str:
    """The Docker-style name CRI-O gives (k8s_<container>_<pod>_<namespace>_<uid>_<attempt>),
    cAdvisor's alias for the container."""
    parts = [container, labels.get(POD_NAME, ""), labels.get(POD_NAMESPACE, ""), labels.get(POD_UID, "")]
    return "k8s_" + "_".join(parts) + f"_{attempt}"
