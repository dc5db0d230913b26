"""Controllers on top of kubelet and cri-py: a Deployment scaled 0 -> 20 -> 0 and a Job with
completions 5 / parallelism 3 finish, and afterwards nothing of their pods is left on the node."""

from __future__ import annotations

from typing import Any

from tests.node.cluster_env import BUSYBOX, NodeEnv, wait_for
from tests.node.test_graceful_deletion import node_traces


def deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "terminationGracePeriodSeconds": 2,
                    "containers": [{
                        "name": "web", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                        "command": ["sh", "-c", "mkdir /www; hostname > /www/index.html; exec httpd -f -p 8080 -h /www"],
                        "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 2},
                        "resources": {"requests": {"cpu": "10m", "memory": "8Mi"}, "limits": {"memory": "32Mi"}},
                    }],
                },
            },
        },
    }  # fmt: skip


def test_deployment_scales_0_20_0(node: NodeEnv, ns: str) -> None:
    node.apps.create_namespaced_deployment(ns, deployment("web", 0))
    node.apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 20}})
    wait_for(lambda: node.apps.read_namespaced_deployment("web", ns).status.ready_replicas == 20, 240,
             "20 ready replicas", interval=1)  # fmt: skip
    pods = node.core.list_namespaced_pod(ns, label_selector="app=web").items
    assert len(pods) == 20 and len({p.status.pod_ip for p in pods}) == 20
    assert all(p.status.container_statuses[0].restart_count == 0 for p in pods)
    uids = [p.metadata.uid for p in pods]
    assert len([s for s in node.cri_pods(ns) if s.state == 0]) == 20  # SANDBOX_READY

    node.apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 0}})
    wait_for(lambda: not node.core.list_namespaced_pod(ns, label_selector="app=web").items, 180,
             "the pods to be gone from the API", interval=1)  # fmt: skip
    wait_for(lambda: not [t for uid in uids for t in node_traces(node, ns, uid)], 180,
             "nothing of the 20 pods left on the node", interval=2)  # fmt: skip


def test_job_completions_with_parallelism(node: NodeEnv, ns: str) -> None:
    node.batch.create_namespaced_job(ns, {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "work"},
        "spec": {
            "completions": 5, "parallelism": 3, "backoffLimit": 0,
            "template": {"spec": {
                "restartPolicy": "Never", "terminationGracePeriodSeconds": 2,
                "containers": [{"name": "step", "image": BUSYBOX, "imagePullPolicy": "IfNotPresent",
                                "command": ["sh", "-c", "echo step on $(hostname); sleep 2"]}],
            }},
        },
    })  # fmt: skip
    job = wait_for(lambda: (j := node.batch.read_namespaced_job("work", ns)).status.succeeded == 5 and j, 180,
                   "5 completions", interval=1)  # fmt: skip
    assert not job.status.failed
    assert any(c.type == "Complete" and c.status == "True" for c in job.status.conditions)
    pods = node.core.list_namespaced_pod(ns, label_selector="job-name=work").items
    assert len(pods) == 5 and all(p.status.phase == "Succeeded" for p in pods)
    for pod in pods:
        assert node.logs(ns, pod.metadata.name, "step") == f"step on {pod.metadata.name}\n"
    uids = [p.metadata.uid for p in pods]
    # at most 3 ran at once: the job controller's parallelism, kept by the node
    spans = sorted((p.status.container_statuses[0].state.terminated.started_at,
                    p.status.container_statuses[0].state.terminated.finished_at) for p in pods)  # fmt: skip
    assert max(sum(1 for s, f in spans if s <= start < f) for start, _ in spans) <= 3

    node.batch.delete_namespaced_job("work", ns, propagation_policy="Foreground")
    wait_for(lambda: not node.core.list_namespaced_pod(ns, label_selector="job-name=work").items, 120,
             "the job's pods gone from the API", interval=1)  # fmt: skip
    wait_for(lambda: not [t for uid in uids for t in node_traces(node, ns, uid)], 180,
             "nothing of the job's pods left on the node", interval=2)  # fmt: skip
