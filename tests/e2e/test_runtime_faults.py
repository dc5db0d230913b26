"""Faults under running containers: a killed conmon, a runtime binary that hangs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from cri_py.api import api_pb2
from tests.e2e import registry_fixtures
from tests.e2e.daemon import Daemon
from tests.e2e.fault_support import processes, remove_all_and_check
from tests.e2e.registry_fixtures import TestRegistry
from tests.e2e.test_pod_support import (
    container_config,
    create_container,
    exec_sync,
    pod_config,
    pull,
    run_pod,
    start,
    wait_state,
)

registry = registry_fixtures.registry


def running(daemon: Daemon, cmdline: bytes, count: int, timeout: float = 10.0) -> bool:
    """Exactly `count` processes with this command line run (waiting up to `timeout`)."""
    deadline = time.monotonic() + timeout
    while len(processes(daemon, cmdline)) != count and time.monotonic() < deadline:
        time.sleep(0.05)
    return len(processes(daemon, cmdline)) == count


def test_conmon_killed_under_a_running_container(cri_factory: Any, registry: TestRegistry) -> None:
    cri: Daemon = cri_factory(registry.daemon_overrides())
    pull(cri, registry.busybox)
    cfg = pod_config()
    pod_id = run_pod(cri, cfg)
    command = ["sleep", "3597"]
    cid = create_container(cri, pod_id, cfg, container_config(registry.busybox, command))
    start(cri, cid)
    wait_state(cri, cid, api_pb2.CONTAINER_RUNNING)
    info = cri.runtime.ContainerStatus(
        api_pb2.ContainerStatusRequest(container_id=cid, verbose=True), timeout=10
    ).info["info"]
    conmon_pid = json.loads(info)["conmonPid"]
    # StartContainer answers once runc's init was let go: it execs the command a moment later
    assert running(cri, b"sleep\x003597\x00", 1)
    os.kill(conmon_pid, signal.SIGKILL)
    st = wait_state(cri, cid, api_pb2.CONTAINER_EXITED, timeout=30)
    assert st.exit_code == 137 and st.reason == "Error"
    assert "monitor" in st.message and "killed" in st.message
    assert st.finished_at > 0
    # reported exited, and really gone: no process runs on unmonitored
    deadline = time.monotonic() + 10
    while processes(cri, b"sleep\x003597\x00") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes(cri, b"sleep\x003597\x00") == []
    # kubelet starts the next attempt
    again = container_config(registry.busybox, command)
    again.metadata.attempt = 1
    cid2 = create_container(cri, pod_id, cfg, again)
    start(cri, cid2)
    wait_state(cri, cid2, api_pb2.CONTAINER_RUNNING)
    assert exec_sync(cri, cid2, ["echo", "alive"]).stdout == b"alive\n"
    assert running(cri, b"sleep\x003597\x00", 1)
    remove_all_and_check(cri)


HANG_WRAPPER = """#!/bin/sh
# runc, except that it first sleeps on the subcommands named by files beside it
# (hang-<subcommand> holds the seconds)
dir=$(dirname "$0")
sub=""
for a in "$@"; do
  case "$a" in create|start|kill|delete|state|exec|update|run|pause|resume) sub=$a; break;; esac
done
if [ -n "$sub" ] && [ -f "$dir/hang-$sub" ]; then sleep "$(cat "$dir/hang-$sub")"; fi
exec /usr/sbin/runc "$@"
"""


@pytest.fixture
def hanging_runtime(tmp_path: Path) -> Iterator[Callable[[dict[str, int]], Path]]:
    """Makes the wrapper; its sleeps never outlive the test, also when it fails (they run in
    sessions of their own once the daemon killed or lost the shell that started them)."""
    lengths: set[int] = set()

    def make(hangs: dict[str, int]) -> Path:
        wrapper = tmp_path / "hang-runtime" / "runc-hang"
        wrapper.parent.mkdir()
        wrapper.write_text(HANG_WRAPPER)
        wrapper.chmod(0o755)
        for sub, seconds in hangs.items():
            (wrapper.parent / f"hang-{sub}").write_text(str(seconds))
            lengths.add(seconds)
        return wrapper

    try:
        yield make
    finally:
        for seconds in lengths:
            for pid in sleepers(seconds):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def sleepers(seconds: int) -> list[int]:
    """The wrapper's own sleeps (outside any pod cgroup): matched by their unusual length."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes() == f"sleep\0{seconds}\0".encode():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def running_sleeper(seconds: int, timeout: float = 10.0) -> bool:
    """One of the wrapper's sleeps runs (the hanging call reached the runtime)."""
    deadline = time.monotonic() + timeout
    while not sleepers(seconds) and time.monotonic() < deadline:
        time.sleep(0.05)
    return bool(sleepers(seconds))


def other_pod_works(cri: Daemon, registry: TestRegistry) -> float:
    """A whole pod on runc while the other handler hangs; returns how long it took."""
    began = time.monotonic()
    cfg = pod_config()
    pod_id = run_pod(cri, cfg)
    cid = create_container(cri, pod_id, cfg, container_config(registry.busybox, ["sleep", "3600"]))
    start(cri, cid)
    assert exec_sync(cri, cid, ["echo", "fine"]).stdout == b"fine\n"
    cri.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=5)
    cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=5)
    return time.monotonic() - began


def test_a_hanging_runtime_call_ends_with_its_deadline(
    cri_factory: Any, registry: TestRegistry, hanging_runtime: Callable[[dict[str, int]], Path]
) -> None:
    # `runc update` hangs (StartContainer runs no runc process since it releases runc's exec
    # FIFO itself; UpdateContainerResources always calls the runtime)
    wrapper = hanging_runtime({"update": 3591})
    cri: Daemon = cri_factory({**registry.daemon_overrides(), "runtimes": {"hang": {"path": str(wrapper)}}})
    pull(cri, registry.busybox)
    cfg = pod_config()
    pod_id = run_pod(cri, cfg, handler="hang")
    cid = create_container(cri, pod_id, cfg, container_config(registry.busybox, ["sleep", "3600"]))
    start(cri, cid)
    began = time.monotonic()
    update = api_pb2.UpdateContainerResourcesRequest(
        container_id=cid, linux=api_pb2.LinuxContainerResources(cpu_shares=512)
    )
    hung = cri.runtime.UpdateContainerResources.future(update, timeout=15)
    took = other_pod_works(cri, registry)
    assert not hung.done(), "the hanging update returned before the other pod's work was done"
    assert took < 12, f"the other pod's RPCs took {took:.1f} s beside a hanging runtime"
    with pytest.raises(grpc.RpcError) as err:
        hung.result()
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - began < 15 + 3
    # the hanging runtime call was killed with the request: nothing of it is left running
    deadline = time.monotonic() + 10
    while sleepers(3591) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sleepers(3591) == []
    # a client that gives up before the deadline (kubelet cancelling): the same
    cancelled = cri.runtime.UpdateContainerResources.future(update, timeout=60)
    assert running_sleeper(3591), "the second update never reached the runtime"
    cancelled.cancel()
    deadline = time.monotonic() + 10
    while sleepers(3591) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sleepers(3591) == []
    # the container itself runs on, and the daemon still answers for it
    st = cri.runtime.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=cid), timeout=10).status
    assert st.state == api_pb2.CONTAINER_RUNNING
    assert exec_sync(cri, cid, ["echo", "still"]).stdout == b"still\n"
    remove_all_and_check(cri)


def test_a_slow_runtime_create_is_found_by_the_retry(
    cri_factory: Any, registry: TestRegistry, hanging_runtime: Callable[[dict[str, int]], Path]
) -> None:
    wrapper = hanging_runtime({"create": 12})
    cri: Daemon = cri_factory({**registry.daemon_overrides(), "runtimes": {"hang": {"path": str(wrapper)}}})
    pull(cri, registry.busybox)
    cfg = pod_config()
    pod_id = run_pod(cri, cfg, handler="hang")
    ccfg = container_config(registry.busybox, ["sleep", "3600"])
    began = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        create_container_with_deadline(cri, pod_id, cfg, ccfg, 3)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - began < 3 + 2
    assert other_pod_works(cri, registry) < 12
    # kubelet asks again, same metadata and attempt: it gets the container the first made
    cid = create_container_with_deadline(cri, pod_id, cfg, ccfg, 60)
    start(cri, cid)
    wait_state(cri, cid, api_pb2.CONTAINER_RUNNING)
    ours = cri.runtime.ListContainers(
        api_pb2.ListContainersRequest(filter=api_pb2.ContainerFilter(pod_sandbox_id=pod_id)), timeout=10
    ).containers
    assert [c.id for c in ours] == [cid]
    remove_all_and_check(cri)


def create_container_with_deadline(
    cri: Daemon,
    pod_id: str,
    pod_cfg: api_pb2.PodSandboxConfig,
    config: api_pb2.ContainerConfig,
    timeout: float,
) -> str:
    resp = cri.runtime.CreateContainer(
        api_pb2.CreateContainerRequest(pod_sandbox_id=pod_id, config=config, sandbox_config=pod_cfg),
        timeout=timeout,
    )
    return str(resp.container_id)


def test_a_create_stuck_in_the_runtime_is_killed_when_given_up(
    cri_factory: Any, registry: TestRegistry, hanging_runtime: Callable[[dict[str, int]], Path]
) -> None:
    """The daemon stops while conmon waits for a runtime that never answers: conmon, the
    runtime and what it started go with the create (the same path a create past its time
    limit takes); the next start unwinds the half-made container."""
    wrapper = hanging_runtime({"create": 3589})
    cri: Daemon = cri_factory({**registry.daemon_overrides(), "runtimes": {"hang": {"path": str(wrapper)}}})
    pull(cri, registry.busybox)
    cfg = pod_config()
    pod_id = run_pod(cri, cfg, handler="hang")
    with pytest.raises(grpc.RpcError) as err:
        create_container_with_deadline(cri, pod_id, cfg, container_config(registry.busybox, ["true"]), 3)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert sleepers(3589), "the runtime was not hanging"
    cri.stop()
    assert sleepers(3589) == []
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and _is_conmon_of(p, cri)]
    (wrapper.parent / "hang-create").unlink()
    cri.start()
    assert not cri.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers
    remove_all_and_check(cri)


def _is_conmon_of(proc: Path, cri: Daemon) -> bool:
    try:
        argv = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(argv) and argv[0].endswith(b"conmon") and str(cri.workdir).encode() in b" ".join(argv)


# runc, except that after deleting a container named by a `linger-<id>` file beside it, the
# container's cgroup is back with a process in it that takes a moment to go: what runsc's
# delete leaves while a gVisor sandbox's processes are still on their way out
LINGER_WRAPPER = """#!/usr/bin/env python3
import json, os, subprocess, sys
runc = "/usr/sbin/runc"
args = sys.argv[1:]
here = os.path.dirname(os.path.abspath(__file__))
if "delete" not in args or not os.path.exists(os.path.join(here, "linger-" + args[-1])):
    os.execv(runc, ["runc", *args])
state = subprocess.run([runc, *args[: args.index("delete")], "state", args[-1]], capture_output=True, text=True)
with open(os.path.join(json.loads(state.stdout)["bundle"], "config.json")) as f:
    relpath = json.load(f)["linux"]["cgroupsPath"].strip("/")
deleted = subprocess.run([runc, *args]).returncode
lingering = subprocess.Popen(["sleep", "1.5"], start_new_session=True)
for root in {os.path.realpath(e.path) for e in os.scandir("/sys/fs/cgroup") if e.is_dir()}:
    target = os.path.join(root, relpath)
    os.makedirs(target, exist_ok=True)
    for name in ("cpuset.cpus", "cpuset.mems"):  # a new cpuset takes no task before it has both
        if os.path.exists(os.path.join(target, name)):
            with open(os.path.join(os.path.dirname(target), name)) as src, open(os.path.join(target, name), "w") as dst:
                dst.write(src.read())
    with open(os.path.join(target, "cgroup.procs"), "w") as f:
        f.write(str(lingering.pid))
sys.exit(deleted)
"""


def test_an_infra_cgroup_the_runtime_left_goes_once_its_processes_have(
    cri_factory: Any, registry: TestRegistry, tmp_path: Path
) -> None:
    wrapper = tmp_path / "linger-runtime" / "runc-linger"
    wrapper.parent.mkdir()
    wrapper.write_text(LINGER_WRAPPER)
    wrapper.chmod(0o755)
    cri: Daemon = cri_factory({**registry.daemon_overrides(), "runtimes": {"linger": {"path": str(wrapper)}}})
    cfg = pod_config(pid=api_pb2.POD)  # a pod with an infra container
    pod_id = run_pod(cri, cfg, handler="linger")
    (wrapper.parent / f"linger-{pod_id}").touch()
    # an exec FIFO makes the daemon leave the delete to the runtime (runc_delete.py)
    (cri.run_dir / "runtimes" / "linger" / pod_id / "exec.fifo").touch()
    cgroups = [
        h / f"cri-py-e2e-{cri.workdir.name}" / f"cri-py-{pod_id}" for h in Path("/sys/fs/cgroup").iterdir()
    ]
    assert any(c.is_dir() for c in cgroups)
    cri.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
    assert [c for c in cgroups if c.exists()] == []
    remove_all_and_check(cri)
