"""Containers: Create, Start, Stop, Remove, Status, List, ExecSync, Update, ReopenLog.

Each container runs under its own conmon. A watcher task per container waits on conmon's
pidfd, then reads the exit file conmon wrote and persists EXITED; Stop waits on that event
instead of polling the runtime.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cri_py.api import api_pb2
from cri_py.config.model import Config
from cri_py.container.model import ContainerRecord, container_name_key
from cri_py.container.state import CRI_STATE, ContainerState, can_transition, exit_reason
from cri_py.container.stats import CpuSample, cpu_message, memory_message, nano_cores, sum_usage
from cri_py.errors import AlreadyExists, FailedPrecondition, Internal, InvalidArgument, NotFound
from cri_py.oci import exits
from cri_py.oci.cgroups import CgroupUsage, cgroup_relpath, oci_resources, read_usage
from cri_py.oci.registry import RuntimeSet
from cri_py.oci.runtime import CreateOptions, ExecResult, ExecTarget, OciRuntime
from cri_py.oci.spec import container_spec, resolve_signal
from cri_py.pod.inflight import CreateCoalescer
from cri_py.pod.service import CLEANUP_TIMEOUT, PodService
from cri_py.store import Database, RecordTable
from cri_py.store.codec import encode_message

log = logging.getLogger(__name__)

KILL_RETRY = 2.0


class ContainerService:
    def __init__(
        self,
        config: Config,
        db: Database,
        runtimes: RuntimeSet,
        pods: PodService,
        images: Any,
        rootfs: Any,
    ) -> None:
        self.config = config
        self.runtimes = runtimes
        self.pods = pods
        self.images = images
        self.rootfs = rootfs
        self._records: RecordTable[ContainerRecord] = RecordTable(db, "containers", ContainerRecord.from_dict)
        self._names: dict[str, str] = {r.name_key: r.id for r in self._records.values()}
        self._inflight = CreateCoalescer()
        self._exited: dict[str, asyncio.Event] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._cpu_samples: dict[str, CpuSample] = {}
        # each container's OCI process (what exec starts from), read once from its bundle
        self._processes: dict[str, dict[str, Any]] = {}
        self._generation = 0
        self._list_cache: tuple[tuple[int, bytes], bytes] | None = None
        self.bundles_dir = config.run_dir / "containers"
        self.persist_dir = config.root / "containers"
        pods.containers = self

    # ---- life cycle --------------------------------------------------------------------

    async def recover(self) -> None:
        """Reconcile records with conmon and the runtime after a restart."""
        for rec in list(self._records.values()):
            if rec.state == ContainerState.CREATING or self.pods.find(rec.pod_id) is None:
                log.info("container %s: unwinding an unfinished CreateContainer", rec.id)
                await self._destroy(rec)
                continue
            if rec.state == ContainerState.EXITED:
                self._event(rec.id).set()
                if not rec.deleted:
                    self._spawn_cleanup(rec)
                continue
            if _is_conmon(rec.conmon_pid, rec.id):
                self._watch(rec)
            else:
                # it exited while we were away: conmon left the exit file behind
                await self._record_exit(rec)

    async def close(self) -> None:
        tasks = list(self._watchers.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._watchers.clear()

    # ---- records: every change bumps the generation the List cache is keyed by ---------

    def _save(self, rec: ContainerRecord) -> None:
        self._records.put(rec)
        self._generation += 1

    def _forget(self, cid: str) -> None:
        self._records.delete(cid)
        self._generation += 1

    # ---- lookups -----------------------------------------------------------------------

    def get(self, cid: str) -> ContainerRecord:
        return self._records.resolve(cid, "container")

    def find(self, cid: str) -> ContainerRecord | None:
        try:
            return self._records.resolve(cid, "container")
        except NotFound:
            return None

    def runtime_of(self, rec: ContainerRecord) -> OciRuntime:
        return self.runtimes.get(rec.runtime_handler)

    def image_in_use(self, image_id: str) -> bool:
        return any(r.image_id == image_id for r in self._records.values())

    def in_pod(self, pod_id: str) -> list[ContainerRecord]:
        return [r for r in self._records.values() if r.pod_id == pod_id]

    def _event(self, cid: str) -> asyncio.Event:
        return self._exited.setdefault(cid, asyncio.Event())

    def _lock(self, cid: str) -> asyncio.Lock:
        return self._locks.setdefault(cid, asyncio.Lock())

    # ---- for the streaming server --------------------------------------------------------

    def exec_target(self, cid: str) -> ExecTarget:
        """How to run `<binary> <global_args> exec --process <spec> <cid>` for this container."""
        rec = self.get(cid)
        if rec.state != ContainerState.RUNNING:
            raise FailedPrecondition(f"container {rec.id} is not running")
        runtime = self.runtime_of(rec)
        return ExecTarget(runtime.binary, tuple(runtime.global_args()), rec.id, self._process(rec))

    def _process(self, rec: ContainerRecord) -> dict[str, Any]:
        process = self._processes.get(rec.id)
        if process is None:
            spec = json.loads((rec.bundle_dir / "config.json").read_text())
            process = self._processes[rec.id] = dict(spec["process"])
        return dict(process)

    def attach_target(self, cid: str) -> tuple[Path, Path, bool, bool]:
        """(conmon attach socket, ctl FIFO, tty, stdin) of a container."""
        rec = self.get(cid)
        cfg = rec.config()
        return self.runtime_of(rec).attach_socket(rec.id), rec.bundle_dir / "ctl", cfg.tty, cfg.stdin

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
        key = container_name_key(pod.id, config.metadata.name, config.metadata.attempt)
        claimed = self._inflight.claim(key)
        if claimed is not None and self._records.get(claimed) is not None:
            return claimed
        if not self._inflight.running(key) and key in self._names:
            raise AlreadyExists(
                f"container {config.metadata.name!r} (attempt {config.metadata.attempt}) exists already in pod {pod.id}"
            )
        return await self._inflight.run(key, lambda: self._create(pod.id, config))

    async def _create(self, pod_id: str, config: api_pb2.ContainerConfig) -> str:
        pod = self.pods.get(pod_id)
        runtime = self.pods.runtime_of(pod)
        image = self.images.resolve(config.image.image)
        cid = secrets.token_hex(32)
        pod_cfg = pod.config()
        log_path = ""
        if config.log_path:
            log_dir = pod_cfg.log_directory
            log_path = os.path.join(log_dir, config.log_path) if log_dir else config.log_path
        image_cfg = image.config.get("config") or {}
        rec = ContainerRecord(
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
            image_name=config.image.image,
            bundle=str(self.bundles_dir / cid),
            log_path=log_path,
            stop_signal=resolve_signal(config.stop_signal, str(image_cfg.get("StopSignal") or "")),
            resources_b64=encode_message(config.linux.resources),
        )
        self._save(rec)
        self._names[rec.name_key] = cid
        marks = [time.perf_counter()]
        try:
            layers = self.images.layer_dirs(image)
            rootfs = await asyncio.to_thread(self.rootfs.mount, cid, layers)
            marks.append(time.perf_counter())
            target_pid = self._target_pid_path(config)
            ctx = self.pods.context(pod)
            spec = await asyncio.to_thread(
                container_spec,
                cid=cid,
                config=config,
                image_config=image.config,
                rootfs=Path(rootfs),
                pod=ctx,
                host=self.pods.host,
                rro_supported=runtime.handler.recursive_read_only_mounts,
                target_pid_path=target_pid,
            )
            user = spec["process"]["user"]
            rec.uid, rec.gid = int(user["uid"]), int(user["gid"])
            rec.supplemental_groups = list(user.get("additionalGids", []))
            rec.cgroups_path = spec["linux"]["cgroupsPath"]
            await asyncio.to_thread(self._write_bundle, rec, spec)
            self._processes[cid] = dict(spec["process"])
            marks.append(time.perf_counter())
            pid, conmon_pid = await runtime.create(
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
            rec.pid, rec.conmon_pid = pid, conmon_pid
            if self.pods.find(pod_id) is None:
                # RemovePodSandbox ran meanwhile and could not see this container yet
                raise NotFound(f"pod sandbox {pod_id} was removed during CreateContainer")
            rec.state = ContainerState.CREATED
            self._save(rec)
            marks.append(time.perf_counter())
        except BaseException as exc:
            log.warning("container %s: CreateContainer failed, unwinding: %s", cid, exc)
            await asyncio.shield(self._destroy(rec))
            raise
        self._watch(rec)
        steps = [round((b - a) * 1000, 1) for a, b in zip(marks, marks[1:], strict=False)]
        log.debug("container %s created; ms rootfs/spec/runtime/persist: %s", cid, steps)
        return cid

    def _target_pid_path(self, config: api_pb2.ContainerConfig) -> str | None:
        ns = config.linux.security_context.namespace_options
        if ns.pid != api_pb2.TARGET:
            return None
        target = self.find(ns.target_id)
        if target is None or target.state != ContainerState.RUNNING:
            raise NotFound(f"target container {ns.target_id!r} is not running")
        return f"/proc/{target.pid}/ns/pid"

    def _write_bundle(self, rec: ContainerRecord, spec: dict[str, Any]) -> None:
        rec.bundle_dir.mkdir(parents=True, exist_ok=True)
        (self.persist_dir / rec.id).mkdir(parents=True, exist_ok=True)
        (rec.bundle_dir / "config.json").write_text(json.dumps(spec))
        if rec.log_path:
            Path(rec.log_path).parent.mkdir(parents=True, exist_ok=True)

    # ---- exit watching -----------------------------------------------------------------

    def _watch(self, rec: ContainerRecord) -> None:
        if rec.id in self._watchers:
            return
        self._event(rec.id)
        task = asyncio.create_task(self._wait_exit(rec.id, rec.conmon_pid), name=f"watch-{rec.id[:12]}")
        self._watchers[rec.id] = task
        cid = rec.id

        def done(finished: asyncio.Task[None]) -> None:
            if self._watchers.get(cid) is finished:
                del self._watchers[cid]

        task.add_done_callback(done)

    async def _wait_exit(self, cid: str, conmon_pid: int) -> None:
        await exits.wait_pid_exit(conmon_pid)
        rec = self._records.get(cid)
        if rec is None:
            return
        await self._record_exit(rec)

    async def _record_exit(self, rec: ContainerRecord) -> None:
        runtime = self.runtime_of(rec)
        info = exits.read_exit(runtime.exit_file(rec.id), self.persist_dir / rec.id / "oom")
        if info is None:
            # conmon died without writing its file (killed itself): the status is lost
            code, finished, oom = 255, time.time_ns(), False
            rec.message = "the container monitor exited without an exit status"
        else:
            code, finished, oom = info.exit_code, info.finished_at_ns, info.oom_killed
        if rec.state in (ContainerState.CREATED, ContainerState.RUNNING):
            rec.state = ContainerState.EXITED
            rec.exit_code = code
            rec.finished_at = finished
            rec.reason = exit_reason(code, oom)
            self._save(rec)
        self._event(rec.id).set()
        self._spawn_cleanup(rec)

    def _spawn_cleanup(self, rec: ContainerRecord) -> None:
        async def cleanup() -> None:
            # runc forgets the container and removes its cgroup; nothing waits for this
            with contextlib.suppress(Exception):
                await self.runtime_of(rec).delete(rec.id)
                current = self._records.get(rec.id)
                if current is not None:
                    current.deleted = True
                    self._save(current)

        key = f"cleanup-{rec.id}"
        if key in self._watchers:
            return
        task = asyncio.create_task(cleanup(), name=key)
        self._watchers[key] = task

        def done(finished: asyncio.Task[None]) -> None:
            if self._watchers.get(key) is finished:
                del self._watchers[key]

        task.add_done_callback(done)

    # ---- StartContainer ----------------------------------------------------------------

    async def start(self, cid: str) -> None:
        if not cid:
            raise InvalidArgument("container id is required")
        rec = self.get(cid)
        async with self._lock(rec.id):
            if rec.state != ContainerState.CREATED:
                raise FailedPrecondition(f"container {rec.id} is {rec.state}, not created")
            runtime = self.runtime_of(rec)
            started = time.time_ns()
            rec.started_at = started
            try:
                await runtime.start(rec.id)
            except Internal:
                # a process that ran and exited at once may have been cleaned up under
                # `runtime start` (runc then fails to remove its exec fifo): it did start
                if not runtime.exit_file(rec.id).exists():
                    rec.started_at = 0
                    raise
            except BaseException:
                rec.started_at = 0
                raise
            # a quick command may have exited (and been recorded) already
            if rec.state == ContainerState.CREATED and can_transition(rec.state, ContainerState.RUNNING):
                rec.state = ContainerState.RUNNING
            self._save(rec)

    # ---- StopContainer -----------------------------------------------------------------

    async def stop(self, cid: str, grace_s: int) -> None:
        if not cid:
            raise InvalidArgument("container id is required")
        rec = self.find(cid)
        if rec is None:
            return
        await asyncio.shield(self._stop(rec, grace_s))

    async def _stop(self, rec: ContainerRecord, grace_s: int) -> None:
        if rec.state not in (ContainerState.CREATED, ContainerState.RUNNING):
            return
        runtime = self.runtime_of(rec)
        exited = self._event(rec.id)
        if rec.id not in self._watchers:
            self._watch(rec)
        if grace_s > 0 and rec.state == ContainerState.RUNNING and rec.stop_signal != signal.SIGKILL:
            with contextlib.suppress(NotFound, Internal):
                await runtime.kill(rec.id, rec.stop_signal)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(exited.wait(), grace_s)
        while not exited.is_set():
            with contextlib.suppress(NotFound, Internal):
                await runtime.kill(rec.id, int(signal.SIGKILL), all_processes=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(exited.wait(), KILL_RETRY)

    async def stop_pod_containers(self, pod_id: str) -> None:
        await asyncio.gather(*(self._stop(r, 0) for r in self.in_pod(pod_id)))

    # ---- RemoveContainer ---------------------------------------------------------------

    async def remove(self, cid: str) -> None:
        if not cid:
            raise InvalidArgument("container id is required")
        rec = self.find(cid)
        if rec is None:
            return
        await asyncio.wait_for(asyncio.shield(self._remove(rec)), CLEANUP_TIMEOUT)

    async def _remove(self, rec: ContainerRecord) -> None:
        async with self._lock(rec.id):
            if self._records.get(rec.id) is None:
                return
            await self._stop(rec, 0)
            await self._destroy(rec)

    async def remove_pod_containers(self, pod_id: str) -> None:
        await asyncio.gather(*(self._remove(r) for r in self.in_pod(pod_id)))

    async def _destroy(self, rec: ContainerRecord) -> None:
        """Forget everything of a container (also a half-created one); idempotent."""
        runtime = self.runtime_of(rec)
        if rec.state in (ContainerState.CREATING, ContainerState.CREATED, ContainerState.RUNNING):
            # only a half-done create gets here alive: nothing else is waiting on it
            with contextlib.suppress(Exception):
                await runtime.kill(rec.id, int(signal.SIGKILL), all_processes=True)
            if rec.conmon_pid and _is_conmon(rec.conmon_pid, rec.id):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(exits.wait_pid_exit(rec.conmon_pid), 10.0)
        cleanup = self._watchers.get(f"cleanup-{rec.id}")
        if cleanup is not None:
            with contextlib.suppress(Exception):
                await cleanup
        watcher = self._watchers.pop(rec.id, None)
        if watcher is not None:
            watcher.cancel()
        if not rec.deleted:
            with contextlib.suppress(Exception):
                await runtime.delete(rec.id, force=True)
        await asyncio.to_thread(self._remove_files, rec, runtime)
        self._forget(rec.id)
        if self._names.get(rec.name_key) == rec.id:
            del self._names[rec.name_key]
        self._inflight.forget(rec.id)
        self._exited.pop(rec.id, None)
        self._cpu_samples.pop(rec.id, None)
        self._processes.pop(rec.id, None)
        self._locks.pop(rec.id, None)

    def _remove_files(self, rec: ContainerRecord, runtime: OciRuntime) -> None:
        if self.rootfs is not None:
            try:
                self.rootfs.remove(rec.id)
            except Exception as exc:  # noqa: BLE001 - the rest must still go
                log.warning("container %s: rootfs removal: %s", rec.id, exc)
        shutil.rmtree(rec.bundle_dir, ignore_errors=True)
        shutil.rmtree(self.persist_dir / rec.id, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            runtime.exit_file(rec.id).unlink()
        with contextlib.suppress(FileNotFoundError):
            (runtime.socket_dir / rec.id).unlink()

    # ---- Status / List -----------------------------------------------------------------

    def status(self, cid: str, verbose: bool = False) -> api_pb2.ContainerStatusResponse:
        if not cid:
            raise InvalidArgument("container id is required")
        rec = self.get(cid)
        cfg = rec.config()
        status = api_pb2.ContainerStatus(
            id=rec.id,
            metadata=cfg.metadata,
            state=CRI_STATE[rec.state],
            created_at=rec.created_at,
            started_at=rec.started_at if rec.state != ContainerState.CREATED else 0,
            finished_at=rec.finished_at,
            exit_code=rec.exit_code,
            image=api_pb2.ImageSpec(image=rec.image_name, user_specified_image=rec.image_name),
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
                    uid=rec.uid, gid=rec.gid, supplemental_groups=rec.supplemental_groups
                )
            ),
            stop_signal=_signal_enum(rec.stop_signal),
        )
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

    def list_response(self, flt: api_pb2.ContainerFilter | None) -> bytes:
        """The answer is kept until a record changes: kubelet lists every second."""
        key = (self._generation, flt.SerializeToString() if flt is not None else b"")
        cached = self._list_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        # kept serialized: the server passes bytes through, so a cached answer costs no encoding
        response = bytes(api_pb2.ListContainersResponse(containers=self.list(flt)).SerializeToString())
        self._list_cache = (key, response)
        return response

    def list(self, flt: api_pb2.ContainerFilter | None) -> builtins.list[api_pb2.Container]:
        out = []
        for rec in self._select(
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
                    image=api_pb2.ImageSpec(image=rec.image_name, user_specified_image=rec.image_name),
                    image_ref=rec.image_ref,
                    image_id=rec.image_id,
                    state=CRI_STATE[rec.state],
                    created_at=rec.created_at,
                    labels=dict(cfg.labels),
                    annotations=dict(cfg.annotations),
                )
            )
        return out

    def _select(self, cid: str, pod_id: str, labels: Any) -> Iterable[ContainerRecord]:
        for rec in self._records.values():
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

    # ---- ExecSync, Update, ReopenContainerLog -------------------------------------------

    async def exec_sync(self, cid: str, cmd: builtins.list[str], limit_s: int) -> ExecResult:
        if not cid:
            raise InvalidArgument("container id is required")
        if not cmd:
            raise InvalidArgument("exec needs a command")
        rec = self.get(cid)
        if rec.state != ContainerState.RUNNING:
            raise NotFound(f"container {rec.id} is not created or running")
        process = self._process(rec)
        process["args"] = list(cmd)
        tty = bool(process.get("terminal", False))
        return await self.runtime_of(rec).exec_sync(rec.id, process, limit_s, tty=tty)

    async def update_resources(self, cid: str, resources: api_pb2.LinuxContainerResources) -> None:
        if not cid:
            raise InvalidArgument("container id is required")
        rec = self.get(cid)
        if rec.state not in (ContainerState.CREATED, ContainerState.RUNNING):
            raise FailedPrecondition(f"container {rec.id} is {rec.state}")
        await self.runtime_of(rec).update(rec.id, oci_resources(resources, self.pods.host.hugetlb))
        rec.resources_b64 = encode_message(resources)
        self._save(rec)

    async def reopen_log(self, cid: str) -> None:
        if not cid:
            raise InvalidArgument("container id is required")
        rec = self.get(cid)
        if rec.state != ContainerState.RUNNING:
            raise FailedPrecondition(f"container {rec.id} is not running")
        if not rec.log_path:
            return
        await self.runtime_of(rec).reopen_log(rec.bundle_dir)
        # conmon reopens asynchronously; kubelet expects the new file once we answer
        log_file = Path(rec.log_path)
        for _ in range(500):
            if await asyncio.to_thread(log_file.exists):
                break
            await asyncio.sleep(0.01)  # noqa: ASYNC110 - conmon gives no signal but the file

    # ---- stats -------------------------------------------------------------------------

    def stats_ids(self, cid: str, pod_id: str, labels: dict[str, str]) -> builtins.list[str]:
        return [
            r.id
            for r in self._select(cid, pod_id, labels)
            if r.state in (ContainerState.CREATED, ContainerState.RUNNING)
        ]

    async def _usage(self, rec: ContainerRecord) -> CgroupUsage | None:
        if rec.state != ContainerState.RUNNING or not rec.cgroups_path:
            return None
        rel = cgroup_relpath(rec.cgroups_path, self.config.cgroup_driver)
        return await asyncio.to_thread(read_usage, rel)

    async def stats(self, cid: str) -> api_pb2.ContainerStats:
        rec = self.get(cid)
        cfg = rec.config()
        now = time.time_ns()
        msg = api_pb2.ContainerStats(
            attributes=api_pb2.ContainerAttributes(
                id=rec.id, metadata=cfg.metadata, labels=dict(cfg.labels), annotations=dict(cfg.annotations)
            )
        )
        usage = await self._usage(rec)
        if usage is None:
            usage = CgroupUsage(now, 0, 0, 0, 0, 0, 0, 0, 0)
        previous = self._cpu_samples.get(rec.id)
        cores = nano_cores(previous, usage)
        self._cpu_samples[rec.id] = CpuSample(usage.timestamp_ns, usage.cpu_usage_ns)
        msg.cpu.CopyFrom(cpu_message(usage, cores))
        msg.memory.CopyFrom(memory_message(usage))
        used, inodes = (0, 0)
        if self.rootfs is not None:
            with contextlib.suppress(Exception):
                used, inodes = await asyncio.to_thread(self.rootfs.usage, rec.id)
        msg.writable_layer.CopyFrom(
            api_pb2.FilesystemUsage(
                timestamp=now,
                fs_id=api_pb2.FilesystemIdentifier(
                    mountpoint=str(self.rootfs.mountpoint()) if self.rootfs else ""
                ),
                used_bytes=api_pb2.UInt64Value(value=used),
                inodes_used=api_pb2.UInt64Value(value=inodes),
            )
        )
        return msg

    async def pod_stats(self, pod_id: str) -> api_pb2.PodSandboxStats:
        pod = self.pods.get(pod_id)
        cfg = pod.config()
        now = time.time_ns()
        ids = self.stats_ids("", pod.id, {})
        containers = await asyncio.gather(*(self.stats(cid) for cid in ids))
        usages = [
            u for u in await asyncio.gather(*(self._usage(self.get(cid)) for cid in ids)) if u is not None
        ]
        total = sum_usage(usages, now)
        previous = self._cpu_samples.get(f"pod-{pod.id}")
        cores = nano_cores(previous, total)
        self._cpu_samples[f"pod-{pod.id}"] = CpuSample(now, total.cpu_usage_ns)
        linux = api_pb2.LinuxPodSandboxStats(
            cpu=cpu_message(total, cores),
            memory=memory_message(total),
            process=api_pb2.ProcessUsage(timestamp=now, process_count=api_pb2.UInt64Value(value=total.pids)),
            containers=list(containers),
        )
        network = self.pods.network
        if pod.netns_path and network is not None:
            with contextlib.suppress(Exception):
                counters = await network.interface_stats_async(Path(pod.netns_path))
                ifaces = [
                    api_pb2.NetworkInterfaceUsage(
                        name=name,
                        rx_bytes=api_pb2.UInt64Value(value=rx),
                        tx_bytes=api_pb2.UInt64Value(value=tx),
                    )
                    for name, (rx, tx) in sorted(counters.items())
                ]
                default = next((i for i in ifaces if i.name == "eth0"), ifaces[0] if ifaces else None)
                linux.network.CopyFrom(api_pb2.NetworkUsage(timestamp=now, interfaces=ifaces))
                if default is not None:
                    linux.network.default_interface.CopyFrom(default)
        return api_pb2.PodSandboxStats(
            attributes=api_pb2.PodSandboxAttributes(
                id=pod.id, metadata=cfg.metadata, labels=dict(cfg.labels), annotations=dict(cfg.annotations)
            ),
            linux=linux,
        )


def _is_conmon(pid: int, cid: str = "") -> bool:
    """Is `pid` still the conmon of this container (pids get reused across restarts)?"""
    if not exits.process_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return False
    return bool(argv) and argv[0].endswith(b"conmon") and (not cid or cid.encode() in argv)


def _signal_enum(number: int) -> api_pb2.Signal:
    with contextlib.suppress(ValueError):
        name = signal.Signals(number).name
        return api_pb2.Signal.Value(name)  # type: ignore[no-any-return]
    return api_pb2.RUNTIME_DEFAULT
