"""What a container sees: users, capabilities, seccomp, read-only root, masked paths, the
pod's DNS, hostname, /dev/shm and IPC, host network, privileged containers."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
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

# the session fixture, under its own name so pytest finds it here
registry = registry_fixtures.registry


@pytest.fixture
def cri(cri_factory: Any, registry: TestRegistry) -> Any:
    daemon = cri_factory(registry.daemon_overrides())
    pull(daemon, registry.busybox)
    pull(daemon, registry.nonroot)
    return daemon


def _run(cri: Any, pod: tuple[str, api_pb2.PodSandboxConfig], cfg: api_pb2.ContainerConfig) -> str:
    cid = create_container(cri, pod[0], pod[1], cfg)
    start(cri, cid)
    wait_state(cri, cid, api_pb2.CONTAINER_RUNNING)
    return cid


def _sh(cri: Any, cid: str, script: str) -> str:
    out = exec_sync(cri, cid, ["sh", "-c", script])
    return out.stdout.decode() + out.stderr.decode()


def test_users_from_image_and_request(cri: Any, registry: TestRegistry) -> None:
    cfg = pod_config()
    pod = (run_pod(cri, cfg), cfg)
    as_image = _run(cri, pod, container_config(registry.nonroot, ["sleep", "3600"], name="img"))
    assert _sh(cri, as_image, "id -u; id -un").split() == ["1000", "tester"]
    st = status(cri, as_image)
    assert st.user.linux.uid == 1000
    by_uid = container_config(registry.busybox, ["sleep", "3600"], name="uid")
    by_uid.linux.security_context.run_as_user.value = 4242
    by_uid.linux.security_context.run_as_group.value = 4343
    by_uid.linux.security_context.supplemental_groups.append(5000)
    cid = _run(cri, pod, by_uid)
    assert _sh(cri, cid, "id -u; id -g; id -G").split() == ["4242", "4343", "4343", "5000"]


def test_capabilities_seccomp_readonly_and_masked_paths(cri: Any, registry: TestRegistry) -> None:
    cfg = pod_config()
    pod = (run_pod(cri, cfg), cfg)
    c = container_config(registry.busybox, ["sleep", "3600"], name="locked")
    sc = c.linux.security_context
    sc.capabilities.drop_capabilities.append("CHOWN")
    sc.readonly_rootfs = True
    sc.seccomp.profile_type = api_pb2.SecurityProfile.RuntimeDefault
    cid = _run(cri, pod, c)
    assert "Operation not permitted" in _sh(
        cri, cid, "chown 1 /tmp 2>&1; touch /x 2>&1; unshare -U true 2>&1"
    )
    assert "Read-only file system" in _sh(cri, cid, "touch /newfile 2>&1")
    # a masked file reads as empty (it is /dev/null); the host's has content
    assert Path("/proc/timer_list").read_text()
    assert _sh(cri, cid, "cat /proc/timer_list | wc -c").strip() == "0"
    assert "Read-only" in _sh(cri, cid, "echo 1 > /proc/sys/kernel/domainname 2>&1")
    # the default set keeps NET_RAW and KILL, and drops SYS_ADMIN
    caps = _sh(cri, cid, "grep CapBnd /proc/self/status").split()[1]
    bits = int(caps, 16)
    assert bits & (1 << 13) and bits & (1 << 5) and not bits & (1 << 21) and not bits & (1 << 0)


def test_privileged_container(cri: Any, registry: TestRegistry) -> None:
    cfg = pod_config()
    cfg.linux.security_context.privileged = True
    pod = (run_pod(cri, cfg), cfg)
    c = container_config(registry.busybox, ["sleep", "3600"], name="priv")
    c.linux.security_context.privileged = True
    cid = _run(cri, pod, c)
    caps = int(_sh(cri, cid, "grep CapEff /proc/self/status").split()[1], 16)
    assert caps & (1 << 21)  # CAP_SYS_ADMIN
    assert _sh(cri, cid, "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m && echo mounted").strip() == "mounted"
    unprivileged_pod = pod_config()
    other = (run_pod(cri, unprivileged_pod), unprivileged_pod)
    with pytest.raises(grpc.RpcError) as err:
        create_container(cri, other[0], other[1], c)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_dns_hostname_shm_and_ipc_are_the_pods(cri: Any, registry: TestRegistry) -> None:
    cfg = pod_config(
        dns_config=api_pb2.DNSConfig(servers=["10.10.10.10"], searches=["google.com"], options=["ndots:8"])
    )
    cfg.hostname = "the-pod-host"
    pod = (run_pod(cri, cfg), cfg)
    a = _run(cri, pod, container_config(registry.busybox, ["sleep", "3600"], name="a"))
    b = _run(cri, pod, container_config(registry.busybox, ["sleep", "3600"], name="b"))
    resolv = _sh(cri, a, "cat /etc/resolv.conf")
    assert (
        "nameserver 10.10.10.10" in resolv and "search google.com" in resolv and "options ndots:8" in resolv
    )
    assert _sh(cri, a, "hostname").strip() == "the-pod-host"
    _sh(cri, a, "echo shared > /dev/shm/x")
    assert _sh(cri, b, "cat /dev/shm/x").strip() == "shared"
    # one IPC namespace and one network namespace for the pod
    assert _sh(cri, a, "readlink /proc/self/ns/ipc") == _sh(cri, b, "readlink /proc/self/ns/ipc")
    assert _sh(cri, a, "readlink /proc/self/ns/net") == _sh(cri, b, "readlink /proc/self/ns/net")
    assert _sh(cri, a, "readlink /proc/self/ns/pid") != _sh(cri, b, "readlink /proc/self/ns/pid")


def test_host_network_pod(cri: Any, registry: TestRegistry, tmp_path: Path) -> None:
    cfg = pod_config()
    cfg.hostname = ""
    cfg.linux.security_context.namespace_options.network = api_pb2.NODE
    pod_id = run_pod(cri, cfg)
    pst = cri.runtime.PodSandboxStatus(
        api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id), timeout=10
    ).status
    assert pst.linux.namespaces.options.network == api_pb2.NODE
    cid = _run(cri, (pod_id, cfg), container_config(registry.busybox, ["sleep", "3600"]))
    assert _sh(cri, cid, "hostname").strip() == socket.gethostname()
    host_net = Path("/proc/self/ns/net").readlink().name
    assert _sh(cri, cid, "readlink /proc/self/ns/net").strip() == host_net


@pytest.fixture
def shared_dir(tmp_path: Path) -> Iterator[Path]:
    """A host directory that is a shared mount point, unmounted afterwards."""
    shared = tmp_path / "shared"
    shared.mkdir()
    subprocess.run(["mount", "--bind", str(shared), str(shared)], check=True)
    subprocess.run(["mount", "--make-shared", str(shared)], check=True)
    try:
        yield shared
    finally:
        subprocess.run(["umount", "-R", "-l", str(shared)], check=False)


def test_mount_propagation_host_to_container(cri: Any, registry: TestRegistry, shared_dir: Path) -> None:
    cfg = pod_config()
    pod = (run_pod(cri, cfg), cfg)
    c = container_config(registry.busybox, ["sleep", "3600"], name="slave")
    c.mounts.append(
        api_pb2.Mount(
            container_path="/shared",
            host_path=str(shared_dir),
            propagation=api_pb2.PROPAGATION_HOST_TO_CONTAINER,
        )
    )
    cid = _run(cri, pod, c)
    inner = shared_dir / "inner"
    inner.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(inner)], check=True)
    (inner / "seen").write_text("from host\n")
    assert _sh(cri, cid, "cat /shared/inner/seen").strip() == "from host"
