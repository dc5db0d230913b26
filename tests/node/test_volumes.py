"""Volumes kubelet prepares and cri-py mounts: emptyDir on disk and in memory, configMap and secret
(with a live update reaching the running container), downwardAPI, the projected service-account
token, hostPath."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from kubernetes import client

from tests.node.cluster_env import NodeEnv, wait_for


def exec_out(node: NodeEnv, ns: str, pod: str, command: str, container: str = "app") -> str:
    return node.kubectl("exec", "-n", ns, pod, "-c", container, "--", "sh", "-c", command).stdout


def test_empty_dir_disk_and_memory(node: NodeEnv, ns: str) -> None:
    mounts = [{"name": "disk", "mountPath": "/disk"}, {"name": "mem", "mountPath": "/mem"}]
    node.create_pod(ns, {
        "metadata": {"name": "empty"},
        "spec": {
            "containers": [
                {"name": "app", "command": ["sleep", "600"], "volumeMounts": mounts},
                {"name": "other", "command": ["sleep", "600"], "volumeMounts": mounts},
            ],
            "volumes": [{"name": "disk", "emptyDir": {}},
                        {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}}],
        },
    })  # fmt: skip
    node.wait_running(ns, "empty")
    exec_out(node, ns, "empty", "echo on-disk > /disk/f; echo in-memory > /mem/f")
    assert exec_out(node, ns, "empty", "cat /disk/f /mem/f", "other") == "on-disk\nin-memory\n"
    mount_table = exec_out(node, ns, "empty", "cat /proc/mounts", "other")
    mem = next(line.split() for line in mount_table.splitlines() if line.split()[1] == "/mem")
    assert mem[2] == "tmpfs" and "size=8192k" in mem[3], mem
    disk = next(line.split() for line in mount_table.splitlines() if line.split()[1] == "/disk")
    assert disk[2] != "tmpfs", disk
    # the disk emptyDir is kubelet's directory for the pod, on the node's filesystem
    uid = node.pod(ns, "empty").metadata.uid
    on_node = node.layout.kubelet_dir / "pods" / uid / "volumes" / "kubernetes.io~empty-dir" / "disk" / "f"
    assert on_node.read_text() == "on-disk\n"


def test_config_map_secret_and_labels_live_update(node: NodeEnv, ns: str) -> None:
    node.core.create_namespaced_config_map(
        ns, {"metadata": {"name": "cfg"}, "data": {"greeting": "hello v1"}}
    )
    node.core.create_namespaced_secret(ns, {
        "metadata": {"name": "sec"}, "data": {"password": base64.b64encode(b"s3cret-v1").decode()},
    })  # fmt: skip
    node.create_pod(ns, {
        "metadata": {"name": "cfgpod", "labels": {"tier": "v1"}},
        "spec": {
            "containers": [{
                "name": "app", "command": ["sleep", "600"],
                "env": [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}},
                        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "password"}}}],
                "volumeMounts": [{"name": "cfg", "mountPath": "/etc/cfg"}, {"name": "sec", "mountPath": "/etc/sec"},
                                 {"name": "info", "mountPath": "/etc/info"}],
            }],
            "volumes": [{"name": "cfg", "configMap": {"name": "cfg"}},
                        {"name": "sec", "secret": {"secretName": "sec", "defaultMode": 0o400}},
                        {"name": "info", "downwardAPI": {"items": [
                            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}}],
        },
    })  # fmt: skip
    node.wait_running(ns, "cfgpod")
    assert (
        exec_out(node, ns, "cfgpod", "cat /etc/cfg/greeting; echo; cat /etc/sec/password; echo")
        == "hello v1\ns3cret-v1\n"
    )
    assert exec_out(node, ns, "cfgpod", 'echo "$GREETING/$PASSWORD"') == "hello v1/s3cret-v1\n"
    # secrets live in memory, never on the node's disk; the mode is what the volume asked for
    mount_table = exec_out(node, ns, "cfgpod", "cat /proc/mounts")
    assert any(
        line.split()[1] == "/etc/sec" and line.split()[2] == "tmpfs" for line in mount_table.splitlines()
    )
    assert exec_out(node, ns, "cfgpod", "stat -L -c %a /etc/sec/password") == "400\n"

    node.core.patch_namespaced_config_map("cfg", ns, {"data": {"greeting": "hello v2"}})
    node.core.patch_namespaced_secret(
        "sec", ns, {"data": {"password": base64.b64encode(b"s3cret-v2").decode()}}
    )
    # kubelet rewrites the volumes on its next sync of the pod (syncFrequency, a minute by default);
    # cri-py bind-mounts the volume directories, so the atomic swap shows through
    wait_for(
        lambda: exec_out(node, ns, "cfgpod", "cat /etc/cfg/greeting; echo; cat /etc/sec/password; echo")
        == "hello v2\ns3cret-v2\n",
        150, "the updated configMap and secret inside the running container", interval=2,
    )  # fmt: skip
    node.core.patch_namespaced_pod("cfgpod", ns, {"metadata": {"labels": {"tier": "v2"}}})
    wait_for(lambda: exec_out(node, ns, "cfgpod", "cat /etc/info/labels") == 'tier="v2"', 150,
             "the label update in the downward API volume", interval=2)  # fmt: skip
    # environment variables are fixed at start; the container was not restarted for the update
    assert exec_out(node, ns, "cfgpod", 'echo "$GREETING"') == "hello v1\n"
    assert node.pod(ns, "cfgpod").status.container_statuses[0].restart_count == 0


def test_downward_api(node: NodeEnv, ns: str) -> None:
    node.create_pod(ns, {
        "metadata": {"name": "downward", "labels": {"tier": "test", "app": "downward"},
                     "annotations": {"note": "from-the-api"}},
        "spec": {
            "containers": [{
                "name": "app", "command": ["sleep", "600"],
                "resources": {"requests": {"cpu": "100m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
                "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    {"name": "MEM_LIMIT", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}},
                ],
                "volumeMounts": [{"name": "info", "mountPath": "/etc/info"}],
            }],
            "volumes": [{"name": "info", "downwardAPI": {"items": [
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
                {"path": "cpu_request", "resourceFieldRef": {"containerName": "app", "resource": "requests.cpu",
                                                             "divisor": "1m"}},
            ]}}],
        },
    })  # fmt: skip
    pod = node.wait_running(ns, "downward")
    env = dict(
        line.split("=", 1) for line in exec_out(node, ns, "downward", "env").splitlines() if "=" in line
    )
    assert env["POD_NAME"] == "downward" and env["NODE_NAME"] == node.node_name
    assert env["POD_IP"] == pod.status.pod_ip and env["MEM_LIMIT"] == str(64 * 1024 * 1024)
    labels = exec_out(node, ns, "downward", "cat /etc/info/labels")
    assert 'tier="test"' in labels and 'app="downward"' in labels
    assert 'note="from-the-api"' in exec_out(node, ns, "downward", "cat /etc/info/annotations")
    assert exec_out(node, ns, "downward", "cat /etc/info/cpu_request") == "100"


def _jwt_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def test_projected_service_account_token(node: NodeEnv, ns: str) -> None:
    node.create_pod(ns, {
        "metadata": {"name": "sa"},
        "spec": {
            "containers": [{
                "name": "app", "command": ["sleep", "600"],
                "volumeMounts": [{"name": "aud", "mountPath": "/var/run/aud"}],
            }],
            "volumes": [{"name": "aud", "projected": {"sources": [
                {"serviceAccountToken": {"audience": "cri-py-test", "expirationSeconds": 3600, "path": "token"}},
            ]}}],
        },
    })  # fmt: skip
    pod = node.wait_running(ns, "sa")
    sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount"
    token = exec_out(node, ns, "sa", f"cat {sa_dir}/token")
    claims = _jwt_claims(token)
    assert claims["sub"] == f"system:serviceaccount:{ns}:default"
    assert claims["kubernetes.io"]["pod"]["uid"] == pod.metadata.uid
    assert exec_out(node, ns, "sa", f"cat {sa_dir}/namespace") == ns
    assert exec_out(node, ns, "sa", f"cat {sa_dir}/ca.crt") == (node.layout.pki / "ca.crt").read_text()
    # the API server accepts the token kubelet requested for the pod
    review = client.AuthenticationV1Api(node.api_client).create_token_review({"spec": {"token": token}})
    assert review.status.authenticated is True
    assert review.status.user.username == f"system:serviceaccount:{ns}:default"
    other = _jwt_claims(exec_out(node, ns, "sa", "cat /var/run/aud/token"))
    assert other["aud"] == ["cri-py-test"] and other["exp"] - other["iat"] == 3600


def test_host_path(node: NodeEnv, ns: str, tmp_path: Path) -> None:
    host_dir = node.layout.dir / "hostpath-test"
    host_dir.mkdir(exist_ok=True)
    (host_dir / "from-host").write_text("written on the node\n")
    node.create_pod(ns, {
        "metadata": {"name": "hostpath"},
        "spec": {
            "containers": [{"name": "app", "command": ["sleep", "600"],
                            "volumeMounts": [{"name": "h", "mountPath": "/h"},
                                             {"name": "ro", "mountPath": "/ro", "readOnly": True}]}],
            "volumes": [{"name": "h", "hostPath": {"path": str(host_dir), "type": "Directory"}},
                        {"name": "ro", "hostPath": {"path": str(host_dir)}}],
        },
    })  # fmt: skip
    node.wait_running(ns, "hostpath")
    assert exec_out(node, ns, "hostpath", "cat /h/from-host") == "written on the node\n"
    exec_out(node, ns, "hostpath", "echo from the pod > /h/from-pod")
    assert (host_dir / "from-pod").read_text() == "from the pod\n"
    denied = node.kubectl("exec", "-n", ns, "hostpath", "--", "sh", "-c", "touch /ro/x", check=False)
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr
