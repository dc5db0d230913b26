"""pinned_images patterns: exact (normalized), prefix*, *keyword*; the pause image always."""

from __future__ import annotations

import pytest

from cri_py.image.pinning import PinnedImages, pinned_pattern_problem

DIGEST = "sha256:" + "cd" * 32


def test_patterns() -> None:
    pins = PinnedImages(
        ["busybox", "registry.k8s.io/*", "*etcd*", f"quay.io/app@{DIGEST}"], "localhost/cri-py/pause:3.10"
    )
    assert pins.matches(["docker.io/library/busybox:latest"])
    assert not pins.matches(["docker.io/library/busybox:1.36"])  # exact means exact: busybox is :latest
    assert pins.matches(["registry.k8s.io/kube-proxy:v1.36.3"])
    assert pins.matches(["quay.io/coreos/etcd:v3.6.8"])
    assert pins.matches([f"quay.io/app@{DIGEST}"])
    assert not pins.matches(["quay.io/app:latest"])
    assert pins.matches(["localhost/cri-py/pause:3.10"])  # the pause image, always
    assert not pins.matches(["docker.io/library/alpine:latest"])
    assert not pins.matches([])


@pytest.mark.parametrize("pattern", ["", "a*b", "*", "**", "*a", "Bad Name", "x*y*"])
def test_bad_patterns(pattern: str) -> None:
    assert pinned_pattern_problem(pattern)


@pytest.mark.parametrize("pattern", ["busybox:1.36", "reg.example/*", "*kube*", "docker.io/library/busy*"])
def test_good_patterns(pattern: str) -> None:
    assert pinned_pattern_problem(pattern) == ""
