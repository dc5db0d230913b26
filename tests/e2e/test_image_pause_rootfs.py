"""The pause image is built at start from catatonit, and a container rootfs mounts over it."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from cri_py.config.model import Config
from cri_py.errors import FailedPrecondition
from cri_py.image.service import ImageService
from cri_py.storage.mount import is_mountpoint
from cri_py.storage.rootfs import RootfsManager
from cri_py.store import Database

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for overlay mounts")


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(root=tmp_path / "root", run_dir=tmp_path / "run")


@pytest.fixture
def images(config: Config, tmp_path: Path) -> ImageService:
    db = Database(tmp_path / "state.db")
    svc = ImageService(config, db)
    asyncio.run(svc.start())
    yield svc
    asyncio.run(svc.close())
    db.close()


@pytest.fixture
def rootfs(config: Config) -> RootfsManager:
    mgr = RootfsManager(config)
    yield mgr
    for cid in mgr.container_ids():
        mgr.remove(cid)


def test_pause_image_built_and_pinned(images: ImageService, config: Config) -> None:
    rec = images.resolve(config.pause_image)
    assert rec.pinned
    assert rec.repo_tags == ["localhost/cri-py/pause:3.10"]
    assert rec.config["config"]["Entrypoint"] == ["/catatonit", "-P"]
    assert images.resolve(rec.id) is rec
    assert images.resolve(rec.id.removeprefix("sha256:")) is rec
    [layer] = images.layer_dirs(rec)
    assert (layer / "catatonit").read_bytes() == Path("/usr/bin/catatonit").read_bytes()
    assert os.stat(layer / "catatonit").st_mode & 0o777 == 0o755
    with pytest.raises(FailedPrecondition):
        asyncio.run(images.remove(rec.id))


def test_pause_image_rebuilt_identically(images: ImageService, config: Config, tmp_path: Path) -> None:
    first = images.resolve(config.pause_image).id
    db = Database(tmp_path / "other.db")
    other = ImageService(Config(root=tmp_path / "root2"), db)
    asyncio.run(other.start())
    assert other.resolve(config.pause_image).id == first
    asyncio.run(other.close())
    db.close()


def test_overlay_rootfs_mount_cycle(images: ImageService, rootfs: RootfsManager, config: Config) -> None:
    rec = images.resolve(config.pause_image)
    merged = rootfs.mount("c1", images.layer_dirs(rec))
    assert is_mountpoint(merged)
    assert rootfs.mount("c1", images.layer_dirs(rec)) == merged  # idempotent
    assert (merged / "catatonit").is_file()
    (merged / "hello").write_bytes(b"x" * 10000)
    (merged / "catatonit").unlink()
    used, inodes = rootfs.usage("c1")
    assert used >= 10000 and inodes >= 3
    # the image layer is untouched
    assert (images.layer_dirs(rec)[0] / "catatonit").exists()
    rootfs.unmount("c1")
    rootfs.unmount("c1")
    assert not is_mountpoint(merged)
    rootfs.remove("c1")
    rootfs.remove("c1")
    assert not (config.root / "rootfs" / "c1").exists()


def test_many_layers_fit_the_mount_options(rootfs: RootfsManager, tmp_path: Path) -> None:
    layers = []
    for i in range(120):
        d = tmp_path / ("very-long-layer-directory-name-" * 3 + str(i)) / "diff"
        d.mkdir(parents=True)
        (d / f"f{i}").write_text(str(i))
        layers.append(d)
    (layers[0] / "shadowed").write_text("bottom")
    (layers[-1] / "shadowed").write_text("top")
    merged = rootfs.mount("many", layers)
    assert (merged / "f0").read_text() == "0"
    assert (merged / "f119").read_text() == "119"
    assert (merged / "shadowed").read_text() == "top"
    rootfs.remove("many")
    assert not is_mountpoint(merged)
