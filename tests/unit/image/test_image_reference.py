"""Docker reference grammar and normalization."""

from __future__ import annotations

import pytest

from cri_py.errors import InvalidArgument
from cri_py.image.reference import parse, parse_raw

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "full"),
    [
        ("busybox", "docker.io/library/busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36"),
        ("library/busybox", "docker.io/library/busybox:latest"),
        ("index.docker.io/library/busybox", "docker.io/library/busybox:latest"),
        ("user/app", "docker.io/user/app:latest"),
        ("localhost/app", "localhost/app:latest"),
        ("localhost:5000/a/b/c:v1", "localhost:5000/a/b/c:v1"),
        ("127.0.0.1:5000/busybox", "127.0.0.1:5000/busybox:latest"),
        ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
        (f"busybox@{D}", f"docker.io/library/busybox@{D}"),
        (f"quay.io/x/y:tag@{D}", f"quay.io/x/y:tag@{D}"),
        ("a.b/c__d-e.f:Tag_1.0-x", "a.b/c__d-e.f:Tag_1.0-x"),
        ("[::1]:5000/img", "[::1]:5000/img:latest"),
    ],
)
def test_normalizes(text: str, full: str) -> None:
    assert str(parse(text)) == full


def test_parts_and_forms() -> None:
    ref = parse(f"quay.io/x/y:tag@{D}")
    assert (ref.domain, ref.path, ref.tag, ref.digest) == ("quay.io", "x/y", "tag", D)
    assert ref.pull_target == D  # the digest wins
    assert ref.tagged() == "quay.io/x/y:tag"
    assert ref.digested() == f"quay.io/x/y@{D}"
    assert parse("busybox").familiar() == "busybox:latest"
    assert parse("user/app:1").familiar() == "user/app:1"
    assert parse_raw("busybox").tag == ""


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("Busybox", "lowercase"),
        ("docker.io/Library/busybox", "lowercase"),
        ("a" * 64, "64-hex"),
        ("busybox:", "invalid tag"),
        ("busybox:-x", "invalid tag"),
        ("busybox:" + "t" * 129, "invalid tag"),
        ("busybox@sha256:abc", "digest"),
        ("busybox@" + "a" * 64, "digest"),
        ("bad_host:5000/", "invalid"),
        ("a//b", "path component"),
        ("a/-b", "path component"),
        ("has space", "whitespace"),
        ("example.com:port/x", "invalid registry host"),
    ],
)
def test_rejects(text: str, problem: str) -> None:
    with pytest.raises(InvalidArgument, match=problem):
        parse(text)
