"""A `type: vm` handler (Kata's shape: the pod is a VM, its containers are created inside it)
through containerd's shim v2 API. There is no Kata here: a stand-in shim of the suite's own
(vm_shim_standin.py) journals the calls cri-py makes, and Debian's containerd-shim-runc-v2, a
real shim v2, runs the same pod for real (its containers are runc's, not a VM's)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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

registry = registry_fixtures.registry

STANDIN = Path(__file__).with_name("vm_shim_standin.py")
RUNC_SHIM = Path("/usr/bin/containerd-shim-runc-v2")
# where containerd-shim-runc-v2 keeps runc's state for our shim namespace
RUNC_SHIM_ROOT = Path("/run/containerd/runc/cri-py")


@pytest.fixture
def standin() -> Iterator[Path]:
    """The stand-in shim's journal directory (short: its sockets live there)."""
    directory = Path(tempfile.mkdtemp(prefix="vmshim-", dir="/tmp"))
    wrapper = directory / "containerd-shim-standin-v2"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {STANDIN} {directory} "$@"\n')
    wrapper.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _journal(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (directory / "journal.jsonl").read_text().splitlines()]


def _lifecycle(cri: Any, image: str, handler: str) -> tuple[str, str, str]:
    """A pod with one container: logs, exec, a stop with its exit code, then all removed."""
    logs = Path(tempfile.mkdtemp(prefix="vmlogs-"))
    try:
        cfg = pod_config(pid=api_pb2.POD, log_directory=str(logs))
        pod_id = run_pod(cri, cfg, handler=handler)
        script = "echo to-stdout; echo to-stderr >&2; trap 'exit 3' TERM; while true; do sleep 0.1; done"
        cid = create_container(
            cri, pod_id, cfg, container_config(image, ["sh", "-c", script], log_path="c.log")
        )
        start(cri, cid)
        wait_state(cri, cid, api_pb2.CONTAINER_RUNNING)
        out = exec_sync(cri, cid, ["sh", "-c", "echo from-exec; echo oops >&2; exit 4"])
        assert (out.exit_code, out.stdout, out.stderr) == (4, b"from-exec\n", b"oops\n")
        timed = exec_sync(cri, cid, ["sleep", "60"], timeout=1)
        assert timed.exit_code != 0 and b"timed out" in timed.stderr
        cri.runtime.StopContainer(api_pb2.StopContainerRequest(container_id=cid, timeout=10), timeout=30)
        st = status(cri, cid)
        assert (st.state, st.exit_code) == (api_pb2.CONTAINER_EXITED, 3), st
        # the daemon wrote the CRI log from the shim's FIFOs (no conmon)
        lines = (logs / "c.log").read_text().splitlines()
        assert {tuple(line.split(" ", 3)[1:]) for line in lines} >= {
            ("stdout", "F", "to-stdout"),
            ("stderr", "F", "to-stderr"),
        }, lines
        cri.runtime.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=cid), timeout=30)
        cri.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
        cri.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=60)
        return pod_id, cid, str(logs)
    finally:
        shutil.rmtree(logs, ignore_errors=True)


def test_a_vm_handler_creates_the_pod_then_its_containers_in_one_shim(
    cri_factory: Any, registry: TestRegistry, standin: Path
) -> None:
    wrapper = standin / "containerd-shim-standin-v2"
    cri = cri_factory(
        {**registry.daemon_overrides(), "runtimes": {"kata": {"path": str(wrapper), "type": "vm"}}}
    )
    pull(cri, registry.busybox)
    pod_id, cid, _ = _lifecycle(cri, registry.busybox, "kata")
    calls = _journal(standin)
    names = [(c["call"], c.get("id"), c.get("exec_id", "")) for c in calls]

    # the pod's shim is started for the pod; the container's start lands in the pod's shim
    starts = [c for c in calls if c["call"] == "start"]
    assert [(s["id"], s["group"]) for s in starts] == [(pod_id, pod_id), (cid, pod_id)]
    assert all(s["-namespace"] == "cri-py" and s["-publish-binary"] == "/bin/true" for s in starts)
    # the VM first: the sandbox is created and started before anything is created in it
    creates = [c for c in calls if c["call"] == "Create"]
    assert [(c["id"], c["type"], c["sandbox"]) for c in creates] == [
        (pod_id, "sandbox", pod_id),
        (cid, "container", pod_id),
    ]
    assert names.index(("Start", pod_id, "")) < names.index(("Create", cid, ""))
    # the container's stdio are FIFOs of the daemon's, no terminal
    container = creates[1]
    assert container["stdout"] and container["stderr"] and not container["terminal"]
    assert Path(container["bundle"]).name == cid
    # an exec is Exec + Start + Wait + Delete with an OCI process spec
    execs = [c for c in calls if c["call"] == "Exec"]
    assert len(execs) == 2 and {e["spec_type"] for e in execs} == {
        "types.containerd.io/opencontainers/runtime-spec/1/Process"
    }
    for e in execs:
        for step in ("Start", "Wait", "Delete"):
            assert (step, cid, e["exec_id"]) in names
    # the timed-out exec was killed
    assert any(c["call"] == "Kill" and c["exec_id"] == execs[1]["exec_id"] for c in calls)
    # stop: SIGTERM to the container; then it goes, then the VM, then the shim
    assert ("Kill", cid, "") in names and next(
        c["signal"] for c in calls if c["call"] == "Kill" and c["id"] == cid and not c["exec_id"]
    ) == 15
    tail = [n for n in names if n[0] in ("Delete", "Shutdown") and not n[2]]
    assert tail == [("Delete", cid, ""), ("Delete", pod_id, ""), ("Shutdown", pod_id, "")]
    # the shim exited: its socket is gone
    assert not list(standin.glob("*.sock"))


@pytest.fixture
def runc_shim_root() -> Iterator[None]:
    """runc's state directory for our shim namespace, which containerd-shim-runc-v2 creates and
    leaves (empty): removed after the daemons, which are torn down first."""
    had_root = RUNC_SHIM_ROOT.exists()
    yield
    if not had_root and RUNC_SHIM_ROOT.exists():
        os.rmdir(RUNC_SHIM_ROOT)


@pytest.mark.skipif(not RUNC_SHIM.exists(), reason="Debian's containerd-shim-runc-v2 is not installed")
def test_a_real_shim_v2_runs_the_pod_and_its_containers(
    runc_shim_root: None, cri_factory: Any, registry: TestRegistry
) -> None:
    cri = cri_factory(
        {**registry.daemon_overrides(), "runtimes": {"shim": {"path": str(RUNC_SHIM), "type": "vm"}}}
    )
    pull(cri, registry.busybox)
    _lifecycle(cri, registry.busybox, "shim")
    # a daemon restart: the shim keeps running what it runs, the daemon takes its IO back
    logs = Path(tempfile.mkdtemp(prefix="vmlogs-"))
    try:
        cfg = pod_config(pid=api_pb2.POD, log_directory=str(logs))
        pod_id = run_pod(cri, cfg, handler="shim")
        ticker = container_config(
            registry.busybox, ["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"],
            name="ticker", log_path="t.log",
        )  # fmt: skip
        ticking = create_container(cri, pod_id, cfg, ticker)
        quitting = create_container(
            cri,
            pod_id,
            cfg,
            container_config(registry.busybox, ["sh", "-c", "sleep 1.5; exit 5"], name="quit"),
        )
        start(cri, ticking)
        start(cri, quitting)
        cri.restart()
        assert status(cri, ticking).state == api_pb2.CONTAINER_RUNNING
        st = wait_state(cri, quitting, api_pb2.CONTAINER_EXITED, timeout=10)
        assert st.exit_code == 5
        before = len((logs / "t.log").read_text().splitlines())
        time.sleep(0.5)
        assert len((logs / "t.log").read_text().splitlines()) > before
        # the container sees the pod's pause process as pid 1: one PID namespace in one pod
        ps = exec_sync(cri, ticking, ["ps", "-o", "pid,args"]).stdout.decode()
        assert any(line.split()[:2] == ["1", "/pause"] for line in ps.splitlines()), ps
    finally:
        shutil.rmtree(logs, ignore_errors=True)
