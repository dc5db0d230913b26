"""ImageService and RootfsManager against a real registry: content safety, whiteouts, concurrency."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cri_py.config.model import Config, RegistryConfig
from cri_py.errors import CriError, NotFound
from cri_py.image import build
from cri_py.image import mediatypes as mt
from cri_py.image.build import Entry
from cri_py.image.push import Pusher
from cri_py.image.service import ImageService
from cri_py.storage.mount import is_mountpoint
from cri_py.storage.rootfs import RootfsManager
from cri_py.store import Database
from tests.e2e.registry_fixtures import TestRegistry, bench_registry, registry, tls_registry  # noqa: F401


@dataclasses.dataclass
class Env:
    config: Config
    db: Database
    images: ImageService
    rootfs: RootfsManager

    def run(self, coro):  # type: ignore[no-untyped-def]
        return self.loop.run_until_complete(coro)

    loop: asyncio.AbstractEventLoop = dataclasses.field(default_factory=asyncio.new_event_loop)


def make_env(tmp: Path, reg: TestRegistry, driver: str = "overlay") -> Env:
    config = Config(
        root=tmp / "root",
        run_dir=tmp / "run",
        storage_driver=driver,
        registries={reg.host: RegistryConfig(insecure=True)},
    )
    db = Database(tmp / "state.db")
    env = Env(config, db, ImageService(config, db), RootfsManager(config))
    env.run(env.images.start())
    return env


def close_env(env: Env) -> None:
    for cid in env.rootfs.container_ids():
        env.rootfs.remove(cid)
    env.run(env.images.close())
    env.loop.close()
    env.db.close()


@pytest.fixture
def env(tmp_path: Path, registry: TestRegistry) -> Iterator[Env]:  # noqa: F811
    e = make_env(tmp_path, registry)
    yield e
    close_env(e)


def stored(env: Env) -> tuple[set[str], set[str], list[str]]:
    root = env.images.content.root
    blobs = {p.name for p in (root / "blobs" / "sha256").iterdir()}
    layers = {p.name for p in (root / "layers").iterdir()}
    ingest = [p.name for p in (root / "ingest").iterdir()]
    return blobs, layers, ingest


def push_custom(
    reg: TestRegistry, repo: str, layers: list[build.BuiltLayer], diff_ids: list[str] | None = None
) -> str:
    """Push an image whose config may claim other diff ids than its layers have."""
    img = build.image(layers, cmd=["sh"])
    if diff_ids is not None:
        config = json.loads(img.config)
        config["rootfs"]["diff_ids"] = diff_ids
        img = dataclasses.replace(img, config=build.canonical_json(config))
        manifest = json.loads(img.manifest)
        manifest["config"] = {
            **manifest["config"],
            "digest": build.digest_of(img.config),
            "size": len(img.config),
        }
        img = dataclasses.replace(img, manifest=build.canonical_json(manifest))
    with Pusher(reg.url) as push:
        push.image(repo, "latest", img)
    return f"{reg.host}/{repo}:latest"


HOSTILE = {
    "dotdot": [Entry("../escaped", data=b"x")],
    "deep-dotdot": [Entry("a", "dir", mode=0o755), Entry("a/../../escaped", data=b"x")],
    "symlink-parent": [Entry("link", "symlink", linkname="/"), Entry("link/escaped", data=b"x")],
    "symlink-relative": [Entry("up", "symlink", linkname="../../../.."), Entry("up/escaped", data=b"x")],
    "hardlink-out": [Entry("h", "hardlink", linkname="../../../../../etc/passwd")],
    "hardlink-missing": [Entry("h", "hardlink", linkname="etc/shadow")],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_layer_fails_and_stores_nothing(env: Env, registry: TestRegistry, case: str) -> None:  # noqa: F811
    before = stored(env)
    ref = push_custom(registry, f"hostile-{case}", [build.layer(HOSTILE[case])])
    with pytest.raises(CriError) as err:
        env.run(env.images.pull(ref))
    assert "layer" in str(err.value)
    assert stored(env) == before
    assert env.images.status(ref) is None
    hits = [p for p in env.config.root.parent.rglob("escaped")]
    assert hits == []


def test_size_bound_stops_a_decompression_bomb(tmp_path: Path, registry: TestRegistry) -> None:  # noqa: F811
    from cri_py.image.unpack import UnpackLimits

    env = make_env(tmp_path, registry)
    env.images.limits = UnpackLimits(max_bytes=1 << 20)  # the puller, made at the first pull, takes them
    try:
        ref = push_custom(registry, "bomb", [build.layer([Entry("zeros", data=bytes(4 << 20))])])
        before = stored(env)
        with pytest.raises(CriError, match="more than"):
            env.run(env.images.pull(ref))
        assert stored(env) == before
    finally:
        close_env(env)


def test_diff_id_mismatch_is_rejected(env: Env, registry: TestRegistry) -> None:  # noqa: F811
    before = stored(env)
    layer = build.layer([Entry("f", data=b"real")])
    ref = push_custom(registry, "wrong-diffid", [layer], diff_ids=["sha256:" + "ab" * 32])
    with pytest.raises(CriError, match="unpacks to"):
        env.run(env.images.pull(ref))
    assert stored(env) == before


def test_whiteouts_and_opaque_dirs_in_overlay_and_vfs(tmp_path: Path, registry: TestRegistry) -> None:  # noqa: F811
    for driver in ("overlay", "vfs"):
        env = make_env(tmp_path / driver, registry, driver)
        try:
            record = env.run(env.images.pull(registry.layered))
            merged = env.rootfs.mount("ctr", env.images.layer_dirs(record))
            assert is_mountpoint(merged) == (driver == "overlay")
            assert (merged / "data" / "keep").read_text() == "replaced\n"
            assert (merged / "data" / "added").read_text() == "added\n"
            assert not (merged / "data" / "removed").exists()
            assert sorted(os.listdir(merged / "opaque")) == ["visible"]
            assert not (merged / "gone").exists()
            assert (merged / "bin" / "sh").stat().st_ino == (merged / "bin" / "busybox").stat().st_ino
            env.rootfs.remove("ctr")
            assert not merged.exists()
        finally:
            close_env(env)


def test_zstd_and_multiarch_content(env: Env, registry: TestRegistry) -> None:  # noqa: F811
    z = env.run(env.images.pull(registry.zstd))
    assert (env.images.layer_dirs(z)[-1] / "zstd-layer").read_bytes() == b"compressed with zstd\n" * 100
    d = env.run(env.images.pull(registry.dockerv2))
    # the same config and layer in Docker's schema 2 form: the same image id and layer
    assert d.id == registry.busybox_id
    assert json.loads(env.images.content.read_blob(d.manifest_digest))["mediaType"] == mt.DOCKER_MANIFEST
    m = env.run(env.images.pull(registry.multiarch))
    assert (env.images.layer_dirs(m)[-1] / "platform").read_text() == "linux/amd64\n"
    with pytest.raises(NotFound, match="platform"):
        env.run(env.images._puller().pull(_ref(f"{registry.host}/no-such-platform"), None, lambda _: None))


def _ref(text: str):  # type: ignore[no-untyped-def]
    from cri_py.image.reference import parse

    return parse(text)


def test_concurrent_pulls_share_work(env: Env, registry: TestRegistry) -> None:  # noqa: F811
    async def many() -> list[str]:
        recs = await asyncio.gather(
            env.images.pull(registry.busybox),
            env.images.pull(registry.busybox),
            env.images.pull(registry.nonroot),
            env.images.pull(registry.layered),
            env.images.pull(registry.busybox_digest),
        )
        return [r.id for r in recs]

    ids = env.run(many())
    assert ids[0] == ids[1] == ids[4] == registry.busybox_id
    busybox = env.images.resolve(registry.busybox)
    # the busybox layer is the bottom of all three images and is stored once
    bottoms = {
        env.images.resolve(r).layers[0] for r in (registry.busybox, registry.nonroot, registry.layered)
    }
    assert bottoms == {busybox.layers[0]}
    assert set(busybox.repo_digests) == {registry.busybox_digest}
    _, _, ingest = stored(env)
    assert ingest == []


def test_interrupted_pull_leaves_nothing_partial(tmp_path: Path, bench_registry: TestRegistry) -> None:  # noqa: F811
    env = make_env(tmp_path, bench_registry)
    before_blobs, _, _ = stored(env)

    async def interrupt() -> None:
        task = asyncio.ensure_future(env.images.pull(bench_registry.bench))
        ingest = env.images.content.ingest_dir
        for _ in range(2000):
            if any(ingest.iterdir()):
                break
            await asyncio.sleep(0.005)
        await env.images.close()  # what a daemon shutdown does
        with pytest.raises(asyncio.CancelledError):
            await task

    env.run(interrupt())
    assert env.images.status(bench_registry.bench) is None
    blobs, layers, _ = stored(env)
    assert len(layers) < 7  # pause + busybox + five bench layers: the pull really stopped half-way
    # whatever is visible is complete: every blob hashes to its name, every layer has its blob's content
    import hashlib

    for name in blobs - before_blobs:
        data = (env.images.content.blobs_dir / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == name
    env.run(env.images._puller().client.close())
    env.loop.close()
    env.db.close()

    # a restarted service clears temporaries and the retry succeeds
    env2 = make_env(tmp_path, bench_registry)
    try:
        assert not any(env2.images.content.ingest_dir.iterdir())
        assert not [p for p in env2.images.content.layers_dir.iterdir() if p.name.startswith(".tmp-")]
        record = env2.run(env2.images.pull(bench_registry.bench))
        assert len(record.layers) == 6
        assert all(d.is_dir() for d in env2.images.layer_dirs(record))
    finally:
        close_env(env2)


def test_tls_registry_needs_a_trusted_certificate(
    tmp_path: Path,
    tls_registry: TestRegistry,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = Config(root=tmp_path / "root", registries={})
    for trusted in (False, True):
        if trusted:
            # OpenSSL's default verify paths honour SSL_CERT_FILE: the "system" store for this test
            monkeypatch.setenv("SSL_CERT_FILE", str(tls_registry.ca))
        db = Database(tmp_path / f"state-{trusted}.db")
        images = ImageService(dataclasses.replace(config, root=tmp_path / f"root-{trusted}"), db)

        async def pull(images: ImageService = images) -> str:
            await images.start()
            try:
                return (await images.pull(tls_registry.busybox)).id
            finally:
                await images.close()

        try:
            if trusted:
                assert asyncio.run(pull()) == tls_registry.busybox_id
            else:
                with pytest.raises(CriError, match="certificate"):
                    asyncio.run(pull())
        finally:
            db.close()
