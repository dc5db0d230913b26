"""Registry client protocol logic against a scripted registry (httpx MockTransport at the network seam)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import pytest

from cri_py.api import api_pb2
from cri_py.config.model import Config, RegistryConfig
from cri_py.image import mediatypes as mt
from cri_py.image.auth import Credentials, parse_challenges
from cri_py.image.platforms import select_platform
from cri_py.image.reference import parse
from cri_py.image.registry import RegistryAuthError, RegistryClient, endpoints_for

MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": {}, "layers": []}).encode()


class Streamed(httpx.AsyncByteStream):
    """A body delivered as a stream, as a real transport does (bytes content would be pre-read)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        yield self.data


class ScriptedRegistry:
    """Bearer-token registry: /v2/ needs a token for scope repository:<name>:pull."""

    def __init__(self, users: dict[str, str] | None = None) -> None:
        self.users = users or {}
        self.token_requests: list[httpx.Request] = []
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host == "auth.example":
            self.token_requests.append(request)
            if self.users:
                header = request.headers.get("authorization", "")
                if not header.startswith("Basic "):
                    return httpx.Response(401)
                user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                if self.users.get(user) != password:
                    return httpx.Response(401)
            scope = request.url.params.get("scope")
            return httpx.Response(200, json={"token": f"tok:{scope}", "expires_in": 300})
        if request.url.host == "mirror.example":
            body = json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "nope"}]}).encode()
            return httpx.Response(404, stream=Streamed(body))
        repo = request.url.path.split("/manifests/")[0].removeprefix("/v2/")
        if request.headers.get("authorization") != f"Bearer tok:repository:{repo}:pull":
            challenge = f'Bearer realm="https://auth.example/token",service="reg.example",scope="repository:{repo}:pull"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        return httpx.Response(200, stream=Streamed(MANIFEST), headers={"Content-Type": mt.OCI_MANIFEST})


def fetch(client: RegistryClient, ref: str, creds: Credentials | None = None) -> bytes:
    async def run() -> bytes:
        body, _ = await client.session(parse(ref), creds or Credentials()).manifest("latest")
        return body

    return asyncio.run(run())


def test_bearer_token_is_fetched_once_and_reused() -> None:
    reg = ScriptedRegistry()
    client = RegistryClient(Config(), transport=httpx.MockTransport(reg))
    assert fetch(client, "reg.example/team/app") == MANIFEST
    assert fetch(client, "reg.example/team/app") == MANIFEST
    assert len(reg.token_requests) == 1
    token_req = reg.token_requests[0]
    assert token_req.url.params["service"] == "reg.example"
    assert token_req.url.params["scope"] == "repository:team/app:pull"
    assert "authorization" not in token_req.headers  # anonymous
    # another repository needs another scope
    assert fetch(client, "reg.example/team/other") == MANIFEST
    assert len(reg.token_requests) == 2


def test_credentials_go_to_the_token_server() -> None:
    reg = ScriptedRegistry(users={"alice": "pw"})
    client = RegistryClient(Config(), transport=httpx.MockTransport(reg))
    with pytest.raises(RegistryAuthError, match="refused"):
        fetch(client, "reg.example/app", Credentials("alice", "wrong"))
    auth = api_pb2.AuthConfig(auth=base64.b64encode(b"alice:pw").decode())
    assert fetch(client, "reg.example/app", Credentials.from_auth(auth)) == MANIFEST


def test_registry_token_is_used_directly() -> None:
    reg = ScriptedRegistry()
    client = RegistryClient(Config(), transport=httpx.MockTransport(reg))
    creds = Credentials(registry_token="tok:repository:app:pull")
    assert fetch(client, "reg.example/app", creds) == MANIFEST
    assert reg.token_requests == []


def test_mirrors_first_then_upstream() -> None:
    reg = ScriptedRegistry()
    cfg = Config(registries={"reg.example": RegistryConfig(mirrors=("https://mirror.example/prefix",))})
    client = RegistryClient(cfg, transport=httpx.MockTransport(reg))
    assert fetch(client, "reg.example/app") == MANIFEST
    hosts = [r.url.host for r in reg.requests]
    assert hosts[0] == "mirror.example"
    assert str(reg.requests[0].url).startswith("https://mirror.example/prefix/v2/app/manifests/latest")
    assert "reg.example" in hosts


def test_endpoint_rules() -> None:
    cfg = Config(
        registries={
            "docker.io": RegistryConfig(mirrors=("http://127.0.0.1:5000",), mirror_only=True),
            "insecure.example": RegistryConfig(insecure=True),
        }
    )
    [only] = endpoints_for(cfg, parse("busybox"))
    assert (only.host, only.scheme, only.mirror) == ("127.0.0.1:5000", "http", True)
    assert only.ref.path == "library/busybox"
    assert only.may_use_http and not only.insecure
    [hub] = endpoints_for(Config(), parse("busybox"))
    assert hub.host == "registry-1.docker.io" and not hub.insecure
    assert endpoints_for(cfg, parse("insecure.example/app"))[0].insecure
    # loopback may fall back to plain http, but its certificates are still checked
    local = endpoints_for(Config(), parse("localhost:5000/app"))[0]
    assert local.may_use_http and not local.insecure
    assert endpoints_for(Config(), parse("127.0.0.1:5000/app"))[0].may_use_http
    assert not endpoints_for(Config(), parse("quay.io/app"))[0].may_use_http


def test_challenges_parse() -> None:
    [basic, bearer] = parse_challenges(
        'Basic realm="r", Bearer realm="https://a/t",service="s",scope="repository:x:pull,push"'
    )
    assert basic.scheme == "basic" and basic.params == {"realm": "r"}
    assert bearer.params == {"realm": "https://a/t", "service": "s", "scope": "repository:x:pull,push"}


def _index(*platforms: dict[str, Any]) -> dict[str, Any]:
    return {"manifests": [{"digest": f"sha256:{i}", "platform": p} for i, p in enumerate(platforms)]}


def test_platform_selection() -> None:
    idx = _index(
        {"os": "linux", "architecture": "arm", "variant": "v7"},
        {"os": "linux", "architecture": "arm64", "variant": "v8"},
        {"os": "windows", "architecture": "amd64"},
        {"os": "linux", "architecture": "amd64"},
    )
    assert select_platform(idx, ("linux", "amd64", ""))["digest"] == "sha256:3"
    assert select_platform(idx, ("linux", "arm64", "v8"))["digest"] == "sha256:1"
    assert select_platform(idx, ("linux", "arm", "v7"))["digest"] == "sha256:0"
    assert select_platform(_index({"os": "linux", "architecture": "arm64"}), ("linux", "arm64", "v8"))
    with pytest.raises(Exception, match="linux/s390x"):
        select_platform(idx, ("linux", "s390x", ""))
    attest = {
        "manifests": [
            {
                "digest": "sha256:a",
                "platform": {"os": "linux", "architecture": "amd64"},
                "annotations": {"vnd.docker.reference.type": "attestation-manifest"},
            }
        ]
    }
    with pytest.raises(Exception, match="no image for platform"):
        select_platform(attest, ("linux", "amd64", ""))


def test_blob_redirect_to_storage_drops_the_token() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "storage.example":
            return httpx.Response(200, stream=Streamed(b"blob-bytes"))
        if request.headers.get("authorization") != "Bearer tok":
            return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="https://auth.example/t"'})
        return httpx.Response(307, headers={"Location": "https://storage.example/b/123?sig=x"})

    def tokens(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"access_token": "tok"})

    def route(request: httpx.Request) -> httpx.Response:
        return tokens(request) if request.url.host == "auth.example" else handler(request)

    client = RegistryClient(Config(), transport=httpx.MockTransport(route))

    async def run() -> bytes:
        session = client.session(parse("reg.example/app"), Credentials())
        async with session.blob("sha256:" + "0" * 64) as resp:
            return await resp.aread()

    assert asyncio.run(run()) == b"blob-bytes"
    storage = [r for r in seen if r.url.host == "storage.example"]
    assert len(storage) == 1 and "authorization" not in storage[0].headers


def test_identity_token_uses_the_refresh_grant() -> None:
    reg = ScriptedRegistry()
    creds = Credentials.from_auth(api_pb2.AuthConfig(identity_token="refresh-me"))
    # the scripted token server reads the scope from the query; a POST carries it in the form
    reg_call = reg.__call__

    def post_aware(request: httpx.Request) -> httpx.Response:
        if request.url.host == "auth.example" and request.method == "POST":
            form = dict(x.split("=", 1) for x in request.content.decode().split("&"))
            assert form["grant_type"] == "refresh_token" and form["refresh_token"] == "refresh-me"
            scope = form["scope"].replace("%3A", ":").replace("%2F", "/")
            reg.token_requests.append(request)
            return httpx.Response(200, json={"access_token": f"tok:{scope}", "expires_in": 300})
        return reg_call(request)

    client = RegistryClient(Config(), transport=httpx.MockTransport(post_aware))
    assert fetch(client, "reg.example/app", creds) == MANIFEST
    assert [r.method for r in reg.token_requests] == ["POST"]
