"""A CNI plugin that fails: on ADD the pod is not created and nothing is left; on DEL the stop
fails and is retried, and a removal takes what it can and says what it could not."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from cri_py.api import api_pb2
from tests.e2e import registry_fixtures
from tests.e2e.daemon import Daemon, ip_allocations
from tests.e2e.fault_support import remove_all_and_check, traces
from tests.e2e.registry_fixtures import TestRegistry
from tests.e2e.test_pod_support import container_config, create_container, pod_config, pull, run_pod, start

registry = registry_fixtures.registry

# A chained plugin that passes the previous result on, and fails a command while a file of
# that command's name exists in its flag directory; `<command>.slow` (seconds) makes it take
# that long first, and it leaves `<command>.finished` once it has.
FLAKY_PLUGIN = """#!/usr/bin/env python3
import json, os, sys, time
conf = json.load(sys.stdin)
command = os.environ.get("CNI_COMMAND", "")
version = conf.get("cniVersion", "1.0.0")
if command == "VERSION":
    print(json.dumps({"cniVersion": version, "supportedVersions": ["0.3.1", "0.4.0", "1.0.0"]}))
    sys.exit(0)
slow = os.path.join(conf["flagDir"], command + ".slow")
if os.path.exists(slow):
    with open(slow) as f:
        time.sleep(float(f.read()))
    open(os.path.join(conf["flagDir"], command + ".finished"), "w").close()
if os.path.exists(os.path.join(conf["flagDir"], command)):
    print(json.dumps({"cniVersion": version, "code": 999, "msg": f"injected {command} failure"}))
    sys.exit(1)
if command == "ADD":
    print(json.dumps(conf.get("prevResult") or {"cniVersion": version}))
"""


class FlakyNetwork:
    def __init__(self, cri: Daemon, flags: Path) -> None:
        self.cri = cri
        self.flags = flags

    def fail(self, command: str, on: bool = True) -> None:
        flag = self.flags / command
        if on:
            flag.touch()
        else:
            flag.unlink(missing_ok=True)

    def slow(self, command: str, seconds: float) -> None:
        (self.flags / f"{command}.slow").write_text(str(seconds))

    def finished(self, command: str) -> bool:
        return (self.flags / f"{command}.finished").exists()


@pytest.fixture
def flaky(cri_factory: Any, registry: TestRegistry, tmp_path: Path) -> FlakyNetwork:
    plugins = tmp_path / "cni-bin"
    plugins.mkdir()
    plugin = plugins / "cripy-test-flaky"
    plugin.write_text(FLAKY_PLUGIN)
    plugin.chmod(0o755)
    flags = tmp_path / "flags"
    flags.mkdir()
    cri: Daemon = cri_factory(
        {**registry.daemon_overrides(), "cni": {"bin_dirs": [str(plugins), "/usr/lib/cni"]}}
    )
    # the suite's network with the flaky plugin chained after the bridge, under a new name
    conf = next((cri.workdir / "cni" / "net.d").glob("*.conflist"))
    network = json.loads(conf.read_text())
    network["name"] += "-flaky"
    network["plugins"].insert(1, {"type": "cripy-test-flaky", "flagDir": str(flags)})
    conf.write_text(json.dumps(network))
    deadline = time.monotonic() + 20
    while f"CNI default network: {network['name']}" not in cri.log_text():
        assert time.monotonic() < deadline, "the daemon did not load the changed CNI config"
        time.sleep(0.05)
    pull(cri, registry.busybox)
    return FlakyNetwork(cri, flags)


def test_cni_add_failure_creates_no_pod(flaky: FlakyNetwork) -> None:
    cri = flaky.cri
    flaky.fail("ADD")
    cfg = pod_config()
    with pytest.raises(grpc.RpcError) as err:
        run_pod(cri, cfg)
    assert "injected ADD failure" in (err.value.details() or "")
    assert not cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items
    # the bridge's part of the ADD was undone: no address, no veth, no namespace, no row
    assert ip_allocations(cri.workdir) == []
    assert traces(cri) == []
    flaky.fail("ADD", on=False)
    pod_id = run_pod(cri, cfg)  # kubelet's retry, same metadata
    status = cri.runtime.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id), timeout=10)
    assert status.status.state == api_pb2.SANDBOX_READY and status.status.network.ip
    remove_all_and_check(cri)


def test_a_failed_infra_start_lets_the_cni_add_finish_before_unwinding(flaky: FlakyNetwork) -> None:
    """A plugin killed halfway through ADD can leave an address with no owner on record, or a
    half-made bridge that fails the next pod: the ADD runs to its end, then DEL undoes it."""
    cri = flaky.cri
    flaky.slow("ADD", 1.5)
    cfg = pod_config(pid=api_pb2.POD)  # a pod with an infra process, started beside the ADD
    cfg.linux.sysctls["kernel.no_such_sysctl"] = "1"  # which the runtime refuses at once
    with pytest.raises(grpc.RpcError) as err:
        run_pod(cri, cfg)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert flaky.finished("ADD"), "the CNI ADD was cut short"
    assert not cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items
    assert ip_allocations(cri.workdir) == []
    assert traces(cri) == []
    remove_all_and_check(cri)


def test_cni_del_failure_is_retried_and_removal_says_what_it_kept(
    flaky: FlakyNetwork, registry: TestRegistry
) -> None:
    cri = flaky.cri
    cfg = pod_config()
    pod_id = run_pod(cri, cfg)
    cid = create_container(cri, pod_id, cfg, container_config(registry.busybox, ["sleep", "3600"]))
    start(cri, cid)
    netns = cri.run_dir / "netns" / f"cri-py-{pod_id}"
    cache = cri.workdir / "cni" / "cache"
    flaky.fail("DEL")
    try:
        stop = api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id)
        for _attempt in range(2):  # kubelet stops again and again
            with pytest.raises(grpc.RpcError) as err:
                cri.runtime.StopPodSandbox(stop, timeout=60)
            assert "injected DEL failure" in (err.value.details() or "")
            assert any(cache.rglob(f"*{pod_id}*")), "the attachment a retry needs was dropped"
        # the removal takes what it can (the containers, the pod's files) and says what it kept
        remove = api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id)
        with pytest.raises(grpc.RpcError) as err:
            cri.runtime.RemovePodSandbox(remove, timeout=60)
        details = err.value.details() or ""
        assert "CNI DEL failed" in details and "kept" in details and "injected DEL failure" in details
        assert not cri.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers
        [pod] = cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items
        assert pod.id == pod_id and pod.state == api_pb2.SANDBOX_NOTREADY
        assert netns.exists() and any(cache.rglob(f"*{pod_id}*"))
        assert not (cri.run_dir / "pods" / pod_id).exists()
    finally:
        flaky.fail("DEL", on=False)
    # the plugin works again: the next removal releases the rest
    cri.runtime.RemovePodSandbox(remove, timeout=60)
    assert not cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items
    assert not netns.exists() and not any(cache.rglob(f"*{pod_id}*"))
    assert ip_allocations(cri.workdir) == []
    remove_all_and_check(cri)
