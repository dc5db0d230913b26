"""`cri-py images import/export`: round trips, and archives written by skopeo."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from cri_py.api import api_pb2
from cri_py.config.model import Config, RegistryConfig
from cri_py.image.model import ImageRecord
from cri_py.image.service import ImageService
from cri_py.store import Database
from tests.e2e.registry_fixtures import REPO, TestRegistry, registry  # noqa: F401


def cli(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cri_py.cli", "images", "--config", str(config), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def write_config(tmp: Path, name: str) -> tuple[Path, Path]:
    root = tmp / name
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"root": str(root), "run_dir": str(tmp / f"{name}-run")}))
    return path, root


def open_store(root: Path, reg: TestRegistry | None = None) -> tuple[ImageService, Database]:
    registries = {reg.host: RegistryConfig(insecure=True)} if reg else {}
    db = Database(root / "state.db")
    return ImageService(Config(root=root, registries=registries), db), db


def test_export_then_import_round_trip(tmp_path: Path, registry: TestRegistry) -> None:  # noqa: F811
    src_config, src_root = write_config(tmp_path, "src")
    images, db = open_store(src_root, registry)

    async def pull() -> ImageRecord:
        await images.start()
        try:
            return await images.pull(registry.layered)
        finally:
            await images.close()

    record = asyncio.run(pull())
    db.close()

    archive = tmp_path / "layered.tar"
    out = cli("export", registry.layered, str(archive), config=src_config)
    assert out.returncode == 0, out.stderr
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"oci-layout", "index.json", "manifest.json"} <= names

    dst_config, dst_root = write_config(tmp_path, "dst")
    out = cli("import", str(archive), config=dst_config)
    assert out.returncode == 0, out.stderr
    assert record.id in out.stdout
    images2, db2 = open_store(dst_root)
    try:
        imported = images2.resolve(registry.layered)
        assert imported.id == record.id
        assert imported.layers == record.layers
        assert (images2.layer_dirs(imported)[-1] / "data" / "keep").read_text() == "replaced\n"
    finally:
        db2.close()


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="needs skopeo")
@pytest.mark.parametrize("transport", ["docker-archive", "oci-archive"])
def test_import_archives_written_by_skopeo(tmp_path: Path, registry: TestRegistry, transport: str) -> None:  # noqa: F811
    archive = tmp_path / f"{transport}.tar"
    dest = f"{transport}:{archive}:localhost/imported/busybox:v1"
    subprocess.run(
        ["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{registry.busybox}", dest],
        check=True,
        capture_output=True,
        timeout=120,
    )
    config, root = write_config(tmp_path, "store")
    out = cli("import", str(archive), config=config)
    assert out.returncode == 0, out.stderr
    images, db = open_store(root)
    try:
        rec = images.list()[0] if len(images.list()) == 1 else images.resolve("localhost/imported/busybox:v1")
        # the same config (image id) as in the registry, whatever the archive did to the layers
        assert rec.id == registry.busybox_id
        if transport == "docker-archive":
            assert rec.repo_tags == ["localhost/imported/busybox:v1"]
        assert (images.layer_dirs(rec)[0] / "bin" / "busybox").is_file()
    finally:
        db.close()


def test_import_refuses_garbage(tmp_path: Path) -> None:
    config, _ = write_config(tmp_path, "store")
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"not a tar at all" * 100)
    out = cli("import", str(junk), config=config)
    assert out.returncode == 1
    assert "not a tar archive" in out.stderr


def test_import_next_to_a_running_daemon(cri_factory: Any, tmp_path: Path, registry: TestRegistry) -> None:  # noqa: F811
    src_config, src_root = write_config(tmp_path, "src")
    images, db = open_store(src_root, registry)

    async def pull() -> ImageRecord:
        await images.start()
        try:
            return await images.pull(registry.nonroot)
        finally:
            await images.close()

    record = asyncio.run(pull())
    db.close()
    archive = tmp_path / "nonroot.tar"
    assert cli("export", registry.nonroot, str(archive), config=src_config).returncode == 0

    cri = cri_factory()  # no registry configured: the image can only come from the archive
    req = api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=registry.nonroot))
    assert not cri.image.ImageStatus(req, timeout=10).HasField("image")
    out = cli("import", str(archive), config=cri.config_path)
    assert out.returncode == 0, out.stderr
    img = cri.image.ImageStatus(req, timeout=10).image
    assert img.id == record.id and img.username == "tester"
