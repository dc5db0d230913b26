"""The kubelet-like sequence play drives, against a scripted CRI (the one seam faked here)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from pathlib import Path
from typing import Any

import grpc
import pytest
from kubernetes import client as k8s

from cri_py.api import api_pb2
from cri_py.play.runner import Player, PodFailed, StartFailed
from cri_py.play.watch import PodWatcher
from tests.unit.play.helpers import CTX, load_pod

POD = """
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  restartPolicy: RESTART
  initContainers:
  - {name: first, image: "img:1", command: [INIT1]}
  - {name: second, image: "img:1", command: [INIT2]}
  containers:
  - {name: app, image: "img:1", command: [APP]}
"""


class FakeRuntime:
    """Containers exit with the code the test scripts for their command's first word."""

    def __init__(self, exit_codes: dict[str, int]) -> None:
        self.exit_codes = exit_codes
        self.calls: list[str] = []
        self.sandboxes: dict[str, Any] = {}
        self.containers: dict[str, Any] = {}
        self.ids = itertools.count(1)

    async def RunPodSandbox(self, req: Any) -> Any:  # noqa: N802 - CRI method names
        sid = f"pod{next(self.ids)}"
        self.calls.append(f"RunPodSandbox {req.config.metadata.name} attempt={req.config.metadata.attempt}")
        self.sandboxes[sid] = api_pb2.PodSandbox(
            id=sid,
            metadata=req.config.metadata,
            labels=req.config.labels,
            state=api_pb2.SANDBOX_READY,
            created_at=1,
        )
        return api_pb2.RunPodSandboxResponse(pod_sandbox_id=sid)

    async def PodSandboxStatus(self, req: Any) -> Any:  # noqa: N802
        return api_pb2.PodSandboxStatusResponse(
            status=api_pb2.PodSandboxStatus(
                state=self.sandboxes[req.pod_sandbox_id].state,
                network=api_pb2.PodSandboxNetworkStatus(ip="10.0.0.5"),
            )
        )

    async def ListPodSandbox(self, req: Any) -> Any:  # noqa: N802
        want = dict(req.filter.label_selector)
        items = [s for s in self.sandboxes.values() if all(s.labels.get(k) == v for k, v in want.items())]
        return api_pb2.ListPodSandboxResponse(items=items)

    async def CreateContainer(self, req: Any) -> Any:  # noqa: N802
        cid = f"ctr{next(self.ids)}"
        self.calls.append(f"CreateContainer {req.config.metadata.name} attempt={req.config.metadata.attempt}")
        self.containers[cid] = (
            req.pod_sandbox_id,
            api_pb2.Container(
                id=cid,
                pod_sandbox_id=req.pod_sandbox_id,
                metadata=req.config.metadata,
                annotations=req.config.annotations,
                state=api_pb2.CONTAINER_CREATED,
                created_at=next(self.ids),
            ),
            req.config.command[0],
        )
        return api_pb2.CreateContainerResponse(container_id=cid)

    async def StartContainer(self, req: Any) -> Any:  # noqa: N802
        _, container, command = self.containers[req.container_id]
        self.calls.append(f"StartContainer {container.metadata.name}")
        code = self.exit_codes.get(command)
        container.state = api_pb2.CONTAINER_RUNNING if code is None else api_pb2.CONTAINER_EXITED
        return api_pb2.StartContainerResponse()

    async def ContainerStatus(self, req: Any) -> Any:  # noqa: N802
        _, container, command = self.containers[req.container_id]
        status = api_pb2.ContainerStatus(id=container.id, state=container.state, metadata=container.metadata)
        if container.state == api_pb2.CONTAINER_EXITED:
            status.exit_code = self.exit_codes.get(command, 137)
            status.reason = "Completed" if status.exit_code == 0 else "Error"
            status.started_at, status.finished_at = 1, 2
        return api_pb2.ContainerStatusResponse(status=status)

    async def ListContainers(self, req: Any) -> Any:  # noqa: N802
        found = [c for sid, c, _ in self.containers.values() if sid == req.filter.pod_sandbox_id]
        return api_pb2.ListContainersResponse(containers=found)

    async def ExecSync(self, req: Any) -> Any:  # noqa: N802
        self.calls.append(
            f"ExecSync {self.containers[req.container_id][1].metadata.name} {' '.join(req.cmd)}"
        )
        return api_pb2.ExecSyncResponse(exit_code=self.exit_codes.get(req.cmd[0], 0))

    async def StopContainer(self, req: Any) -> Any:  # noqa: N802
        self.calls.append(
            f"StopContainer {self.containers[req.container_id][1].metadata.name} timeout={req.timeout}"
        )
        self.containers[req.container_id][1].state = api_pb2.CONTAINER_EXITED
        return api_pb2.StopContainerResponse()

    async def RemoveContainer(self, req: Any) -> Any:  # noqa: N802
        self.calls.append(f"RemoveContainer {self.containers.pop(req.container_id)[1].metadata.name}")
        return api_pb2.RemoveContainerResponse()

    async def StopPodSandbox(self, req: Any) -> Any:  # noqa: N802
        self.calls.append("StopPodSandbox")
        self.sandboxes[req.pod_sandbox_id].state = api_pb2.SANDBOX_NOTREADY
        return api_pb2.StopPodSandboxResponse()

    async def RemovePodSandbox(self, req: Any) -> Any:  # noqa: N802
        self.calls.append("RemovePodSandbox")
        self.sandboxes.pop(req.pod_sandbox_id)
        return api_pb2.RemovePodSandboxResponse()


class FakeImages:
    def __init__(self, present: set[str]) -> None:
        self.present = present
        self.pulls: list[str] = []

    async def ImageStatus(self, req: Any) -> Any:  # noqa: N802
        if req.image.image in self.present:
            return api_pb2.ImageStatusResponse(
                image=api_pb2.Image(id=f"id-{req.image.image}", username="web")
            )
        return api_pb2.ImageStatusResponse()

    async def PullImage(self, req: Any) -> Any:  # noqa: N802
        self.pulls.append(req.image.image)
        assert req.sandbox_config.metadata.name == "web"  # kubelet pulls with the sandbox config
        self.present.add(req.image.image)
        return api_pb2.PullImageResponse(image_ref=req.image.image)


@dataclasses.dataclass
class FakeCri:
    runtime: FakeRuntime
    image: FakeImages


def make_player(
    tmp_path: Path, exit_codes: dict[str, int], present: set[str] | None = None
) -> tuple[Player, FakeCri]:
    cri = FakeCri(FakeRuntime(exit_codes), FakeImages(present if present is not None else {"img:1"}))
    ctx = dataclasses.replace(
        CTX,
        root_dir=str(tmp_path / "root"),
        pod_logs_dir=str(tmp_path / "logs"),
        cgroup_root=str(tmp_path / "cgroup"),
    )
    lines: list[str] = []
    return Player(cri, ctx, lines.append), cri  # type: ignore[arg-type]


def pod_with(policy: str, pull: str = "IfNotPresent") -> Any:
    pod = load_pod(POD.replace("RESTART", policy))
    for container in [*pod.spec.init_containers, *pod.spec.containers]:
        container.image_pull_policy = pull
    return pod


def test_init_containers_run_in_order_before_the_app(tmp_path: Path) -> None:
    player, cri = make_player(tmp_path, {"INIT1": 0, "INIT2": 0})
    asyncio.run(player.up(pod_with("Always")))
    assert cri.runtime.calls == [
        "RunPodSandbox web attempt=0",
        "CreateContainer first attempt=0",
        "StartContainer first",
        "CreateContainer second attempt=0",
        "StartContainer second",
        "CreateContainer app attempt=0",
        "StartContainer app",
    ]
    assert cri.image.pulls == []  # IfNotPresent and present


def test_a_failing_init_container_fails_the_pod(tmp_path: Path) -> None:
    player, cri = make_player(tmp_path, {"INIT1": 3})
    with pytest.raises(PodFailed, match=r"init container 'first' exited with code 3 \(Init:Error\)"):
        asyncio.run(player.up(pod_with("Never")))
    assert not any("second" in call or "app" in call for call in cri.runtime.calls)
    assert cri.runtime.calls[-1] == "StopPodSandbox"  # Failed for good: kubelet stops the sandbox
    player, cri = make_player(tmp_path, {"INIT1": 3})
    with pytest.raises(PodFailed):
        asyncio.run(player.up(pod_with("OnFailure")))
    assert "StopPodSandbox" not in cri.runtime.calls  # kubelet would retry it


def test_pull_policies(tmp_path: Path) -> None:
    player, cri = make_player(tmp_path, {"INIT1": 0, "INIT2": 0}, present=set())
    asyncio.run(player.up(pod_with("Always", pull="IfNotPresent")))
    assert cri.image.pulls == ["img:1"]  # once; then present
    player, cri = make_player(tmp_path, {"INIT1": 0, "INIT2": 0})
    asyncio.run(player.up(pod_with("Always", pull="Always")))
    assert cri.image.pulls == ["img:1"] * 3
    player, cri = make_player(tmp_path, {}, present=set())
    with pytest.raises(StartFailed, match="ErrImageNeverPull"):
        asyncio.run(player.up(pod_with("Always", pull="Never")))


def test_image_user_is_looked_up(tmp_path: Path) -> None:
    player, _ = make_player(tmp_path, {})
    pod = pod_with("Always")
    facts = asyncio.run(player.ensure_image(pod.spec.containers[0], api_pb2.PodSandboxConfig()))
    assert (facts.ref, facts.uid, facts.username) == ("id-img:1", None, "web")


def test_up_twice_keeps_the_running_pod_and_down_removes_everything(tmp_path: Path) -> None:
    player, cri = make_player(tmp_path, {"INIT1": 0, "INIT2": 0})
    pod = pod_with("Always")
    first = asyncio.run(player.up(pod))
    assert asyncio.run(player.up(pod)) == first
    assert cri.runtime.calls.count("RunPodSandbox web attempt=0") == 1
    assert (tmp_path / "root" / "pods" / pod.metadata.uid).is_dir()
    assert asyncio.run(player.down("default", "web", 5)) == 1
    assert cri.runtime.calls[-6:] == [
        "StopContainer app timeout=5",
        "StopPodSandbox",
        "RemoveContainer first",
        "RemoveContainer second",
        "RemoveContainer app",
        "RemovePodSandbox",
    ]
    assert not (tmp_path / "root" / "pods").exists() and list((tmp_path / "logs").iterdir()) == []
    assert asyncio.run(player.down("default", "web", 5)) == 0


@pytest.mark.parametrize(
    ("policy", "code", "restarts"),
    [("Always", 0, True), ("OnFailure", 0, False), ("OnFailure", 1, True), ("Never", 1, False)],
)
def test_watch_restarts_per_restart_policy(tmp_path: Path, policy: str, code: int, restarts: bool) -> None:
    player, cri = make_player(tmp_path, {"INIT1": 0, "INIT2": 0, "APP": code})

    async def scenario() -> None:
        watcher = PodWatcher(player, pod_with(policy), backoff_base=0.0)
        await watcher.adopt_or_start()
        await watcher.tick()
        await watcher.tick()

    asyncio.run(scenario())
    app_creates = [c for c in cri.runtime.calls if c.startswith("CreateContainer app")]
    if restarts:
        assert app_creates[:2] == ["CreateContainer app attempt=0", "CreateContainer app attempt=1"]
    else:
        assert app_creates == ["CreateContainer app attempt=0"]


def test_watch_retries_a_failing_init_container_unless_never(tmp_path: Path) -> None:
    player, cri = make_player(tmp_path, {"INIT1": 1})

    async def scenario(policy: str) -> bool:
        watcher = PodWatcher(player, pod_with(policy), backoff_base=0.0)
        task = asyncio.create_task(watcher.adopt_or_start())
        for _ in range(500):
            await asyncio.sleep(0.01)
            if sum(c == "StartContainer first" for c in cri.runtime.calls) >= 3 or task.done():
                break
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return watcher.failed

    assert asyncio.run(scenario("Never")) is True
    assert cri.runtime.calls.count("StartContainer first") == 1
    cri.runtime.calls.clear()
    cri.runtime.sandboxes.clear()
    assert asyncio.run(scenario("OnFailure")) is False
    assert cri.runtime.calls.count("StartContainer first") >= 3


def test_hooks_run_around_start_and_stop(tmp_path: Path) -> None:
    player, cri = make_player(tmp_path, {"INIT1": 0, "INIT2": 0, "failing-hook": 1})
    pod = pod_with("Always")
    app = pod.spec.containers[0]
    app.lifecycle = k8s.V1Lifecycle(
        post_start=k8s.V1LifecycleHandler(_exec=k8s.V1ExecAction(command=["posthook"])),
        pre_stop=k8s.V1LifecycleHandler(_exec=k8s.V1ExecAction(command=["prehook", "x"])),
    )
    asyncio.run(player.up(pod))
    assert cri.runtime.calls[-2:] == ["StartContainer app", "ExecSync app posthook"]
    asyncio.run(player.down("default", "web", 30))
    assert cri.runtime.calls[-7:-5] == ["ExecSync app prehook x", "StopContainer app timeout=30"]
    # a failing postStart hook kills the container (FailedPostStartHook)
    player, cri = make_player(tmp_path, {"INIT1": 0, "INIT2": 0, "failing-hook": 1})
    app.lifecycle.post_start = k8s.V1LifecycleHandler(_exec=k8s.V1ExecAction(command=["failing-hook"]))
    asyncio.run(player.up(pod))
    assert cri.runtime.calls[-3:] == [
        "ExecSync app failing-hook",
        "ExecSync app prehook x",
        "StopContainer app timeout=30",
    ]
    # forced: no hook, no grace
    asyncio.run(player.down("default", "web", 0))
    assert "StopContainer app timeout=0" not in cri.runtime.calls  # already exited, nothing to stop


def test_a_dead_sandbox_of_the_same_pod_is_recreated_keeping_volumes(tmp_path: Path) -> None:
    player, cri = make_player(tmp_path, {"INIT1": 0, "INIT2": 0})
    pod = pod_with("Always")
    first = asyncio.run(player.up(pod))
    asyncio.run(cri.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=first)))
    marker = tmp_path / "root" / "pods" / pod.metadata.uid / "kept"
    marker.write_text("x")
    cri.runtime.calls.clear()
    second = asyncio.run(player.up(pod))
    assert second != first and marker.exists()
    assert "RunPodSandbox web attempt=1" in cri.runtime.calls
    assert "CreateContainer app attempt=1" in cri.runtime.calls
    # another pod under the same name (a changed manifest) replaces it, volumes and all
    other = load_pod(POD.replace("RESTART", "Always"), uid="f" * 32)
    asyncio.run(player.up(other))
    assert not marker.exists()
    assert "RunPodSandbox web attempt=0" in cri.runtime.calls


def test_watch_retries_a_failed_pull_with_backoff(tmp_path: Path) -> None:
    player, cri = make_player(tmp_path, {"INIT1": 0, "INIT2": 0}, present={"img:1"})
    pod = pod_with("Always")
    pod.spec.containers[0].image = "gone:1"
    failures = {"left": 2}

    async def pull(req: Any) -> Any:
        if failures["left"]:
            failures["left"] -= 1
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.NOT_FOUND, grpc.aio.Metadata(), grpc.aio.Metadata(), "no such image"
            )
        cri.image.present.add(req.image.image)
        return api_pb2.PullImageResponse(image_ref=req.image.image)

    cri.image.PullImage = pull  # type: ignore[method-assign]
    lines: list[str] = []
    player.say = lines.append
    now = [0.0]

    async def scenario() -> None:
        watcher = PodWatcher(player, pod, backoff_base=5.0, clock=lambda: now[0])
        await watcher.adopt_or_start()  # first failure: retried at once
        await watcher.tick()  # second failure: 5 s back-off
        await watcher.tick()
        assert not any(c.startswith("CreateContainer app") for c in cri.runtime.calls)
        now[0] = 5.0
        await watcher.tick()

    asyncio.run(scenario())
    assert "CreateContainer app attempt=0" in cri.runtime.calls
    pulls = [line for line in lines if "ErrImagePull: NOT_FOUND: no such image" in line]
    assert [p.rsplit(" ", 1)[-1] for p in pulls] == ["0s", "5s"]


SIDECAR_POD = """
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  restartPolicy: OnFailure
  initContainers:
  - {name: proxy, image: "img:1", command: [PROXY], restartPolicy: Always}
  - {name: logger, image: "img:1", command: [LOGGER], restartPolicy: Always}
  - {name: first, image: "img:1", command: [INIT1]}
  containers:
  - {name: app, image: "img:1", command: [APP]}
"""


def test_sidecars_start_before_later_init_containers_and_stop_last(tmp_path: Path) -> None:
    player, cri = make_player(tmp_path, {"INIT1": 0})
    pod = load_pod(SIDECAR_POD)
    asyncio.run(player.up(pod))
    starts = [c.split()[1] for c in cri.runtime.calls if c.startswith("StartContainer")]
    assert starts == ["proxy", "logger", "first", "app"]
    asyncio.run(player.down("default", "web", 5, ("proxy", "logger")))
    stops = [c.split()[1] for c in cri.runtime.calls if c.startswith("StopContainer")]
    assert stops == ["app", "logger", "proxy"]


def test_watch_stops_sidecars_once_the_app_completed(tmp_path: Path) -> None:
    player, cri = make_player(tmp_path, {"INIT1": 0, "APP": 0})
    pod = load_pod(SIDECAR_POD)

    async def scenario() -> None:
        watcher = PodWatcher(player, pod, backoff_base=0.0)
        await watcher.adopt_or_start()
        await watcher.tick()
        await watcher.tick()

    asyncio.run(scenario())
    stops = [c.split()[1] for c in cri.runtime.calls if c.startswith("StopContainer")]
    assert stops == ["logger", "proxy"]  # reverse order, after the app completed
    assert not any(c.startswith("CreateContainer app attempt=1") for c in cri.runtime.calls)
