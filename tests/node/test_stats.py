"""kubelet's /stats/summary on cri-py: CPU and memory of every running pod and container (from
ListContainerStats / ListPodSandboxStats and the cgroups), and the image filesystem (ImageFsInfo)."""

from __future__ import annotations

import json
from typing import Any

from cri_py.api import api_pb2, api_pb2_grpc
from tests.node.cluster_env import NodeEnv, wait_for


def summary(node: NodeEnv) -> dict[str, Any]:
    raw = node.kubectl("get", "--raw", f"/api/v1/nodes/{node.node_name}/proxy/stats/summary").stdout
    data: dict[str, Any] = json.loads(raw)
    return data


def busy_pod(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"containers": [
            # some CPU and some memory held, so both readings are clearly above zero
            {"name": "spin", "command": ["sh", "-c", "while true; do i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done; sleep 0.2; done"]},
            {"name": "hold", "command": ["sh", "-c", "head -c 8000000 /dev/urandom > /dev/shm/blob; sleep 600"]},
        ]},
    }  # fmt: skip


def test_summary_has_cpu_and_memory_of_every_running_pod(node: NodeEnv, ns: str) -> None:
    for name in ("stats-a", "stats-b"):
        node.create_pod(ns, busy_pod(name))
    for name in ("stats-a", "stats-b"):
        node.wait_running(ns, name)

    def complete() -> dict[str, Any] | None:
        data = summary(node)
        ours = [p for p in data["pods"] if p["podRef"]["namespace"] == ns]
        if len(ours) != 2 or any(len(p["containers"]) != 2 for p in ours):
            return None
        readings = [
            p["cpu"].get("usageNanoCores") is not None
            and p["cpu"].get("usageCoreNanoSeconds")
            and p["memory"].get("workingSetBytes")
            for p in ours
        ]
        readings += [c["cpu"].get("usageNanoCores") is not None for p in ours for c in p["containers"]]
        return data if all(readings) else None

    # usageNanoCores needs two samples, the pod cgroup's figures a housekeeping pass: seconds
    data = wait_for(complete, 90, "CPU usage of both pods in /stats/summary", interval=3)
    running = {
        (p.metadata.namespace, p.metadata.name)
        for p in node.core.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node.node_name}").items
        if p.status.phase == "Running"
        and not p.metadata.deletion_timestamp
        and all(c.state.running for c in p.status.container_statuses or [])
    }
    listed = {(p["podRef"]["namespace"], p["podRef"]["name"]) for p in data["pods"]}
    assert running <= listed, running - listed
    for pod in data["pods"]:
        if (pod["podRef"]["namespace"], pod["podRef"]["name"]) not in running:
            continue
        where = pod["podRef"]["name"]
        assert pod["cpu"]["usageCoreNanoSeconds"] > 0, where
        assert pod["memory"]["workingSetBytes"] > 0 and pod["memory"]["usageBytes"] > 0, where
        for ctr in pod["containers"]:
            assert ctr["cpu"]["usageCoreNanoSeconds"] > 0, (where, ctr["name"])
            assert ctr["memory"]["workingSetBytes"] > 0, (where, ctr["name"])
            assert ctr["rootfs"]["usedBytes"] >= 0 and ctr["logs"]["capacityBytes"] > 0, (where, ctr["name"])
    ours = {p["podRef"]["name"]: p for p in data["pods"] if p["podRef"]["namespace"] == ns}
    for pod in ours.values():
        containers = {c["name"]: c for c in pod["containers"]}
        # the spinning container uses CPU; the holding one holds its 8 MB in /dev/shm (the pod's)
        assert containers["spin"]["cpu"]["usageNanoCores"] > 1_000_000
        assert pod["memory"]["workingSetBytes"] >= 8_000_000


def test_summary_image_filesystem_matches_image_fs_info(node: NodeEnv) -> None:
    data = summary(node)
    image_fs = data["node"]["runtime"]["imageFs"]
    assert image_fs["capacityBytes"] > 0 and image_fs["availableBytes"] > 0
    assert image_fs["usedBytes"] > 0, "busybox and the pause image are in the store"
    import grpc

    channel = grpc.insecure_channel(f"unix://{node.layout.cri_socket}")
    try:
        info = api_pb2_grpc.ImageServiceStub(channel).ImageFsInfo(api_pb2.ImageFsInfoRequest(), timeout=10)
    finally:
        channel.close()
    used = info.image_filesystems[0].used_bytes.value
    # kubelet's figure is cri-py's (the store changes little between the two reads)
    assert abs(image_fs["usedBytes"] - used) <= max(used // 10, 1 << 20), (image_fs["usedBytes"], used)
