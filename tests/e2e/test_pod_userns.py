"""Pods with a user namespace of their own (userns_options POD): the CRI's checks, the mapping
the containers run in, the image's files and kubelet's idmapped volumes owned by its root."""

from __future__ import annotations

import os
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
    wait_state,
)

registry = registry_fixtures.registry

HOST_ID = 3 << 20  # far from any id this host uses
SIZE = 65536


def _mapping(container_id: int = 0, host_id: int = HOST_ID, length: int = SIZE) -> api_pb2.IDMapping:
    return api_pb2.IDMapping(container_id=container_id, host_id=host_id, length=length)


def _userns_pod(mode: int = api_pb2.POD, uids: Any = None, gids: Any = None) -> api_pb2.PodSandboxConfig:
    cfg = pod_config()
    userns = cfg.linux.security_context.namespace_options.userns_options
    userns.mode = mode  # type: ignore[assignment]
    userns.uids.extend([_mapping()] if uids is None else uids)
    userns.gids.extend([_mapping()] if gids is None else gids)
    return cfg


@pytest.fixture
def cri_userns(cri_factory: Any, registry: TestRegistry) -> Any:
    daemon = cri_factory(registry.daemon_overrides())
    # as a node's /var/lib is: the runtime sets the pod up as ids the host knows as nobody
    daemon.workdir.chmod(0o711)
    return daemon


def test_handler_features(cri_userns: Any) -> None:
    status = cri_userns.runtime.Status(api_pb2.StatusRequest(), timeout=30)
    features = {h.name: h.features for h in status.runtime_handlers}
    assert features[""].user_namespaces and features["runc"].user_namespaces
    if "runsc" in features:  # a sandboxed runtime keeps its own users
        assert not features["runsc"].user_namespaces
    # a pod with a user namespace and the host's network is refused: kubelet is told so
    assert not status.features.user_namespaces_host_network


@pytest.mark.parametrize(
    "config",
    [
        _userns_pod(api_pb2.CONTAINER, [], []),
        _userns_pod(api_pb2.TARGET, [], []),
        _userns_pod(uids=[_mapping(), _mapping(1, HOST_ID + SIZE, 10)]),
        _userns_pod(gids=[]),
        _userns_pod(uids=[_mapping(container_id=1)], gids=[_mapping(container_id=1)]),
        _userns_pod(uids=[_mapping(length=0)]),
        _userns_pod(api_pb2.NODE),  # NODE takes no mappings
    ],
    ids=["container", "target", "two-mappings", "no-gid-mapping", "no-root", "empty", "node-with-maps"],
)
def test_what_the_cri_refuses(cri_userns: Any, config: api_pb2.PodSandboxConfig) -> None:
    with pytest.raises(grpc.RpcError) as err:
        run_pod(cri_userns, config)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not cri_userns.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items


def test_mode_node_keeps_the_hosts_user_namespace(cri_userns: Any, registry: TestRegistry) -> None:
    pull(cri_userns, registry.busybox)
    cfg = _userns_pod(api_pb2.NODE, [], [])
    pod = run_pod(cri_userns, cfg)
    cid = create_container(cri_userns, pod, cfg, container_config(registry.busybox, ["sleep", "3600"]))
    start(cri_userns, cid)
    wait_state(cri_userns, cid, api_pb2.CONTAINER_RUNNING)
    out = exec_sync(cri_userns, cid, ["cat", "/proc/self/uid_map"])
    assert out.stdout.decode().split() == ["0", "0", "4294967295"]
    assert not list((cri_userns.run_dir / "idmap").glob("*"))


@pytest.mark.parametrize("pod_mode", [api_pb2.NODE, api_pb2.POD], ids=["node-pod", "pod-with-userns"])
def test_mount_mappings_other_than_the_pods_are_refused(
    cri_userns: Any, registry: TestRegistry, tmp_path: Path, pod_mode: int
) -> None:
    pull(cri_userns, registry.busybox)
    cfg = _userns_pod(api_pb2.NODE, [], []) if pod_mode == api_pb2.NODE else _userns_pod()
    pod = run_pod(cri_userns, cfg)
    ctr = container_config(registry.busybox, ["sleep", "3600"])
    # a pod without a user namespace has no mapping to give; one with has only its own
    other = _mapping(host_id=HOST_ID + SIZE)
    ctr.mounts.append(
        api_pb2.Mount(
            container_path="/data", host_path=str(tmp_path), uidMappings=[other], gidMappings=[other]
        )
    )
    with pytest.raises(grpc.RpcError) as err:
        create_container(cri_userns, pod, cfg, ctr)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "/data" in (err.value.details() or "")
    assert not cri_userns.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers
    assert str(tmp_path) not in Path("/proc/self/mountinfo").read_text()


def test_host_network_with_own_user_namespace_is_refused(cri_userns: Any) -> None:
    cfg = _userns_pod()
    cfg.linux.security_context.namespace_options.network = api_pb2.NODE
    with pytest.raises(grpc.RpcError) as err:
        run_pod(cri_userns, cfg)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_pod_user_namespace_with_idmapped_rootfs_and_volume(
    cri_userns: Any, registry: TestRegistry, tmp_path: Path
) -> None:
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "secret").write_text("only root reads this\n")
    (volume / "secret").chmod(0o600)
    pull(cri_userns, registry.busybox)
    cfg = _userns_pod()
    pod = run_pod(cri_userns, cfg)
    ctr = container_config(registry.busybox, ["sleep", "3600"])
    ctr.mounts.append(
        api_pb2.Mount(
            container_path="/data",
            host_path=str(volume),
            uidMappings=[_mapping()],
            gidMappings=[_mapping()],
        )
    )
    # an image volume, with the mappings kubelet puts on every mount of such a pod
    pull(cri_userns, registry.layered)
    ctr.mounts.append(
        api_pb2.Mount(
            container_path="/image",
            image=api_pb2.ImageSpec(image=registry.layered),
            readonly=True,
            uidMappings=[_mapping()],
            gidMappings=[_mapping()],
        )
    )
    cid = create_container(cri_userns, pod, cfg, ctr)
    start(cri_userns, cid)
    wait_state(cri_userns, cid, api_pb2.CONTAINER_RUNNING)

    def sh(script: str) -> str:
        out = exec_sync(cri_userns, cid, ["sh", "-c", script])
        assert out.exit_code == 0, out.stderr
        return out.stdout.decode()

    assert sh("cat /proc/self/uid_map").split() == ["0", str(HOST_ID), str(SIZE)]
    assert sh("cat /proc/self/gid_map").split() == ["0", str(HOST_ID), str(SIZE)]
    # the image's files and the volume's are its root's; what it writes is the host's root's
    assert sh("stat -c '%u %g' /bin/busybox /data/secret").split() == ["0", "0", "0", "0"]
    assert sh("cat /data/secret") == "only root reads this\n"
    # the image volume's layers are idmapped too: its files are the namespace root's, read-only
    assert sh("stat -c '%u %g' /image/data/keep; cat /image/data/keep").split() == ["0", "0", "replaced"]
    assert exec_sync(cri_userns, cid, ["sh", "-c", "echo x > /image/data/new"]).exit_code != 0
    sh("echo hi > /data/written && touch /made-at-the-top")
    assert os.stat(volume / "written").st_uid == 0
    # the host's own root is nobody in there
    assert sh("stat -c %u /etc/resolv.conf").strip() == "65534"
    cri_userns.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=60)
    cri_userns.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=60)
    # the volume is whole after the idmapped bind went
    assert sorted(p.name for p in volume.iterdir()) == ["secret", "written"]
    assert str(volume) not in Path("/proc/self/mountinfo").read_text()
    assert not list((cri_userns.run_dir / "idmap").glob("*"))
    assert not (cri_userns.run_dir / "image-volumes" / cid).exists()
