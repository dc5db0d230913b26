"""`cri-py play --watch`: kubelet's supervision for the manifest's pods until interrupted.

restartPolicy decides whether an exited container comes back (Always: always; OnFailure: on a
non-zero exit; Never: not), with kubelet's crash-loop back-off (immediately the first time,
then 10 s doubling up to 5 min, forgotten after 10 min of running); exec, tcpSocket and httpGet
liveness/readiness probes run on their schedule; every change is printed as a line.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from cri_py.api import api_pb2
from cri_py.play import translate
from cri_py.play.probes import run_check
from cri_py.play.resources import is_sidecar
from cri_py.play.runner import Player, StartedContainer, StartFailed
from cri_py.play.status import container_state_text, newest_per_name, short_message

ContainerState = api_pb2.ContainerState
WATCH_INTERVAL = 0.25
BACKOFF_MAX = 300.0
BACKOFF_RESET_AFTER = 600.0


@dataclass
class Backoff:
    """kubelet's per-container back-off: none on the first restart, then base doubling to max."""

    base: float
    maximum: float = BACKOFF_MAX
    delay: float = 0.0

    def next_delay(self, ran_for: float) -> float:
        if ran_for > BACKOFF_RESET_AFTER:
            self.delay = 0.0
        current = self.delay
        self.delay = self.base if self.delay == 0 else min(self.delay * 2, self.maximum)
        return current


@dataclass
class Tracked:
    """One container of the pod as the watcher sees it."""

    spec: Any
    current: StartedContainer | None = None
    state: str = ""
    restart_at: float | None = None
    backoff: Backoff = field(default_factory=lambda: Backoff(10.0))
    ready: bool = False
    probe_tasks: list[asyncio.Task[None]] = field(default_factory=list)
    pending_count: int | None = None  # a start that failed: retried at restart_at with this count
    sidecar: bool = False  # an init container with restartPolicy Always
    startup_passed: bool = False  # no startup probe, or it has succeeded for the current instance


def should_restart(policy: str, exit_code: int) -> bool:
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


class PodWatcher:
    def __init__(
        self, player: Player, pod: Any, backoff_base: float, clock: Callable[[], float] = time.monotonic
    ):
        self.player = player
        self.pod = pod
        self.clock = clock
        self.backoff_base = backoff_base
        self.label = f"{pod.metadata.namespace}/{pod.metadata.name}"
        self.sandbox_id = ""
        self.sandbox_config = api_pb2.PodSandboxConfig()
        self.ips: tuple[str, ...] = ()
        self.apps = {c.name: Tracked(c, backoff=Backoff(backoff_base)) for c in pod.spec.containers}
        self.sidecars = {
            c.name: Tracked(c, backoff=Backoff(backoff_base), sidecar=True)
            for c in pod.spec.init_containers or []
            if is_sidecar(c)
        }
        self.completed = False  # all app containers done for good: sidecars stopped
        self.failed = False
        self.attempt = 0
        self.init_counts: dict[str, int] = {}  # the restart count each init container last ran with

    def say(self, text: str) -> None:
        self.player.say(f"{time.strftime('%H:%M:%S')} {self.label} {text}")

    async def adopt_or_start(self) -> None:
        """Take over a running sandbox of this pod, or start one (init containers included)."""
        ready, self.attempt, restarts = await self.player.clear_old_sandboxes(self.pod)
        if ready is None:
            await self.new_sandbox(restarts)
            return
        self.sandbox_id = ready.id
        self.attempt = ready.metadata.attempt
        self.sandbox_config = translate.sandbox_config(self.pod, self.player.ctx, self.attempt)
        self.ips = await self.player.pod_ips(ready.id)
        for container in newest_per_name(await self.player.containers(ready.id)):
            tracked = self.apps.get(container.metadata.name) or self.sidecars.get(container.metadata.name)
            if tracked is not None:
                count = int(container.annotations.get(translate.RESTART_COUNT, "0"))
                tracked.current = StartedContainer(
                    container.id, container.metadata.name, count, dict(container.annotations)
                )
        self.say(f"watching sandbox {ready.id[:13]}")
        for tracked in self.all_tracked():
            if tracked.current is None:
                await self.start(tracked, 0)

    def all_tracked(self) -> list[Tracked]:
        return [*self.sidecars.values(), *self.apps.values()]

    def policy_of(self, tracked: Tracked) -> str:
        return "Always" if tracked.sidecar else str(self.pod.spec.restart_policy)

    async def new_sandbox(self, restarts: dict[str, int] | None = None) -> None:
        """A sandbox (attempt self.attempt), its init containers, then every app container with
        its restart count carried over (from `restarts` or what this watcher ran before)."""
        restarts = restarts or {}
        self.sandbox_id, self.sandbox_config, self.ips = await self.player.run_sandbox(self.pod, self.attempt)
        self.say(f"sandbox {self.sandbox_id[:13]} (attempt {self.attempt}) ip {','.join(self.ips) or '-'}")
        if not await self.run_init_containers(restarts):
            return
        for name, tracked in self.apps.items():
            count = restarts.get(name, 0) if tracked.current is None else tracked.current.restart_count + 1
            await self.start(tracked, count)

    async def sandbox_ready(self) -> bool:
        try:
            resp = await self.player.cri.runtime.PodSandboxStatus(
                api_pb2.PodSandboxStatusRequest(pod_sandbox_id=self.sandbox_id)
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                return False
            raise
        return bool(resp.status.state == api_pb2.PodSandboxState.SANDBOX_READY)

    async def recreate_sandbox(self) -> None:
        """kubelet: "Pod sandbox changed, it will be killed and re-created" (attempt + 1)."""
        self.say(f"sandbox {self.sandbox_id[:13]} is not ready: killing the pod and re-creating it")
        self.cancel_probes()
        for sandbox in await self.player.sandboxes(self.pod.metadata.namespace, self.pod.metadata.name):
            if sandbox.id == self.sandbox_id:
                await self.player.remove_sandbox(
                    sandbox,
                    int(self.pod.spec.termination_grace_period_seconds),
                    teardown=False,
                    sidecars=tuple(self.sidecars),
                )
        self.attempt += 1
        for tracked in self.all_tracked():
            tracked.state = ""
            tracked.restart_at = None
            tracked.pending_count = None
        await self.new_sandbox({name: count + 1 for name, count in self.init_counts.items()})

    async def run_init_containers(self, restarts: dict[str, int]) -> bool:
        """Each init container to success in order; a failure is retried with back-off unless the
        restartPolicy is Never, which fails the pod."""
        policy = self.pod.spec.restart_policy
        for container in self.pod.spec.init_containers or []:
            if container.name in self.sidecars:
                await self.start_sidecar(self.sidecars[container.name], restarts)
                continue
            backoff = Backoff(self.backoff_base)
            attempt = restarts.get(container.name, 0)
            while True:
                started = self.clock()
                self.init_counts[container.name] = attempt
                try:
                    status = await self.player.run_init(
                        self.pod, container, self.sandbox_id, self.sandbox_config, self.ips, attempt
                    )
                except StartFailed as exc:
                    # never ran, so not a failure of the pod: retried whatever the restartPolicy
                    delay = backoff.next_delay(0.0)
                    self.say(
                        f"init container {container.name}: Init:{exc.reason}: {exc.detail}; retrying in {delay:g}s"
                    )
                    await asyncio.sleep(delay)
                    continue
                if status.exit_code == 0:
                    self.say(f"init container {container.name} completed")
                    break
                if policy == "Never":
                    self.say(
                        f"init container {container.name} failed: {container_state_text(status)}; pod Failed (Init:Error)"
                    )
                    self.failed = True
                    return False
                delay = backoff.next_delay(self.clock() - started)
                self.say(
                    f"init container {container.name} failed: {container_state_text(status)}; "
                    f"Init:CrashLoopBackOff, retrying in {delay:g}s"
                )
                await asyncio.sleep(delay)
                attempt += 1
        return True

    async def start_sidecar(self, tracked: Tracked, restarts: dict[str, int]) -> None:
        """Start a sidecar and wait until it runs and its startup probe passed; it is restarted
        (with back-off) until it gets there, whatever the pod's restartPolicy."""
        name = tracked.spec.name
        count = restarts.get(name, 0) if tracked.current is None else tracked.current.restart_count + 1
        await self.start(tracked, count)
        while True:
            if tracked.pending_count is not None:
                await asyncio.sleep(max(0.0, (tracked.restart_at or 0.0) - self.clock()))
                await self.start(tracked, tracked.pending_count)
                continue
            assert tracked.current is not None
            status = await self.player.container_status(tracked.current.id)
            if status.state == ContainerState.CONTAINER_EXITED:
                delay = tracked.backoff.next_delay(0.0)
                self.say(
                    f"sidecar {name} exited before it started: {container_state_text(status)}; retrying in {delay:g}s"
                )
                await asyncio.sleep(delay)
                await self.start(tracked, tracked.current.restart_count + 1)
                continue
            if status.state == ContainerState.CONTAINER_RUNNING and tracked.startup_passed:
                self.say(f"sidecar {name} started")
                tracked.state = container_state_text(status)
                return
            await asyncio.sleep(0.1)

    async def start(self, tracked: Tracked, restart_count: int) -> None:
        for task in tracked.probe_tasks:
            task.cancel()
        try:
            tracked.current = await self.player.start_container(
                self.pod, tracked.spec, self.sandbox_id, self.sandbox_config, self.ips, restart_count
            )
        except StartFailed as exc:
            # ErrImagePull and friends: kubelet retries with the container's back-off
            delay = tracked.backoff.next_delay(0.0)
            self.say(f"{tracked.spec.name}: {exc.reason}: {exc.detail}; retrying in {delay:g}s")
            tracked.pending_count = restart_count
            tracked.restart_at = self.clock() + delay
            return
        tracked.pending_count = None
        tracked.ready = False
        tracked.restart_at = None
        tracked.startup_passed = tracked.spec.startup_probe is None
        if tracked.spec.startup_probe is not None:
            # liveness and readiness wait until the startup probe has succeeded once
            tracked.probe_tasks = [
                asyncio.create_task(
                    self.probe_loop(tracked, tracked.current, "startup", tracked.spec.startup_probe)
                )
            ]
        else:
            self.start_probes(tracked, tracked.current)

    def start_probes(self, tracked: Tracked, instance: StartedContainer) -> None:
        tracked.probe_tasks.extend(
            asyncio.create_task(self.probe_loop(tracked, instance, kind, probe))
            for kind, probe in (
                ("liveness", tracked.spec.liveness_probe),
                ("readiness", tracked.spec.readiness_probe),
            )
            if probe is not None
        )

    async def probe_loop(self, tracked: Tracked, instance: StartedContainer, kind: str, probe: Any) -> None:
        try:
            await self._probe_loop(tracked, instance, kind, probe)
        except grpc.aio.AioRpcError as exc:
            # the container went away under the probe; the next tick sees what happened
            self.say(f"{tracked.spec.name}: {kind} probe stopped: {exc.code().name}: {exc.details()}")

    async def _probe_loop(self, tracked: Tracked, instance: StartedContainer, kind: str, probe: Any) -> None:
        await asyncio.sleep(probe.initial_delay_seconds or 0)
        failures = successes = 0
        while tracked.current is instance:
            ok, detail = await run_check(
                self.player.cri, instance.id, tracked.spec, probe, self.ips[0] if self.ips else "127.0.0.1"
            )
            if ok:
                failures, successes = 0, successes + 1
                if kind == "startup":
                    tracked.startup_passed = True
                    self.say(f"{tracked.spec.name}: startup probe succeeded")
                    self.start_probes(tracked, instance)
                    return
                if kind == "readiness" and not tracked.ready and successes >= (probe.success_threshold or 1):
                    tracked.ready = True
                    self.say(f"{tracked.spec.name}: ready")
            else:
                successes, failures = 0, failures + 1
                self.say(f"{tracked.spec.name}: {kind} probe failed: {detail}")
                if failures >= (probe.failure_threshold or 3):
                    if kind == "readiness" and tracked.ready:
                        tracked.ready = False
                        self.say(f"{tracked.spec.name}: not ready")
                    if kind in ("liveness", "startup"):
                        self.say(f"{tracked.spec.name}: failed {kind} probe, will be restarted")
                        grace = probe.termination_grace_period_seconds
                        if grace is None:
                            grace = self.pod.spec.termination_grace_period_seconds
                        ip = self.ips[0] if self.ips else ""
                        await self.player.stop_container(instance.id, int(grace), instance.annotations, ip)
                        return
            await asyncio.sleep(probe.period_seconds or 10)

    async def tick(self) -> None:
        """One look at the sandbox and every app container: report changes, restart what is due."""
        if self.sandbox_id and not await self.sandbox_ready():
            await self.recreate_sandbox()
            return
        now = self.clock()
        for tracked in self.all_tracked():
            # once the app containers are done the sidecars are stopped for good
            finished_sidecar = tracked.sidecar and self.completed
            if tracked.pending_count is not None and not finished_sidecar:
                if tracked.restart_at is not None and now >= tracked.restart_at:
                    await self.start(tracked, tracked.pending_count)
                continue
            if tracked.current is None:
                continue
            try:
                status = await self.player.container_status(tracked.current.id)
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                # removed behind our back: kubelet starts a container that is not there
                self.say(
                    f"{tracked.spec.name}: container {tracked.current.id[:13]} is gone, starting it again"
                )
                await self.start(tracked, tracked.current.restart_count + 1)
                continue
            text = container_state_text(status)
            if text != tracked.state:
                message = short_message(status)
                detail = f": {message}" if message else ""
                self.say(f"{tracked.spec.name}: {tracked.state or 'new'} -> {text}{detail}")
                tracked.state = text
            if status.state != ContainerState.CONTAINER_EXITED:
                continue
            if tracked.restart_at is None:
                if finished_sidecar or not should_restart(self.policy_of(tracked), status.exit_code):
                    continue
                ran_for = max(0.0, (status.finished_at - status.started_at) / 1e9)
                delay = tracked.backoff.next_delay(ran_for)
                finished_ago = max(0.0, time.time() - status.finished_at / 1e9)
                tracked.restart_at = now + max(0.0, delay - finished_ago)
                if delay:
                    self.say(f"{tracked.spec.name}: CrashLoopBackOff, restarting in {delay:g}s")
            if now >= tracked.restart_at:
                await self.restart(tracked)

        await self.stop_sidecars_when_done()

    async def stop_sidecars_when_done(self) -> None:
        """Once every app container has finished for good (restartPolicy OnFailure or Never),
        kubelet stops the sidecars, in reverse order."""
        if self.completed or not self.sidecars or self.pod.spec.restart_policy == "Always":
            return
        if not all(
            t.state.startswith("Exited") and t.restart_at is None and t.pending_count is None
            for t in self.apps.values()
        ):
            return
        self.completed = True
        self.say("all app containers completed: stopping the sidecars")
        grace = int(self.pod.spec.termination_grace_period_seconds)
        for tracked in reversed(list(self.sidecars.values())):
            if tracked.current is not None:
                for task in tracked.probe_tasks:
                    task.cancel()
                ip = self.ips[0] if self.ips else ""
                await self.player.stop_container(tracked.current.id, grace, tracked.current.annotations, ip)

    async def restart(self, tracked: Tracked) -> None:
        previous = tracked.current
        assert previous is not None
        # kubelet keeps the last dead instance (for logs --previous) and collects the older ones
        for container in await self.player.containers(self.sandbox_id):
            if container.metadata.name == previous.name and container.id != previous.id:
                if container.state == ContainerState.CONTAINER_EXITED:
                    await self.player.cri.runtime.RemoveContainer(
                        api_pb2.RemoveContainerRequest(container_id=container.id)
                    )
        await self.start(tracked, previous.restart_count + 1)

    def cancel_probes(self) -> None:
        for tracked in self.all_tracked():
            for task in tracked.probe_tasks:
                task.cancel()


async def watch(player: Player, pods: list[Any], backoff_base: float, stop: asyncio.Event) -> int:
    """Supervise `pods` until `stop` is set; returns 1 if a pod failed for good, else 0."""
    watchers = [PodWatcher(player, pod, backoff_base) for pod in pods]
    try:
        for watcher in watchers:
            await watcher.adopt_or_start()
        while not stop.is_set():
            for watcher in watchers:
                if watcher.failed:
                    continue
                try:
                    await watcher.tick()
                except grpc.aio.AioRpcError as exc:
                    # a runtime restarting is no reason to stop supervising
                    watcher.say(f"runtime error: {exc.code().name}: {exc.details()}; retrying")
            try:
                await asyncio.wait_for(stop.wait(), WATCH_INTERVAL)
            except TimeoutError:
                pass
    finally:
        for watcher in watchers:
            watcher.cancel_probes()
    return 1 if any(w.failed for w in watchers) else 0
