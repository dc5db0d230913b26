"""A gVisor pod is one sandbox: its containers share what the pod spec says (PID namespace,
IPC objects), and every lifecycle call on it ends, also for containers that never started or
whose sandbox died. runc runs the same checks, so each one is known to be able to fail."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from cri_py.api import api_pb2
from tests.e2e import registry_fixtures
from tests.e2e.registry_fixtures import TestRegistry
from tests.e2e.stream_client import open_command
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

registry = registry_fixtures.registry

HANDLERS = ["runsc", "runc"]


@pytest.fixture
def cri(cri_factory: Any, registry: TestRegistry) -> Any:
    if "ipc" not in registry.images:
        registry.push_images("ipc")
    daemon = cri_factory(registry.daemon_overrides())
    pull(daemon, registry.ipc)
    return daemon


def _processes(cri: Any, cid: str) -> dict[int, str]:
    out = exec_sync(cri, cid, ["ps", "-o", "pid,args"])
    assert out.exit_code == 0, out
    rows = [line.split(None, 1) for line in out.stdout.decode().splitlines()[1:]]
    return {int(pid): args for pid, args in rows}


def _sleeper(image: str, name: str, seconds: int, pid: int = api_pb2.POD) -> api_pb2.ContainerConfig:
    config = container_config(image, ["sleep", str(seconds)], name=name)
    # kubelet gives each container the pod's namespace options
    config.linux.security_context.namespace_options.pid = pid  # type: ignore[assignment]
    return config


@pytest.mark.parametrize("handler", HANDLERS)
def test_one_pod_shares_processes_and_ipc_objects(cri: Any, registry: TestRegistry, handler: str) -> None:
    cfg = pod_config(pid=api_pb2.POD)
    pod_id = run_pod(cri, cfg, handler=handler)
    first = create_container(cri, pod_id, cfg, _sleeper(registry.ipc, "first", 3600))
    second = create_container(cri, pod_id, cfg, _sleeper(registry.ipc, "second", 3601))
    start(cri, first)
    start(cri, second)
    wait_state(cri, second, api_pb2.CONTAINER_RUNNING)

    # one PID namespace: each sees the other's process, and the pod's pause process as pid 1
    for cid in (first, second):
        procs = _processes(cri, cid)
        assert "sleep 3600" in procs.values() and "sleep 3601" in procs.values(), procs
        assert procs[1] == "/pause -P", procs

    # one IPC namespace: a segment the first makes, the second reads by its key
    made = exec_sync(cri, first, ["sysvipc", "put", "0x4242", "from-the-first"])
    assert made.exit_code == 0, made
    read = exec_sync(cri, second, ["sysvipc", "get", "0x4242"])
    assert (read.exit_code, read.stdout) == (0, b"from-the-first\n"), read

    # another pod of the same handler sees neither
    other_cfg = pod_config(pid=api_pb2.POD)
    other_pod = run_pod(cri, other_cfg, handler=handler)
    other = create_container(cri, other_pod, other_cfg, _sleeper(registry.ipc, "other", 3602))
    start(cri, other)
    wait_state(cri, other, api_pb2.CONTAINER_RUNNING)
    assert "sleep 3600" not in _processes(cri, other).values()
    missing = exec_sync(cri, other, ["sysvipc", "get", "0x4242"])
    assert missing.exit_code == 1 and b"No such file" in missing.stderr, missing


@pytest.mark.parametrize("handler", HANDLERS)
def test_containers_pid_namespaces_apart_unless_targeted(
    cri: Any, registry: TestRegistry, handler: str
) -> None:
    cfg = pod_config(pid=api_pb2.CONTAINER)
    pod_id = run_pod(cri, cfg, handler=handler)
    first = create_container(cri, pod_id, cfg, _sleeper(registry.ipc, "first", 3600, api_pb2.CONTAINER))
    start(cri, first)
    wait_state(cri, first, api_pb2.CONTAINER_RUNNING)
    second = create_container(cri, pod_id, cfg, _sleeper(registry.ipc, "second", 3601, api_pb2.CONTAINER))
    start(cri, second)
    wait_state(cri, second, api_pb2.CONTAINER_RUNNING)
    # each its own namespace, its own process as pid 1
    assert _processes(cri, first)[1] == "sleep 3600"
    assert "sleep 3600" not in _processes(cri, second).values()

    # a container may join another's (kubectl debug --target)
    debug_cfg = _sleeper(registry.ipc, "debug", 3602, api_pb2.TARGET)
    debug_cfg.linux.security_context.namespace_options.target_id = first
    debug = create_container(cri, pod_id, cfg, debug_cfg)
    start(cri, debug)
    wait_state(cri, debug, api_pb2.CONTAINER_RUNNING)
    procs = _processes(cri, debug)
    assert procs[1] == "sleep 3600" and "sleep 3602" in procs.values(), procs
    assert "sleep 3601" not in procs.values()


@pytest.mark.parametrize("handler", HANDLERS)
def test_recursive_read_only_mounts_reach_what_is_mounted_beneath(
    cri: Any, registry: TestRegistry, handler: str
) -> None:
    """runsc has no `rro` option: a sandbox's read-only bind is read-only all the way down."""
    features = {
        h.name: h.features for h in cri.runtime.Status(api_pb2.StatusRequest(), timeout=10).runtime_handlers
    }
    assert features[handler].recursive_read_only_mounts
    source = Path(tempfile.mkdtemp(prefix="cripy-rs-rro-"))
    (source / "beneath").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "beneath", str(source / "beneath")], check=True)
    try:
        cfg = pod_config()
        pod_id = run_pod(cri, cfg, handler=handler)
        config = _sleeper(registry.ipc, "rro", 3600)
        for path, recursive in (("/rro", True), ("/ro", False), ("/rw", False)):
            config.mounts.append(
                api_pb2.Mount(
                    container_path=path,
                    host_path=str(source),
                    readonly=path != "/rw",
                    recursive_read_only=recursive,
                    propagation=api_pb2.PROPAGATION_PRIVATE,
                )
            )
        cid = create_container(cri, pod_id, cfg, config)
        start(cri, cid)
        wait_state(cri, cid, api_pb2.CONTAINER_RUNNING)
        for path in ("/rro", "/rw"):
            made = exec_sync(cri, cid, ["touch", f"{path}/top", f"{path}/beneath/file"])
            if path == "/rw":
                assert made.exit_code == 0, made
            else:
                assert made.exit_code != 0 and b"Read-only file system" in made.stderr, made
        assert sorted(p.name for p in (source / "beneath").iterdir()) == ["file"]
        # runc makes a plain read-only bind read-only only at its top; gVisor all the way down
        beneath = exec_sync(cri, cid, ["touch", "/ro/beneath/other"])
        assert (beneath.exit_code == 0) == (handler == "runc"), beneath
        cri.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=30)
        cri.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=30)
    finally:
        subprocess.run(["umount", "--lazy", str(source / "beneath")], check=False)
        shutil.rmtree(source, ignore_errors=True)


def _timed(call: Any, *args: Any) -> float:
    began = time.monotonic()
    call(*args)
    return time.monotonic() - began


@pytest.mark.parametrize("handler", HANDLERS)
def test_created_containers_stop_and_go_at_once(cri: Any, registry: TestRegistry, handler: str) -> None:
    cfg = pod_config()
    pod_id = run_pod(cri, cfg, handler=handler)
    never = create_container(cri, pod_id, cfg, _sleeper(registry.ipc, "never", 3600))
    stop = api_pb2.StopContainerRequest(container_id=never, timeout=30)
    assert _timed(cri.runtime.StopContainer, stop, 30) < 5
    st = status(cri, never)
    assert st.state == api_pb2.CONTAINER_EXITED and st.started_at == 0, st
    remove = api_pb2.RemoveContainerRequest(container_id=never)
    assert _timed(cri.runtime.RemoveContainer, remove, 30) < 5
    # and a pod holding created containers stops and goes at once (crictl rmp -f)
    created = [create_container(cri, pod_id, cfg, _sleeper(registry.ipc, f"c{i}", 3600)) for i in range(3)]
    stop_pod = api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id)
    assert _timed(cri.runtime.StopPodSandbox, stop_pod, 30) < 10
    assert {status(cri, c).state for c in created} == {api_pb2.CONTAINER_EXITED}
    remove_pod = api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id)
    assert _timed(cri.runtime.RemovePodSandbox, remove_pod, 30) < 10
    assert not cri.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers


def test_a_dead_sandbox_leaves_its_containers_exited(cri: Any, registry: TestRegistry) -> None:
    cfg = pod_config()
    pod_id = run_pod(cri, cfg, handler="runsc")
    running = create_container(cri, pod_id, cfg, _sleeper(registry.ipc, "running", 3600))
    start(cri, running)
    wait_state(cri, running, api_pb2.CONTAINER_RUNNING)
    never = create_container(cri, pod_id, cfg, _sleeper(registry.ipc, "never", 3600))
    info = cri.runtime.PodSandboxStatus(
        api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=True), timeout=10
    ).info["info"]
    # the sandbox (its gVisor kernel) dies: nothing it ran can still be running
    os.kill(json.loads(info)["infra_pid"], signal.SIGKILL)
    st = wait_state(cri, running, api_pb2.CONTAINER_EXITED, timeout=15)
    assert st.exit_code == 137, st
    deadline = time.monotonic() + 15
    while (
        cri.runtime.PodSandboxStatus(
            api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id), timeout=10
        ).status.state
        != api_pb2.SANDBOX_NOTREADY
    ):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # what is left stops and goes at once
    assert _timed(cri.runtime.StopPodSandbox, api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id), 30) < 10
    assert status(cri, never).state == api_pb2.CONTAINER_EXITED
    remove_pod = api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id)
    assert _timed(cri.runtime.RemovePodSandbox, remove_pod, 30) < 10


def test_gvisor_containers_outlive_a_daemon_restart(cri: Any, registry: TestRegistry) -> None:
    cfg = pod_config(pid=api_pb2.POD)
    pod_id = run_pod(cri, cfg, handler="runsc")
    running = create_container(
        cri,
        pod_id,
        cfg,
        container_config(registry.ipc, ["sh", "-c", "trap 'exit 3' TERM; while true; do sleep 0.1; done"]),
    )
    start(cri, running)
    created = create_container(cri, pod_id, cfg, _sleeper(registry.ipc, "later", 3600))
    wait_state(cri, running, api_pb2.CONTAINER_RUNNING)
    cri.restart()
    assert status(cri, running).state == api_pb2.CONTAINER_RUNNING
    # a container created before the restart starts after it, in the same sandbox
    start(cri, created)
    wait_state(cri, created, api_pb2.CONTAINER_RUNNING)
    assert "sleep 3600" in _processes(cri, running).values()
    cri.runtime.StopContainer(api_pb2.StopContainerRequest(container_id=running, timeout=10), timeout=30)
    st = status(cri, running)
    assert (st.state, st.exit_code) == (api_pb2.CONTAINER_EXITED, 3), st


def test_a_gvisor_pod_cannot_share_the_nodes_pid_or_ipc(cri: Any, registry: TestRegistry) -> None:
    for field in ("pid", "ipc"):
        cfg = pod_config()
        setattr(cfg.linux.security_context.namespace_options, field, api_pb2.NODE)
        with pytest.raises(grpc.RpcError) as err:
            run_pod(cri, cfg, handler="runsc")
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"node's {field.upper()} namespace" in (err.value.details() or "")
    assert not cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items


@pytest.mark.parametrize("handler", HANDLERS)
def test_a_shell_on_stdin_waits_for_its_first_attach(cri: Any, registry: TestRegistry, handler: str) -> None:
    """`stdin: true, stdinOnce: true` (kubectl run -i, critest's attach spec): the container's
    stdin stays open, with nobody writing to it, until the first attach closes it. Under gVisor
    the holder of gvisor_monitor.sh once handed /dev/null on to the container (a background
    list's stdin in sh), so its shell read EOF and exited as soon as it started."""
    cfg = pod_config()
    pod_id = run_pod(cri, cfg, handler=handler)
    shell = container_config(registry.ipc, ["sh"], name="shell", stdin=True, stdin_once=True)
    cid = create_container(cri, pod_id, cfg, shell)
    start(cri, cid)
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        st = status(cri, cid)
        assert st.state == api_pb2.CONTAINER_RUNNING, st
        time.sleep(0.1)

    url = cri.runtime.Attach(
        api_pb2.AttachRequest(container_id=cid, stdin=True, stdout=True, stderr=True), timeout=10
    ).url

    async def attach() -> None:
        session = await open_command(url, "spdy", stdin=True)
        await session.write_stdin(b"echo hello from $0\n")
        await session.read_stdout_until(b"hello from sh\n")
        # stdin_once: the first attach's EOF is the container's, and its shell exits
        await session.close_stdin()
        result = await session.finish()
        assert (result.stdout, result.stderr, result.exit_code) == (b"hello from sh\n", b"", 0), result

    asyncio.run(attach())
    st = wait_state(cri, cid, api_pb2.CONTAINER_EXITED)
    assert st.exit_code == 0, st
