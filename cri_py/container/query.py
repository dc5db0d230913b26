"""ContainerStatus and ListContainers: reading the committed container records.

kubelet lists every second, so the List answer is kept serialized until the store's
generation moves. Records are committed values: what is read here was written whole.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import signal
from collections.abc import Iterable, Mapping
from typing import Any

from cri_py.api import api_pb2
from cri_py.container.model import ContainerRecord
from cri_py.container.state import CRI_STATE, ContainerState
from cri_py.container.store import ContainerStore
from cri_py.errors import InvalidArgument


class ContainerQueries:
    def __init__(self, store: ContainerStore) -> None:
        self.store = store
        self._list_cache: tuple[tuple[int, bytes], bytes] | None = None

    def status(self, cid: str, verbose: bool = False) -> api_pb2.ContainerStatusResponse:
        if not cid:
            raise InvalidArgument("container id is required")
        rec = self.store.get(cid)
        status = container_status(rec)
        info: dict[str, str] = {}
        if verbose:
            spec: Any = None
            with contextlib.suppress(OSError, ValueError):
                spec = json.loads((rec.bundle_dir / "config.json").read_text())
            info["info"] = json.dumps(
                {
                    "sandboxID": rec.pod_id,
                    "pid": rec.pid,
                    "conmonPid": rec.conmon_pid,
                    "runtimeHandler": rec.runtime_handler,
                    "bundle": rec.bundle,
                    "runtimeSpec": spec,
                }
            )
        return api_pb2.ContainerStatusResponse(status=status, info=info)

    def status_response(self, cid: str, verbose: bool = False) -> bytes:
        """A serialized ContainerStatusResponse. Without verbose it is kept with the record
        (records are immutable: a change is a new record), so polling it costs no encoding."""
        if verbose:
            return bytes(self.status(cid, verbose).SerializeToString())
        if not cid:
            raise InvalidArgument("container id is required")
        rec = self.store.get(cid)
        cached: bytes | None = rec.__dict__.get("_status_response")
        if cached is None:
            cached = bytes(api_pb2.ContainerStatusResponse(status=container_status(rec)).SerializeToString())
            rec.__dict__["_status_response"] = cached
        return cached

    def status_fields_in_pod(self, pod_id: str) -> bytes:
        """statuses_in_pod as PodSandboxStatusResponse's serialized containers_statuses field
        (appended to the rest of the serialized answer), each kept with its record."""
        records = [r for r in self.store.in_pod(pod_id) if r.state != ContainerState.CREATING]
        records.sort(key=lambda r: r.created_at, reverse=True)
        parts = []
        for rec in records:
            cached: bytes | None = rec.__dict__.get("_status_field")
            if cached is None:
                status = container_status(rec)
                cached = bytes(
                    api_pb2.PodSandboxStatusResponse(containers_statuses=[status]).SerializeToString()
                )
                rec.__dict__["_status_field"] = cached
            parts.append(cached)
        return b"".join(parts)

    def statuses_in_pod(self, pod_id: str) -> builtins.list[api_pb2.ContainerStatus]:
        """The statuses of a pod's visible containers, newest first (PodSandboxStatus carries
        them: kubelet's evented PLEG reads them there instead of asking per container, and takes
        the first status of a name as that container's latest attempt)."""
        records = [r for r in self.store.in_pod(pod_id) if r.state != ContainerState.CREATING]
        return [container_status(r) for r in sorted(records, key=lambda r: r.created_at, reverse=True)]

    def list_response(self, flt: api_pb2.ContainerFilter | None) -> bytes:
        """The answer is kept until a record changes: kubelet lists every second."""
        key = (self.store.generation, flt.SerializeToString() if flt is not None else b"")
        cached = self._list_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        # kept serialized: the server passes bytes through, so a cached answer costs no encoding
        response = bytes(api_pb2.ListContainersResponse(containers=self.list(flt)).SerializeToString())
        self._list_cache = (key, response)
        return response

    def list(self, flt: api_pb2.ContainerFilter | None) -> builtins.list[api_pb2.Container]:
        out = []
        for rec in self.select(
            flt.id if flt else "", flt.pod_sandbox_id if flt else "", flt.label_selector if flt else {}
        ):
            if flt is not None and flt.HasField("state") and CRI_STATE[rec.state] != flt.state.state:
                continue
            cfg = rec.config()
            out.append(
                api_pb2.Container(
                    id=rec.id,
                    pod_sandbox_id=rec.pod_id,
                    metadata=cfg.metadata,
                    image=api_pb2.ImageSpec(
                        image=rec.image_name,
                        user_specified_image=cfg.image.user_specified_image or rec.image_name,
                    ),
                    image_ref=rec.image_ref,
                    image_id=rec.image_id,
                    state=CRI_STATE[rec.state],
                    created_at=rec.created_at,
                    labels=dict(cfg.labels),
                    annotations=dict(cfg.annotations),
                )
            )
        return out

    def select(self, cid: str, pod_id: str, labels: Mapping[str, str]) -> Iterable[ContainerRecord]:
        """Visible containers whose id and pod id start as given and that carry `labels`."""
        for rec in self.store.values():
            if rec.state == ContainerState.CREATING:
                continue
            if cid and not rec.id.startswith(cid):
                continue
            if pod_id and not rec.pod_id.startswith(pod_id):
                continue
            if labels:
                own = rec.config().labels
                if any(own.get(k) != v for k, v in labels.items()):
                    continue
            yield rec


def container_status(rec: ContainerRecord) -> api_pb2.ContainerStatus:
    """The CRI status of a committed record (also of one already removed: events carry it)."""
    cfg = rec.config()
    return api_pb2.ContainerStatus(
        id=rec.id,
        metadata=cfg.metadata,
        state=CRI_STATE[rec.state],
        created_at=rec.created_at,
        started_at=rec.started_at,
        finished_at=rec.finished_at,
        exit_code=rec.exit_code,
        image=api_pb2.ImageSpec(
            image=rec.image_name, user_specified_image=cfg.image.user_specified_image or rec.image_name
        ),
        image_ref=rec.image_ref,
        image_id=rec.image_id,
        reason=rec.reason,
        message=rec.message,
        labels=dict(cfg.labels),
        annotations=dict(cfg.annotations),
        mounts=list(cfg.mounts),
        log_path=rec.log_path,
        resources=api_pb2.ContainerResources(linux=rec.resources()),
        user=api_pb2.ContainerUser(
            linux=api_pb2.LinuxContainerUser(
                uid=rec.uid, gid=rec.gid, supplemental_groups=list(rec.supplemental_groups)
            )
        ),
        stop_signal=_signal_enum(rec.stop_signal),
    )


def _signal_enum(number: int) -> api_pb2.Signal | str:
    """The CRI's name for a signal number (the message takes enum names as they are)."""
    with contextlib.suppress(ValueError):
        name = signal.Signals(number).name
        api_pb2.Signal.Value(name)  # a signal the CRI names
        return name
    return api_pb2.RUNTIME_DEFAULT
