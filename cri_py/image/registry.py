"""A registry client for the distribution API v2 over httpx: endpoints, auth, manifests, blobs.

Endpoints come from `cri_py.image.resolve` (mirrors in order, then the location, never a blocked
one). TLS with the system CAs; plain HTTP only for endpoints configured `insecure`, after https
failed to connect (loopback hosts may fall back to http too, but their certificates are still
verified unless they are configured insecure).

Credentials: those of the request go only to endpoints on the reference's own registry (a
mirror elsewhere must not see a pull secret meant for docker.io, as in containers/image);
without them, or for such a mirror, `auth_file` is looked up for the endpoint's own repository.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx

from cri_py.config.model import Config
from cri_py.errors import CriError, FailedPrecondition, Internal, NotFound, Unavailable
from cri_py.image import mediatypes as mt
from cri_py.image.auth import Challenge, Credentials, parse_challenges
from cri_py.image.auth_file import AuthFile
from cri_py.image.reference import Reference
from cri_py.image.resolve import PullSource, pull_sources

_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
_MANIFEST_MAX = 8 << 20


class RegistryError(Internal):
    """The registry answered something we cannot use."""


class RegistryNotFound(NotFound):
    pass


class RegistryAuthError(FailedPrecondition):
    pass


# the endpoint type: where to connect and which repository to ask for there
Endpoint = PullSource


def endpoints_for(config: Config, ref: Reference) -> list[Endpoint]:
    """Mirrors, then the location, of the rule matching `ref` (registries.conf + `registries`)."""
    return pull_sources(config.effective_registries, ref)


@dataclass
class _Token:
    value: str
    expires: float


class RegistryClient:
    """One per daemon: keeps connections, working schemes and tokens between pulls."""

    def __init__(self, config: Config, transport: httpx.AsyncBaseTransport | None = None) -> None:
        # transport: the network seam, replaced only by unit tests
        self.config = config
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=16)
        # the system's CA store (Debian's /etc/ssl/certs), not httpx's bundled certifi list:
        # a node's operators add their registry CAs there
        system_cas = ssl.create_default_context()
        self._http = httpx.AsyncClient(
            follow_redirects=True, timeout=_TIMEOUT, limits=limits, transport=transport, verify=system_cas
        )
        self._http_noverify = httpx.AsyncClient(
            follow_redirects=True, timeout=_TIMEOUT, limits=limits, verify=False, transport=transport
        )
        self.auth_file = AuthFile(config.auth_file)
        self._schemes: dict[str, str] = {}
        self._tokens: dict[tuple[str, str, str, str], _Token] = {}
        # per endpoint host: the last challenge seen, so later requests authenticate up front
        self._challenges: dict[str, Challenge] = {}

    async def close(self) -> None:
        await self._http.aclose()
        await self._http_noverify.aclose()

    def reload(self, config: Config) -> None:
        self.config = config
        if config.auth_file != self.auth_file.path:
            self.auth_file = AuthFile(config.auth_file)

    def session(self, ref: Reference, creds: Credentials) -> RegistrySession:
        """Raises RegistryBlocked (before any connection) when every endpoint is blocked."""
        return RegistrySession(self, ref, creds, endpoints_for(self.config, ref))

    # auth

    async def _authorization(
        self, ep: Endpoint, repo_path: str, creds: Credentials, challenge: Challenge | None
    ) -> str | None:
        if challenge is None:
            return None
        if challenge.scheme == "basic":
            if creds.anonymous or not creds.username:
                raise RegistryAuthError(f"registry {ep.describe()} asks for credentials and none were given")
            import base64

            return "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
        if challenge.scheme != "bearer":
            raise RegistryAuthError(
                f"registry {ep.describe()} uses unsupported auth scheme {challenge.scheme}"
            )
        if creds.registry_token:
            return f"Bearer {creds.registry_token}"
        realm = challenge.params.get("realm", "")
        service = challenge.params.get("service", "")
        scope = challenge.params.get("scope", "")
        if f":{repo_path}:" not in scope:
            # a challenge remembered from another repository of this host: ask for this one
            scope = f"repository:{repo_path}:pull"
        key = (realm, service, scope, creds.key())
        cached = self._tokens.get(key)
        if cached is not None and cached.expires > time.monotonic():
            return f"Bearer {cached.value}"
        token = await self._fetch_token(ep, realm, service, scope, creds)
        self._tokens[key] = token
        return f"Bearer {token.value}"

    async def _fetch_token(
        self, ep: Endpoint, realm: str, service: str, scope: str, creds: Credentials
    ) -> _Token:
        if not realm.startswith(("https://", "http://")):
            raise RegistryAuthError(f"registry {ep.describe()}: bad token realm {realm!r}")
        client = self._http_noverify if ep.insecure else self._http
        try:
            if creds.identity_token:
                resp = await client.post(
                    realm,
                    data={
                        "grant_type": "refresh_token",
                        "refresh_token": creds.identity_token,
                        "service": service,
                        "scope": scope,
                        "client_id": "cri-py",
                    },
                )
            else:
                params = {"service": service, "scope": scope} if service else {"scope": scope}
                auth = (creds.username, creds.password) if creds.username else None
                resp = await client.get(realm, params=params, auth=auth)
        except httpx.HTTPError as exc:
            raise Unavailable(f"token server {realm} for {ep.describe()}: {exc}") from exc
        if resp.status_code in (401, 403):
            raise RegistryAuthError(
                f"token server {realm} for {ep.describe()} refused the credentials ({resp.status_code})"
            )
        if resp.status_code != 200:
            raise RegistryError(f"token server {realm} answered {resp.status_code}: {resp.text[:200]}")
        body = resp.json()
        value = body.get("token") or body.get("access_token")
        if not value:
            raise RegistryError(f"token server {realm} returned no token")
        expires_in = max(int(body.get("expires_in") or 60), 60)
        # renew a little early so a token never expires in flight
        return _Token(value, time.monotonic() + expires_in - 10)


class RegistrySession:
    """Requests for one repository, on the first endpoint that serves it."""

    def __init__(
        self, client: RegistryClient, ref: Reference, creds: Credentials, eps: list[Endpoint]
    ) -> None:
        self.client = client
        self.ref = ref
        self.creds = creds
        self.endpoints = eps
        self.endpoint: Endpoint | None = None

    def describe(self) -> str:
        ep = self.endpoint or self.endpoints[0]
        return self._what(ep)

    def _base(self, ep: Endpoint, scheme: str) -> str:
        return f"{scheme}://{ep.host}{ep.url_path}/v2/{ep.ref.path}"

    def _what(self, ep: Endpoint) -> str:
        where = ep.describe(self.client._schemes.get(ep.host))
        if ep.ref.repository != self.ref.repository:
            return f"registry {where} ({self.ref} as {ep.ref.repository})"
        return f"registry {where} ({self.ref})"

    def _credentials(self, ep: Endpoint) -> Credentials:
        if not self.creds.anonymous and ep.ref.domain == self.ref.domain:
            return self.creds
        return self.client.auth_file.credentials(ep.ref)

    @asynccontextmanager
    async def _request(
        self, ep: Endpoint, method: str, tail: str, headers: dict[str, str]
    ) -> AsyncIterator[httpx.Response]:
        """A streamed response; authenticates on a 401 challenge and tries http for insecure hosts."""
        schemes = [ep.scheme] if ep.scheme else [self.client._schemes.get(ep.host, "https")]
        if ep.scheme is None and ep.may_use_http and schemes[0] == "https":
            schemes.append("http")
        client = self.client._http_noverify if ep.insecure else self.client._http
        creds = self._credentials(ep)
        last_exc: Exception | None = None
        for scheme in schemes:
            url = f"{self._base(ep, scheme)}/{tail}"
            challenge = self.client._challenges.get(ep.host)
            for _attempt in range(2):
                hdrs = dict(headers)
                authz = await self.client._authorization(ep, ep.ref.path, creds, challenge)
                if authz:
                    hdrs["Authorization"] = authz
                try:
                    req = client.build_request(method, url, headers=hdrs)
                    resp = await client.send(req, stream=True)
                except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                    if _certificate_rejected(exc):
                        # it speaks TLS, so plain http is pointless: say what is wrong
                        raise Unavailable(
                            f"{self._what(ep)}: TLS certificate of {ep.host} is not trusted: {exc}"
                        ) from exc
                    last_exc = exc
                    break
                except httpx.HTTPError as exc:
                    raise Unavailable(f"{self._what(ep)}: {method} {tail}: {exc}") from exc
                if resp.status_code == 401:
                    header = resp.headers.get("www-authenticate", "")
                    await resp.aclose()
                    found = [c for c in parse_challenges(header) if c.scheme in ("bearer", "basic")]
                    if not found or _attempt == 1 and found[0] == challenge:
                        raise RegistryAuthError(f"{self._what(ep)}: {method} {tail}: unauthorized")
                    challenge = found[0]
                    self.client._challenges[ep.host] = challenge
                    continue
                if ep.scheme is None:
                    self.client._schemes[ep.host] = scheme
                try:
                    yield resp
                finally:
                    await resp.aclose()
                return
            else:
                raise RegistryAuthError(f"{self._what(ep)}: {method} {tail}: unauthorized")
        raise Unavailable(f"{self._what(ep)}: cannot connect: {last_exc}")

    async def _error(self, ep: Endpoint, resp: httpx.Response, what: str) -> CriError:
        body = (await resp.aread())[:2000]
        detail = body.decode(errors="replace")
        try:
            import json

            errors = json.loads(body).get("errors") or []
            if errors:
                detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors)
        except (ValueError, AttributeError):
            pass
        msg = f"{self._what(ep)}: {what}: {resp.status_code} {detail}".strip()
        if resp.status_code == 404:
            return RegistryNotFound(msg)
        if resp.status_code in (401, 403):
            return RegistryAuthError(msg)
        if resp.status_code in (429, 502, 503, 504):
            return Unavailable(msg)
        return RegistryError(msg)

    async def manifest(self, target: str | None = None) -> tuple[bytes, str]:
        """Fetch a manifest or index by tag or digest (None: what the reference names at each
        endpoint); the first endpoint that has it serves the rest of the pull."""
        errors: list[str] = []
        candidates = [self.endpoint] if self.endpoint is not None else self.endpoints
        last: CriError | None = None
        for ep in candidates:
            want = target or ep.ref.pull_target
            try:
                async with self._request(ep, "GET", f"manifests/{want}", {"Accept": mt.ACCEPT}) as resp:
                    if resp.status_code != 200:
                        raise await self._error(ep, resp, f"manifest {want}")
                    body = await read_limited(resp, _MANIFEST_MAX, self._what(ep))
                    media_type = resp.headers.get("content-type", "").split(";")[0].strip()
            except (Unavailable, RegistryNotFound, RegistryError, RegistryAuthError) as exc:
                errors.append(str(exc))
                last = exc
                continue
            self.endpoint = ep
            return body, media_type
        assert last is not None
        if len(errors) > 1:
            raise type(last)("; ".join(errors))
        raise last

    @asynccontextmanager
    async def blob(self, digest: str, urls: list[str] | None = None) -> AsyncIterator[httpx.Response]:
        """A streamed 200 response for a blob (follows redirects to blob storage)."""
        ep = self.endpoint or self.endpoints[0]
        async with self._request(ep, "GET", f"blobs/{digest}", {}) as resp:
            if resp.status_code == 200:
                yield resp
                return
            error = await self._error(ep, resp, f"blob {digest}")
        # non-distributable layers may live elsewhere: their descriptor lists the URLs
        for url in urls or []:
            if not url.startswith(("https://", "http://")):
                continue
            try:
                async with self.client._http.stream("GET", url) as resp:
                    if resp.status_code == 200:
                        yield resp
                        return
            except httpx.HTTPError:
                continue
        raise error


def _certificate_rejected(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def read_limited(resp: httpx.Response, limit: int, what: str) -> bytes:
    chunks: list[bytes] = []
    total = 0
    try:
        async for chunk in resp.aiter_raw():
            total += len(chunk)
            if total > limit:
                raise RegistryError(f"{what}: response larger than {limit} bytes")
            chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise Unavailable(f"{what}: reading the response failed: {exc}") from exc
    return b"".join(chunks)
