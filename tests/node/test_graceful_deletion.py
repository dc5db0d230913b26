"""Deleting pods: the grace period and preStop hook are honoured through cri-py's StopContainer
and ExecSync, and a forced deletion still leaves nothing of the pod on the node."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from cri_py.api import api_pb2
from tests.node.cluster_env import NodeEnv, wait_for

CGROUP_MEMORY = Path("/sys/fs/cgroup/memory")


def pod_with_log(name: str, out: Path, command: str, grace: int, **container: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": grace,
            "containers": [{
                "name": "app", "command": ["sh", "-c", command],
                "volumeMounts": [{"name": "out", "mountPath": "/out"}], **container,
            }],
            "volumes": [{"name": "out", "hostPath": {"path": str(out), "type": "DirectoryOrCreate"}}],
        },
    }  # fmt: skip


def delete_and_time(node: NodeEnv, ns: str, name: str, *extra: str) -> float:
    started = time.monotonic()
    node.kubectl("delete", "pod", "-n", ns, name, "--wait=true", *extra, timeout=120)
    return time.monotonic() - started


def test_prestop_hook_then_sigterm_within_grace(node: NodeEnv, ns: str) -> None:
    out = node.layout.dir / f"grace-{ns}"
    # sh runs a trap once its foreground child ends: short sleeps keep it responsive
    command = ("trap 'echo term >> /out/log; sleep 3; echo done >> /out/log; exit 0' TERM; "
               "echo started >> /out/log; while true; do sleep 0.2; done")  # fmt: skip
    node.create_pod(ns, pod_with_log(
        "graceful", out, command, 30,
        lifecycle={"preStop": {"exec": {"command": ["sh", "-c", "echo prestop >> /out/log; sleep 2"]}}},
    ))  # fmt: skip
    node.wait_running(ns, "graceful")
    took = delete_and_time(node, ns, "graceful")
    assert (out / "log").read_text().split() == ["started", "prestop", "term", "done"]
    # the hook (2 s) then the trap (3 s) ran to their end, well inside the 30 s grace period
    assert 5 <= took < 28, took


def test_grace_period_ends_with_sigkill(node: NodeEnv, ns: str) -> None:
    out = node.layout.dir / f"grace-{ns}"
    node.create_pod(ns, pod_with_log(
        "stubborn", out, "trap 'echo ignored-term >> /out/log' TERM; while true; do sleep 0.2; done", 4,
    ))  # fmt: skip
    node.wait_running(ns, "stubborn")
    took = delete_and_time(node, ns, "stubborn")
    assert (out / "log").read_text() == "ignored-term\n"
    # SIGTERM was delivered and ignored; SIGKILL came at the end of the 4 s grace period
    assert 3.5 <= took < 20, took


def node_traces(node: NodeEnv, ns: str, uid: str) -> list[str]:
    """What of one pod is still on the node: CRI sandboxes and containers, mounts, its cgroup."""
    found = [f"sandbox {p.id} {api_pb2.PodSandboxState.Name(p.state)}" for p in node.cri_pods(ns)
             if p.metadata.uid == uid]  # fmt: skip
    found += [f"container {c.id} {api_pb2.ContainerState.Name(c.state)}" for c in node.cri_containers(ns)
              if c.labels.get("io.kubernetes.pod.uid") == uid]  # fmt: skip
    with open("/proc/self/mountinfo", encoding="utf-8") as info:
        found += [f"mount {line.split()[4]}" for line in info if uid in line.split()[4]]
    root = CGROUP_MEMORY / node.cluster.slot.cgroup_root.lstrip("/") / "kubepods"
    found += [f"cgroup {p}" for p in root.rglob(f"pod{uid}")]
    pod_dir = node.layout.kubelet_dir / "pods" / uid
    if pod_dir.exists():
        found.append(f"kubelet dir {pod_dir}")
    return found


def test_force_delete_still_cleans_up(node: NodeEnv, ns: str) -> None:
    node.core.create_namespaced_secret(ns, {"metadata": {"name": "s"}, "string_data": {"k": "v"}})
    node.create_pod(ns, {
        "metadata": {"name": "forced"},
        "spec": {
            "terminationGracePeriodSeconds": 600,
            "containers": [{"name": "app", "command": ["sh", "-c", "trap '' TERM; while true; do sleep 0.2; done"],
                            "volumeMounts": [{"name": "s", "mountPath": "/s"}]}],
            "volumes": [{"name": "s", "secret": {"secretName": "s"}}],
        },
    })  # fmt: skip
    pod = node.wait_running(ns, "forced")
    uid = pod.metadata.uid
    assert node_traces(node, ns, uid), "the running pod is visible on the node"
    took = delete_and_time(node, ns, "forced", "--force", "--grace-period=0")
    assert took < 10, took  # the API object goes at once; kubelet cleans up behind it
    # no container keeps running, then everything of the pod goes: the 600 s grace is not waited for
    wait_for(lambda: all(c.state != api_pb2.CONTAINER_RUNNING for c in node.cri_containers(ns)), 60,
             "the container to be stopped")  # fmt: skip
    wait_for(
        lambda: not node_traces(node, ns, uid), 120, f"nothing of pod {uid} left on the node", interval=1
    )
