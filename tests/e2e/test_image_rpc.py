"""The ImageService RPCs against a real daemon and a real docker-registry."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest

from cri_py.api import api_pb2
from tests.e2e.registry_fixtures import TestRegistry, auth_registry, registry, token_registry  # noqa: F401


def spec(ref: str) -> api_pb2.ImageSpec:
    return api_pb2.ImageSpec(image=ref)


def pull(cri: Any, ref: str, auth: api_pb2.AuthConfig | None = None) -> str:
    req = api_pb2.PullImageRequest(image=spec(ref))
    if auth is not None:
        req.auth.CopyFrom(auth)
    return str(cri.image.PullImage(req, timeout=120).image_ref)


def status(cri: Any, ref: str, verbose: bool = False) -> api_pb2.ImageStatusResponse:
    return cri.image.ImageStatus(api_pb2.ImageStatusRequest(image=spec(ref), verbose=verbose), timeout=10)


def remove(cri: Any, ref: str) -> None:
    cri.image.RemoveImage(api_pb2.RemoveImageRequest(image=spec(ref)), timeout=30)


def listed(cri: Any, ref: str = "") -> list[api_pb2.Image]:
    req = api_pb2.ListImagesRequest()
    if ref:
        req.filter.image.image = ref
    return list(cri.image.ListImages(req, timeout=10).images)


@pytest.fixture
def cri(cri_factory: Any, registry: TestRegistry) -> Any:  # noqa: F811
    return cri_factory(registry.daemon_overrides())


def test_pull_by_tag_and_status_by_every_name(cri: Any, registry: TestRegistry) -> None:  # noqa: F811
    image_id = pull(cri, registry.busybox)
    assert image_id == registry.busybox_id
    by_id = status(cri, image_id).image
    assert by_id.id == image_id
    assert list(by_id.repo_tags) == [registry.busybox]
    assert list(by_id.repo_digests) == [registry.busybox_digest]
    assert by_id.size > 500_000
    assert not by_id.pinned
    for name in (image_id.removeprefix("sha256:"), registry.busybox, registry.busybox_digest):
        assert status(cri, name).image == by_id
    assert [i.id for i in listed(cri, registry.busybox)] == [image_id]
    ids = {i.id for i in listed(cri)}
    assert image_id in ids
    pause = [i for i in listed(cri) if i.pinned]
    assert len(pause) == 1 and pause[0].repo_tags == ["localhost/cri-py/pause:3.10"]


def test_docker_hub_names_go_to_the_mirror(cri: Any, registry: TestRegistry) -> None:  # noqa: F811
    first = pull(cri, "busybox")
    assert first == registry.busybox_id
    assert pull(cri, "docker.io/library/busybox:latest") == first
    img = status(cri, "busybox:latest").image
    assert "docker.io/library/busybox:latest" in img.repo_tags
    # the same content under its registry name adds a tag to the same image
    assert pull(cri, registry.busybox) == first
    assert set(status(cri, first).image.repo_tags) == {"docker.io/library/busybox:latest", registry.busybox}


def test_pull_by_digest_only(cri: Any, registry: TestRegistry) -> None:  # noqa: F811
    image_id = pull(cri, registry.busybox_digest)
    img = status(cri, registry.busybox_digest).image
    assert img.id == image_id
    assert list(img.repo_tags) == []
    assert list(img.repo_digests) == [registry.busybox_digest]


def test_user_from_image_config(cri: Any, registry: TestRegistry) -> None:  # noqa: F811
    pull(cri, registry.nonroot)
    named = status(cri, registry.nonroot).image
    assert named.username == "tester"
    assert not named.HasField("uid")
    pull(cri, registry.nonroot_numeric)
    numeric = status(cri, registry.nonroot_numeric).image
    assert numeric.uid.value == 1000 and numeric.username == ""


def test_multiarch_picks_this_machine(cri: Any, registry: TestRegistry) -> None:  # noqa: F811
    image_id = pull(cri, registry.multiarch)
    resp = status(cri, image_id, verbose=True)
    info = json.loads(resp.info["info"])
    assert info["imageSpec"]["architecture"] == "amd64"
    # the repo digest is the index the user named, not the platform manifest
    assert list(resp.image.repo_digests) == [registry.multiarch_digest]
    assert pull(cri, registry.multiarch_digest) == image_id


def test_unknown_and_invalid_references(cri: Any, registry: TestRegistry) -> None:  # noqa: F811
    assert not status(cri, "sha256:" + "0" * 64).HasField("image")
    assert not status(cri, f"{registry.host}/nothing:here").HasField("image")
    with pytest.raises(grpc.RpcError) as err:
        pull(cri, f"{registry.host}/nothing:here")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert registry.host in (err.value.details() or "")
    with pytest.raises(grpc.RpcError) as err:
        pull(cri, "UPPER/Case")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    remove(cri, f"{registry.host}/nothing:here")  # removing what is missing succeeds
    remove(cri, "0" * 64)  # critest's unknown image, twice
    remove(cri, "0" * 64)


def test_remove_by_tag_removes_all_names(cri: Any, registry: TestRegistry) -> None:  # noqa: F811
    image_id = pull(cri, registry.busybox)
    pull(cri, "busybox")
    remove(cri, "busybox")
    assert not status(cri, image_id).HasField("image")
    assert not status(cri, registry.busybox).HasField("image")
    assert not status(cri, registry.busybox_digest).HasField("image")
    assert image_id not in {i.id for i in listed(cri)}
    # content is gone from disk: only the pause image's blobs stay
    blobs = list((cri.root / "images" / "blobs" / "sha256").iterdir())
    assert len(blobs) == 3
    # and it pulls again
    assert pull(cri, registry.busybox) == image_id


def test_concurrent_removals_both_succeed(cri: Any, registry: TestRegistry) -> None:  # noqa: F811
    image_id = pull(cri, registry.layered)
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda _: remove(cri, image_id), range(4)))
    assert not status(cri, registry.layered).HasField("image")


def test_pinned_pause_image_is_not_removed(cri: Any) -> None:
    pause = status(cri, "localhost/cri-py/pause:3.10").image
    assert pause.pinned
    with pytest.raises(grpc.RpcError) as err:
        remove(cri, pause.id)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert status(cri, pause.id).image == pause


def test_image_fs_info(cri: Any, registry: TestRegistry) -> None:  # noqa: F811
    def info() -> api_pb2.ImageFsInfoResponse:
        return cri.image.ImageFsInfo(api_pb2.ImageFsInfoRequest(), timeout=10)

    before = info()
    pull(cri, registry.busybox)
    after = info()
    [img_before], [img_after] = before.image_filesystems, after.image_filesystems
    assert img_after.fs_id.mountpoint == str(cri.root / "images")
    assert img_after.used_bytes.value > img_before.used_bytes.value + 900_000
    assert img_after.inodes_used.value > img_before.inodes_used.value + 5
    [ctr] = after.container_filesystems
    assert ctr.fs_id.mountpoint == str(cri.root / "rootfs")
    assert ctr.timestamp > 0


def test_pull_with_credentials(cri_factory: Any, auth_registry: TestRegistry) -> None:  # noqa: F811
    cri = cri_factory(auth_registry.daemon_overrides(mirror_upstreams=False))
    with pytest.raises(grpc.RpcError) as err:
        pull(cri, auth_registry.busybox)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    user, password = AUTH = auth_registry.user or ("", "")
    with pytest.raises(grpc.RpcError):
        pull(cri, auth_registry.busybox, api_pb2.AuthConfig(username=user, password="wrong"))
    assert pull(cri, auth_registry.busybox, api_pb2.AuthConfig(username=user, password=password))
    remove(cri, auth_registry.busybox)
    token = base64.b64encode(":".join(AUTH).encode()).decode()
    assert pull(cri, auth_registry.busybox, api_pb2.AuthConfig(auth=token)) == auth_registry.busybox_id


def test_images_survive_a_daemon_restart(cri: Any, registry: TestRegistry) -> None:  # noqa: F811
    image_id = pull(cri, registry.nonroot)
    before = status(cri, image_id).image
    cri.restart()
    assert status(cri, registry.nonroot).image == before
    assert status(cri, "localhost/cri-py/pause:3.10").image.pinned


def test_stream_images_matches_list(cri: Any, registry: TestRegistry) -> None:  # noqa: F811
    pull(cri, registry.busybox)
    pull(cri, registry.nonroot)
    streamed = [
        img
        for resp in cri.image.StreamImages(api_pb2.StreamImagesRequest(), timeout=10)
        for img in resp.images
    ]
    assert sorted(i.id for i in streamed) == sorted(i.id for i in listed(cri))
    req = api_pb2.StreamImagesRequest()
    req.filter.image.image = registry.nonroot
    only = [img for resp in cri.image.StreamImages(req, timeout=10) for img in resp.images]
    assert [i.repo_tags[0] for i in only] == [registry.nonroot]


def test_pull_with_bearer_tokens(cri_factory: Any, token_registry: TestRegistry) -> None:  # noqa: F811
    cri = cri_factory(token_registry.daemon_overrides(mirror_upstreams=False))
    server = token_registry.token_server
    with pytest.raises(grpc.RpcError) as err:
        pull(cri, token_registry.busybox)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "token server" in (err.value.details() or "")
    server.requests.clear()
    user, password = token_registry.user or ("", "")
    auth = api_pb2.AuthConfig(username=user, password=password)
    assert pull(cri, token_registry.busybox, auth) == token_registry.busybox_id
    # one token for the repository, reused for the manifest, the config and the layer
    assert len(server.requests) == 1
    assert server.requests[0]["params"]["scope"] == ["repository:busybox:pull"]
    assert server.requests[0]["params"]["service"] == ["cri-py-test"]
