"""Pod sandboxes: RunPodSandbox, StopPodSandbox, RemovePodSandbox, and start-up recovery.

A pod is its pinned namespaces (net via the network layer, IPC and UTS pinned here), its
files (resolv.conf, hosts, hostname), a /dev/shm tmpfs and, only where something needs it,
an infra ("pause") process: only a pod sharing one PID namespace needs an init to hold it.
Everything else works without one, which saves a runtime call per pod and a process per
running pod. A pod of a sandboxed runtime (gVisor, a VM) always has one: it starts the
sandbox that every container of the pod joins, and whose namespaces are the pod's.

Every state change goes through `SandboxStore.transition`. One pod's Run, Stop and Remove
take turns on its lock; Stop and Remove run as owned tasks with their own time budget, and a
retry while one runs waits for the same task (no second CNI DEL beside the first).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import shutil
import socket
import stat
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Protocol

from cri_py import failpoints
from cri_py.api import api_pb2
from cri_py.config.model import Config
from cri_py.errors import AlreadyExists, Internal, InvalidArgument
from cri_py.network.manager import NetworkManager, PodNetworkResult
from cri_py.oci import exits
from cri_py.oci.cgroups import (
    CADVISOR_PREFIX,
    cgroup_has_processes,
    cgroup_relpath,
    container_cgroups_path,
    make_empty_cgroup,
    remove_cgroup,
)
from cri_py.oci.interface import ContainerRuntime
from cri_py.oci.registry import RuntimeSet
from cri_py.oci.spec import HostFacts, infra_spec
from cri_py.pod import files, shm, userns
from cri_py.pod.context import pod_context
from cri_py.pod.inflight import CreateCoalescer
from cri_py.pod.model import SandboxRecord, name_key
from cri_py.pod.pinner import ForkPinner, IdMapping, NamespacePinner, PinRequest, UserNamespace
from cri_py.pod.state import SandboxState
from cri_py.pod.store import SandboxStore
from cri_py.storage import idmap
from cri_py.store.codec import encode_message
from cri_py.tasks import KeyedLocks, SingleFlight, TaskOwner, within

log = logging.getLogger(__name__)

# the host ids of the throwaway user namespace that tells whether pods can have their own
PROBE_HOST_ID = 1 << 30
PROBE_PREFIX = "probe-"

# budget for unwinding and tearing down, independent of the request's own deadline
CLEANUP_TIMEOUT = 60.0
# how long a killed infra process may take to exit before `delete --force` takes over
INFRA_EXIT_TIMEOUT = 10.0


class PodContainers(Protocol):
    """What the pod service needs from the container service."""

    async def stop_pod_containers(self, pod_id: str) -> None: ...

    async def remove_pod_containers(self, pod_id: str) -> None: ...


class PodService:
    def __init__(
        self,
        config: Config,
        store: SandboxStore,
        containers: PodContainers,
        network: NetworkManager,
        runtimes: RuntimeSet,
        host: HostFacts,
        tasks: TaskOwner,
        pinner: NamespacePinner,
        user_pinner: NamespacePinner | None = None,
    ) -> None:
        self.config = config
        self.pinner = pinner
        # pods with a user namespace of their own: a forked helper makes it (a thread cannot)
        self.user_pinner = user_pinner if user_pinner is not None else ForkPinner()
        self._userns_supported: bool | None = None
        self.store = store
        self.containers = containers
        self.network = network
        self.runtimes = runtimes
        self.host = host
        self._tasks = tasks
        self._inflight = CreateCoalescer(tasks)
        self._locks = KeyedLocks()
        self._teardowns: SingleFlight[None] = SingleFlight(tasks)
        self.pods_dir = config.run_dir / "pods"
        self.ns_dir = config.run_dir / "nsfs"
        self.pause_rootfs = config.root / "pause-rootfs"

    # ---- life cycle --------------------------------------------------------------------

    async def recover(self) -> None:
        """Unwind pods whose creation a previous run did not finish; refresh the others."""
        await asyncio.to_thread(self._prepare)
        self._tasks.spawn(exits.reap_orphans(), name="reap-orphans")
        for pod in list(self.store.values()):
            if pod.state == SandboxState.CREATING:
                log.info("pod %s: unwinding an unfinished RunPodSandbox", pod.id)
                await self._unwind(pod)
            elif pod.state == SandboxState.READY and not _namespaces_survived(pod):
                # a reboot took the pins (run_dir is a tmpfs): the pod is gone in all but name
                log.info("pod %s: its namespaces are gone, NOTREADY", pod.id)
                self.store.transition(pod, SandboxState.NOTREADY)
            elif pod.state == SandboxState.READY and pod.infra:
                # the pid alone could name another process by now: its start time tells
                if exits.same_process(pod.infra_pid, pod.infra_start_time):
                    self._watch_infra(pod)
                else:
                    log.info("pod %s: its infra process is gone, NOTREADY", pod.id)
                    self.store.transition(pod, SandboxState.NOTREADY)

    def _prepare(self) -> None:
        exits.become_child_subreaper()
        self.pods_dir.mkdir(parents=True, exist_ok=True)
        # no shared bind mount here: it would outlive the daemon; runc's mount namespaces
        # drop their copies of these pins when they pivot into the container's root
        self.ns_dir.mkdir(parents=True, exist_ok=True)
        # the pin of a user namespace probe a crash interrupted (probes are not pods: no record)
        self.user_pinner.unpin(self.ns_dir.glob(f"{PROBE_PREFIX}*"))
        root = self.pause_rootfs
        for d in ("proc", "dev", "sys", "etc"):
            (root / d).mkdir(parents=True, exist_ok=True)
        # every mount point exists beforehand: pods share this rootfs and start concurrently
        for f in ("pause", "etc/hosts", "etc/resolv.conf", "etc/hostname"):
            (root / f).touch(exist_ok=True)

    async def user_namespaces_supported(self) -> bool:
        """Pods can have user namespaces here: the daemon can make one, and the filesystem of
        its root takes idmapped mounts (asked of the kernel once)."""
        if self._userns_supported is None:
            self._userns_supported = await asyncio.to_thread(self._probe_user_namespaces)
        return self._userns_supported

    def _probe_user_namespaces(self) -> bool:
        # the runtime sets a pod's containers up from inside its user namespace, as ids the
        # host knows as nobody: the paths to their root filesystems and bundles must let them by
        closed = [d for d in (self.config.root, self.config.run_dir) if not _traversable_by_others(d)]
        if closed:
            log.info("no user namespaces for pods: %s must be searchable by others (chmod o+x)", closed[0])
            return False
        pin = self.ns_dir / f"{PROBE_PREFIX}{secrets.token_hex(8)}-user"
        mapping = (IdMapping(container_id=0, host_id=PROBE_HOST_ID, size=65536),)
        self.ns_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.user_pinner.pin(PinRequest(user=pin, user_ns=UserNamespace(mapping, mapping)))
        except OSError as exc:
            log.info("no user namespaces for pods: %s", exc)
            return False
        try:
            return idmap.supported(self.config.root, pin)
        finally:
            self.user_pinner.unpin([pin])

    def runtime_of(self, pod: SandboxRecord) -> ContainerRuntime:
        return self.runtimes.get(pod.runtime_handler)

    # ---- RunPodSandbox -----------------------------------------------------------------

    async def run(self, config: api_pb2.PodSandboxConfig, runtime_handler: str) -> str:
        md = config.metadata
        if not md.name or not md.namespace or not md.uid:
            raise InvalidArgument("pod sandbox metadata needs name, namespace and uid")
        ns_options = config.linux.security_context.namespace_options
        # NODE, POD with one mapping each mapping container id 0, or InvalidArgument
        user_ns = userns.requested(ns_options)
        runtime = self.runtimes.get(runtime_handler)
        if runtime.is_sandboxed:
            _refuse_node_namespaces(ns_options, runtime.name)
        if user_ns is not None:
            if runtime.is_sandboxed:
                raise InvalidArgument(f"runtime handler {runtime.name!r} does not support user namespaces")
            if api_pb2.NODE in (ns_options.network, ns_options.ipc, ns_options.pid):
                # the host's namespaces belong to the host's user namespace: a pod's cannot join them
                raise InvalidArgument("a pod with a user namespace cannot use the host's network, IPC or PID")
            if not await self.user_namespaces_supported():
                raise InvalidArgument("user namespaces for pods are not available on this node (see the log)")
        key = name_key(md.name, md.namespace, md.uid, md.attempt)
        claimed = self._inflight.claim(key)
        if claimed is not None and self.store.current(claimed) is not None:
            return claimed
        existing = self.store.id_for_name(key)
        if not self._inflight.running(key) and existing is not None:
            raise AlreadyExists(f"pod sandbox {key!r} exists already as {existing}")
        return await self._inflight.run(key, lambda: self._create(config, runtime_handler, runtime))

    async def _create(self, config: api_pb2.PodSandboxConfig, handler: str, runtime: ContainerRuntime) -> str:
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
        own_userns = userns.requested(ns_opts) is not None
        netns_path = ""
        if not host_net:
            from cri_py.network.netns import pinned_netns_path

            netns_path = str(pinned_netns_path(self.config.run_dir, pod_id))
        infra = runtime.is_sandboxed or (shares_pid and not host_pid)
        cgroup_parent = linux.cgroup_parent or self.config.cgroup_parent
        # the name is taken before anything exists, so a crash leaves a record to unwind
        # (with every path it may have created)
        pod = self.store.insert(
            SandboxRecord(
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
                cgroup_parent=cgroup_parent,
                hostname=hostname[:63],
                netns_path=netns_path,
                ipc_path="" if host_ipc else str(self.ns_dir / f"{pod_id}-ipc"),
                uts_path="" if host_net else str(self.ns_dir / f"{pod_id}-uts"),
                shm_path="" if host_ipc else str(pod_dir / "shm"),
                userns_path=str(self.ns_dir / f"{pod_id}-user") if own_userns else "",
                host_pid=host_pid,
                # the sandbox of a sandboxed runtime is its infra container's
                infra=infra,
                stats_cgroup="" if infra else self._stats_cgroup(pod_id, cgroup_parent),
            )
        )
        failpoints.hit(failpoints.POD_SAVED_BEFORE_NETNS)
        async with self._locks.hold(pod_id):
            try:
                pod = await self._bring_up(pod, config, runtime, host_net)
            except BaseException as exc:
                log.warning("pod %s: RunPodSandbox failed, unwinding: %s", pod_id, exc)
                await self._tasks.shielded(self._unwind(pod), name=f"unwind-{pod_id[:12]}")
                raise
        if pod.infra:
            self._watch_infra(pod)
        log.info("pod %s ready (%s/%s, runtime %s)", pod_id, md.namespace, md.name, pod.runtime_handler)
        return pod_id

    def _stats_cgroup(self, pod_id: str, cgroup_parent: str) -> str:
        """Where a pod without an infra process gets an empty cgroup named as an infra
        container's would be, when cAdvisor is to know the pod (`inspect_socket`): kubelet
        takes a pod's network counters only from cAdvisor's entry for a cgroup named for the
        sandbox id, which the inspect API describes as `POD` with the pid of one of the
        pod's containers (as CRI-O does for a pod whose infra container it drops)."""
        if self.host.cgroup_prefix != CADVISOR_PREFIX:
            return ""
        driver = self.host.cgroup_driver
        return cgroup_relpath(container_cgroups_path(cgroup_parent, pod_id, driver, CADVISOR_PREFIX), driver)

    async def _bring_up(
        self, pod: SandboxRecord, config: api_pb2.PodSandboxConfig, runtime: ContainerRuntime, host_net: bool
    ) -> SandboxRecord:
        # the pod's files and IPC/UTS pins, and its network namespace, side by side
        prepared: list[Awaitable[Any]] = [
            asyncio.to_thread(self._make_files_and_namespaces, pod, config, host_net)
        ]
        if pod.netns_path and not pod.userns_path:
            # (a pod's own user namespace gets its network namespace made inside it, with the others)
            from cri_py.network.netns import create_pinned_netns

            prepared.append(asyncio.to_thread(create_pinned_netns, self.config.run_dir, pod.id))
        await _all_settled(prepared)
        network, infra_pid = await self._attach_and_start(pod, config, runtime)
        ready: dict[str, Any] = {}
        if network is not None:
            failpoints.hit(failpoints.POD_NETWORK_ADDED_BEFORE_READY)
            ready.update(ip=network.ip, additional_ips=tuple(network.additional_ips), network_ready=True)
            if network.ip:
                hosts = files.hosts_text(pod.hostname, network.ip, host_net)
                await asyncio.to_thread(files.write_file, pod.dir / "hosts", hosts)
        if infra_pid:
            ready.update(infra_pid=infra_pid, infra_start_time=exits.start_time(infra_pid))
        return self.store.transition(pod, SandboxState.READY, **ready)

    async def _attach_and_start(
        self, pod: SandboxRecord, config: api_pb2.PodSandboxConfig, runtime: ContainerRuntime
    ) -> tuple[PodNetworkResult | None, int]:
        """CNI ADD and the pause process side by side (neither depends on the other).

        A CNI ADD once begun runs to its end (the plugin's own time limit bounds it), also when
        the infra start fails or the request is cancelled: a plugin killed halfway can leave an
        address allocated under no recorded owner, or a half-made bridge that fails the next
        pod's ADD. The unwind's DEL comes after it. The infra start is cut short instead (its
        runtime call is killed with its process group, and the unwind deletes the container).
        """
        attaching = (
            self._tasks.spawn(self._setup_network(pod, config), name=f"cni-add-{pod.id[:12]}")
            if pod.netns_path
            else None
        )
        starting = asyncio.ensure_future(self._start_infra(pod, runtime)) if pod.infra else None
        try:
            network = await asyncio.shield(attaching) if attaching is not None else None
            infra_pid = await starting if starting is not None else 0
        except BaseException:
            if starting is not None:
                starting.cancel()
                await asyncio.gather(starting, return_exceptions=True)
            if attaching is not None:
                await asyncio.gather(asyncio.shield(attaching), return_exceptions=True)
            raise
        return network, infra_pid

    def _make_files_and_namespaces(
        self, pod: SandboxRecord, config: api_pb2.PodSandboxConfig, host_net: bool
    ) -> None:
        d = pod.dir
        d.mkdir(parents=True, exist_ok=True)
        if pod.stats_cgroup:
            make_empty_cgroup(pod.stats_cgroup)
        dns = config.dns_config if config.HasField("dns_config") else None
        files.write_file(d / "resolv.conf", files.resolv_conf_text(dns))
        files.write_file(d / "hosts", files.hosts_text(pod.hostname, "", host_net))
        files.write_file(d / "hostname", pod.hostname + "\n")
        if pod.shm_path:
            shm.mount_shm(Path(pod.shm_path))
        ipc = Path(pod.ipc_path) if pod.ipc_path else None
        uts = Path(pod.uts_path) if pod.uts_path else None
        user_ns = userns.requested(config.linux.security_context.namespace_options)
        if pod.userns_path and user_ns is not None:
            # the user namespace first, then the others inside it, so that they belong to it
            self.user_pinner.pin(
                PinRequest(
                    ipc=ipc,
                    uts=uts,
                    net=Path(pod.netns_path) if pod.netns_path else None,
                    user=Path(pod.userns_path),
                    user_ns=user_ns,
                    hostname=pod.hostname,
                )
            )
        else:
            self.pinner.pin(PinRequest(ipc=ipc, uts=uts, hostname=pod.hostname))

    async def _setup_network(self, pod: SandboxRecord, config: api_pb2.PodSandboxConfig) -> PodNetworkResult:
        from cri_py.network.manager import PodNetworkRequest

        return await self.network.setup(
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

    def infra_bundle(self, pod: SandboxRecord) -> Path:
        return pod.dir / "infra"

    async def _start_infra(self, pod: SandboxRecord, runtime: ContainerRuntime) -> int:
        bundle = self.infra_bundle(pod)
        spec = infra_spec(
            pod=pod_context(pod, runtime.handler.type if runtime.is_sandboxed else ""),
            rootfs=self.pause_rootfs,
            catatonit=self.config.catatonit,
            host=self.host,
        )

        def write() -> None:
            bundle.mkdir(parents=True, exist_ok=True)
            (bundle / "config.json").write_text(json.dumps(spec))

        await asyncio.to_thread(write)
        return await runtime.run_detached(pod.id, bundle)

    def _watch_infra(self, pod: SandboxRecord) -> None:
        """A pause process that dies makes its pod NOTREADY (kubelet then re-creates it)."""

        async def watch(pod_id: str, pid: int) -> None:
            await exits.wait_pid_exit(pid)
            current = self.store.current(pod_id)
            if current is not None and current.infra_pid == pid and current.state == SandboxState.READY:
                log.warning("pod %s: its infra process %d exited", pod_id, pid)
                self.store.transition(current, SandboxState.NOTREADY)

        self._tasks.spawn(watch(pod.id, pod.infra_pid), name=f"infra-{pod.id[:12]}")

    # ---- StopPodSandbox ----------------------------------------------------------------

    async def stop(self, pod_id: str) -> None:
        if not pod_id:
            raise InvalidArgument("pod sandbox id is required")
        pod = self.store.find(pod_id)
        if pod is None:
            return  # kubelet's idempotence contract: stopping what is gone succeeds
        await self._teardowns.run(
            f"stop-{pod.id}", lambda: within(CLEANUP_TIMEOUT, self._stop(pod.id), "StopPodSandbox")
        )

    async def _stop(self, pod_id: str) -> None:
        async with self._locks.hold(pod_id):
            pod = self.store.current(pod_id)
            if pod is None:
                return  # removed while this stop waited for the lock
            await self.containers.stop_pod_containers(pod.id)
            await self._stop_infra(pod)
            if pod.netns_path and pod.network_ready:
                await self.network.teardown(pod.id, Path(pod.netns_path))
                failpoints.hit(failpoints.POD_STOP_AFTER_CNI_DEL)
            self.store.transition(pod, SandboxState.NOTREADY, network_ready=False)

    async def _stop_infra(self, pod: SandboxRecord) -> None:
        if not pod.infra:
            return
        runtime = self.runtime_of(pod)
        if exits.same_process(pod.infra_pid, pod.infra_start_time):
            with contextlib.suppress(Exception):
                await runtime.kill(pod.id, 9)
            # a kill the runtime could not deliver is still bounded: delete --force kills too.
            # (The runtime knows when: a VM's sandbox task ends before its hypervisor does.)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(runtime.wait_exit(pod.id, pod.infra_pid), INFRA_EXIT_TIMEOUT)
        try:
            await runtime.delete(pod.id, force=True)
        finally:
            await self._remove_infra_cgroup(pod)

    async def _remove_infra_cgroup(self, pod: SandboxRecord) -> None:
        """The infra container's cgroup, which runsc's delete leaves when the sandbox's processes
        are still on their way out (the container service does the same for containers). Its
        path is the one the bundle gave the runtime; the processes get a moment to go."""
        if self.host.cgroup_driver != "cgroupfs":
            return  # systemd removes a scope once it is empty
        try:
            spec = json.loads(await asyncio.to_thread((self.infra_bundle(pod) / "config.json").read_text))
            relpath = cgroup_relpath(str(spec["linux"]["cgroupsPath"]), "cgroupfs")
        except (OSError, ValueError, KeyError, TypeError):
            return  # no bundle (never started, or removed already): nothing was made
        deadline = time.monotonic() + INFRA_EXIT_TIMEOUT
        while await asyncio.to_thread(cgroup_has_processes, relpath) and time.monotonic() < deadline:  # noqa: ASYNC110 - other processes, nothing to wait on
            await asyncio.sleep(0.05)
        await asyncio.to_thread(remove_cgroup, relpath)

    # ---- RemovePodSandbox --------------------------------------------------------------

    async def remove(self, pod_id: str) -> None:
        if not pod_id:
            raise InvalidArgument("pod sandbox id is required")
        pod = self.store.find(pod_id)
        if pod is None:
            return
        await self._teardowns.run(
            f"remove-{pod.id}", lambda: within(CLEANUP_TIMEOUT, self._remove(pod.id), "RemovePodSandbox")
        )

    async def _remove(self, pod_id: str) -> None:
        async with self._locks.hold(pod_id):
            pod = self.store.current(pod_id)
            if pod is None:
                return
            await self.containers.remove_pod_containers(pod.id)
            await self._unwind(pod, keep_for_network=True)

    async def _unwind(self, pod: SandboxRecord, keep_for_network: bool = False) -> None:
        """Undo everything a pod may have (also a half-created one); idempotent.

        A CNI DEL that fails leaves the pod's address allocated. With `keep_for_network`
        (RemovePodSandbox) everything else goes, but the network namespace and the record stay
        and the error is raised: kubelet removes again, and the DEL is retried until it works.
        Unwinding a create frees the name instead (kubelet's retry needs it); the attachment
        stays in the CNI cache for the start-up collection to release.
        """
        pod = self.store.current(pod.id) or pod
        try:
            await self._stop_infra(pod)
        except Exception as exc:  # noqa: BLE001 - keep unwinding the rest
            log.warning("pod %s: infra cleanup: %s", pod.id, exc)
        if pod.netns_path:
            try:
                await self.network.teardown(pod.id, Path(pod.netns_path))
            except Exception as exc:
                if keep_for_network:
                    await asyncio.to_thread(self._remove_files, pod, keep_netns=True)
                    if pod.state != SandboxState.NOTREADY:
                        self.store.transition(pod, SandboxState.NOTREADY)
                    raise Internal(
                        f"pod sandbox {pod.id}: CNI DEL failed ({exc}); the rest is removed, its network "
                        "namespace and record are kept until RemovePodSandbox, tried again, can release "
                        "its address"
                    ) from exc
                log.warning("pod %s: network teardown: %s", pod.id, exc)
        await asyncio.to_thread(self._remove_files, pod)
        self.store.delete(pod)
        self._inflight.forget(pod.id)

    def _remove_files(self, pod: SandboxRecord, keep_netns: bool = False) -> None:
        if pod.netns_path and not keep_netns:
            from cri_py.network.netns import remove_pinned_netns

            remove_pinned_netns(Path(pod.netns_path))
        # the user namespace last: nothing else of the pod refers to it then
        self.pinner.unpin(Path(p) for p in (pod.ipc_path, pod.uts_path, pod.userns_path) if p)
        if pod.shm_path:
            shm.unmount_shm(Path(pod.shm_path))
        if pod.stats_cgroup:
            remove_cgroup(pod.stats_cgroup)
        shutil.rmtree(pod.dir, ignore_errors=True)

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
        pod = self.store.get(pod_id)
        cfg = api_pb2.PodSandboxConfig()
        cfg.CopyFrom(pod.config())  # the cached message stays untouched
        if overhead is not None:
            cfg.linux.overhead.CopyFrom(overhead)
        if resources is not None:
            cfg.linux.resources.CopyFrom(resources)
        self.store.update(pod, config_b64=encode_message(cfg))


def _refuse_node_namespaces(ns: api_pb2.NamespaceOption, handler: str) -> None:
    """A sandbox runs its own kernel: it cannot share the node's processes or IPC objects
    (gVisor's and Kata's documentation say so); the node's network it can use (runsc's
    host networking)."""
    for what, mode in (("PID", ns.pid), ("IPC", ns.ipc)):
        if mode == api_pb2.NODE:
            raise InvalidArgument(
                f"runtime handler {handler!r} runs the pod in a sandbox of its own kernel: "
                f"it cannot share the node's {what} namespace"
            )


def _traversable_by_others(path: Path) -> bool:
    """Every directory from / down to `path` has the search bit for others."""
    current = path.resolve()
    for directory in [current, *current.parents]:
        try:
            if not directory.stat().st_mode & stat.S_IXOTH:
                return False
        except FileNotFoundError:
            continue  # made later, with the daemon's umask
    return True


def _namespaces_survived(pod: SandboxRecord) -> bool:
    from cri_py.network.netns import is_pinned_netns

    return not pod.netns_path or is_pinned_netns(Path(pod.netns_path))


async def _all_settled(work: list[Awaitable[Any]]) -> None:
    """Wait for every piece (threads cannot be cancelled), then raise the first failure."""
    results = await asyncio.gather(*work, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
