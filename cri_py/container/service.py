"""Containers: Create, Start, Stop, Remove, ExecSync, Update, ReopenLog, and recovery.

Each container runs under its own conmon; `ExitWatcher` records its exit. Every state change
goes through `ContainerStore.transition`; records are values, so a change here is a new
record committed in place of the old one, never an indexed one edited in place.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import json
import logging
import secrets
import signal
import time
from pathlib import Path
from typing import Any

from cri_py import failpoints
from cri_py.api import api_pb2
from cri_py.config.model import Config
from cri_py.container.image_volumes import ImageVolumes
from cri_py.container.model import ContainerRecord, container_name_key
from cri_py.container.state import ContainerState
from cri_py.container.store import ContainerStore
from cri_py.container.watch import ExitWatcher
from cri_py.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
)
from cri_py.image import reference as refs
from cri_py.image.model import ImageRecord
from cri_py.image.service import ImageService
from cri_py.oci.cgroups import cgroup_relpath, oci_resources, remove_cgroup
from cri_py.oci.interface import ContainerRuntime, CreateOptions, ExecResult, NeverStarted
from cri_py.oci.registry import RuntimeSet
from cri_py.oci.spec import (
    HostFacts,
    PodContext,
    container_spec,
    create_missing_mount_sources,
    resolve_signal,
)
from cri_py.pod import userns
from cri_py.pod.context import pod_context
from cri_py.pod.inflight import CreateCoalescer
from cri_py.pod.model import SandboxRecord
from cri_py.pod.store import SandboxStore
from cri_py.storage import idmap
from cri_py.storage.rootfs import RootfsManager, UsernsMapping
from cri_py.storage.trash import Trash
from cri_py.store.codec import encode_message
from cri_py.streaming.backend import AttachTarget, ExecTarget
from cri_py.tasks import KeyedLocks, TaskOwner, within
from cri_py.validate.paths import container_log_path

log = logging.getLogger(__name__)

# budget for removing a container, independent of the request's own deadline
CLEANUP_TIMEOUT = 60.0
# SIGKILL is repeated this often until the exit is seen, for at most KILL_DEADLINE
KILL_RETRY = 2.0
KILL_DEADLINE = 60.0


def image_display_name(spec: api_pb2.ImageSpec, image: ImageRecord) -> str:
    """The image name ContainerStatus reports, which kubelet shows as the container's image.

    kubelet creates containers with the image's id in `image` and the pod's own string in
    `user_specified_image`; the status names the image, not the id (containerd reports a repo
    tag): the user's reference normalized, else `image` when it is one of the image's names,
    else a tag or digest the image has, else the id.
    """
    if spec.user_specified_image:
        with contextlib.suppress(InvalidArgument):
            return str(refs.parse(spec.user_specified_image))
    with contextlib.suppress(InvalidArgument):
        named = str(refs.parse(spec.image))
        if named in image.repo_tags or named in image.repo_digests:
            return named
    if image.repo_tags:
        return image.repo_tags[0]
    if image.repo_digests:
        return image.repo_digests[0]
    return spec.image or image.id


class ContainerService:
    def __init__(
        self,
        config: Config,
        store: ContainerStore,
        pods: SandboxStore,
        images: ImageService,
        rootfs: RootfsManager,
        runtimes: RuntimeSet,
        host: HostFacts,
        tasks: TaskOwner,
    ) -> None:
        self.config = config
        self.store = store
        self.pods = pods
        self.images = images
        self.rootfs = rootfs
        self.runtimes = runtimes
        self.host = host
        self._tasks = tasks
        self.bundles_dir = config.run_dir / "containers"
        self.persist_dir = config.root / "containers"
        # idmapped binds of the volumes of containers in pods with a user namespace
        self.idmap_dir = config.run_dir / "idmap"
        self.exits = ExitWatcher(store, runtimes, tasks, self.persist_dir)
        self.image_volumes = ImageVolumes(images, config.run_dir, config.run_dir / "image-volumes-empty")
        self._inflight = CreateCoalescer(tasks)
        self._locks = KeyedLocks()
        # each container's OCI process (what exec starts from), read once from its bundle
        self._processes: dict[str, dict[str, Any]] = {}
        # removed bundles wait here for a worker thread (persist dirs go with the rootfs')
        self.run_trash = Trash(config.run_dir / "trash")

    # ---- life cycle --------------------------------------------------------------------

    async def recover(self) -> None:
        """Reconcile records with conmon and the runtime after a restart."""
        self._empty_trash()  # what a crash left of removed containers
        for rec in list(self.store.values()):
            if rec.state == ContainerState.CREATING or self.pods.current(rec.pod_id) is None:
                log.info("container %s: unwinding an unfinished CreateContainer", rec.id)
                await self._destroy(rec)
                continue
            if rec.state == ContainerState.EXITED:
                self.exits.exited(rec.id).set()
                self.exits.spawn_cleanup(rec)
                continue
            if self.runtime_of(rec).monitor_alive(rec.id, rec.conmon_pid):
                self.exits.watch(rec)
            else:
                # it exited while we were away: conmon left the exit file behind
                await self.exits.record_exit(rec.id)

    # ---- lookups -----------------------------------------------------------------------

    def runtime_of(self, rec: ContainerRecord) -> ContainerRuntime:
        return self.runtimes.get(rec.runtime_handler)

    def exec_target(self, cid: str) -> ExecTarget:
        """A running container and the process an exec in it starts from."""
        rec = self.store.get(cid)
        if rec.state != ContainerState.RUNNING:
            raise FailedPrecondition(f"container {rec.id} is not running")
        return ExecTarget(self.runtime_of(rec), rec.id, self._process(rec))

    def _process(self, rec: ContainerRecord) -> dict[str, Any]:
        process = self._processes.get(rec.id)
        if process is None:
            spec = json.loads((rec.bundle_dir / "config.json").read_text())
            process = self._processes[rec.id] = dict(spec["process"])
        return dict(process)

    def attach_target(self, cid: str) -> AttachTarget:
        """A running container whose own stdio an attach joins."""
        rec = self.store.get(cid)
        if rec.state != ContainerState.RUNNING:
            raise FailedPrecondition(f"container {rec.id} is not running")
        cfg = rec.config()
        return AttachTarget(
            self.runtime_of(rec),
            rec.id,
            rec.bundle_dir,
            tty=cfg.tty,
            stdin=cfg.stdin,
            stdin_once=cfg.stdin_once,
        )

    # ---- CreateContainer ---------------------------------------------------------------

    async def create(
        self, pod_id: str, config: api_pb2.ContainerConfig, sandbox_config: api_pb2.PodSandboxConfig | None
    ) -> str:
        if not pod_id:
            raise InvalidArgument("pod sandbox id is required")
        if not config.metadata.name:
            raise InvalidArgument("container metadata name is required")
        if not config.image.image:
            raise InvalidArgument("container image is required")
        pod = self.pods.require_ready(pod_id)
        pod_userns = (
            userns.requested(pod.config().linux.security_context.namespace_options)
            if pod.userns_path
            else None
        )
        userns.check_mounts(config.mounts, pod_userns)
        key = container_name_key(pod.id, config.metadata.name, config.metadata.attempt)
        claimed = self._inflight.claim(key)
        if claimed is not None and self.store.current(claimed) is not None:
            return claimed
        if not self._inflight.running(key) and self.store.name_taken(key):
            raise AlreadyExists(
                f"container {config.metadata.name!r} (attempt {config.metadata.attempt}) exists already in pod {pod.id}"
            )
        return await self._inflight.run(key, lambda: self._create(pod.id, config))

    async def _create(self, pod_id: str, config: api_pb2.ContainerConfig) -> str:
        pod = self.pods.get(pod_id)
        runtime = self.runtimes.get(pod.runtime_handler)
        image = self.images.resolve(config.image.image)
        volumes = self.image_volumes.resolve(config)
        cid = secrets.token_hex(32)
        pod_cfg = pod.config()
        log_path = await asyncio.to_thread(container_log_path, pod_cfg.log_directory, config.log_path)
        image_cfg = image.config.get("config") or {}
        rec = self.store.insert(
            ContainerRecord(
                id=cid,
                pod_id=pod.id,
                name=config.metadata.name,
                attempt=config.metadata.attempt,
                state=ContainerState.CREATING,
                created_at=time.time_ns(),
                runtime_handler=pod.runtime_handler,
                config_b64=encode_message(config),
                image_id=image.id,
                image_ref=image.repo_digests[0] if image.repo_digests else image.id,
                image_name=image_display_name(config.image, image),
                bundle=str(self.bundles_dir / cid),
                log_path=log_path,
                stop_signal=resolve_signal(config.stop_signal, str(image_cfg.get("StopSignal") or "")),
                resources_b64=encode_message(config.linux.resources),
                image_volumes=tuple(v.image.id for v in volumes),
            )
        )
        marks = [time.perf_counter()]
        try:
            layers = self.images.layer_dirs(image)
            pod_ctx = pod_context(pod, runtime.handler.type if runtime.is_sandboxed else "")
            userns_map = _userns_mapping(pod_ctx)
            rootfs = await asyncio.to_thread(self.rootfs.mount, cid, layers, userns_map)
            image_sources = (
                await asyncio.to_thread(
                    self.image_volumes.mount, cid, volumes, userns_map.path if userns_map else None
                )
                if volumes
                else {}
            )
            made = await asyncio.to_thread(create_missing_mount_sources, list(config.mounts))
            if made:
                log.info("container %s: made missing mount sources %s", cid, made)
            spec_config = config
            if userns_map is not None:
                spec_config = await asyncio.to_thread(self._idmap_volumes, cid, config, pod)
            marks.append(time.perf_counter())
            spec = await asyncio.to_thread(
                container_spec,
                cid=cid,
                config=spec_config,
                image_config=image.config,
                rootfs=Path(rootfs),
                pod=pod_ctx,
                host=await self._host_for(runtime),
                rro_supported=await runtime.recursive_read_only_mounts(),
                target_pid_path=await asyncio.to_thread(self._target_pid_path, config, runtime),
                image_sources=image_sources,
            )
            await asyncio.to_thread(self._write_bundle, rec, spec)
            self._processes[cid] = dict(spec["process"])
            marks.append(time.perf_counter())
            created = await runtime.create(
                cid,
                rec.bundle_dir,
                self.persist_dir / cid,
                CreateOptions(
                    log_path=log_path,
                    tty=config.tty,
                    stdin=config.stdin,
                    stdin_once=config.stdin_once,
                    log_size_max=self.config.log_size_max,
                    systemd_cgroup=self.config.cgroup_driver == "systemd",
                ),
            )
            marks.append(time.perf_counter())
            failpoints.hit(failpoints.CONTAINER_CREATED_BEFORE_SAVED)
            if self.pods.current(pod_id) is None:
                # RemovePodSandbox ran meanwhile and could not see this container yet
                raise NotFound(f"pod sandbox {pod_id} was removed during CreateContainer")
            user = spec["process"]["user"]
            rec = self.store.transition(
                rec,
                ContainerState.CREATED,
                pid=created.pid,
                conmon_pid=created.monitor_pid,
                uid=int(user["uid"]),
                gid=int(user["gid"]),
                supplemental_groups=tuple(user.get("additionalGids", [])),
                cgroups_path=spec["linux"]["cgroupsPath"],
            )
            marks.append(time.perf_counter())
        except BaseException as exc:
            log.warning("container %s: CreateContainer failed, unwinding: %s", cid, exc)
            await self._tasks.shielded(self._destroy(rec), name=f"unwind-{cid[:12]}")
            raise
        self.exits.watch(rec)
        steps = [round((b - a) * 1000, 1) for a, b in zip(marks, marks[1:], strict=False)]
        log.debug("container %s created; ms rootfs/spec/runtime/persist: %s", cid, steps)
        return cid

    async def _host_for(self, runtime: ContainerRuntime) -> HostFacts:
        """The host's facts as far as this runtime can use them (its capabilities)."""
        known = await runtime.capabilities()
        if known is None:
            return self.host
        return dataclasses.replace(self.host, capabilities=self.host.capabilities & known)

    def _target_pid_path(self, config: api_pb2.ContainerConfig, runtime: ContainerRuntime) -> str | None:
        ns = config.linux.security_context.namespace_options
        if ns.pid != api_pb2.TARGET:
            return None
        target = self.store.find(ns.target_id)
        if target is None or target.state != ContainerState.RUNNING:
            raise NotFound(f"target container {ns.target_id!r} is not running")
        if runtime.handler.type == "gvisor":
            # inside a gVisor sandbox a PID namespace is known by the name the target's spec
            # gave it ("" = the pod's)
            spec = json.loads((target.bundle_dir / "config.json").read_text())
            named = [n for n in spec["linux"]["namespaces"] if n["type"] == "pid"]
            return str(named[0].get("path", "")) if named else ""
        return f"/proc/{target.pid}/ns/pid"

    def _write_bundle(self, rec: ContainerRecord, spec: dict[str, Any]) -> None:
        rec.bundle_dir.mkdir(parents=True, exist_ok=True)
        (self.persist_dir / rec.id).mkdir(parents=True, exist_ok=True)
        (rec.bundle_dir / "config.json").write_text(json.dumps(spec))
        if rec.log_path:
            Path(rec.log_path).parent.mkdir(parents=True, exist_ok=True)

    # ---- StartContainer ----------------------------------------------------------------

    async def start(self, cid: str) -> None:
        if not cid:
            raise InvalidArgument("container id is required")
        found = self.store.get(cid)
        async with self._locks.hold(found.id):
            rec = self.store.current(found.id)
            if rec is None:
                raise NotFound(f"container {found.id} was removed")
            if rec.state != ContainerState.CREATED:
                raise FailedPrecondition(f"container {rec.id} is {rec.state}, not created")
            runtime = self.runtime_of(rec)
            with self.exits.starting(rec.id):
                started = time.time_ns()
                try:
                    await runtime.start(rec.id)
                except NeverStarted:
                    raise
                except Internal:
                    # a process that ran and exited at once may have been cleaned up under
                    # `runtime start` (runc then fails to remove its exec fifo): it did start
                    if runtime.exit_status(rec.id, self.persist_dir / rec.id) is None:
                        raise
                self.store.transition(rec, ContainerState.RUNNING, started_at=started)

    # ---- StopContainer -----------------------------------------------------------------

    async def stop(self, cid: str, grace_s: int) -> None:
        if not cid:
            raise InvalidArgument("container id is required")
        rec = self.store.find(cid)
        if rec is None:
            return
        await self._tasks.shielded(self._stop(rec.id, grace_s), name=f"stop-{rec.id[:12]}")

    async def _stop(self, cid: str, grace_s: int) -> None:
        rec = self.store.current(cid)
        if rec is None or rec.state not in (ContainerState.CREATED, ContainerState.RUNNING):
            return
        runtime = self.runtime_of(rec)
        exited = self.exits.exited(rec.id)
        self.exits.watch(rec)  # a watcher that ended without recording the exit starts again
        if grace_s > 0 and rec.state == ContainerState.RUNNING and rec.stop_signal != signal.SIGKILL:
            with contextlib.suppress(NotFound, Internal):
                await runtime.kill(rec.id, rec.stop_signal)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(exited.wait(), grace_s)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + KILL_DEADLINE
        while not exited.is_set():
            left = deadline - loop.time()
            if left <= 0:
                raise DeadlineExceeded(f"container {rec.id} did not exit {KILL_DEADLINE:g} s after SIGKILL")
            with contextlib.suppress(NotFound, Internal):
                await runtime.kill(rec.id, int(signal.SIGKILL), all_processes=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(exited.wait(), min(KILL_RETRY, left))
            if not exited.is_set() and not runtime.monitor_alive(rec.id, rec.conmon_pid):
                # its monitor is gone and nothing recorded that: read what it left
                await self.exits.record_exit(rec.id)

    async def stop_pod_containers(self, pod_id: str) -> None:
        await asyncio.gather(*(self._stop(r.id, 0) for r in self.store.in_pod(pod_id)))

    # ---- RemoveContainer ---------------------------------------------------------------

    async def remove(self, cid: str) -> None:
        if not cid:
            raise InvalidArgument("container id is required")
        rec = self.store.find(cid)
        if rec is None:
            return
        work = within(CLEANUP_TIMEOUT, self._remove(rec.id), "RemoveContainer")
        await self._tasks.shielded(work, name=f"remove-{rec.id[:12]}")

    async def _remove(self, cid: str) -> None:
        async with self._locks.hold(cid):
            rec = self.store.current(cid)
            if rec is None:
                return
            await self._stop(cid, 0)
            await self._destroy(rec)

    async def remove_pod_containers(self, pod_id: str) -> None:
        await asyncio.gather(*(self._remove(r.id) for r in self.store.in_pod(pod_id)))

    async def _destroy(self, rec: ContainerRecord) -> None:
        """Forget everything of a container (also a half-created one); idempotent."""
        rec = self.store.current(rec.id) or rec
        runtime = self.runtime_of(rec)
        if rec.state in (ContainerState.CREATING, ContainerState.CREATED, ContainerState.RUNNING):
            # only a half-done create gets here alive: nothing else is waiting on it
            with contextlib.suppress(Exception):
                await runtime.kill(rec.id, int(signal.SIGKILL), all_processes=True)
            if rec.conmon_pid and runtime.monitor_alive(rec.id, rec.conmon_pid):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(runtime.wait_exit(rec.id, rec.conmon_pid), 10.0)
        await self.exits.forget(rec.id)
        rec = self.store.current(rec.id) or rec
        if not rec.deleted:
            with contextlib.suppress(Exception):
                await runtime.delete(rec.id, force=True)
        failpoints.hit(failpoints.CONTAINER_REMOVE_MIDWAY)
        await asyncio.to_thread(self._remove_files, rec, runtime)
        self.store.delete(rec)
        self._inflight.forget(rec.id)
        self._processes.pop(rec.id, None)
        self._empty_trash()

    def _empty_trash(self) -> None:
        self.rootfs.trash.empty_soon(self._tasks)
        self.run_trash.empty_soon(self._tasks)

    def _idmap_volumes(
        self, cid: str, config: api_pb2.ContainerConfig, pod: SandboxRecord
    ) -> api_pb2.ContainerConfig:
        """The mounts kubelet gave id mappings (the pod's) become idmapped binds of their
        sources under idmap_dir/<cid>/, which the runtime then binds in; the config returned
        names those in place of the sources (the stored config keeps kubelet's)."""
        user_ns = userns.requested(pod.config().linux.security_context.namespace_options)
        if user_ns is None or not any(m.uidMappings or m.gidMappings for m in config.mounts):
            return config
        out = api_pb2.ContainerConfig()
        out.CopyFrom(config)
        staging = self.idmap_dir / cid
        staging.mkdir(parents=True, exist_ok=True)
        for index, mount in enumerate(out.mounts):
            if not (mount.uidMappings or mount.gidMappings):
                continue
            if mount.HasField("image") and mount.image.image:
                continue  # an image volume: its layers are idmapped (image_volumes.py)
            # (the mappings are the pod's: create() checked them)
            source = Path(mount.host_path)
            if not source.exists():
                raise InvalidArgument(f"mount source {mount.host_path!r} does not exist")
            target = staging / str(index)
            idmap.idmapped_bind(source.resolve(), target, Path(pod.userns_path))
            mount.host_path = str(target)
        return out

    def _remove_files(self, rec: ContainerRecord, runtime: ContainerRuntime) -> None:
        try:
            self.rootfs.remove(rec.id)
        except Exception as exc:  # noqa: BLE001 - the rest must still go
            log.warning("container %s: rootfs removal: %s", rec.id, exc)
        try:
            self.image_volumes.remove(rec.id)
        except Exception as exc:  # noqa: BLE001 - the rest must still go
            log.warning("container %s: image volume removal: %s", rec.id, exc)
        try:
            idmap.release(self.idmap_dir / rec.id)
        except OSError as exc:
            log.warning("container %s: idmapped volumes: %s", rec.id, exc)
        # renamed out now, deleted after the reply (storage/trash.py)
        self.run_trash.move(rec.bundle_dir)
        self.rootfs.trash.move(self.persist_dir / rec.id)
        if rec.cgroups_path and self.config.cgroup_driver == "cgroupfs":
            # the runtime's delete removes it; one that could not (runsc, when the container's
            # sandbox was gone already) leaves it to us
            remove_cgroup(cgroup_relpath(rec.cgroups_path, "cgroupfs"))
        runtime.forget(rec.id)

    # ---- ExecSync, Update, ReopenContainerLog -------------------------------------------

    async def exec_sync(self, cid: str, cmd: builtins.list[str], limit_s: int) -> ExecResult:
        if not cid:
            raise InvalidArgument("container id is required")
        if not cmd:
            raise InvalidArgument("exec needs a command")
        rec = self.store.get(cid)
        if rec.state != ContainerState.RUNNING:
            raise NotFound(f"container {rec.id} is not created or running")
        process = dict(self._process(rec), args=list(cmd))
        return await self.runtime_of(rec).exec_sync(rec.id, process, limit_s)

    async def update_resources(self, cid: str, resources: api_pb2.LinuxContainerResources) -> None:
        if not cid:
            raise InvalidArgument("container id is required")
        rec = self.store.get(cid)
        if rec.state not in (ContainerState.CREATED, ContainerState.RUNNING):
            raise FailedPrecondition(f"container {rec.id} is {rec.state}")
        await self.runtime_of(rec).update(rec.id, oci_resources(resources, self.host.hugetlb))
        self.store.update(rec, resources_b64=encode_message(resources))

    async def reopen_log(self, cid: str) -> None:
        if not cid:
            raise InvalidArgument("container id is required")
        rec = self.store.get(cid)
        if rec.state != ContainerState.RUNNING:
            raise FailedPrecondition(f"container {rec.id} is not running")
        if not rec.log_path:
            return
        await self.runtime_of(rec).reopen_log(rec.id, rec.bundle_dir)
        # conmon reopens asynchronously; kubelet expects the new file once we answer
        log_file = Path(rec.log_path)
        for _ in range(500):
            if await asyncio.to_thread(log_file.exists):
                break
            await asyncio.sleep(0.01)  # noqa: ASYNC110 - conmon gives no signal but the file


def _userns_mapping(pod: PodContext) -> UsernsMapping | None:
    """The pod's user namespace as its containers' root filesystems need it."""
    if pod.userns_path is None or pod.id_mappings is None:
        return None
    root_uid = _host_id_of_root(pod.id_mappings["uidMappings"])
    root_gid = _host_id_of_root(pod.id_mappings["gidMappings"])
    return UsernsMapping(Path(pod.userns_path), root_uid, root_gid)


def _host_id_of_root(mappings: list[dict[str, int]]) -> int:
    for m in mappings:
        if m["containerID"] == 0:
            return m["hostID"]
    raise InvalidArgument("the pod's user namespace does not map id 0")
