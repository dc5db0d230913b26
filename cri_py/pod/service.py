"""Pod sandboxes: RunPodSandbox, Stop, Remove, Status, List, and start-up recovery.

A pod is its pinned namespaces (net via the network layer, IPC and UTS pinned here), its
files (resolv.conf, hosts, hostname), a /dev/shm tmpfs and, only where something needs it,
an infra ("pause") process: only a pod sharing one PID namespace needs an init to hold it.
Everything else works without one, which saves a runtime call per pod and a process per
running pod. Under gVisor each container is its own sandbox in the pod's network namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import shutil
import socket
import time
from collections.abc import Awaitable, Iterable
from pathlib import Path
from typing import Any, Protocol

from cri_py.api import api_pb2
from cri_py.config.model import Config
from cri_py.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from cri_py.oci import exits
from cri_py.oci.cgroups import hugetlb_available, own_oom_score_adj
from cri_py.oci.registry import RuntimeSet
from cri_py.oci.runtime import OciRuntime
from cri_py.oci.security import host_capabilities
from cri_py.oci.spec import HostFacts, PodContext, infra_spec
from cri_py.pod import files, namespaces
from cri_py.pod.inflight import CreateCoalescer
from cri_py.pod.model import SandboxRecord, name_key
from cri_py.pod.state import SandboxState, check_transition
from cri_py.store import Database, RecordTable
from cri_py.store.codec import encode_message

log = logging.getLogger(__name__)

# budget for unwinding and tearing down, independent of the request's own deadline
CLEANUP_TIMEOUT = 60.0


class PodContainers(Protocol):
    """What the pod service needs from the container service."""

    async def stop_pod_containers(self, pod_id: str) -> None: ...

    async def remove_pod_containers(self, pod_id: str) -> None: ...


class PodService:
    def __init__(
        self,
        config: Config,
        db: Database,
        runtimes: RuntimeSet,
        network: Any = None,
    ) -> None:
        self.config = config
        self.runtimes = runtimes
        self.network = network
        self.containers: PodContainers | None = None
        self._pods: RecordTable[SandboxRecord] = RecordTable(db, "pods", SandboxRecord.from_dict)
        self._db = db
        self._names: dict[str, str] = {r.name_key: r.id for r in self._pods.values()}
        self._inflight = CreateCoalescer()
        self._locks: dict[str, asyncio.Lock] = {}
        self.pods_dir = config.run_dir / "pods"
        self.ns_dir = config.run_dir / "nsfs"
        self.pause_rootfs = config.root / "pause-rootfs"
        self.host = HostFacts(
            config.cgroup_driver, own_oom_score_adj(), host_capabilities(), hugetlb=hugetlb_available()
        )
        self._tasks: set[asyncio.Task[Any]] = set()
        self._generation = 0
        self._list_cache: tuple[tuple[int, bytes], bytes] | None = None

    # ---- life cycle --------------------------------------------------------------------

    async def recover(self) -> None:
        """Unwind pods whose creation a previous run did not finish; refresh the others."""
        await asyncio.to_thread(self._prepare)
        reaper = asyncio.create_task(exits.reap_orphans(), name="reap-orphans")
        self._tasks.add(reaper)
        for pod in list(self._pods.values()):
            if pod.state == SandboxState.CREATING:
                log.info("pod %s: unwinding an unfinished RunPodSandbox", pod.id)
                await self._unwind(pod)
            elif pod.state == SandboxState.READY and not _namespaces_survived(pod):
                # a reboot took the pins (run_dir is a tmpfs): the pod is gone in all but name
                log.info("pod %s: its namespaces are gone, NOTREADY", pod.id)
                self._set_state(pod, SandboxState.NOTREADY)
            elif pod.state == SandboxState.READY and pod.infra:
                if exits.process_alive(pod.infra_pid):
                    self._watch_infra(pod)
                else:
                    self._set_state(pod, SandboxState.NOTREADY)

    def _prepare(self) -> None:
        exits.become_child_subreaper()
        self.pods_dir.mkdir(parents=True, exist_ok=True)
        # no shared bind mount here: it would outlive the daemon; runc's mount namespaces
        # drop their copies of these pins when they pivot into the container's root
        self.ns_dir.mkdir(parents=True, exist_ok=True)
        root = self.pause_rootfs
        for d in ("proc", "dev", "sys", "etc"):
            (root / d).mkdir(parents=True, exist_ok=True)
        # every mount point exists beforehand: pods share this rootfs and start concurrently
        for f in ("pause", "etc/hosts", "etc/resolv.conf", "etc/hostname"):
            (root / f).touch(exist_ok=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    # ---- records: every change bumps the generation the List cache is keyed by ---------

    def _save(self, pod: SandboxRecord) -> None:
        self._pods.put(pod)
        self._generation += 1

    def _forget(self, pod_id: str) -> None:
        self._pods.delete(pod_id)
        self._generation += 1

    # ---- lookups -----------------------------------------------------------------------

    def get(self, pod_id: str) -> SandboxRecord:
        return self._pods.resolve(pod_id, "pod sandbox")

    def find(self, pod_id: str) -> SandboxRecord | None:
        try:
            return self._pods.resolve(pod_id, "pod sandbox")
        except NotFound:
            return None

    def ids(self) -> set[str]:
        return {p.id for p in self._pods.values()}

    def pod_ids(self) -> set[str]:
        return self.ids()

    def all(self) -> list[SandboxRecord]:
        return list(self._pods.values())

    def pod_netns(self, pod_id: str) -> Path | None:
        """The pod's network namespace file (None = host network); for port-forward."""
        pod = self.get(pod_id)
        return Path(pod.netns_path) if pod.netns_path else None

    def runtime_of(self, pod: SandboxRecord) -> OciRuntime:
        return self.runtimes.get(pod.runtime_handler)

    def context(self, pod: SandboxRecord) -> PodContext:
        cfg = pod.config()
        sc = cfg.linux.security_context
        d = pod.dir
        return PodContext(
            id=pod.id,
            hostname=pod.hostname,
            cgroup_parent=pod.cgroup_parent,
            netns_path=pod.netns_path or None,
            ipc_path=pod.ipc_path or None,
            uts_path=pod.uts_path or None,
            pid_path=pod.pid_ns_path,
            host_pid=pod.host_pid,
            resolv_conf=d / "resolv.conf",
            hosts=d / "hosts",
            hostname_file=d / "hostname",
            shm_path=Path(pod.shm_path) if pod.shm_path else None,
            sysctls=dict(cfg.linux.sysctls),
            privileged=sc.privileged,
            sandboxed_runtime=self.runtime_of(pod).is_sandboxed,
        )

    def is_ready(self, pod: SandboxRecord) -> bool:
        if pod.state != SandboxState.READY:
            return False
        return not pod.infra or exits.process_alive(pod.infra_pid)

    # ---- RunPodSandbox -----------------------------------------------------------------

    async def run(self, config: api_pb2.PodSandboxConfig, runtime_handler: str) -> str:
        md = config.metadata
        if not md.name or not md.namespace or not md.uid:
            raise InvalidArgument("pod sandbox metadata needs name, namespace and uid")
        ns_options = config.linux.security_context.namespace_options
        # an absent message reads as mode POD (0): only an explicit request counts
        if ns_options.HasField("userns_options") and ns_options.userns_options.mode == api_pb2.POD:
            # Status advertises no user namespace support; say so rather than run unmapped
            raise InvalidArgument("user namespaces (userns_options mode POD) are not supported")
        runtime = self.runtimes.get(runtime_handler)
        key = name_key(md.name, md.namespace, md.uid, md.attempt)
        claimed = self._inflight.claim(key)
        if claimed is not None and claimed in self.ids():
            return claimed
        if not self._inflight.running(key) and key in self._names:
            raise AlreadyExists(f"pod sandbox {key!r} exists already as {self._names[key]}")
        return await self._inflight.run(key, lambda: self._create(config, runtime_handler, runtime))

    async def _create(self, config: api_pb2.PodSandboxConfig, handler: str, runtime: OciRuntime) -> str:
        md = config.metadata
        pod_id = secrets.token_hex(32)
        linux = config.linux
        ns_opts = linux.security_context.namespace_options
        host_net = ns_opts.network == api_pb2.NODE
        host_ipc = ns_opts.ipc == api_pb2.NODE
        host_pid = ns_opts.pid == api_pb2.NODE
        shares_pid = ns_opts.pid == api_pb2.POD
        hostname = config.hostname or (socket.gethostname() if host_net else md.name)
        pod_dir = self.pods_dir / pod_id
        pod = SandboxRecord(
            id=pod_id,
            name=md.name,
            namespace=md.namespace,
            uid=md.uid,
            attempt=md.attempt,
            state=SandboxState.CREATING,
            created_at=time.time_ns(),
            runtime_handler=handler or self.config.default_runtime,
            config_b64=encode_message(config),
            pod_dir=str(pod_dir),
            cgroup_parent=linux.cgroup_parent or self.config.cgroup_parent,
            hostname=hostname[:63],
            ipc_path="" if host_ipc else str(self.ns_dir / f"{pod_id}-ipc"),
            uts_path="" if host_net else str(self.ns_dir / f"{pod_id}-uts"),
            shm_path="" if host_ipc else str(pod_dir / "shm"),
            host_pid=host_pid,
            # a sandboxed runtime gives each container its own kernel: nothing to share
            infra=shares_pid and not host_pid and not runtime.is_sandboxed,
        )
        # the name is taken before anything exists, so a crash leaves a record to unwind
        self._save(pod)
        self._names[pod.name_key] = pod_id
        try:
            # the pod's files and IPC/UTS pins, and its network namespace, side by side
            prepared: list[Awaitable[Any]] = [
                asyncio.to_thread(self._make_files_and_namespaces, pod, config, host_net)
            ]
            if not host_net:
                from cri_py.network.netns import create_pinned_netns, pinned_netns_path

                # recorded first: an unwind after a crash must find the pin
                pod.netns_path = str(pinned_netns_path(self.config.run_dir, pod_id))
                self._save(pod)
                prepared.append(asyncio.to_thread(create_pinned_netns, self.config.run_dir, pod_id))
            await _all_settled(prepared)
            # CNI ADD and the pause process do not depend on each other
            work = []
            if not host_net and self.network is not None:
                work.append(self._setup_network(pod, config))
            if pod.infra:
                work.append(self._start_infra(pod, runtime))
            if work:
                await _all_or_cancel(work)
            if pod.ip:
                await asyncio.to_thread(
                    files.write_file, pod.dir / "hosts", files.hosts_text(pod.hostname, pod.ip, host_net)
                )
            pod.state = SandboxState.READY
            self._save(pod)
        except BaseException as exc:
            log.warning("pod %s: RunPodSandbox failed, unwinding: %s", pod_id, exc)
            await asyncio.shield(self._unwind(pod))
            raise
        log.info("pod %s ready (%s/%s, runtime %s)", pod_id, md.namespace, md.name, pod.runtime_handler)
        return pod_id

    def _make_files_and_namespaces(
        self, pod: SandboxRecord, config: api_pb2.PodSandboxConfig, host_net: bool
    ) -> None:
        d = pod.dir
        d.mkdir(parents=True, exist_ok=True)
        dns = config.dns_config if config.HasField("dns_config") else None
        files.write_file(d / "resolv.conf", files.resolv_conf_text(dns))
        files.write_file(d / "hosts", files.hosts_text(pod.hostname, "", host_net))
        files.write_file(d / "hostname", pod.hostname + "\n")
        if pod.shm_path:
            namespaces.mount_shm(Path(pod.shm_path))
        namespaces.pin_ipc_uts(
            Path(pod.ipc_path) if pod.ipc_path else None,
            Path(pod.uts_path) if pod.uts_path else None,
            pod.hostname,
        )

    async def _setup_network(self, pod: SandboxRecord, config: api_pb2.PodSandboxConfig) -> None:
        from cri_py.network.manager import PodNetworkRequest

        result = await self.network.setup(
            PodNetworkRequest(
                pod_id=pod.id,
                name=pod.name,
                namespace=pod.namespace,
                uid=pod.uid,
                netns=Path(pod.netns_path),
                port_mappings=list(config.port_mappings),
                annotations=dict(config.annotations),
                dns=config.dns_config if config.HasField("dns_config") else None,
            )
        )
        pod.ip = result.ip
        pod.additional_ips = list(result.additional_ips)
        pod.network_ready = True

    def infra_bundle(self, pod: SandboxRecord) -> Path:
        return pod.dir / "infra"

    async def _start_infra(self, pod: SandboxRecord, runtime: OciRuntime) -> None:
        bundle = self.infra_bundle(pod)
        spec = infra_spec(
            pod=self.context(pod), rootfs=self.pause_rootfs, catatonit=self.config.catatonit, host=self.host
        )

        def write() -> None:
            bundle.mkdir(parents=True, exist_ok=True)
            (bundle / "config.json").write_text(json.dumps(spec))

        await asyncio.to_thread(write)
        pod.infra_pid = await runtime.run_detached(pod.id, bundle)
        self._save(pod)
        self._watch_infra(pod)

    def _watch_infra(self, pod: SandboxRecord) -> None:
        """A pause process that dies makes its pod NOTREADY (kubelet then re-creates it)."""

        async def watch(pod_id: str, pid: int) -> None:
            await exits.wait_pid_exit(pid)
            current = self._pods.get(pod_id)
            if current is not None and current.infra_pid == pid and current.state == SandboxState.READY:
                log.warning("pod %s: its infra process %d exited", pod_id, pid)
                self._set_state(current, SandboxState.NOTREADY)
            else:
                # still a change the List cache must see (is_ready looks at the process)
                self._generation += 1

        task = asyncio.create_task(watch(pod.id, pod.infra_pid), name=f"infra-{pod.id[:12]}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- StopPodSandbox ----------------------------------------------------------------

    def _lock(self, pod_id: str) -> asyncio.Lock:
        return self._locks.setdefault(pod_id, asyncio.Lock())

    async def stop(self, pod_id: str) -> None:
        if not pod_id:
            raise InvalidArgument("pod sandbox id is required")
        pod = self.find(pod_id)
        if pod is None:
            return  # kubelet's idempotence contract: stopping what is gone succeeds
        async with self._lock(pod.id):
            await asyncio.wait_for(asyncio.shield(self._stop(pod)), CLEANUP_TIMEOUT)

    async def _stop(self, pod: SandboxRecord) -> None:
        if self.containers is not None:
            await self.containers.stop_pod_containers(pod.id)
        await self._stop_infra(pod)
        if pod.netns_path and self.network is not None and pod.network_ready:
            await self.network.teardown(pod.id, Path(pod.netns_path))
            pod.network_ready = False
        if pod.state != SandboxState.CREATING:
            check_transition(pod.state, SandboxState.NOTREADY)
        pod.state = SandboxState.NOTREADY
        self._save(pod)

    async def _stop_infra(self, pod: SandboxRecord) -> None:
        if not pod.infra:
            return
        runtime = self.runtime_of(pod)
        if pod.infra_pid and exits.process_alive(pod.infra_pid):
            with contextlib.suppress(NotFound, Exception):
                await runtime.kill(pod.id, 9)
            await exits.wait_pid_exit(pod.infra_pid)
        await runtime.delete(pod.id, force=True)

    # ---- RemovePodSandbox --------------------------------------------------------------

    async def remove(self, pod_id: str) -> None:
        if not pod_id:
            raise InvalidArgument("pod sandbox id is required")
        pod = self.find(pod_id)
        if pod is None:
            return
        async with self._lock(pod.id):
            if self._pods.get(pod.id) is None:
                return
            await asyncio.wait_for(asyncio.shield(self._remove(pod)), CLEANUP_TIMEOUT)

    async def _remove(self, pod: SandboxRecord) -> None:
        if self.containers is not None:
            await self.containers.remove_pod_containers(pod.id)
        await self._unwind(pod)

    async def _unwind(self, pod: SandboxRecord) -> None:
        """Undo everything a pod may have (also a half-created one); idempotent."""
        try:
            await self._stop_infra(pod)
        except Exception as exc:  # noqa: BLE001 - keep unwinding the rest
            log.warning("pod %s: infra cleanup: %s", pod.id, exc)
        if pod.netns_path and self.network is not None:
            try:
                await self.network.teardown(pod.id, Path(pod.netns_path))
            except Exception as exc:  # noqa: BLE001
                log.warning("pod %s: network teardown: %s", pod.id, exc)
        await asyncio.to_thread(self._remove_files, pod)
        self._forget(pod.id)
        if self._names.get(pod.name_key) == pod.id:
            del self._names[pod.name_key]
        self._inflight.forget(pod.id)
        self._locks.pop(pod.id, None)

    def _remove_files(self, pod: SandboxRecord) -> None:
        if pod.netns_path:
            from cri_py.network.netns import remove_pinned_netns

            remove_pinned_netns(Path(pod.netns_path))
        namespaces.unpin(Path(pod.ipc_path) if pod.ipc_path else None)
        namespaces.unpin(Path(pod.uts_path) if pod.uts_path else None)
        if pod.shm_path:
            namespaces.unmount_shm(Path(pod.shm_path))
        shutil.rmtree(pod.dir, ignore_errors=True)

    def _set_state(self, pod: SandboxRecord, state: SandboxState) -> None:
        check_transition(pod.state, state)
        pod.state = state
        self._save(pod)

    # ---- UpdatePodSandboxResources -----------------------------------------------------

    def update_resources(
        self,
        pod_id: str,
        overhead: api_pb2.LinuxContainerResources | None,
        resources: api_pb2.LinuxContainerResources | None,
    ) -> None:
        """kubelet resized the pod cgroup itself; we keep the config in step (best effort)."""
        if not pod_id:
            raise InvalidArgument("pod sandbox id is required")
        pod = self.get(pod_id)
        cfg = api_pb2.PodSandboxConfig()
        cfg.CopyFrom(pod.config())  # the cached message stays untouched
        if overhead is not None:
            cfg.linux.overhead.CopyFrom(overhead)
        if resources is not None:
            cfg.linux.resources.CopyFrom(resources)
        pod.config_b64 = encode_message(cfg)
        self._save(pod)

    # ---- Status / List -----------------------------------------------------------------

    def require_ready(self, pod_id: str) -> SandboxRecord:
        pod = self.get(pod_id)
        if not self.is_ready(pod):
            raise FailedPrecondition(f"pod sandbox {pod.id} is not ready")
        return pod

    async def checked_status(self, pod_id: str, verbose: bool = False) -> api_pb2.PodSandboxStatusResponse:
        """PodSandboxStatus with the pod's addresses checked against its netns: an address the
        CNI result names but the namespace no longer has is not reported."""
        response = self.status(pod_id, verbose)
        pod = self.get(pod_id)
        if self.network is None or not pod.network_ready or response.status.state != api_pb2.SANDBOX_READY:
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

    def status(self, pod_id: str, verbose: bool = False) -> api_pb2.PodSandboxStatusResponse:
        if not pod_id:
            raise InvalidArgument("pod sandbox id is required")
        pod = self.get(pod_id)
        cfg = pod.config()
        ns = cfg.linux.security_context.namespace_options
        status = api_pb2.PodSandboxStatus(
            id=pod.id,
            metadata=cfg.metadata,
            state=self._cri_state(pod),
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
        info: dict[str, str] = {}
        if verbose:
            data = pod.to_dict()
            data.pop("config_b64", None)
            data["image"] = self.config.pause_image
            info["info"] = json.dumps(data)
        return api_pb2.PodSandboxStatusResponse(status=status, info=info, timestamp=time.time_ns())

    def _cri_state(self, pod: SandboxRecord) -> api_pb2.PodSandboxState:
        return api_pb2.SANDBOX_READY if self.is_ready(pod) else api_pb2.SANDBOX_NOTREADY

    def list_response(self, flt: api_pb2.PodSandboxFilter | None) -> bytes:
        """The answer is kept until a record changes (an infra exit is one: it is watched)."""
        key = (self._generation, flt.SerializeToString() if flt is not None else b"")
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
        for pod in self._pods.values():
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


def _namespaces_survived(pod: SandboxRecord) -> bool:
    from cri_py.network.netns import is_pinned_netns

    return not pod.netns_path or is_pinned_netns(Path(pod.netns_path))


async def _all_settled(work: list[Awaitable[Any]]) -> None:
    """Wait for every piece (threads cannot be cancelled), then raise the first failure."""
    results = await asyncio.gather(*work, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def _all_or_cancel(work: list[Any]) -> None:
    """Run concurrently; the first failure cancels the rest and is raised after they end."""
    tasks = [asyncio.ensure_future(w) for w in work]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
