"""The image a container's status names: what kubelet shows as the pod's container image."""

from __future__ import annotations

from cri_py.api import api_pb2
from cri_py.container.service import image_display_name
from cri_py.image.model import ImageRecord

IMAGE_ID = "sha256:" + "b" * 64
DIGEST = "sha256:" + "d" * 64


def _image(tags: list[str], digests: list[str]) -> ImageRecord:
    return ImageRecord(id=IMAGE_ID, repo_tags=tags, repo_digests=digests, size=1, config={}, layers=[])


def test_kubelet_sends_the_id_and_the_status_names_the_users_image() -> None:
    # kubelet 1.36: image = the id PullImage returned, user_specified_image = the pod's string
    spec = api_pb2.ImageSpec(
        image=IMAGE_ID, user_specified_image="registry.k8s.io/e2e-test-images/busybox:1.37.0-1"
    )
    image = _image(["registry.k8s.io/e2e-test-images/busybox:1.37.0-1"], [])
    assert image_display_name(spec, image) == "registry.k8s.io/e2e-test-images/busybox:1.37.0-1"


def test_a_short_user_name_is_normalized() -> None:
    spec = api_pb2.ImageSpec(image=IMAGE_ID, user_specified_image="busybox")
    assert image_display_name(spec, _image(["docker.io/library/busybox:latest"], [])) == (
        "docker.io/library/busybox:latest"
    )


def test_without_the_users_string_a_name_of_the_image_is_kept_and_an_id_is_not() -> None:
    image = _image(["example.test/app:2", "example.test/app:latest"], [f"example.test/app@{DIGEST}"])
    assert image_display_name(api_pb2.ImageSpec(image="example.test/app:latest"), image) == (
        "example.test/app:latest"
    )
    assert image_display_name(api_pb2.ImageSpec(image=IMAGE_ID), image) == "example.test/app:2"
    # a 12-hex id prefix is no repository name, even though it parses as one
    assert image_display_name(api_pb2.ImageSpec(image="b" * 12), image) == "example.test/app:2"


def test_an_image_without_tags_is_named_by_its_digest_then_its_id() -> None:
    assert image_display_name(
        api_pb2.ImageSpec(image=IMAGE_ID), _image([], [f"example.test/app@{DIGEST}"])
    ) == (f"example.test/app@{DIGEST}")
    assert image_display_name(api_pb2.ImageSpec(image=IMAGE_ID), _image([], [])) == IMAGE_ID
