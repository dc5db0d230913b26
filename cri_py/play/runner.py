"""Drive a CRI endpoint the way kubelet's SyncPod does for one pod: sandbox, images, init
containers in order, then app containers; and take it all down again.

What a manifest created is found again through the labels kubelet puts on every sandbox and
container (io.kubernetes.pod.name/namespace/uid), so a fresh process can stop or inspect it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from cri_py.api import api_pb2
from cri_py.errors import CriError, FailedPrecondition
from cri_py.play import cgroups, translate, volumes
from cri_py.play.client import CriClient
from cri_py.play.manifest import iter_containers
from cri_py.play.probes import run_check, run_lifecycle_handler
from cri_py.play.resources import is_sidecar
from cri_py.play.translate import ImageFacts, PlayContext

POLL_INTERVAL = 0.1
MIN_GRACE_PERIOD = 2  # kubelet's minimumGracePeriodInSeconds after a preStop hook
QOS_LEVELS = ("", "burstable/", "besteffort/")
ContainerState = api_pb2.ContainerState


class PodFailed(Exception):
    """The pod reached a state kubelet reports as failed (an init container failed for good)."""


class StartFailed(CriError):
    """A container could not be started; `reason` is kubelet's waiting reason for it."""

    def __init__(self, reason: str, container: str, detail: str) -> None:
        super().__init__(f"container {container!r}: {reason}: {detail}")
        self.reason = reason
        self.container = container
        self.detail = detail


@dataclass
class StartedContainer:
    id: str
    name: str
    restart_count: int
    annotations: dict[str, str] = field(default_factory=dict)  # for the preStop hook on a kill


def sidecar_names(pod: Any) -> tuple[str, ...]:
    return tuple(c.name for c in pod.spec.init_containers or [] if is_sidecar(c))


def new_random_id() -> str:
    return os.urandom(4).hex()


class Player:
    """One CRI endpoint, one kubelet context; `say` prints progress lines."""

    def __init__(self, cri: CriClient, ctx: PlayContext, say: Callable[[str], None]) -> None:
        self.cri = cri
        self.ctx = ctx
        self.say = say
        self.random_id = new_random_id

    # --- lookups through labels -------------------------------------------------------------

    async def sandboxes(self, namespace: str, name: str) -> list[Any]:
        selector = {translate.POD_NAME_LABEL: name, translate.POD_NAMESPACE_LABEL: namespace}
        resp = await self.cri.runtime.ListPodSandbox(
            api_pb2.ListPodSandboxRequest(filter=api_pb2.PodSandboxFilter(label_selector=selector))
        )
        return sorted(resp.items, key=lambda s: s.created_at)

    async def containers(self, sandbox_id: str) -> list[Any]:
        resp = await self.cri.runtime.ListContainers(
            api_pb2.ListContainersRequest(filter=api_pb2.ContainerFilter(pod_sandbox_id=sandbox_id))
        )
        return sorted(resp.containers, key=lambda c: c.created_at)

    async def container_status(self, container_id: str) -> Any:
        resp = await self.cri.runtime.ContainerStatus(
            api_pb2.ContainerStatusRequest(container_id=container_id)
        )
        return resp.status

    async def pod_ips(self, sandbox_id: str) -> tuple[str, ...]:
        resp = await self.cri.runtime.PodSandboxStatus(
            api_pb2.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id)
        )
        network = resp.status.network
        ips = [network.ip] if network.ip else []
        ips.extend(extra.ip for extra in network.additional_ips if extra.ip)
        return tuple(ips)

    # --- images --------------------------------------------------------------------------------

    async def _image_status(self, image: str) -> Any | None:
        resp = await self.cri.image.ImageStatus(
            api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=image))
        )
        return resp.image if resp.HasField("image") else None

    async def ensure_image(self, container: Any, sandbox_config: api_pb2.PodSandboxConfig) -> ImageFacts:
        """EnsureImageExists per imagePullPolicy, then getImageUser."""
        policy = container.image_pull_policy
        present = await self._image_status(container.image)
        if policy == "Always" or (policy == "IfNotPresent" and present is None):
            self.say(f"pulling {container.image}")
            resp = await self.cri.image.PullImage(
                api_pb2.PullImageRequest(
                    image=api_pb2.ImageSpec(image=container.image, user_specified_image=container.image),
                    sandbox_config=sandbox_config,
                )
            )
            ref = resp.image_ref
            present = await self._image_status(ref)
        elif present is None:
            raise FailedPrecondition(
                f"ErrImageNeverPull: container {container.name!r}: image {container.image!r} is not present "
                "and imagePullPolicy is Never"
            )
        else:
            ref = present.id
        if present is not None and present.HasField("uid"):
            return ImageFacts(ref=ref, uid=present.uid.value, username="")
        if present is not None and present.username:
            return ImageFacts(ref=ref, uid=None, username=present.username)
        return ImageFacts(ref=ref, uid=0, username="")

    # --- up ------------------------------------------------------------------------------------

    async def run_sandbox(
        self, pod: Any, attempt: int = 0
    ) -> tuple[str, api_pb2.PodSandboxConfig, tuple[str, ...]]:
        await asyncio.to_thread(volumes.setup_pod, pod, self.ctx)
        config = translate.sandbox_config(pod, self.ctx, attempt)
        if self.ctx.cgroup_driver == "cgroupfs" and cgroups.is_cgroup_v1(self.ctx.cgroup_root):
            await asyncio.to_thread(
                cgroups.create_pod_cgroup,
                config.linux.cgroup_parent,
                cgroups.pod_cgroup_config(pod),
                self.ctx.cgroup_root,
            )
        resp = await self.cri.runtime.RunPodSandbox(
            api_pb2.RunPodSandboxRequest(config=config, runtime_handler=translate.runtime_handler(pod))
        )
        ips = await self.pod_ips(resp.pod_sandbox_id)
        if pod.spec.host_network and not ips:
            ips = self.ctx.node.host_ips
        await asyncio.to_thread(volumes.write_etc_hosts, pod, self.ctx, ips)
        return resp.pod_sandbox_id, config, ips

    async def start_container(
        self,
        pod: Any,
        container: Any,
        sandbox_id: str,
        sandbox_config: api_pb2.PodSandboxConfig,
        pod_ips: tuple[str, ...],
        restart_count: int,
    ) -> StartedContainer:
        try:
            image = await self.ensure_image(container, sandbox_config)
        except grpc.aio.AioRpcError as exc:
            raise StartFailed("ErrImagePull", container.name, f"{exc.code().name}: {exc.details()}") from None
        except FailedPrecondition as exc:
            raise StartFailed("ErrImageNeverPull", container.name, str(exc)) from None
        log_file = await asyncio.to_thread(
            volumes.setup_container, pod, container, self.ctx, self.random_id()
        )
        config = translate.container_config(
            pod,
            container,
            self.ctx,
            restart_count=restart_count,
            image=image,
            pod_ips=pod_ips,
            termination_log=log_file,
        )
        env = {kv.key: kv.value for kv in config.envs}
        for mount, sub_path in translate.volume_mounts(pod, container, self.ctx, env):
            if sub_path:
                await asyncio.to_thread(volumes.make_sub_path, mount.host_path)
        try:
            resp = await self.cri.runtime.CreateContainer(
                api_pb2.CreateContainerRequest(
                    pod_sandbox_id=sandbox_id, config=config, sandbox_config=sandbox_config
                )
            )
        except grpc.aio.AioRpcError as exc:
            raise StartFailed(
                "CreateContainerError", container.name, f"{exc.code().name}: {exc.details()}"
            ) from None
        try:
            await self.cri.runtime.StartContainer(
                api_pb2.StartContainerRequest(container_id=resp.container_id)
            )
        except grpc.aio.AioRpcError as exc:
            raise StartFailed(
                "RunContainerError", container.name, f"{exc.code().name}: {exc.details()}"
            ) from None
        self.say(f"started {pod.metadata.name}/{container.name} ({resp.container_id[:13]})")
        post_start = container.lifecycle.post_start if container.lifecycle is not None else None
        if post_start is not None:
            ok, detail = await run_lifecycle_handler(
                self.cri,
                resp.container_id,
                post_start.model_dump(by_alias=True, exclude_none=True),
                pod_ips[0] if pod_ips else "",
                [p.model_dump(by_alias=True) for p in container.ports or []],
                0,
            )
            if not ok:
                # kubelet kills the container (FailedPostStartHook); restartPolicy decides what next
                self.say(f"{pod.metadata.name}/{container.name}: FailedPostStartHook: {detail}")
                await self.stop_container(
                    resp.container_id,
                    int(pod.spec.termination_grace_period_seconds),
                    dict(config.annotations),
                    pod_ips[0] if pod_ips else "",
                )
        return StartedContainer(resp.container_id, container.name, restart_count, dict(config.annotations))

    async def wait_exited(self, container_id: str) -> Any:
        while True:
            status = await self.container_status(container_id)
            if status.state == ContainerState.CONTAINER_EXITED:
                return status
            await asyncio.sleep(POLL_INTERVAL)

    async def wait_started(
        self, pod: Any, container: Any, started: StartedContainer, pod_ips: tuple[str, ...]
    ) -> None:
        """A sidecar counts as started once it runs and its startup probe (if any) succeeded;
        only then does kubelet go on with the next init container."""
        while True:
            status = await self.container_status(started.id)
            if status.state == ContainerState.CONTAINER_EXITED:
                raise StartFailed("SidecarExited", container.name, f"exited with code {status.exit_code}")
            if status.state == ContainerState.CONTAINER_RUNNING:
                break
            await asyncio.sleep(POLL_INTERVAL)
        probe = container.startup_probe
        if probe is None:
            return
        await asyncio.sleep(probe.initial_delay_seconds or 0)
        failures = 0
        while True:
            ok, detail = await run_check(
                self.cri, started.id, container, probe, pod_ips[0] if pod_ips else ""
            )
            if ok:
                return
            failures += 1
            if failures >= (probe.failure_threshold or 3):
                raise StartFailed("StartupProbeFailed", container.name, detail)
            await asyncio.sleep(probe.period_seconds or 10)

    async def run_init(
        self,
        pod: Any,
        container: Any,
        sandbox_id: str,
        config: api_pb2.PodSandboxConfig,
        ips: tuple[str, ...],
        restart_count: int,
    ) -> Any:
        started = await self.start_container(pod, container, sandbox_id, config, ips, restart_count)
        return await self.wait_exited(started.id)

    async def clear_old_sandboxes(self, pod: Any) -> tuple[Any | None, int, dict[str, int]]:
        """What runs already of this pod: its ready sandbox (kept), or else the attempt number and
        per-container restart counts for a new sandbox, after removing the old ones (a dead
        sandbox of the same pod keeps its volumes; another pod under this name loses them)."""
        meta = pod.metadata
        grace = int(pod.spec.termination_grace_period_seconds)
        attempt = 0
        restarts: dict[str, int] = {}
        olds = await self.sandboxes(meta.namespace, meta.name)
        for old in olds:
            if (
                old.labels.get(translate.POD_UID_LABEL) == meta.uid
                and old.state == api_pb2.PodSandboxState.SANDBOX_READY
            ):
                return old, 0, {}
        for old in olds:
            if old.labels.get(translate.POD_UID_LABEL) == meta.uid:
                # kubelet re-creates a dead sandbox of the same pod: attempt + 1, volumes kept
                attempt = max(attempt, old.metadata.attempt + 1)
                for container in await self.containers(old.id):
                    count = int(container.annotations.get(translate.RESTART_COUNT, "0")) + 1
                    restarts[container.metadata.name] = max(restarts.get(container.metadata.name, 0), count)
                self.say(f"re-creating the sandbox of pod {meta.namespace}/{meta.name} (attempt {attempt})")
                await self.remove_sandbox(old, grace, teardown=False, sidecars=sidecar_names(pod))
            else:
                self.say(f"replacing pod {meta.namespace}/{meta.name} ({old.id[:13]})")
                await self.remove_sandbox(old, grace)
        return None, attempt, restarts

    async def up(self, pod: Any) -> str:
        """Run the pod once: init containers to completion in order, then the app containers.
        Returns the sandbox id; raises PodFailed when an init container fails."""
        meta = pod.metadata
        ready, attempt, restarts = await self.clear_old_sandboxes(pod)
        if ready is not None:
            self.say(f"pod {meta.namespace}/{meta.name} is already running ({ready.id[:13]})")
            return str(ready.id)
        sandbox_id, config, ips = await self.run_sandbox(pod, attempt)
        self.say(f"pod {meta.namespace}/{meta.name} sandbox {sandbox_id[:13]} ip {','.join(ips) or '-'}")
        for is_init, container in iter_containers(pod):
            count = restarts.get(container.name, 0)
            if not is_init or is_sidecar(container):
                started = await self.start_container(pod, container, sandbox_id, config, ips, count)
                if is_init:
                    await self.wait_started(pod, container, started, ips)
                continue
            status = await self.run_init(pod, container, sandbox_id, config, ips, count)
            if status.exit_code != 0:
                if pod.spec.restart_policy == "Never":
                    # the pod is Failed for good: kubelet stops its sandbox (removal is --down's job)
                    await self.cri.runtime.StopPodSandbox(
                        api_pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox_id)
                    )
                else:
                    self.say("kubelet would retry it with back-off: use --watch")
                raise PodFailed(
                    f"pod {meta.namespace}/{meta.name}: init container {container.name!r} exited with code "
                    f"{status.exit_code} (Init:{status.reason or 'Error'})"
                )
        return sandbox_id

    # --- down ----------------------------------------------------------------------------------

    async def stop_container(
        self, container_id: str, grace: int, annotations: dict[str, str] | None = None, pod_ip: str = ""
    ) -> None:
        """killContainer: the preStop hook (kept in the container's annotation) within the grace
        period, then StopContainer with what is left of it (at least 2 s unless forced)."""
        annotations = annotations or {}
        hook = annotations.get(translate.PRESTOP_HANDLER)
        if hook and grace > 0:
            started = time.monotonic()
            ports = json.loads(annotations.get(translate.CONTAINER_PORTS, "[]"))
            try:
                ok, detail = await asyncio.wait_for(
                    run_lifecycle_handler(self.cri, container_id, json.loads(hook), pod_ip, ports, grace),
                    grace,
                )
            except TimeoutError:
                ok, detail = False, f"did not finish within {grace}s"
            if not ok:
                self.say(f"preStop hook of {container_id[:13]} failed: {detail}")
            grace = max(MIN_GRACE_PERIOD, grace - int(time.monotonic() - started))
        await self.cri.runtime.StopContainer(
            api_pb2.StopContainerRequest(container_id=container_id, timeout=grace)
        )

    async def remove_sandbox(
        self, sandbox: Any, grace: int, teardown: bool = True, sidecars: tuple[str, ...] = ()
    ) -> None:
        """killPod then removal: app containers stopped together within the grace period, then
        the sidecars one by one in reverse order, the sandbox stopped and removed, then (unless
        the pod lives on in a new sandbox) its host directories, mounts and cgroups."""
        containers = await self.containers(sandbox.id)
        running = [c for c in containers if c.state != ContainerState.CONTAINER_EXITED]
        ips = await self.pod_ips(sandbox.id) if running else ()
        ip = ips[0] if ips else ""
        main = [c for c in running if c.metadata.name not in sidecars]
        await asyncio.gather(*(self.stop_container(c.id, grace, dict(c.annotations), ip) for c in main))
        for name in reversed(sidecars):
            for c in running:
                if c.metadata.name == name:
                    await self.stop_container(c.id, grace, dict(c.annotations), ip)
        await self.cri.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=sandbox.id))
        for container in containers:
            await self.cri.runtime.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=container.id))
        await self.cri.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=sandbox.id))
        uid = sandbox.labels.get(translate.POD_UID_LABEL, "")
        meta = sandbox.metadata
        if uid and teardown:
            await asyncio.to_thread(volumes.teardown_pod, uid, meta.namespace, meta.name, self.ctx)
            for level in QOS_LEVELS:
                await asyncio.to_thread(
                    volumes.remove_pod_cgroups, f"/kubepods/{level}pod{uid}", self.ctx.cgroup_root
                )

    async def down(self, namespace: str, name: str, grace: int, sidecars: tuple[str, ...] = ()) -> int:
        """Remove every sandbox of this pod; returns how many there were."""
        found = await self.sandboxes(namespace, name)
        for sandbox in found:
            await self.remove_sandbox(sandbox, grace, sidecars=sidecars)
            self.say(f"removed pod {namespace}/{name} ({sandbox.id[:13]})")
        return len(found)
