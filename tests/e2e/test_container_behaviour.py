"""Container semantics kubelet relies on: exit reasons, OOM, exec timeouts, stop escalation,
idempotent stop/remove, NOT_FOUND and INVALID_ARGUMENT, update, stats, log reopen."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from cri_py.api import api_pb2
from tests.e2e import registry_fixtures
from tests.e2e.registry_fixtures import TestRegistry
from tests.e2e.test_pod_support import (
    container_config,
    create_container,
    exec_sync,
    pod_config,
    pull,
    run_pod,
    start,
    status,
    wait_state,
)

# the session fixture, under its own name so pytest finds it here
registry = registry_fixtures.registry

ZERO_ID = "0" * 64


@pytest.fixture
def cri(cri_factory: Any, registry: TestRegistry) -> Any:
    daemon = cri_factory(registry.daemon_overrides())
    pull(daemon, registry.busybox)
    return daemon


def _pod(cri: Any, tmp_path: Path) -> tuple[str, api_pb2.PodSandboxConfig]:
    cfg = pod_config(log_directory=str(tmp_path / "logs"))
    return run_pod(cri, cfg), cfg


def _running(
    cri: Any, pod: tuple[str, api_pb2.PodSandboxConfig], image: str, cmd: list[str], **kw: Any
) -> str:
    cid = create_container(cri, pod[0], pod[1], container_config(image, cmd, **kw))
    start(cri, cid)
    return cid


def test_exit_codes_and_reasons(cri: Any, registry: TestRegistry, tmp_path: Path) -> None:
    pod = _pod(cri, tmp_path)
    ok = _running(cri, pod, registry.busybox, ["true"], name="ok")
    bad = _running(cri, pod, registry.busybox, ["sh", "-c", "exit 7"], name="bad")
    st_ok = wait_state(cri, ok, api_pb2.CONTAINER_EXITED)
    st_bad = wait_state(cri, bad, api_pb2.CONTAINER_EXITED)
    assert (st_ok.exit_code, st_ok.reason) == (0, "Completed")
    assert (st_bad.exit_code, st_bad.reason) == (7, "Error")
    assert st_bad.finished_at >= st_bad.started_at > 0


def test_status_names_the_users_image_when_kubelet_creates_by_id(
    cri: Any, registry: TestRegistry, tmp_path: Path
) -> None:
    # kubelet 1.36 creates with the image id and the pod's own string beside it; the status
    # (what `kubectl get pod` shows as the container's image) names the image, not the id
    pod = _pod(cri, tmp_path)
    image_id = pull(cri, registry.busybox)
    config = container_config(image_id, ["sleep", "60"], name="by-id")
    config.image.user_specified_image = registry.busybox
    cid = create_container(cri, pod[0], pod[1], config)
    st = status(cri, cid)
    assert (st.image.image, st.image.user_specified_image) == (registry.busybox, registry.busybox)
    assert st.image_id == image_id
    listed = cri.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers
    assert [c.image.image for c in listed if c.id == cid] == [registry.busybox]


def test_missing_mount_source_is_made_as_a_directory(
    cri: Any, registry: TestRegistry, tmp_path: Path
) -> None:
    # kubelet passes a hostPath volume without a type as it is; like containerd and CRI-O the
    # runtime makes the missing source (the node e2e suite's device plugin mounts /var/run/cdi)
    pod = _pod(cri, tmp_path)
    source = tmp_path / "host" / "cdi"
    config = container_config(registry.busybox, ["sleep", "60"], name="mounts")
    config.mounts.append(api_pb2.Mount(container_path="/var/run/cdi", host_path=str(source)))
    cid = create_container(cri, pod[0], pod[1], config)
    start(cri, cid)
    assert source.is_dir() and (source.stat().st_mode & 0o777) == 0o755
    assert exec_sync(cri, cid, ["sh", "-c", "echo seen > /var/run/cdi/f"]).exit_code == 0
    assert (source / "f").read_text() == "seen\n"  # the directory made is the one mounted
    cri.runtime.StopContainer(api_pb2.StopContainerRequest(container_id=cid, timeout=0), timeout=30)
    cri.runtime.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=cid), timeout=30)
    assert source.is_dir()  # the host's directory now, as with containerd and CRI-O


def test_oom_killed(cri: Any, registry: TestRegistry, tmp_path: Path) -> None:
    pod = _pod(cri, tmp_path)
    cfg = container_config(registry.busybox, ["sh", "-c", "x=a; while true; do x=$x$x$x$x; done"], name="hog")
    cfg.linux.resources.memory_limit_in_bytes = 16 * 1024 * 1024
    cid = create_container(cri, pod[0], pod[1], cfg)
    start(cri, cid)
    st = wait_state(cri, cid, api_pb2.CONTAINER_EXITED, timeout=30)
    assert st.reason == "OOMKilled" and st.exit_code == 137


def test_stop_escalates_to_sigkill_and_is_idempotent(
    cri: Any, registry: TestRegistry, tmp_path: Path
) -> None:
    pod = _pod(cri, tmp_path)
    # PID 1 ignores SIGTERM unless it installs a handler: only SIGKILL ends it
    cid = _running(cri, pod, registry.busybox, ["sleep", "3600"])
    wait_state(cri, cid, api_pb2.CONTAINER_RUNNING)
    began = time.monotonic()
    cri.runtime.StopContainer(api_pb2.StopContainerRequest(container_id=cid, timeout=1), timeout=30)
    assert 0.9 < time.monotonic() - began < 5
    st = status(cri, cid)
    assert st.state == api_pb2.CONTAINER_EXITED and st.exit_code == 137
    cri.runtime.StopContainer(api_pb2.StopContainerRequest(container_id=cid, timeout=1), timeout=30)
    cri.runtime.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=cid), timeout=30)
    cri.runtime.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=cid), timeout=30)


def test_remove_running_container_kills_it(cri: Any, registry: TestRegistry, tmp_path: Path) -> None:
    pod = _pod(cri, tmp_path)
    cid = _running(cri, pod, registry.busybox, ["sleep", "3600"])
    wait_state(cri, cid, api_pb2.CONTAINER_RUNNING)
    cri.runtime.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=cid), timeout=30)
    assert not cri.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers


def test_unknown_ids_and_missing_fields(cri: Any, registry: TestRegistry, tmp_path: Path) -> None:
    rt = cri.runtime
    for call in (
        lambda: rt.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=ZERO_ID), timeout=10),
        lambda: rt.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=ZERO_ID), timeout=10),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # kubelet's idempotence contract: stopping or removing what is gone succeeds
    rt.StopContainer(api_pb2.StopContainerRequest(container_id=ZERO_ID, timeout=0), timeout=10)
    rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=ZERO_ID), timeout=10)
    rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=ZERO_ID), timeout=10)
    rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=ZERO_ID), timeout=10)
    bad_pod = api_pb2.PodSandboxConfig(metadata=api_pb2.PodSandboxMetadata(name="x"))
    userns_pod = pod_config()
    userns_pod.linux.security_context.namespace_options.userns_options.mode = api_pb2.POD
    for call in (
        lambda: rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=bad_pod), timeout=10),
        lambda: rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(), timeout=10),
        lambda: rt.CreateContainer(api_pb2.CreateContainerRequest(pod_sandbox_id=ZERO_ID), timeout=10),
        lambda: rt.ContainerStatus(api_pb2.ContainerStatusRequest(), timeout=10),
        lambda: rt.RunPodSandbox(
            api_pb2.RunPodSandboxRequest(config=pod_config(), runtime_handler="no-such-runtime"), timeout=10
        ),
        lambda: rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=userns_pod), timeout=10),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    pod_id, cfg = _pod(cri, tmp_path)
    no_image = container_config(registry.busybox, ["true"])
    no_image.image.image = ""
    with pytest.raises(grpc.RpcError) as err:
        create_container(cri, pod_id, cfg, no_image)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # a duplicate name while the first exists is refused
    first = pod_config()
    run_pod(cri, first)
    with pytest.raises(grpc.RpcError) as err:
        run_pod(cri, first)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
    # the daemon keeps serving
    assert rt.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items


def test_exec_sync_output_exit_code_and_timeout(cri: Any, registry: TestRegistry, tmp_path: Path) -> None:
    pod = _pod(cri, tmp_path)
    cid = _running(cri, pod, registry.busybox, ["sleep", "3600"])
    wait_state(cri, cid, api_pb2.CONTAINER_RUNNING)
    out = exec_sync(cri, cid, ["sh", "-c", "echo out; echo err >&2; exit 5"])
    assert (out.stdout, out.stderr, out.exit_code) == (b"out\n", b"err\n", 5)
    # a background child keeping stdout open must not stall the reply
    began = time.monotonic()
    out = exec_sync(cri, cid, ["sh", "-c", "sleep 30 & echo done"], timeout=10)
    assert out.stdout == b"done\n" and time.monotonic() - began < 5
    began = time.monotonic()
    out = exec_sync(cri, cid, ["sleep", "4321"], timeout=1)
    assert out.exit_code != 0 and time.monotonic() - began < 8
    left = exec_sync(cri, cid, ["sh", "-c", "ps -o args | grep -v grep | grep 'sleep 4321' || true"])
    assert left.stdout == b""
    # killed and reaped before the answer: not even a zombie left (`ps` shows those as [sleep])
    zombies = exec_sync(cri, cid, ["sh", "-c", "cat /proc/[0-9]*/stat | awk '$3 == \"Z\"'"])
    assert zombies.stdout == b""
    with pytest.raises(grpc.RpcError) as err:
        exec_sync(cri, "f" * 64, ["true"])
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_update_resources_and_stats(cri: Any, registry: TestRegistry, tmp_path: Path) -> None:
    pod = _pod(cri, tmp_path)
    cid = _running(cri, pod, registry.busybox, ["sh", "-c", "while true; do :; done"])
    wait_state(cri, cid, api_pb2.CONTAINER_RUNNING)
    res = api_pb2.LinuxContainerResources(cpu_shares=512, memory_limit_in_bytes=64 * 1024 * 1024)
    cri.runtime.UpdateContainerResources(
        api_pb2.UpdateContainerResourcesRequest(container_id=cid, linux=res), timeout=30
    )
    st = status(cri, cid)
    assert st.resources.linux.memory_limit_in_bytes == 64 * 1024 * 1024
    assert st.resources.linux.cpu_shares == 512
    stats = cri.runtime.ContainerStats(api_pb2.ContainerStatsRequest(container_id=cid), timeout=10).stats
    assert stats.attributes.id == cid and stats.attributes.metadata.name == "c"
    assert stats.cpu.timestamp > 0 and stats.cpu.usage_core_nano_seconds.value > 0
    assert stats.memory.timestamp > 0 and stats.memory.working_set_bytes.value > 0
    assert stats.memory.available_bytes.value <= 64 * 1024 * 1024
    time.sleep(0.2)
    again = cri.runtime.ContainerStats(api_pb2.ContainerStatsRequest(container_id=cid), timeout=10).stats
    assert again.cpu.usage_nano_cores.value > 0
    listed = cri.runtime.ListContainerStats(
        api_pb2.ListContainerStatsRequest(filter=api_pb2.ContainerStatsFilter(label_selector={"ctr": "c"})),
        timeout=10,
    ).stats
    assert [s.attributes.id for s in listed] == [cid]
    none = cri.runtime.ListContainerStats(
        api_pb2.ListContainerStatsRequest(filter=api_pb2.ContainerStatsFilter(label_selector={"foo": "baz"})),
        timeout=10,
    ).stats
    assert not none
    pstats = cri.runtime.PodSandboxStats(
        api_pb2.PodSandboxStatsRequest(pod_sandbox_id=pod[0]), timeout=10
    ).stats
    assert pstats.attributes.id == pod[0]
    assert pstats.linux.cpu.usage_core_nano_seconds.value > 0
    assert pstats.linux.process.process_count.value >= 1
    assert [c.attributes.id for c in pstats.linux.containers] == [cid]
    assert pstats.linux.network.default_interface.name == "eth0"
    assert pstats.linux.network.default_interface.rx_bytes.value > 0
    listed_pods = cri.runtime.ListPodSandboxStats(
        api_pb2.ListPodSandboxStatsRequest(filter=api_pb2.PodSandboxStatsFilter(id=pod[0][:12])), timeout=10
    ).stats
    assert [p.attributes.id for p in listed_pods] == [pod[0]]


def test_reopen_container_log(cri: Any, registry: TestRegistry, tmp_path: Path) -> None:
    pod = _pod(cri, tmp_path)
    cid = _running(
        cri,
        pod,
        registry.busybox,
        ["sh", "-c", "while true; do echo tick; sleep 0.05; done"],
        log_path="c.log",
    )
    log_file = tmp_path / "logs" / "c.log"
    deadline = time.monotonic() + 10
    while not (log_file.exists() and "tick" in log_file.read_text()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    rotated = log_file.with_name("c.log.1")
    log_file.rename(rotated)
    cri.runtime.ReopenContainerLog(api_pb2.ReopenContainerLogRequest(container_id=cid), timeout=10)
    assert log_file.exists()
    size = rotated.stat().st_size
    time.sleep(0.3)
    assert rotated.stat().st_size == size
    assert "stdout F tick" in log_file.read_text()


def test_list_filters(cri: Any, registry: TestRegistry, tmp_path: Path) -> None:
    pod_a = _pod(cri, tmp_path)
    pod_b = _pod(cri, tmp_path)
    running = _running(cri, pod_a, registry.busybox, ["sleep", "3600"], name="run")
    created = create_container(
        cri, pod_b[0], pod_b[1], container_config(registry.busybox, ["true"], name="new")
    )
    wait_state(cri, running, api_pb2.CONTAINER_RUNNING)

    def ids(**flt: Any) -> list[str]:
        req = api_pb2.ListContainersRequest(filter=api_pb2.ContainerFilter(**flt))
        return [c.id for c in cri.runtime.ListContainers(req, timeout=10).containers]

    assert ids(pod_sandbox_id=pod_a[0]) == [running]
    assert ids(id=created[:10]) == [created]
    assert ids(state=api_pb2.ContainerStateValue(state=api_pb2.CONTAINER_CREATED)) == [created]
    assert ids(label_selector={"ctr": "run"}) == [running]
    assert ids(label_selector={"ctr": "run"}, pod_sandbox_id=pod_b[0]) == []
    cri.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_a[0]), timeout=30)
    not_ready = cri.runtime.ListPodSandbox(
        api_pb2.ListPodSandboxRequest(
            filter=api_pb2.PodSandboxFilter(
                state=api_pb2.PodSandboxStateValue(state=api_pb2.SANDBOX_NOTREADY)
            )
        ),
        timeout=10,
    ).items
    assert [p.id for p in not_ready] == [pod_a[0]]
    # stopping the pod stopped its containers
    assert status(cri, running).state == api_pb2.CONTAINER_EXITED
    with pytest.raises(grpc.RpcError) as err:
        create_container(cri, pod_a[0], pod_a[1], container_config(registry.busybox, ["true"], name="late"))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_log_size_limit(cri_factory: Any, registry: TestRegistry, tmp_path: Path) -> None:
    cri = cri_factory({**registry.daemon_overrides(), "log_size_max": 4096})
    pull(cri, registry.busybox)
    pod = _pod(cri, tmp_path)
    cid = _running(
        cri, pod, registry.busybox, ["sh", "-c", "i=0; while [ $i -lt 2000 ]; do echo line-$i; i=$((i+1)); done"],
        log_path="big.log",
    )  # fmt: skip
    wait_state(cri, cid, api_pb2.CONTAINER_EXITED)
    text = (tmp_path / "logs" / "big.log").read_text()
    assert len(text) <= 4096 and "line-1999" in text and "line-0\n" not in text


def test_exec_sync_in_a_tty_container(cri: Any, registry: TestRegistry, tmp_path: Path) -> None:
    pod = _pod(cri, tmp_path)
    cid = _running(cri, pod, registry.busybox, ["sleep", "3600"], tty=True, stdin=True)
    wait_state(cri, cid, api_pb2.CONTAINER_RUNNING)
    out = exec_sync(cri, cid, ["sh", "-c", "echo hello; exit 3"])
    # through a terminal: one stream, CRLF line ends
    assert out.exit_code == 3 and out.stdout.replace(b"\r", b"") == b"hello\n"


def test_kubelets_zero_hugepage_limits_run_on_a_host_without_hugetlb(
    cri: Any, registry: TestRegistry, tmp_path: Path
) -> None:
    # kubelet limits every hugepage size to 0 unless the pod asks for hugepages; where no
    # hugetlb controller is usable (this hybrid host) the limits must not stop the container
    resources = api_pb2.LinuxContainerResources(
        memory_limit_in_bytes=64 << 20,
        hugepage_limits=[
            api_pb2.HugepageLimit(page_size="2MB", limit=0),
            api_pb2.HugepageLimit(page_size="1GB", limit=0),
        ],
    )
    pod = _pod(cri, tmp_path)
    cid = _running(
        cri,
        pod,
        registry.busybox,
        ["sleep", "60"],
        linux=api_pb2.LinuxContainerConfig(resources=resources),
    )
    assert status(cri, cid).state == api_pb2.CONTAINER_RUNNING
