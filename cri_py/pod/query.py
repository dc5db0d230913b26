"""PodSandboxStatus and ListPodSandbox: reading the committed sandbox records.

kubelet lists every second, so the List answer is kept serialized until the store's
generation moves (an infra exit is a transition too: it is watched).
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Iterable

from cri_py.api import api_pb2
from cri_py.config.model import Config
from cri_py.errors import InvalidArgument
from cri_py.network.manager import NetworkManager
from cri_py.pod.model import SandboxRecord
from cri_py.pod.state import SandboxState
from cri_py.pod.store import SandboxStore


class PodQueries:
    def __init__(self, config: Config, store: SandboxStore, network: NetworkManager) -> None:
        self.config = config
        self.store = store
        self.network = network
        self._list_cache: tuple[tuple[int, bytes], bytes] | None = None

    async def checked_status(self, pod_id: str, verbose: bool = False) -> api_pb2.PodSandboxStatusResponse:
        """PodSandboxStatus with the pod's addresses checked against its netns: an address the
        CNI result names but the namespace no longer has is not reported."""
        response = self.status(pod_id, verbose)
        pod = self.store.get(pod_id)
        if not pod.network_ready or response.status.state != api_pb2.SANDBOX_READY:
            return response
        checked = await self.network.verified_pod_ips(pod.id)
        network = response.status.network
        del network.additional_ips[:]
        if checked is None:
            network.ip = ""
        else:
            network.ip = checked.ip
            network.additional_ips.extend(api_pb2.PodIP(ip=ip) for ip in checked.additional_ips)
        return response

    async def status_response(self, pod_id: str, verbose: bool = False) -> bytes:
        """checked_status serialized, without its timestamp. Without verbose it is kept with the
        record for its readiness and checked addresses, so polling costs no encoding."""
        if verbose:
            full = await self.checked_status(pod_id, verbose)
            full.ClearField("timestamp")
            return bytes(full.SerializeToString())
        if not pod_id:
            raise InvalidArgument("pod sandbox id is required")
        pod = self.store.get(pod_id)
        ready = self.store.is_ready(pod)
        ips: tuple[str, ...] | None = None
        if pod.network_ready and ready:
            checked = await self.network.verified_pod_ips(pod.id)
            ips = () if checked is None else (checked.ip, *checked.additional_ips)
        key = (ready, ips)
        cached: tuple[object, bytes] | None = pod.__dict__.get("_status_response")
        if cached is not None and cached[0] == key:
            return cached[1]
        status = sandbox_status(pod, ready)
        if ips is not None:
            del status.network.additional_ips[:]
            status.network.ip = ips[0] if ips else ""
            status.network.additional_ips.extend(api_pb2.PodIP(ip=ip) for ip in ips[1:])
        encoded = bytes(api_pb2.PodSandboxStatusResponse(status=status).SerializeToString())
        pod.__dict__["_status_response"] = (key, encoded)
        return encoded

    def status(self, pod_id: str, verbose: bool = False) -> api_pb2.PodSandboxStatusResponse:
        if not pod_id:
            raise InvalidArgument("pod sandbox id is required")
        pod = self.store.get(pod_id)
        status = sandbox_status(pod, self.store.is_ready(pod))
        info: dict[str, str] = {}
        if verbose:
            data = pod.to_dict()
            data.pop("config_b64", None)
            data["image"] = self.config.pause_image
            info["info"] = json.dumps(data)
        return api_pb2.PodSandboxStatusResponse(status=status, info=info, timestamp=time.time_ns())

    def _cri_state(self, pod: SandboxRecord) -> api_pb2.PodSandboxState:
        return api_pb2.SANDBOX_READY if self.store.is_ready(pod) else api_pb2.SANDBOX_NOTREADY

    def list_response(self, flt: api_pb2.PodSandboxFilter | None) -> bytes:
        """The answer is kept until a record changes."""
        key = (self.store.generation, flt.SerializeToString() if flt is not None else b"")
        cached = self._list_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        # kept serialized: the server passes bytes through, so a cached answer costs no encoding
        response = bytes(api_pb2.ListPodSandboxResponse(items=self.list(flt)).SerializeToString())
        self._list_cache = (key, response)
        return response

    def list(self, flt: api_pb2.PodSandboxFilter | None) -> list[api_pb2.PodSandbox]:
        out = []
        for pod in self._select(flt):
            cfg = pod.config()
            out.append(
                api_pb2.PodSandbox(
                    id=pod.id,
                    metadata=cfg.metadata,
                    state=self._cri_state(pod),
                    created_at=pod.created_at,
                    labels=dict(cfg.labels),
                    annotations=dict(cfg.annotations),
                    runtime_handler=pod.runtime_handler,
                )
            )
        return out

    def _select(self, flt: api_pb2.PodSandboxFilter | None) -> Iterable[SandboxRecord]:
        for pod in self.store.values():
            if pod.state == SandboxState.CREATING:
                continue
            if flt is not None:
                if flt.id and not pod.id.startswith(flt.id):
                    continue
                if flt.HasField("state") and self._cri_state(pod) != flt.state.state:
                    continue
                if flt.label_selector:
                    labels = pod.config().labels
                    if any(labels.get(k) != v for k, v in flt.label_selector.items()):
                        continue
            yield pod

    def stats_candidates(self, flt: api_pb2.PodSandboxStatsFilter) -> builtins.list[SandboxRecord]:
        """The ready pods ListPodSandboxStats reports on."""
        selected = []
        for pod in self.store.values():
            if flt.id and not pod.id.startswith(flt.id):
                continue
            if flt.label_selector:
                labels = pod.config().labels
                if any(labels.get(k) != v for k, v in flt.label_selector.items()):
                    continue
            if self.store.is_ready(pod):
                selected.append(pod)
        return selected


def sandbox_status(pod: SandboxRecord, ready: bool) -> api_pb2.PodSandboxStatus:
    """The CRI status of a committed record (also of one already removed: events carry it)."""
    cfg = pod.config()
    ns = cfg.linux.security_context.namespace_options
    return api_pb2.PodSandboxStatus(
        id=pod.id,
        metadata=cfg.metadata,
        state=api_pb2.SANDBOX_READY if ready else api_pb2.SANDBOX_NOTREADY,
        created_at=pod.created_at,
        network=api_pb2.PodSandboxNetworkStatus(
            ip=pod.ip, additional_ips=[api_pb2.PodIP(ip=ip) for ip in pod.additional_ips]
        ),
        linux=api_pb2.LinuxPodSandboxStatus(
            namespaces=api_pb2.Namespace(
                options=api_pb2.NamespaceOption(
                    network=ns.network, pid=ns.pid, ipc=ns.ipc, target_id=ns.target_id
                )
            )
        ),
        labels=dict(cfg.labels),
        annotations=dict(cfg.annotations),
        runtime_handler=pod.runtime_handler,
    )
