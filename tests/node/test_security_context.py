"""securityContext as kubelet passes it to cri-py: users and groups, fsGroup on volumes, a read-only
root filesystem, no_new_privs, capabilities, and a privileged container with the host's devices."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from tests.node.cluster_env import NodeEnv

CAP_CHOWN = 0
CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21


def sleeper(name: str, pod_sc: dict[str, Any] | None = None, volumes: list[Any] | None = None,
            **container: Any) -> dict[str, Any]:  # fmt: skip
    spec: dict[str, Any] = {"containers": [{"name": "app", "command": ["sleep", "600"], **container}]}
    if pod_sc:
        spec["securityContext"] = pod_sc
    if volumes:
        spec["volumes"] = volumes
    return {"metadata": {"name": name}, "spec": spec}


def sh(node: NodeEnv, ns: str, pod: str, command: str, check: bool = True) -> Any:
    return node.kubectl("exec", "-n", ns, pod, "--", "sh", "-c", command, check=check)


def status_field(node: NodeEnv, ns: str, pod: str, field: str) -> str:
    status = sh(node, ns, pod, "cat /proc/self/status").stdout
    return str(
        next(line.split(":", 1)[1].strip() for line in status.splitlines() if line.startswith(field + ":"))
    )


def has_cap(mask_hex: str, cap: int) -> bool:
    return bool(int(mask_hex, 16) >> cap & 1)


def test_users_groups_and_fs_group(node: NodeEnv, ns: str) -> None:
    node.core.create_namespaced_config_map(ns, {"metadata": {"name": "cfg"}, "data": {"k": "v"}})
    node.create_pod(ns, sleeper(
        "ids", {"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 2000, "supplementalGroups": [4000]},
        volumes=[{"name": "data", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cfg"}}],
        volumeMounts=[{"name": "data", "mountPath": "/data"}, {"name": "cfg", "mountPath": "/cfg"}],
    ))  # fmt: skip
    node.wait_running(ns, "ids")
    assert sh(node, ns, "ids", "id -u; id -g").stdout == "1000\n3000\n"
    groups = set(sh(node, ns, "ids", "id -G").stdout.split())
    assert {"3000", "2000", "4000"} <= groups, groups
    # fsGroup: the volumes belong to group 2000, setgid, so what the pod writes stays in the group
    assert sh(node, ns, "ids", "stat -c '%g %A' /data").stdout.split() == ["2000", "drwxrwsrwx"]
    sh(node, ns, "ids", "echo x > /data/f")
    assert sh(node, ns, "ids", "stat -c '%u %g' /data/f").stdout.split() == ["1000", "2000"]
    assert sh(node, ns, "ids", "stat -L -c %g /cfg/k").stdout.strip() == "2000"
    # the process is not root: root-only things fail
    assert sh(node, ns, "ids", "touch /etc/x", check=False).returncode != 0


def test_read_only_root_and_no_new_privileges(node: NodeEnv, ns: str) -> None:
    node.create_pod(ns, sleeper(
        "ro", volumes=[{"name": "tmp", "emptyDir": {}}],
        securityContext={"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False},
        volumeMounts=[{"name": "tmp", "mountPath": "/tmp"}],
    ))  # fmt: skip
    node.create_pod(ns, sleeper("rw"))
    node.wait_running(ns, "ro")
    node.wait_running(ns, "rw")
    denied = sh(node, ns, "ro", "touch /newfile", check=False)
    assert denied.returncode != 0 and "Read-only file system" in denied.stderr
    sh(node, ns, "ro", "touch /tmp/ok")  # volumes stay writable
    assert status_field(node, ns, "ro", "NoNewPrivs") == "1"
    sh(node, ns, "rw", "touch /newfile")
    assert status_field(node, ns, "rw", "NoNewPrivs") == "0"


def test_capabilities_add_and_drop(node: NodeEnv, ns: str) -> None:
    node.create_pod(ns, sleeper(
        "caps", securityContext={"capabilities": {"add": ["NET_ADMIN"], "drop": ["CHOWN"]}},
    ))  # fmt: skip
    node.create_pod(ns, sleeper("plain"))
    node.wait_running(ns, "caps")
    node.wait_running(ns, "plain")
    caps = status_field(node, ns, "caps", "CapEff")
    plain = status_field(node, ns, "plain", "CapEff")
    assert has_cap(caps, CAP_NET_ADMIN) and not has_cap(caps, CAP_CHOWN), caps
    assert has_cap(plain, CAP_CHOWN) and not has_cap(plain, CAP_NET_ADMIN), plain
    assert not has_cap(caps, CAP_SYS_ADMIN)
    # the capabilities do what they say
    assert sh(node, ns, "caps", "touch /f; chown 1:1 /f", check=False).returncode != 0
    sh(node, ns, "plain", "touch /f; chown 1:1 /f")
    sh(node, ns, "caps", "ip link set lo mtu 1500")
    assert sh(node, ns, "plain", "ip link set lo mtu 1500", check=False).returncode != 0


def host_block_devices() -> list[str]:
    return sorted(
        name for name in os.listdir("/dev")
        if stat.S_ISBLK(os.lstat(f"/dev/{name}").st_mode) and Path(f"/sys/class/block/{name}").exists()
    )  # fmt: skip


def test_privileged_sees_host_devices(node: NodeEnv, ns: str) -> None:
    node.create_pod(ns, sleeper("priv", securityContext={"privileged": True}))
    node.create_pod(ns, sleeper("unpriv"))
    node.wait_running(ns, "priv")
    node.wait_running(ns, "unpriv")
    devices = host_block_devices()
    assert devices, "this host has block devices"
    listing = set(sh(node, ns, "priv", "ls /dev").stdout.split())
    assert set(devices) <= listing, (devices, listing)
    assert not set(devices) & set(sh(node, ns, "unpriv", "ls /dev").stdout.split())
    assert has_cap(status_field(node, ns, "priv", "CapEff"), CAP_SYS_ADMIN)
    # /sys is writable for a privileged container only
    assert "rw" in sh(node, ns, "priv", "grep ' /sys ' /proc/mounts").stdout.split()[3].split(",")
    assert "ro" in sh(node, ns, "unpriv", "grep ' /sys ' /proc/mounts").stdout.split()[3].split(",")
