"""containers-registries.conf(5) against a real daemon and real registries on 127.0.0.1:
short names, aliases, prefix rewriting, mirror order and filters, blocking (proven by a listener
that nothing connected to), insecure, cri-py's own keys winning, SIGHUP, `cri-py config`."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from cri_py.api import api_pb2
from tests.e2e.daemon import CRI_PY, REPO, Daemon
from tests.e2e.recording_server import RecordingRegistry
from tests.e2e.registry_fixtures import TestRegistry, registry, tls_registry  # noqa: F401


def pull(cri: Daemon, ref: str) -> str:
    req = api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=ref))
    return str(cri.image.PullImage(req, timeout=120).image_ref)


def pull_error(cri: Daemon, ref: str) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        pull(cri, ref)
    return info.value


def status(cri: Daemon, ref: str) -> api_pb2.Image:
    req = api_pb2.ImageStatusRequest(image=api_pb2.ImageSpec(image=ref))
    return cri.image.ImageStatus(req, timeout=10).image


def remove(cri: Daemon, ref: str) -> None:
    cri.image.RemoveImage(api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image=ref)), timeout=30)


def reload_with(cri: Daemon, conf: Path, text: str) -> None:
    """Rewrite registries.conf and SIGHUP the daemon; wait until it says it reloaded."""
    conf.write_text(text)
    before = cri.log_text().count("config reloaded")
    assert cri.proc is not None
    cri.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while cri.log_text().count("config reloaded") == before:
        assert time.monotonic() < deadline, cri.log_text()[-2000:]
        time.sleep(0.05)


def start(cri_factory: Any, tmp_path: Path, text: str, **extra: Any) -> tuple[Daemon, Path]:
    conf = tmp_path / "registries.conf"
    conf.write_text(text)
    return cri_factory({"registries_conf": str(conf), **extra}), conf


def test_short_names_resolve_to_the_local_registry_and_blocked_hosts_are_never_contacted(
    cri_factory: Any,
    tmp_path: Path,
    registry: TestRegistry,  # noqa: F811
) -> None:
    with RecordingRegistry() as blocked:
        conf_text = f"""
unqualified-search-registries = ["docker.io"]
short-name-mode = "enforcing"
[[registry]]
prefix = "docker.io"
location = "{registry.host}"
insecure = true
[[registry]]
location = "{blocked.host}"
blocked = true
"""
        cri, conf = start(cri_factory, tmp_path, conf_text)
        assert pull(cri, "busybox") == registry.busybox_id
        img = status(cri, "busybox")
        assert img.id == registry.busybox_id
        # named by what was asked for, not where the bytes came from
        assert list(img.repo_tags) == ["docker.io/library/busybox:latest"]

        error = pull_error(cri, f"{blocked.host}/x")
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert (
            f"{blocked.host} is blocked by [[registry]] prefix='{blocked.host}' in {conf}" in error.details()
        )
        assert blocked.connections == 0
        # the listener does see a pull once the block is gone: the zero above means something
        reload_with(cri, conf, conf_text.replace("blocked = true", "blocked = false"))
        assert pull_error(cri, f"{blocked.host}/x").code() == grpc.StatusCode.NOT_FOUND
        assert blocked.connections > 0 and "/v2/x/manifests/latest" in blocked.paths


def test_search_order_aliases_and_short_name_modes(
    cri_factory: Any,
    tmp_path: Path,
    registry: TestRegistry,  # noqa: F811
) -> None:
    with RecordingRegistry() as empty:
        hub = f'[[registry]]\nprefix = "docker.io"\nlocation = "{registry.host}"\n'
        permissive = f'unqualified-search-registries = ["{empty.host}", "docker.io"]\n' + hub
        cri, conf = start(cri_factory, tmp_path, permissive)
        # the first search registry has no busybox: the second one serves it
        assert pull(cri, "busybox:latest") == registry.busybox_id
        assert "/v2/busybox/manifests/latest" in empty.paths
        assert status(cri, "busybox").id == registry.busybox_id  # lookups walk the same candidates
        remove(cri, "busybox")
        assert not status(cri, "busybox").id

        # enforcing: two candidates and nobody to ask: refused before any connection
        reload_with(
            cri,
            conf,
            permissive.replace("\n[[registry]]", '\nshort-name-mode = "enforcing"\n[[registry]]', 1),
        )
        seen = empty.connections
        error = pull_error(cri, "busybox")
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and "ambiguous" in error.details()
        assert empty.connections == seen

        # an alias is the only candidate, in every mode
        aliased = permissive + '[aliases]\n"bb" = "docker.io/library/busybox"\n'
        reload_with(
            cri, conf, aliased.replace("\n[[registry]]", '\nshort-name-mode = "enforcing"\n[[registry]]', 1)
        )
        assert pull(cri, "bb") == registry.busybox_id
        assert empty.connections == seen
        assert list(status(cri, "bb").repo_tags) == ["docker.io/library/busybox:latest"]


def test_rewriting_and_mirror_order(cri_factory: Any, tmp_path: Path, registry: TestRegistry) -> None:  # noqa: F811
    digest = registry.busybox_digest.split("@", 1)[1]
    with RecordingRegistry() as primary, RecordingRegistry() as empty:
        logical = f"{primary.host}/team/busybox"

        def conf_text(extra: str = "", first: str = "", second: str = "") -> str:
            return f"""
[[registry]]
prefix = "{primary.host}/team"
location = "{primary.host}/team"
{extra}
[[registry.mirror]]
location = "{empty.host}/empty"
{first}
[[registry.mirror]]
location = "{registry.host}/library"
{second}
"""

        cri, conf = start(cri_factory, tmp_path, conf_text())
        # mirrors in order; the prefix is rewritten onto each mirror's location
        assert pull(cri, logical) == registry.busybox_id
        assert "/v2/empty/busybox/manifests/latest" in empty.paths
        assert primary.connections == 0  # a mirror had it: the location is never asked
        assert list(status(cri, logical).repo_tags) == [f"{logical}:latest"]
        remove(cri, logical)

        # mirror-by-digest-only: a tag goes to the location alone
        reload_with(cri, conf, conf_text(extra="mirror-by-digest-only = true"))
        empty.paths.clear()
        assert pull_error(cri, logical).code() == grpc.StatusCode.NOT_FOUND
        assert primary.paths and empty.paths == []
        assert pull(cri, f"{logical}@{digest}") == registry.busybox_id
        assert f"/v2/empty/busybox/manifests/{digest}" in empty.paths
        remove(cri, f"{logical}@{digest}")

        # pull-from-mirror: digest-only and tag-only mirrors
        reload_with(
            cri,
            conf,
            conf_text(first='pull-from-mirror = "digest-only"', second='pull-from-mirror = "tag-only"'),
        )
        empty.paths.clear()
        primary.paths.clear()
        assert pull(cri, logical) == registry.busybox_id
        assert empty.paths == [] and primary.paths == []
        remove(cri, logical)
        assert pull_error(cri, f"{logical}@{digest}").code() == grpc.StatusCode.NOT_FOUND
        assert f"/v2/empty/busybox/manifests/{digest}" in empty.paths
        assert f"/v2/team/busybox/manifests/{digest}" in primary.paths


def test_blocked_with_mirrors_means_only_the_mirrors(
    cri_factory: Any,
    tmp_path: Path,
    registry: TestRegistry,  # noqa: F811
) -> None:
    with RecordingRegistry() as source:
        cri, _ = start(
            cri_factory,
            tmp_path,
            f'[[registry]]\nlocation = "{source.host}"\nblocked = true\n'
            f'[[registry.mirror]]\nlocation = "{registry.host}"\n',
        )
        assert pull(cri, f"{source.host}/busybox") == registry.busybox_id
        assert pull_error(cri, f"{source.host}/missing").code() == grpc.StatusCode.NOT_FOUND
        assert source.connections == 0


def test_insecure_and_cri_py_keys_winning(
    cri_factory: Any,
    tmp_path: Path,
    tls_registry: TestRegistry,  # noqa: F811
) -> None:
    conf_text = f'[[registry]]\nlocation = "{tls_registry.host}"\ninsecure = false\n'
    cri, conf = start(cri_factory, tmp_path, conf_text)
    error = pull_error(cri, tls_registry.busybox)
    assert "not trusted" in error.details()
    reload_with(cri, conf, conf_text.replace("false", "true"))
    assert pull(cri, tls_registry.busybox) == tls_registry.busybox_id
    remove(cri, tls_registry.busybox)

    # cri-py's own `registries` key for the same host wins over registries.conf
    other = tmp_path / "other"
    other.mkdir()
    overruled, _ = start(cri_factory, other, conf_text, registries={tls_registry.host: {"insecure": True}})
    assert pull(overruled, tls_registry.busybox) == tls_registry.busybox_id


def test_broken_registries_conf_stops_start_and_a_reload_keeps_the_old_one(
    cri_factory: Any,
    tmp_path: Path,
    registry: TestRegistry,  # noqa: F811
) -> None:
    conf = tmp_path / "registries.conf"
    conf.write_text('[[registry]]\nlocation = "http://x.example"\n')
    config = tmp_path / "cri-py.yaml"
    config.write_text(f"registries_conf: {conf}\n")
    result = subprocess.run(
        [*CRI_PY, "serve", "--config", str(config)], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert result.returncode == 2
    assert f"{conf}: registry[0].location: 'http://x.example': URI schemes are not supported" in result.stderr

    good = f'[[registry]]\nprefix = "docker.io"\nlocation = "{registry.host}"\n'
    cri, conf = start(cri_factory, tmp_path, good)
    conf.write_text("[[registry]\n")
    assert cri.proc is not None
    cri.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reload failed" not in cri.log_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert pull(cri, "busybox") == registry.busybox_id  # still the old rules


def test_config_command_shows_the_merged_registries(tmp_path: Path) -> None:
    dropins = tmp_path / "registries.conf.d"
    dropins.mkdir()
    conf = tmp_path / "registries.conf"
    conf.write_text(
        'unqualified-search-registries = ["quay.io"]\n[[registry]]\nlocation = "bad.example"\nblocked = true\n'
    )
    (dropins / "50-hub.conf").write_text('[[registry]]\nprefix = "docker.io"\nlocation = "127.0.0.1:5000"\n')
    config = tmp_path / "cri-py.yaml"
    config.write_text(
        f"registries_conf: {conf}\nregistries:\n  docker.io: {{mirrors: ['http://127.0.0.1:6000']}}\n"
    )
    result = subprocess.run(
        [*CRI_PY, "config", "--json", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    effective = json.loads(result.stdout)["effective_registries"]
    assert effective["search"] == ["quay.io"]
    assert effective["files"] == [str(conf), str(dropins / "50-hub.conf")]
    rules = {r["prefix"]: r for r in effective["rules"]}
    assert rules["bad.example"]["blocked"] is True
    hub = rules["docker.io"]
    assert hub["location"] == "127.0.0.1:5000"
    assert [m["location"] for m in hub["mirrors"]] == ["127.0.0.1:6000"]
    assert hub["source"] == f"{dropins / '50-hub.conf'}, cri-py registries"
