"""The state directory's filesystem full (a small tmpfs as the daemon's root): pulls and creates
fail with RESOURCE_EXHAUSTED, the store stays consistent, and once space returns all works."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from cri_py.api import api_pb2
from tests.e2e import registry_fixtures
from tests.e2e.daemon import Daemon
from tests.e2e.fault_support import remove_all_and_check
from tests.e2e.registry_fixtures import TestRegistry
from tests.e2e.test_pod_support import container_config, create_container, pod_config, pull, run_pod, start

registry = registry_fixtures.registry
bench_registry = registry_fixtures.bench_registry


@pytest.fixture
def small_root(tmp_path: Path) -> Iterator[Path]:
    """A 48 MiB tmpfs for the daemon's root (set up before the daemon, so removed after it)."""
    root = tmp_path / "small-root"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "cripy-hd-full", str(root)], check=True)
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


def resize(root: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(root)], check=True)


def fill(root: Path) -> list[Path]:
    """Write until the filesystem is full; the files to delete to give the space back."""
    fillers = []
    for name, size in (("filler", 1 << 20), ("filler-small", 4096)):  # then the last pages too
        path = root / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        fillers.append(path)
        try:
            while True:
                os.write(fd, b"\0" * size)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        finally:
            os.close(fd)
    return fillers


def image_store(cri: Daemon) -> dict[str, list[str]]:
    root = cri.root / "images"
    return {
        part: sorted(p.name for p in (root / part).iterdir()) if (root / part).is_dir() else []
        for part in ("blobs/sha256", "layers", "ingest")
    }


def exhausted(call: Any) -> str:
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value.details()
    return err.value.details() or ""


def test_pull_into_a_full_filesystem(
    small_root: Path, cri_factory: Any, bench_registry: TestRegistry
) -> None:
    cri: Daemon = cri_factory({**bench_registry.daemon_overrides(), "root": str(small_root / "root")})
    before = image_store(cri)
    exhausted(lambda: pull(cri, bench_registry.bench))  # 100 MB does not fit in 48 MiB
    assert image_store(cri) == before  # nothing partial stays
    assert not cri.image.ListImages(
        api_pb2.ListImagesRequest(
            filter=api_pb2.ImageFilter(image=api_pb2.ImageSpec(image=bench_registry.bench))
        ),
        timeout=10,
    ).images
    # still serving
    cri.runtime.Version(api_pb2.VersionRequest(), timeout=10)
    assert pull(cri, bench_registry.busybox)
    resize(small_root, "512m")
    assert pull(cri, bench_registry.bench)
    remove_all_and_check(cri)


def test_create_on_a_full_filesystem(small_root: Path, cri_factory: Any, registry: TestRegistry) -> None:
    cri: Daemon = cri_factory({**registry.daemon_overrides(), "root": str(small_root / "root")})
    pull(cri, registry.busybox)
    cfg = pod_config()
    pod_id = run_pod(cri, cfg)
    ccfg = container_config(registry.busybox, ["sleep", "3600"])
    fillers = fill(small_root)
    details = exhausted(lambda: create_container(cri, pod_id, cfg, ccfg))
    assert "space" in details or "full" in details
    exhausted(lambda: run_pod(cri, pod_config()))
    # nothing half-made is visible, and the daemon answers
    assert not cri.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers
    assert [p.id for p in cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(), timeout=10).items] == [
        pod_id
    ]
    # space returns: kubelet's retry (same metadata) works
    for filler in fillers:
        filler.unlink()
    cid = create_container(cri, pod_id, cfg, ccfg)
    start(cri, cid)
    # and after a restart the store holds exactly that
    cri.restart()
    assert [
        c.id for c in cri.runtime.ListContainers(api_pb2.ListContainersRequest(), timeout=10).containers
    ] == [cid]
    os.sync()
    remove_all_and_check(cri)
