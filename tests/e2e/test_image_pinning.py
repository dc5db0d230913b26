"""Pinned images: the pause image always, `pinned_images` patterns, reported by ImageStatus and
ListImages, refused by RemoveImage, moved by a SIGHUP reload."""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import grpc
import pytest
import yaml

from cri_py.api import api_pb2
from tests.e2e.daemon import Daemon
from tests.e2e.registry_fixtures import TestRegistry, registry  # noqa: F401

PAUSE = "localhost/cri-py/pause:3.10"


def pull(cri: Daemon, ref: str) -> str:
    req = api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=ref))
    return str(cri.image.PullImage(req, timeout=120).image_ref)


def status(cri: Daemon, ref: str) -> api_pb2.ImageStatusResponse:
    req = api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=ref), verbose=True)
    return cri.image.ImageStatus(req, timeout=10)


def remove(cri: Daemon, ref: str) -> None:
    cri.image.RemoveImage(api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image=ref)), timeout=30)


def pinned_by_tag(cri: Daemon) -> dict[str, bool]:
    images = cri.image.ListImages(api_pb2.ListImagesRequest(), timeout=10).images
    return {tag: img.pinned for img in images for tag in img.repo_tags}


def test_pause_image_is_pinned_and_kept(cri: Daemon) -> None:
    assert pinned_by_tag(cri)[PAUSE] is True
    reply = status(cri, PAUSE)
    assert reply.image.pinned and json.loads(reply.info["info"])["pinned"] is True
    with pytest.raises(grpc.RpcError) as info:
        remove(cri, PAUSE)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "pinned" in info.value.details()
    assert status(cri, PAUSE).image.id


def test_pinned_images_patterns_follow_a_reload(cri_factory: Any, registry: TestRegistry) -> None:  # noqa: F811
    cri = cri_factory(
        {**registry.daemon_overrides(), "pinned_images": [f"{registry.host}/busy*", "*nonroot:numeric*"]}
    )
    pull(cri, registry.busybox)
    pull(cri, registry.nonroot)
    pull(cri, registry.nonroot_numeric)
    pins = pinned_by_tag(cri)
    assert pins[registry.busybox] and pins[registry.nonroot_numeric] and pins[PAUSE]
    assert pins[registry.nonroot] is False
    assert status(cri, registry.busybox).image.pinned
    with pytest.raises(grpc.RpcError) as info:
        remove(cri, registry.busybox)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    remove(cri, registry.nonroot)  # not pinned: removed

    config = dict(cri.config)
    config["pinned_images"] = []
    cri.config_path.write_text(yaml.safe_dump(config))
    assert cri.proc is not None
    cri.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "pinned_images" not in cri.log_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pins = pinned_by_tag(cri)
    assert pins[registry.busybox] is False and pins[PAUSE] is True  # the pause image stays pinned
    remove(cri, registry.busybox)
    assert not status(cri, registry.busybox).image.id
