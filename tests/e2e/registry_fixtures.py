"""Session fixtures: a real docker-registry on 127.0.0.1 with the test images pushed.

Import into a conftest (or a test module) of your own:

    from tests.e2e.registry_fixtures import registry, auth_registry, bench_registry  # noqa: F401

    def test_x(cri_factory, registry):
        cri = cri_factory(registry.daemon_overrides())
        cri.image.PullImage(api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=registry.busybox)))

`registry.daemon_overrides()` marks the registry insecure (plain http) and makes it the mirror
of docker.io, registry.k8s.io, gcr.io and quay.io, so `busybox` resolves to it too.
"""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
TEST_REGISTRY = REPO / "hack" / "test-registry"
BUILD_IMAGES = REPO / "hack" / "build-test-images"
MIRRORED_HOSTS = ("docker.io", "registry.k8s.io", "gcr.io", "quay.io")
AUTH_USER = ("cri-tester", "s3cret-pass")


@dataclass
class TestRegistry:
    __test__ = False  # not a test class, whatever pytest thinks of the name

    host: str  # "127.0.0.1:PORT"
    directory: Path
    images: dict[str, str] = field(default_factory=dict)
    user: tuple[str, str] | None = None
    ca: Path | None = None  # set when the registry serves https with a certificate from this CA
    token_server: Any = None  # the TokenServer of a token-auth registry

    @property
    def url(self) -> str:
        return f"{'https' if self.ca else 'http'}://{self.host}"

    def __getattr__(self, name: str) -> str:
        # busybox, busybox_digest, busybox_id, nonroot, nonroot_numeric, layered, multiarch,
        # multiarch_digest, zstd, dockerv2, bench: whatever hack/build-test-images reported
        images = self.__dict__.get("images", {})
        if name in images:
            return str(images[name])
        raise AttributeError(name)

    def daemon_overrides(self, mirror_upstreams: bool = True) -> dict[str, Any]:
        registries: dict[str, Any] = {self.host: {"insecure": True}}
        if mirror_upstreams:
            for upstream in MIRRORED_HOSTS:
                registries[upstream] = {"mirrors": [self.url], "mirror_only": True}
        return {"registries": registries}

    def push_images(self, only: str) -> dict[str, str]:
        cmd = [sys.executable, str(BUILD_IMAGES), "--registry", self.host, "--only", only]
        if self.user:
            cmd += ["--user", ":".join(self.user)]
        if self.ca:
            cmd += ["--tls-ca", str(self.ca)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO, timeout=300)
        pushed: dict[str, str] = json.loads(out.stdout)
        self.images.update(pushed)
        return pushed


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class _Running:
    registry: TestRegistry
    proc: subprocess.Popen[bytes]


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (it is its own CA)."""
    cert, key = directory / "tls.crt", directory / "tls.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def start_registry(
    user: tuple[str, str] | None = None,
    tls: bool = False,
    timeout: float = 20.0,
    directory: Path | None = None,
    token: tuple[str, Path] | None = None,
    port: int | None = None,
) -> _Running:
    """Start hack/test-registry; with `directory`, reuse that storage (and keep it on failure)."""
    own_dir = directory is None
    directory = directory or Path(tempfile.mkdtemp(prefix="cripy-registry-"))
    cert = make_certificate(directory) if tls else None
    for _attempt in range(5):
        use_port = port or free_port()
        cmd = [sys.executable, str(TEST_REGISTRY), "--dir", str(directory), "--port", str(use_port)]
        if user and not token:
            cmd += ["--htpasswd", ":".join(user)]
        if cert:
            cmd += ["--tls", f"{cert[0]}:{cert[1]}"]
        if token:
            cmd += ["--token-realm", token[0], "--token-cert", str(token[1])]
        log = open(directory / "registry.log", "ab")  # noqa: SIM115 - the registry owns it
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                scheme = "https" if cert else "http"
                status = httpx.get(
                    f"{scheme}://127.0.0.1:{use_port}/v2/", timeout=1.0, verify=False
                ).status_code
                if status in (200, 401):
                    reg = TestRegistry(
                        f"127.0.0.1:{use_port}", directory, user=user, ca=cert[0] if cert else None
                    )
                    return _Running(reg, proc)
            except httpx.HTTPError:
                time.sleep(0.05)
        stop_registry(proc, None)  # port taken or too slow: try another port
    if own_dir:
        shutil.rmtree(directory, ignore_errors=True)
    raise RuntimeError(f"docker-registry did not start; log in {directory}")


def stop_registry(proc: subprocess.Popen[bytes], directory: Path | None) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def running_registry(
    only: str, user: tuple[str, str] | None = None, tls: bool = False
) -> Iterator[TestRegistry]:
    """A registry with the named test images pushed (comma-separated, see hack/build-test-images)."""
    running = start_registry(user, tls)
    try:
        if only:
            running.registry.push_images(only)
        yield running.registry
    finally:
        stop_registry(running.proc, running.registry.directory)


class TokenServer:
    """A distribution token server: checks Basic credentials, hands out ES256-signed JWTs.

    The registry trusts tokens whose `x5c` certificate is in its rootcertbundle; the
    signature is made with openssl (no JOSE library needed).
    """

    def __init__(self, directory: Path, user: tuple[str, str]) -> None:
        self.cert, self.key = make_certificate(directory)
        der = subprocess.run(
            ["openssl", "x509", "-in", str(self.cert), "-outform", "DER"], check=True, capture_output=True
        ).stdout
        self.x5c = base64.b64encode(der).decode()
        self.user = user
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                query = urllib.parse.urlsplit(self.path).query
                params = urllib.parse.parse_qs(query)
                header = self.headers.get("Authorization", "")
                given = base64.b64decode(header[6:]).decode() if header.startswith("Basic ") else ""
                server.requests.append({"params": params, "user": given.partition(":")[0]})
                if given != ":".join(server.user):
                    self.send_response(401)
                    self.end_headers()
                    return
                body = json.dumps({"token": server.token(params), "expires_in": 300}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/token"

    def token(self, params: dict[str, list[str]]) -> str:
        access = []
        for scope in params.get("scope", []):
            kind, name, actions = scope.split(":")
            access.append({"type": kind, "name": name, "actions": actions.split(",")})
        now = int(time.time())
        claims = {
            "iss": "cri-py-test",
            "sub": self.user[0],
            "aud": params.get("service", [""])[0],
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": str(now) + str(len(self.requests)),
            "access": access,
        }
        header = {"typ": "JWT", "alg": "ES256", "x5c": [self.x5c]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        der = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.key)],
            input=signing_input.encode(),
            check=True,
            capture_output=True,
        ).stdout
        return f"{signing_input}.{_b64url(_der_to_raw_ecdsa(der))}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _der_to_raw_ecdsa(der: bytes) -> bytes:
    """JWS wants r || s (32 bytes each); openssl writes SEQUENCE { INTEGER r, INTEGER s }."""
    pos = 2 if der[1] < 0x80 else 2 + (der[1] & 0x7F)
    out = b""
    for _ in range(2):
        assert der[pos] == 0x02
        length = der[pos + 1]
        value = der[pos + 2 : pos + 2 + length]
        out += value.lstrip(b"\x00").rjust(32, b"\x00")
        pos += 2 + length
    return out


@contextlib.contextmanager
def running_token_registry() -> Iterator[TestRegistry]:
    """Busybox behind Bearer token auth: pushed anonymously, then served with token auth."""
    plain = start_registry()
    directory = plain.registry.directory
    token_server: TokenServer | None = None
    try:
        plain.registry.push_images("busybox")
        images = dict(plain.registry.images)
        port = int(plain.registry.host.rsplit(":", 1)[1])
        stop_registry(plain.proc, None)
        token_server = TokenServer(directory, AUTH_USER)
        secured = start_registry(
            AUTH_USER, directory=directory, token=(token_server.realm, token_server.cert), port=port
        )
        secured.registry.images.update(images)
        secured.registry.token_server = token_server
        try:
            yield secured.registry
        finally:
            stop_registry(secured.proc, None)
    finally:
        stop_registry(plain.proc, None)
        if token_server is not None:
            token_server.close()
        shutil.rmtree(directory, ignore_errors=True)


class _Shared:
    """One registry per kind per test process, however many modules import the fixtures.

    A test module that imports a fixture defines its own copy of it, and pytest keeps a
    session-scoped value per definition: without this, every importing module would start
    (and keep until the end of the session) a registry of its own.
    """

    def __init__(self) -> None:
        self._running: dict[str, tuple[contextlib.ExitStack, TestRegistry, int]] = {}

    @contextlib.contextmanager
    def use(self, kind: str, only: str, **kwargs: Any) -> Iterator[TestRegistry]:
        if kind in self._running:
            stack, reg, users = self._running[kind]
            self._running[kind] = (stack, reg, users + 1)
        else:
            stack = contextlib.ExitStack()
            starter = running_token_registry() if kind == "token" else running_registry(only, **kwargs)
            reg = stack.enter_context(starter)
            self._running[kind] = (stack, reg, 1)
        try:
            yield reg
        finally:
            stack, reg, users = self._running[kind]
            if users == 1:
                del self._running[kind]
                stack.close()
            else:
                self._running[kind] = (stack, reg, users - 1)


_SHARED = _Shared()


@pytest.fixture(scope="session")
def registry() -> Iterator[TestRegistry]:
    """Anonymous registry with busybox, nonroot, layered, multiarch, zstd and dockerv2 (not bench)."""
    with _SHARED.use("registry", "busybox,nonroot,layered,multiarch,zstd,dockerv2") as reg:
        yield reg


@pytest.fixture(scope="session")
def auth_registry() -> Iterator[TestRegistry]:
    """A registry that wants HTTP Basic credentials (`reg.user`), with busybox pushed."""
    with _SHARED.use("auth", "busybox", user=AUTH_USER) as reg:
        yield reg


@pytest.fixture(scope="session")
def bench_registry() -> Iterator[TestRegistry]:
    """A registry holding the 100 MB five-layer `bench` image (and busybox)."""
    with _SHARED.use("bench", "busybox,bench") as reg:
        yield reg


@pytest.fixture(scope="session")
def tls_registry() -> Iterator[TestRegistry]:
    """A registry serving https with a self-signed certificate (`reg.ca`), with busybox pushed."""
    with _SHARED.use("tls", "busybox", tls=True) as reg:
        yield reg


@pytest.fixture(scope="session")
def token_registry() -> Iterator[TestRegistry]:
    """Busybox behind Bearer token auth (`reg.user` for the token server, `reg.token_server`)."""
    with _SHARED.use("token", "busybox") as reg:
        yield reg
