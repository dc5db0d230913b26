"""cri-py stopped (SIGTERM) or killed (SIGKILL) under 10 running pods and started again, and
kubelet restarted: kubelet finds every container where it was, restarts none and recreates no pod."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cri_py.api import api_pb2
from tests.node.cluster_env import NodeEnv, container_id, ready, unique, wait_for
from tests.node.test_workloads import deployment


def snapshot(node: NodeEnv, ns: str) -> dict[str, tuple[str, int]]:
    """pod uid -> (container id, restart count), for the Deployment's pods."""
    pods = node.core.list_namespaced_pod(ns, label_selector="app=ten").items
    return {
        p.metadata.uid: (container_id(p, "web"), p.status.container_statuses[0].restart_count)
        for p in pods
        if p.status.container_statuses
    }


@pytest.fixture(scope="module")
def ten(node: NodeEnv) -> Iterator[tuple[str, dict[str, tuple[str, int]]]]:
    ns = unique("restarts")
    node.core.create_namespace({"metadata": {"name": ns}})
    wait_for(lambda: node.core.read_namespaced_service_account("default", ns), 30, "default service account")
    node.apps.create_namespaced_deployment(ns, deployment("ten", 10))
    wait_for(lambda: node.apps.read_namespaced_deployment("ten", ns).status.ready_replicas == 10, 180,
             "10 ready replicas", interval=1)  # fmt: skip
    before = snapshot(node, ns)
    assert len(before) == 10 and all(count == 0 for _, count in before.values())
    yield ns, before
    node.core.delete_namespace(ns, grace_period_seconds=0)


def assert_nothing_restarted(node: NodeEnv, ns: str, before: dict[str, tuple[str, int]]) -> None:
    wait_for(node.cluster.node_ready, 120, "the node to be Ready again", interval=1)
    # kubelet resyncs every pod against the runtime within a few PLEG relists
    time.sleep(10)
    wait_for(lambda: all(ready(p) for p in node.core.list_namespaced_pod(ns).items), 60, "all pods Ready")
    assert snapshot(node, ns) == before, "kubelet restarted a container or recreated a pod"
    containers = node.cri_containers(ns)
    assert sorted(c.id for c in containers) == sorted(cid for cid, _ in before.values())
    assert all(c.state == api_pb2.CONTAINER_RUNNING and c.metadata.attempt == 0 for c in containers)
    sandboxes = node.cri_pods(ns)
    assert len(sandboxes) == 10 and all(s.state == api_pb2.SANDBOX_READY for s in sandboxes)
    rs = node.apps.list_namespaced_replica_set(ns).items
    assert len(rs) == 1 and rs[0].status.ready_replicas == 10


def events_since(node: NodeEnv, ns: str, since: float) -> list[Any]:
    return [e for e in node.core.list_namespaced_event(ns).items
            if (e.last_timestamp or e.event_time) and (e.last_timestamp or e.event_time).timestamp() >= since]  # fmt: skip


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_cri_py_restart_keeps_containers(node: NodeEnv, ten: tuple[str, dict[str, Any]], sig: int) -> None:
    ns, before = ten
    started = time.time()
    assert node.cluster.stop_component("cri-py", sig)
    # kubelet notices: the runtime is down for a while
    time.sleep(5)
    node.cluster.start_component("cri-py")
    assert_nothing_restarted(node, ns, before)
    assert not [
        e for e in events_since(node, ns, started) if e.reason in ("Killing", "Started", "SandboxChanged")
    ]


def test_kubelet_restart_keeps_containers(node: NodeEnv, ten: tuple[str, dict[str, Any]]) -> None:
    ns, before = ten
    started = time.time()
    assert node.cluster.stop_component("kubelet")
    time.sleep(3)
    node.cluster.start_component("kubelet")
    assert_nothing_restarted(node, ns, before)
    assert not [
        e for e in events_since(node, ns, started) if e.reason in ("Killing", "Started", "SandboxChanged")
    ]
