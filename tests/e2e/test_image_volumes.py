"""Image volumes: Mount.image shows an image's root filesystem read-only in a real container."""

from __future__ import annotations

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


@pytest.fixture
def cri(cri_factory: Any, registry: TestRegistry) -> Any:
    return cri_factory(registry.daemon_overrides())


def _image_mount(path: str, image: str, sub_path: str = "") -> api_pb2.Mount:
    return api_pb2.Mount(
        container_path=path, image=api_pb2.ImageSpec(image=image), readonly=True, image_sub_path=sub_path
    )


def _remove_image(cri: Any, image: str) -> None:
    cri.image.RemoveImage(api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image=image)), timeout=60)


def test_a_container_reads_an_image_volume_that_stays_in_use(cri: Any, registry: TestRegistry) -> None:
    pull(cri, registry.busybox)
    layered_id = pull(cri, registry.layered)
    pcfg = pod_config()
    pod_id = run_pod(cri, pcfg)
    ccfg = container_config(registry.busybox, ["sleep", "600"])
    ccfg.mounts.extend(
        [_image_mount("/vol", registry.layered), _image_mount("/sub", registry.layered, "data")]
    )
    cid = create_container(cri, pod_id, pcfg, ccfg)
    start(cri, cid)
    wait_state(cri, cid, api_pb2.CONTAINER_RUNNING)

    # the image's layers as one filesystem: whiteouts and opaque directories applied
    # (the top layer replaces data/keep, the one below removes data/removed and makes opaque/ opaque)
    out = exec_sync(
        cri, cid, ["sh", "-c", "cat /vol/data/keep /vol/data/added; ls /vol/data; ls /vol/opaque"]
    )
    assert out.exit_code == 0, out.stderr
    assert out.stdout.decode().split() == ["replaced", "added", "added", "keep", "visible"]
    assert exec_sync(cri, cid, ["cat", "/sub/keep"]).stdout == b"replaced\n"
    # read-only and not executable
    write = exec_sync(cri, cid, ["sh", "-c", "echo x > /vol/data/new"])
    assert write.exit_code != 0 and b"Read-only file system" in write.stderr
    try:  # the runtime cannot start it: an exit status or the runtime's refusal, as the peers
        assert exec_sync(cri, cid, ["/vol/bin/sh", "-c", "true"]).exit_code != 0
    except grpc.RpcError as refused:
        assert "permission denied" in (refused.details() or "")

    with pytest.raises(grpc.RpcError) as in_use:
        _remove_image(cri, registry.layered)
    assert in_use.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "in use" in (in_use.value.details() or "")

    # a restart keeps the volume; removing the container releases it and the image
    cri.restart()
    assert exec_sync(cri, cid, ["cat", "/vol/data/keep"]).stdout == b"replaced\n"
    cri.runtime.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=cid), timeout=60)
    assert not (cri.run_dir / "image-volumes" / cid).exists()
    _remove_image(cri, layered_id)
    status = cri.image.ImageStatus(api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=layered_id)))
    assert not status.image.id


def test_an_absent_image_volume_is_refused_clearly(cri: Any, registry: TestRegistry) -> None:
    pull(cri, registry.busybox)
    pcfg = pod_config()
    pod_id = run_pod(cri, pcfg)
    ccfg = container_config(registry.busybox, ["sleep", "600"])
    ccfg.mounts.append(_image_mount("/vol", registry.host + "/not/pulled:1"))
    with pytest.raises(grpc.RpcError) as absent:
        create_container(cri, pod_id, pcfg, ccfg)
    assert absent.value.code() == grpc.StatusCode.NOT_FOUND
    assert "not present; pull it first" in (absent.value.details() or "")
    listed = cri.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers
    assert list(listed) == []

    pull(cri, registry.layered)
    bad = container_config(registry.busybox, ["sleep", "600"], name="d")
    bad.mounts.append(_image_mount("/vol", registry.layered, "no/such/dir"))
    with pytest.raises(grpc.RpcError) as missing:
        create_container(cri, pod_id, pcfg, bad)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    assert not list((cri.run_dir / "image-volumes").glob("*/*"))
