"""The CRI metrics RPCs: cAdvisor's container_* series from the cgroup and the pod's netns."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from cri_py.api import api_pb2
from tests.e2e import registry_fixtures
from tests.e2e.crictl import crictl
from tests.e2e.registry_fixtures import TestRegistry
from tests.e2e.test_pod_support import container_config, create_container, pod_config, pull, run_pod, start

registry = registry_fixtures.registry

# a busy loop until the test ends: the CRI carries whole seconds, and a loaded machine may
# give it a fraction of a core
BUSY = ["sh", "-c", "while :; do :; done"]


@pytest.fixture
def cri(cri_factory: Any, registry: TestRegistry) -> Any:
    return cri_factory(registry.daemon_overrides())


def _values(metrics: Any) -> dict[tuple[str, tuple[str, ...]], int]:
    return {(m.name, tuple(m.label_values)): m.value.value for m in metrics}


def test_pod_metrics_have_cadvisor_names_labels_and_live_values(cri: Any, registry: TestRegistry) -> None:
    pull(cri, registry.busybox)
    pcfg = pod_config()
    pod_id = run_pod(cri, pcfg)
    cid = create_container(cri, pod_id, pcfg, container_config(registry.busybox, BUSY, name="burn"))
    start(cri, cid)

    descriptors = {
        d.name: list(d.label_keys)
        for d in cri.runtime.ListMetricDescriptors(
            api_pb2.ListMetricDescriptorsRequest(), timeout=10
        ).descriptors
    }
    base = ["id", "name", "image", "namespace", "pod", "container"]
    assert descriptors["container_cpu_usage_seconds_total"] == [*base, "cpu"]
    assert descriptors["container_memory_working_set_bytes"] == base
    assert descriptors["container_network_receive_bytes_total"] == [*base, "interface"]

    deadline = time.monotonic() + 30
    while True:
        reply = cri.runtime.ListPodSandboxMetrics(api_pb2.ListPodSandboxMetricsRequest(), timeout=30)
        ours = [p for p in reply.pod_metrics if p.pod_sandbox_id == pod_id]
        assert len(ours) == 1
        (ctr,) = ours[0].container_metrics
        values = _values(ctr.metrics)
        labels = (cid, "burn", registry.busybox, "e2e", pcfg.metadata.name, "burn")
        cpu = values[("container_cpu_usage_seconds_total", (*labels, "total"))]
        if cpu >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert cpu >= 1
    assert values[("container_memory_working_set_bytes", labels)] > 0
    assert values[("container_memory_rss", labels)] > 0
    assert values[("container_processes", labels)] >= 1
    assert values[("container_start_time_seconds", labels)] > 0
    fs = [k for k in values if k[0] == "container_fs_usage_bytes"]
    assert len(fs) == 1 and fs[0][1][:6] == labels
    for metric in [*ctr.metrics, *ours[0].metrics]:
        assert len(metric.label_values) == len(descriptors[metric.name]), metric.name
        # as cAdvisor has them: failcnt counts, container_fs_inodes_total is a size
        counter = metric.name.endswith("_total") or metric.name == "container_memory_failcnt"
        counter = counter and metric.name != "container_fs_inodes_total"
        assert metric.metric_type == (api_pb2.COUNTER if counter else api_pb2.GAUGE), metric.name
    pod_values = _values(ours[0].metrics)
    pod_labels = (pod_id, "POD", "", "e2e", pcfg.metadata.name, "POD", "eth0")
    assert ("container_network_receive_bytes_total", pod_labels) in pod_values
    assert ("container_network_transmit_packets_total", pod_labels) in pod_values

    # the stream sends the same pods
    streamed = list(cri.runtime.StreamPodSandboxMetrics(api_pb2.StreamPodSandboxMetricsRequest(), timeout=30))
    assert [p.pod_sandbox_id for m in streamed for p in m.pod_sandbox_metrics] == [pod_id]

    # crictl metricsp shows the same, non-zero CPU and memory
    shown = json.loads(crictl(cri, "metricsp"))
    (pod_shown,) = [p for p in shown["podMetrics"] if p["podSandboxId"] == pod_id]
    shown_values = {
        m["name"]: int(m["value"]["value"])
        for m in pod_shown["containerMetrics"][0]["metrics"]
        if "value" in m
    }
    assert shown_values["container_cpu_usage_seconds_total"] >= 1
    assert shown_values["container_memory_working_set_bytes"] > 0
    descs = json.loads(crictl(cri, "metricdescs"))
    assert {d["name"] for d in descs["descriptors"]} == set(descriptors)
