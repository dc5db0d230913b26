"""Which endpoints a reference is pulled from, and which names a short name means."""

from __future__ import annotations

from pathlib import Path

import pytest

from cri_py.config.model import RegistriesConf
from cri_py.config.registries_conf import read_registries_conf
from cri_py.image.reference import parse
from cri_py.image.resolve import (
    RegistryBlocked,
    ShortNameUnresolved,
    local_candidates,
    match_end,
    pull_candidates,
    pull_sources,
)

DIGEST = "sha256:" + "ab" * 32


def conf_of(tmp_path: Path, text: str) -> RegistriesConf:
    path = tmp_path / "registries.conf"
    path.write_text(text)
    return read_registries_conf(path)


def tried(conf: RegistriesConf, name: str) -> list[str]:
    return [str(s.ref) for s in pull_sources(conf, parse(name))]


def test_man_page_example_order(tmp_path: Path) -> None:
    conf = conf_of(
        tmp_path,
        """
[[registry]]
prefix = "example.com/foo"
location = "internal-registry-for-example.com/bar"
[[registry.mirror]]
location = "example-mirror-0.local/mirror-for-foo"
[[registry.mirror]]
location = "example-mirror-1.local/mirrors/foo"
insecure = true
[[registry]]
location = "registry.com"
[[registry.mirror]]
location = "mirror.registry.com"
""",
    )
    sources = pull_sources(conf, parse("example.com/foo/image:latest"))
    assert [str(s.ref) for s in sources] == [
        "example-mirror-0.local/mirror-for-foo/image:latest",
        "example-mirror-1.local/mirrors/foo/image:latest",
        "internal-registry-for-example.com/bar/image:latest",
    ]
    assert [s.mirror for s in sources] == [True, True, False]
    assert [s.insecure for s in sources] == [False, True, False]
    # a mirror belongs to its own table only
    assert tried(conf, "registry.com/image:latest") == [
        "mirror.registry.com/image:latest",
        "registry.com/image:latest",
    ]
    # no table: the reference as it is
    assert tried(conf, "example.com/other:1") == ["example.com/other:1"]


def test_prefix_matching_needs_a_separator() -> None:
    assert match_end("example.com/foo/image:1", "example.com/foo") == len("example.com/foo")
    assert match_end("example.com/foo:1", "example.com/foo") == len("example.com/foo")
    assert match_end(f"example.com/foo@{DIGEST}", "example.com/foo") == len("example.com/foo")
    assert match_end("example.com/foobar/image:1", "example.com/foo") == -1
    assert match_end("example.com/x:1", "example.com") == len("example.com")
    # a port is another host (containers/image's own source calls matching it unintended)
    assert match_end("example.com:5000/x:1", "example.com") == -1
    assert match_end("example.com:5000/x:1", "example.com:5000") == len("example.com:5000")
    assert match_end("example.com/foo:1", "example.com/foo:1") == len("example.com/foo:1")
    # wildcards: any depth of subdomain, never the domain itself
    assert match_end("a.example.com/x:1", "*.example.com") == len("a.example.com")
    assert match_end("b.a.example.com/x:1", "*.example.com") == len("b.a.example.com")
    assert match_end("example.com/x:1", "*.example.com") == -1
    assert match_end("notexample.com/x:1", "*.example.com") == -1
    assert match_end("a.example.com.evil/x:1", "*.example.com") == -1


def test_longest_prefix_wins(tmp_path: Path) -> None:
    conf = conf_of(
        tmp_path,
        """
[[registry]]
prefix = "docker.io"
location = "hub-mirror.example"
[[registry]]
prefix = "docker.io/library/busybox"
location = "busybox-home.example/bb"
[[registry]]
prefix = "*.example.org"
insecure = true
""",
    )
    assert tried(conf, "busybox") == ["busybox-home.example/bb:latest"]
    assert tried(conf, "docker.io/library/alpine:3") == ["hub-mirror.example/library/alpine:3"]
    # a wildcard rule without location keeps the reference and applies its settings
    [source] = pull_sources(conf, parse("reg.example.org/team/app:1"))
    assert str(source.ref) == "reg.example.org/team/app:1" and source.insecure


def test_mirror_by_digest_only_and_pull_from_mirror(tmp_path: Path) -> None:
    conf = conf_of(
        tmp_path,
        """
[[registry]]
location = "a.example"
mirror-by-digest-only = true
[[registry.mirror]]
location = "m1.example"
[[registry]]
location = "b.example"
[[registry.mirror]]
location = "digests.example"
pull-from-mirror = "digest-only"
[[registry.mirror]]
location = "tags.example"
pull-from-mirror = "tag-only"
[[registry.mirror]]
location = "all.example"
""",
    )
    assert tried(conf, "a.example/app:1") == ["a.example/app:1"]
    assert tried(conf, f"a.example/app@{DIGEST}") == [f"m1.example/app@{DIGEST}", f"a.example/app@{DIGEST}"]
    assert tried(conf, "b.example/app:1") == ["tags.example/app:1", "all.example/app:1", "b.example/app:1"]
    assert tried(conf, f"b.example/app@{DIGEST}") == [
        f"digests.example/app@{DIGEST}",
        f"all.example/app@{DIGEST}",
        f"b.example/app@{DIGEST}",
    ]


def test_blocked(tmp_path: Path) -> None:
    conf = conf_of(
        tmp_path,
        """
[[registry]]
location = "bad.example"
blocked = true
[[registry]]
prefix = "docker.io"
location = "docker.io"
blocked = true
[[registry.mirror]]
location = "127.0.0.1:5000"
[[registry.mirror]]
location = "also-bad.example"
[[registry]]
location = "also-bad.example"
blocked = true
[[registry]]
prefix = "quay.io/evil"
location = "quay.io/evil"
blocked = true
""",
    )
    with pytest.raises(RegistryBlocked) as info:
        pull_sources(conf, parse("bad.example/x"))
    message = str(info.value)
    assert "bad.example/x:latest" in message and "prefix='bad.example'" in message
    assert str(tmp_path / "registries.conf") in message
    # blocked with mirrors: only the mirrors that are not blocked themselves
    assert tried(conf, "busybox") == ["127.0.0.1:5000/library/busybox:latest"]
    # a namespace can be blocked while the rest of its host is not
    assert tried(conf, "quay.io/good/app") == ["quay.io/good/app:latest"]
    with pytest.raises(RegistryBlocked):
        pull_sources(conf, parse("quay.io/evil/app"))


def test_docker_hub_is_reached_through_its_api_host(tmp_path: Path) -> None:
    [hub] = pull_sources(RegistriesConf(), parse("busybox"))
    assert hub.host == "registry-1.docker.io" and str(hub.ref) == "docker.io/library/busybox:latest"
    conf = conf_of(tmp_path, '[[registry]]\nprefix = "docker.io/library"\nlocation = "127.0.0.1:5000/hub"\n')
    [local] = pull_sources(conf, parse("busybox:1.36"))
    assert local.host == "127.0.0.1:5000" and local.ref.path == "hub/busybox" and local.http_fallback


def test_short_names(tmp_path: Path) -> None:
    # no file says anything: Docker's meaning
    assert [str(r) for r in pull_candidates(RegistriesConf(), "busybox")] == [
        "docker.io/library/busybox:latest"
    ]
    conf = conf_of(
        tmp_path,
        """
unqualified-search-registries = ["quay.io", "docker.io"]
[aliases]
"app" = "reg.example/team/app"
""",
    )
    assert [str(r) for r in pull_candidates(conf, "busybox:1.36")] == [
        "quay.io/busybox:1.36",
        "docker.io/library/busybox:1.36",
    ]
    # an alias is the only candidate; the tag or digest moves over to it
    assert [str(r) for r in pull_candidates(conf, "app:2")] == ["reg.example/team/app:2"]
    assert [str(r) for r in pull_candidates(conf, f"app@{DIGEST}")] == [f"reg.example/team/app@{DIGEST}"]
    # qualified names are not touched
    assert [str(r) for r in pull_candidates(conf, "localhost/app")] == ["localhost/app:latest"]
    assert [str(r) for r in pull_candidates(conf, "team/tool")] == [
        "quay.io/team/tool:latest",
        "docker.io/team/tool:latest",
    ]


def test_short_name_modes(tmp_path: Path) -> None:
    two = 'unqualified-search-registries = ["a.example", "b.example"]\n'
    enforcing = conf_of(tmp_path, two + 'short-name-mode = "enforcing"\n[aliases]\n"app" = "a.example/app"\n')
    with pytest.raises(ShortNameUnresolved, match="ambiguous"):
        pull_candidates(enforcing, "busybox")
    assert [str(r) for r in pull_candidates(enforcing, "app")] == ["a.example/app:latest"]
    one = conf_of(tmp_path, 'unqualified-search-registries = ["a.example"]\nshort-name-mode = "enforcing"\n')
    assert len(pull_candidates(one, "busybox")) == 1  # one registry is no ambiguity
    for mode in ("permissive", "disabled"):
        conf = conf_of(tmp_path, two + f'short-name-mode = "{mode}"\n')
        assert len(pull_candidates(conf, "busybox")) == 2
    empty = conf_of(tmp_path, "unqualified-search-registries = []\n")
    with pytest.raises(ShortNameUnresolved, match="unqualified-search-registries is empty"):
        pull_candidates(empty, "busybox")


def test_local_lookups_ignore_the_mode(tmp_path: Path) -> None:
    conf = conf_of(
        tmp_path,
        'unqualified-search-registries = ["a.example", "docker.io"]\nshort-name-mode = "enforcing"\n'
        '[aliases]\n"app" = "reg.example/app"\n',
    )
    assert [str(r) for r in local_candidates(conf, "busybox")] == [
        "a.example/busybox",
        "docker.io/library/busybox",
    ]
    assert [str(r) for r in local_candidates(conf, "app:1")] == [
        "reg.example/app:1",
        "a.example/app:1",
        "docker.io/library/app:1",
    ]
    assert [str(r) for r in local_candidates(RegistriesConf(), "busybox")] == ["docker.io/library/busybox"]
