"""Credentials from auth_file (containers-auth.json / Docker config.json) against real registries:
used when the request has none, the most specific key wins, and no secret reaches the log."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import grpc
import pytest

from cri_py.api import api_pb2
from tests.e2e.daemon import Daemon
from tests.e2e.registry_fixtures import TestRegistry, auth_registry, token_registry  # noqa: F401

WRONG = "wr0ng-pa55-for-test"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def pull(cri: Daemon, ref: str, auth: api_pb2.AuthConfig | None = None) -> str:
    req = api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=ref))
    if auth is not None:
        req.auth.CopyFrom(auth)
    return str(cri.image.PullImage(req, timeout=120).image_ref)


def remove(cri: Daemon, ref: str) -> None:
    cri.image.RemoveImage(api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image=ref)), timeout=30)


def write_auths(path: Path, auths: dict[str, Any]) -> None:
    path.write_text(json.dumps({"auths": auths}))


def test_auth_file_most_specific_key_and_no_secret_in_logs(
    cri_factory: Any,
    tmp_path: Path,
    auth_registry: TestRegistry,  # noqa: F811
) -> None:
    user, password = auth_registry.user or ("", "")
    host = auth_registry.host
    auth_file = tmp_path / "auth.json"
    cri = cri_factory({**auth_registry.daemon_overrides(mirror_upstreams=False), "auth_file": str(auth_file)})
    errors: list[str] = []

    # no file: the registry wants credentials
    with pytest.raises(grpc.RpcError) as info:
        pull(cri, auth_registry.busybox)
    errors.append(info.value.details())

    # the repository's key beats the host's
    write_auths(
        auth_file,
        {host: {"auth": b64(f"{user}:{WRONG}")}, f"{host}/busybox": {"auth": b64(f"{user}:{password}")}},
    )
    assert pull(cri, auth_registry.busybox) == auth_registry.busybox_id
    remove(cri, auth_registry.busybox)
    write_auths(
        auth_file,
        {host: {"auth": b64(f"{user}:{password}")}, f"{host}/busybox": {"auth": b64(f"{user}:{WRONG}")}},
    )
    with pytest.raises(grpc.RpcError) as info:
        pull(cri, auth_registry.busybox)
    errors.append(info.value.details())

    # Docker's form: a URL key, username and password fields
    auth_file.write_text(
        json.dumps({"auths": {f"http://{host}/v1/": {"username": user, "password": password}}})
    )
    assert pull(cri, auth_registry.busybox) == auth_registry.busybox_id
    remove(cri, auth_registry.busybox)

    # credentials in the request win over the file
    with pytest.raises(grpc.RpcError) as info:
        pull(cri, auth_registry.busybox, api_pb2.AuthConfig(username=user, password=WRONG))
    errors.append(info.value.details())

    # a broken file is a clear error naming it, not a leak of its content
    auth_file.write_text('{"auths": {"' + host + '": {"auth": "' + password + '!!"}}}')
    with pytest.raises(grpc.RpcError) as info:
        pull(cri, auth_registry.busybox)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert str(auth_file) in info.value.details()
    errors.append(info.value.details())

    secrets = [password, WRONG, b64(f"{user}:{password}"), b64(f"{user}:{WRONG}")]
    log = cri.log_text()
    assert "rpc=ImageService/PullImage" in log  # the debug log did record these pulls
    for secret in secrets:
        assert secret not in log
        for message in errors:
            assert secret not in message


def test_auth_file_feeds_the_token_server(
    cri_factory: Any,
    tmp_path: Path,
    token_registry: TestRegistry,  # noqa: F811
) -> None:
    user, password = token_registry.user or ("", "")
    auth_file = tmp_path / "auth.json"
    write_auths(auth_file, {token_registry.host: {"auth": b64(f"{user}:{password}")}})
    cri = cri_factory(
        {**token_registry.daemon_overrides(mirror_upstreams=False), "auth_file": str(auth_file)}
    )
    assert pull(cri, token_registry.busybox) == token_registry.busybox_id
    assert any(r["user"] == user for r in token_registry.token_server.requests)
    assert password not in cri.log_text()


def test_request_credentials_never_go_to_a_mirror_on_another_host(
    cri_factory: Any,
    tmp_path: Path,
    auth_registry: TestRegistry,  # noqa: F811
) -> None:
    from tests.e2e.recording_server import RecordingRegistry

    user, password = auth_registry.user or ("", "")
    auth_file = tmp_path / "auth.json"
    conf = tmp_path / "registries.conf"
    with RecordingRegistry() as origin:
        conf.write_text(
            f'[[registry]]\nlocation = "{origin.host}"\n[[registry.mirror]]\nlocation = "{auth_registry.host}"\n'
        )
        cri = cri_factory({"registries_conf": str(conf), "auth_file": str(auth_file)})
        secret_for_origin = api_pb2.AuthConfig(username=user, password=password)
        # the pull secret is meant for origin: the mirror does not get it and refuses
        with pytest.raises(grpc.RpcError) as info:
            pull(cri, f"{origin.host}/busybox", secret_for_origin)
        assert "unauthorized" in info.value.details() or "credentials" in info.value.details()
        # the mirror's own entry in auth_file is used for it
        write_auths(auth_file, {auth_registry.host: {"auth": b64(f"{user}:{password}")}})
        before = origin.connections
        assert pull(cri, f"{origin.host}/busybox", secret_for_origin) == auth_registry.busybox_id
        assert origin.connections == before  # the mirror had it
