"""Rootfs pieces without mounts: the short layer links many creates make at once."""

from __future__ import annotations

import threading
from pathlib import Path

from cri_py.config.model import Config
from cri_py.storage.rootfs import RootfsManager


def test_concurrent_creates_of_one_image_share_its_short_links(tmp_path: Path) -> None:
    """Ten CreateContainers of one image link its layers at once (a soak saw 1 in 300 fail)."""
    rootfs = RootfsManager(Config(root=tmp_path / "root", run_dir=tmp_path / "run"))
    rootfs.links.mkdir(parents=True)
    layers = [tmp_path / "layers" / f"layer{n}" for n in range(3)]
    failures: list[BaseException] = []
    names: set[str] = set()
    start = threading.Barrier(10)

    def create() -> None:
        try:
            start.wait()
            for _ in range(30):
                for layer in layers:
                    names.add(rootfs._short_link(layer))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    for _round in range(5):
        for link in rootfs.links.iterdir():
            link.unlink()  # every round races for new links
        start.reset()
        threads = [threading.Thread(target=create) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert failures == []
    assert len(names) == 3
    assert sorted(p.name for p in rootfs.links.iterdir()) == sorted(names)  # no temporary left
    for name in names:
        assert (rootfs.links / name).readlink() in layers


def test_writable_layer_is_diff_and_an_older_upper_is_still_read(tmp_path: Path) -> None:
    rootfs = RootfsManager(Config(root=tmp_path / "root", run_dir=tmp_path / "run"))
    new = rootfs.base / "new"
    (new / "diff").mkdir(parents=True)
    (new / "diff" / "f").write_bytes(b"x" * 5000)
    assert rootfs.usage("new")[0] >= 5000
    # a container made before the rename keeps its upper directory
    old = rootfs.base / "old"
    (old / "upper").mkdir(parents=True)
    (old / "upper" / "f").write_bytes(b"x" * 9000)
    (old / "diff").mkdir()
    assert rootfs.usage("old")[0] >= 9000
