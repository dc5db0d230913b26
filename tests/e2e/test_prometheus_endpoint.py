"""The operators' Prometheus endpoint: off by default, counters that move with the daemon's work."""

from __future__ import annotations

import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cri_py.api import api_pb2
from tests.e2e import registry_fixtures
from tests.e2e.registry_fixtures import TestRegistry, free_port
from tests.e2e.test_pod_support import container_config, create_container, pod_config, pull, run_pod, start

registry = registry_fixtures.registry


def scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        assert reply.status == 200
        text = reply.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """Summed over the labels not named."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


@pytest.fixture
def cri(cri_factory: Any, registry: TestRegistry) -> Any:
    port = free_port()
    daemon = cri_factory({**registry.daemon_overrides(), "metrics": {"enabled": True, "port": port}})
    daemon.extra["metrics_port"] = port
    return daemon


def test_counters_move_with_rpcs_pulls_and_containers(cri: Any, registry: TestRegistry) -> None:
    port = cri.extra["metrics_port"]
    rpc = {"grpc_service": "RuntimeService", "grpc_type": "unary"}
    before = scrape(port)
    assert f"http://127.0.0.1:{port}/metrics" in cri.log_text()
    pull(cri, registry.busybox)
    with pytest.raises(Exception):  # noqa: B017 - a failed pull counts by its reason
        pull(cri, registry.host + "/no/such:image")
    pcfg = pod_config()
    pod_id = run_pod(cri, pcfg)
    cid = create_container(cri, pod_id, pcfg, container_config(registry.busybox, ["true"]))
    start(cri, cid)
    after = scrape(port)
    ok = {**rpc, "grpc_method": "RunPodSandbox", "grpc_code": "OK"}
    assert (
        value(after, "grpc_server_handled_total", **ok)
        == value(before, "grpc_server_handled_total", **ok) + 1
    )
    assert value(after, "grpc_server_handling_seconds_count", **ok) >= 1
    version = {**rpc, "grpc_method": "Version", "grpc_code": "OK"}
    assert value(after, "grpc_server_handled_total", **version) >= 1  # the harness's readiness probe
    assert value(after, "cri_py_image_pulls_total") == 1
    assert value(after, "cri_py_image_pull_bytes_total") > 0
    assert value(after, "cri_py_image_pull_duration_seconds_count") == 1
    assert total(after, "cri_py_image_pull_failures_total") == 1
    assert value(after, "cri_py_pod_sandboxes", state="ready") == 1
    assert total(after, "cri_py_cni_operation_duration_seconds_count", plugin="bridge", operation="ADD") == 1
    assert (
        total(after, "cri_py_runtime_operation_duration_seconds_count", runtime="runc", operation="create")
        == 1
    )
    assert (
        total(after, "cri_py_runtime_operation_duration_seconds_count", runtime="runc", operation="start")
        == 1
    )
    assert value(after, "process_resident_memory_bytes") > 0

    # the container ran `true`: its exit is counted once it is seen
    for _ in range(100):
        now = scrape(port)
        if value(now, "cri_py_container_exits_total", reason="Completed") == 1:
            break
        cri.runtime.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=cid), timeout=10)
    assert value(now, "cri_py_container_exits_total", reason="Completed") == 1
    assert value(now, "cri_py_containers", state="exited") == 1


def test_metrics_are_off_by_default(cri_factory: Any) -> None:
    daemon = cri_factory()
    daemon.runtime.Version(api_pb2.VersionRequest(), timeout=10)
    assert "serving metrics" not in daemon.log_text()
