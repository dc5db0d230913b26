"""Pulls a client gave up on stop and leave nothing; pulls of one image share one download while
any caller waits; refused pulls are logged at info with the image and the reason."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from cri_py.api import api_pb2
from cri_py.image import build
from cri_py.image.build import Entry
from cri_py.image.push import Pusher
from tests.e2e import registry_fixtures
from tests.e2e.registry_fixtures import TestRegistry
from tests.e2e.throttle_proxy import ProxyStats, throttled

registry = registry_fixtures.registry
bench_registry = registry_fixtures.bench_registry
auth_registry = registry_fixtures.auth_registry

MIB = 1 << 20


def content(cri: Any) -> dict[str, list[str]]:
    """Everything in the image store: committed blobs and layers, and any temporaries."""
    root = cri.root / "images"
    out: dict[str, list[str]] = {}
    for part in ("blobs/sha256", "layers", "ingest"):
        directory = root / part
        out[part] = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
    return out


def request(ref: str) -> api_pb2.PullImageRequest:
    return api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=ref))


def image_known(cri: Any, ref: str) -> bool:
    resp = cri.image.ImageStatus(api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=ref)), timeout=10)
    return resp.HasField("image")


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def downloading(cri: Any, stats: ProxyStats) -> Callable[[], bool]:
    """A layer body is being sent and the daemon is writing it."""
    ingest = cri.root / "images" / "ingest"
    return lambda: stats.open_bodies > 0 and ingest.is_dir() and any(ingest.iterdir())


def assert_download_stopped(stats: ProxyStats) -> None:
    wait_for("the layer downloads to stop", lambda: stats.open_bodies == 0, timeout=10)
    sent = stats.sent()
    time.sleep(1.0)
    assert stats.sent() == sent, "the proxy kept sending after the pull stopped"


def log_lines(cri: Any, msg: str) -> list[str]:
    return [line for line in cri.log_text().splitlines() if f'msg="{msg}"' in line]


def test_cancelled_pull_stops_and_leaves_nothing(cri_factory: Any, bench_registry: TestRegistry) -> None:
    with throttled(bench_registry.url, rate=4 * MIB) as (proxy, stats):
        cri = cri_factory({"registries": {proxy: {"insecure": True}}})
        before = content(cri)
        ref = f"{proxy}/bench:latest"
        call = cri.image.PullImage.future(request(ref), timeout=120)
        wait_for("a layer download", downloading(cri, stats))
        time.sleep(1.0)  # a second into a large layer
        call.cancel()
        assert_download_stopped(stats)
        assert not image_known(cri, ref)
        wait_for("the store to be as before", lambda: content(cri) == before, timeout=10)
        [line] = log_lines(cri, "pull stopped")
        assert "level=info" in line and f"image={ref}" in line


def test_pull_past_its_deadline_stops_and_leaves_nothing(
    cri_factory: Any, bench_registry: TestRegistry
) -> None:
    with throttled(bench_registry.url, rate=4 * MIB) as (proxy, stats):
        cri = cri_factory({"registries": {proxy: {"insecure": True}}})
        before = content(cri)
        ref = f"{proxy}/bench:latest"
        with pytest.raises(grpc.RpcError) as err:
            cri.image.PullImage(request(ref), timeout=2.0)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert_download_stopped(stats)
        assert not image_known(cri, ref)
        wait_for("the store to be as before", lambda: content(cri) == before, timeout=10)
        # a retry starts afresh and completes
        cri.image.PullImage(request(ref), timeout=120)
        assert image_known(cri, ref)


def test_concurrent_pulls_share_one_download_while_any_waits(
    cri_factory: Any, bench_registry: TestRegistry
) -> None:
    with throttled(bench_registry.url, rate=8 * MIB) as (proxy, stats):
        cri = cri_factory({"registries": {proxy: {"insecure": True}}})
        ref = f"{proxy}/bench:latest"
        first = cri.image.PullImage.future(request(ref), timeout=120)
        wait_for("a layer download", downloading(cri, stats))
        second = cri.image.PullImage.future(request(ref), timeout=120)
        time.sleep(1.0)
        first.cancel()  # the second caller still waits: the download goes on
        image_id = second.result().image_ref
        assert image_known(cri, ref)
        assert first.cancelled()
        # every blob (config, busybox's layer, five bench layers) was fetched once, for both callers
        assert len(stats.blob_gets) == 7 and set(stats.blob_gets.values()) == {1}, stats.blob_gets
        assert content(cri)["ingest"] == []
        assert not [n for n in content(cri)["layers"] if n.startswith(".tmp")]
        # a third caller finds it done
        assert cri.image.PullImage(request(ref), timeout=30).image_ref == image_id
        assert log_lines(cri, "pull stopped") == []


def test_refused_pulls_are_logged_at_info(
    cri_factory: Any, registry: TestRegistry, auth_registry: TestRegistry, tmp_path: Path
) -> None:
    hostile = f"{registry.host}/hostile-escape:latest"
    img = build.image([build.layer([Entry("../escaped", data=b"x")])], cmd=["sh"])
    with Pusher(registry.url) as push:
        push.image("hostile-escape", "latest", img)
    with throttled(registry.url, rate=64 * MIB, corrupt=True) as (liar, _stats):
        overrides = {
            "registries": {
                registry.host: {"insecure": True},
                liar: {"insecure": True},
                auth_registry.host: {"insecure": True},
            }
        }
        cri = cri_factory(overrides)
        before = content(cri)
        cases = {
            hostile: "escaped",
            f"{liar}/{registry.busybox.split('/', 1)[1]}": "does not verify|hashes to",
            auth_registry.busybox: "credentials|unauthorized",
        }
        for ref, reason in cases.items():
            with pytest.raises(grpc.RpcError):
                cri.image.PullImage(request(ref), timeout=60)
            assert not image_known(cri, ref)
            [line] = [line for line in log_lines(cri, "pull refused") if f"image={ref} " in line + " "]
            assert "level=info" in line
            assert re.search(reason, line), line
        assert content(cri) == before
