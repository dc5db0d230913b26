"""containers-policy.json(5): which images a pull accepts.

Pulls use the `docker` transport. The requirements of the most specific scope apply: the image's
own identity (`host/repo:tag` or `host/repo@digest`), its repository, each parent namespace, the
host, `*.`-wildcarded parent domains, then the transport's `""`, then `default`. Every
requirement of that list must hold: `insecureAcceptAnything` always does, `reject` never (the
pull is refused before any connection), `sigstoreSigned` when a signature from the registry's
sigstore attachments verifies with one of its public keys and names the image
(`cri_py.image.sigstore`). Scopes and identities are the logical names the user asked for,
never a mirror's.

Parsing is strict, like containers/image: unknown or duplicate fields and invalid values reject
the whole file. Fulcio, PKI and Rekor checks, and GPG `signedBy`, are not implemented: a policy
that needs them for pulls is refused with a message saying so rather than half-applied.
No file: every image is accepted.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cri_py.config.errors import ConfigError
from cri_py.errors import FailedPrecondition, InvalidArgument
from cri_py.image.reference import Reference, is_short_name, parse_raw

if TYPE_CHECKING:
    from cri_py.image.registry import RegistrySession

ACCEPT, REJECT, SIGSTORE = "insecureAcceptAnything", "reject", "sigstoreSigned"
IDENTITY_TYPES = (
    "matchExact",
    "matchRepoDigestOrExact",
    "matchRepository",
    "exactReference",
    "exactRepository",
    "remapIdentity",
)
_KEY_FIELDS = ("keyPath", "keyPaths", "keyData", "keyDatas")
_UNSUPPORTED_SIGSTORE = (
    "fulcio",
    "pki",
    "rekorPublicKeyPath",
    "rekorPublicKeyPaths",
    "rekorPublicKeyData",
    "rekorPublicKeyDatas",
)
_MAX_POLICY = 4 << 20

Verifier = Callable[["RegistrySession", bytes], Awaitable[None]]


class PolicyRejected(FailedPrecondition):
    """The signature policy does not accept the image; the message names the rule."""


class PolicyFileError(FailedPrecondition):
    """The policy file exists but cannot be used: no image is accepted until it is fixed."""


@dataclass(frozen=True)
class Identity:
    """`signedIdentity`: which identity a signature must claim for the image."""

    type: str = "matchRepoDigestOrExact"
    reference: Reference | None = None  # exactReference / exactRepository
    prefix: str = ""  # remapIdentity
    signed_prefix: str = ""


@dataclass(frozen=True)
class Requirement:
    type: str
    where: str  # e.g. transports.docker["reg.example/app"][0]
    keys: tuple[Any, ...] = field(default=(), repr=False)  # cryptography public keys
    key_source: str = ""
    identity: Identity = Identity()


@dataclass(frozen=True)
class Policy:
    path: str
    default: tuple[Requirement, ...]
    docker: dict[str, tuple[Requirement, ...]]

    def requirements_for(self, ref: Reference) -> tuple[Requirement, ...]:
        for scope in docker_scopes(ref):
            if scope in self.docker:
                return self.docker[scope]
        return self.docker.get("", self.default)

    def summary(self) -> dict[str, Any]:
        """What `cri-py config` shows: scopes and requirement types, no key material."""
        return {
            "default": [r.type for r in self.default],
            "transports": {"docker": {scope: [r.type for r in reqs] for scope, reqs in self.docker.items()}},
        }


def docker_scopes(ref: Reference) -> list[str]:
    """Most specific first, as containers/image's docker transport lists them."""
    identity = ref.digested() if ref.digest else ref.tagged()
    scopes = [identity] if identity else []
    name = ref.repository
    while True:
        scopes.append(name)
        if "/" not in name:
            break
        name = name.rsplit("/", 1)[0]
    host = name.split(":", 1)[0] if not name.startswith("[") else name
    while "." in host:
        host = host.split(".", 1)[1]
        scopes.append(f"*.{host}")
    return scopes


# parsing


def reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate field {key!r}")
        out[key] = value
    return out


def load_policy(path: Path) -> Policy:
    source = str(path)
    try:
        if path.stat().st_size > _MAX_POLICY:
            raise ConfigError(source, "", f"larger than {_MAX_POLICY} bytes")
        data = json.loads(path.read_text(), object_pairs_hook=reject_duplicate_keys)
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read: {exc.strerror}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(source, "", f"invalid policy JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(source, "", "expected a JSON object")
    for key in data:
        if key not in ("default", "transports"):
            raise ConfigError(source, key, "unknown field")
    if "default" not in data:
        raise ConfigError(source, "default", "is required")
    default = _requirements(source, "default", data["default"], used=True)
    transports = data.get("transports", {})
    if not isinstance(transports, dict):
        raise ConfigError(source, "transports", "expected an object")
    docker: dict[str, tuple[Requirement, ...]] = {}
    for transport, scopes in transports.items():
        if not isinstance(scopes, dict):
            raise ConfigError(source, f"transports.{transport}", "expected an object of scopes")
        for scope, reqs in scopes.items():
            where = f"transports.{transport}[{json.dumps(scope)}]"
            if transport != "docker":
                # never evaluated by cri-py (pulls are docker:); only the shape is checked
                _requirements(source, where, reqs, used=False)
                continue
            _check_docker_scope(source, where, scope)
            docker[scope] = _requirements(source, where, reqs, used=True)
    return Policy(source, default, docker)


def _check_docker_scope(source: str, where: str, scope: str) -> None:
    if scope == "":
        return
    if any(c.isspace() for c in scope):
        raise ConfigError(source, where, "a scope has no whitespace")
    if scope.startswith("*."):
        if any(c in scope for c in "/:@") or ".." in scope or scope.endswith("."):
            raise ConfigError(source, where, "a wildcard scope has the form *.example.com")
        return
    if "/" in scope and is_short_name(scope):
        # it would silently never match: scopes are fully expanded names
        raise ConfigError(source, where, "a scope starts with the registry host (docker.io/library/busybox)")


def _requirements(source: str, where: str, value: Any, used: bool) -> tuple[Requirement, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(source, where, "expected a non-empty list of requirements")
    out = []
    for i, item in enumerate(value):
        key = f"{where}[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("type"), str):
            raise ConfigError(source, key, "expected an object with a type")
        if used:
            out.append(_requirement(source, key, item))
    return tuple(out)


def _requirement(source: str, key: str, item: dict[str, Any]) -> Requirement:
    kind = item["type"]
    if kind in (ACCEPT, REJECT):
        _only(source, key, item, {"type"})
        return Requirement(kind, key)
    if kind == "signedBy":
        raise ConfigError(
            source, key, "signedBy (GPG simple signing) is not supported by cri-py; use sigstoreSigned"
        )
    if kind != SIGSTORE:
        raise ConfigError(source, key, f"unknown requirement type {kind!r}")
    for name in _UNSUPPORTED_SIGSTORE:
        if name in item:
            raise ConfigError(source, f"{key}.{name}", "is not supported by cri-py (public keys only)")
    _only(source, key, item, {"type", "signedIdentity", *_KEY_FIELDS})
    given = [f for f in _KEY_FIELDS if f in item]
    if len(given) != 1:
        raise ConfigError(source, key, f"exactly one of {', '.join(_KEY_FIELDS)} is required")
    keys, key_source = _public_keys(source, f"{key}.{given[0]}", given[0], item[given[0]])
    identity = _identity(source, f"{key}.signedIdentity", item.get("signedIdentity"))
    return Requirement(SIGSTORE, key, keys, key_source, identity)


def _only(source: str, key: str, item: dict[str, Any], allowed: set[str]) -> None:
    for name in item:
        if name not in allowed:
            raise ConfigError(source, f"{key}.{name}", "unknown field")


def _public_keys(source: str, key: str, kind: str, value: Any) -> tuple[tuple[Any, ...], str]:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    many = kind in ("keyPaths", "keyDatas")
    values = value if many else [value]
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
        raise ConfigError(
            source, key, "expected a non-empty list of strings" if many else "expected a string"
        )
    keys = []
    for i, item in enumerate(values):
        where = f"{key}[{i}]" if many else key
        if kind in ("keyPath", "keyPaths"):
            try:
                pem = Path(item).read_bytes()
            except OSError as exc:
                raise ConfigError(source, where, f"{item}: {exc.strerror}") from None
        else:
            try:
                pem = base64.b64decode(item, validate=True)
            except binascii.Error:
                raise ConfigError(source, where, "is not base64") from None
        try:
            public = load_pem_public_key(pem)
        except ValueError as exc:
            raise ConfigError(source, where, f"not a PEM public key: {exc}") from None
        if not isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
            raise ConfigError(source, where, f"unsupported key type {type(public).__name__}")
        keys.append(public)
    described = ", ".join(values) if kind in ("keyPath", "keyPaths") else f"{len(values)} key(s) in {kind}"
    return tuple(keys), described


def _identity(source: str, key: str, value: Any) -> Identity:
    if value is None:
        return Identity()
    if not isinstance(value, dict) or value.get("type") not in IDENTITY_TYPES:
        raise ConfigError(source, key, f"type must be one of {', '.join(IDENTITY_TYPES)}")
    kind = value["type"]
    fields = {
        "exactReference": {"type", "dockerReference"},
        "exactRepository": {"type", "dockerRepository"},
        "remapIdentity": {"type", "prefix", "signedPrefix"},
    }.get(kind, {"type"})
    _only(source, key, value, fields)
    missing = fields - set(value)
    if missing:
        raise ConfigError(source, key, f"{kind} needs {', '.join(sorted(missing))}")
    if kind in ("exactReference", "exactRepository"):
        name = "dockerReference" if kind == "exactReference" else "dockerRepository"
        try:
            ref = parse_raw(value[name])
        except (InvalidArgument, TypeError) as exc:
            raise ConfigError(source, f"{key}.{name}", f"invalid reference: {exc}") from None
        tagged = bool(ref.tag or ref.digest)
        if tagged != (kind == "exactReference"):
            raise ConfigError(
                source, f"{key}.{name}", "exactReference needs a tag or digest; exactRepository none"
            )
        return Identity(kind, reference=ref)
    if kind == "remapIdentity":
        for name in ("prefix", "signedPrefix"):
            if not isinstance(value[name], str) or not value[name] or any(c in value[name] for c in "@ "):
                raise ConfigError(source, f"{key}.{name}", "expected a host[:port] or repository namespace")
        return Identity(kind, prefix=value["prefix"], signed_prefix=value["signedPrefix"])
    return Identity(kind)


# the policy file of a running daemon


class PolicyFile:
    """`signature_policy`, re-read when it changes (like containers/image, at each pull)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._policy: Policy | None = None

    def current(self) -> Policy | None:
        """None: no policy file, every image is accepted. A broken file refuses every pull."""
        if self.path is None:
            return None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise PolicyFileError(f"signature policy {self.path}: {exc.strerror}") from None
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            if stamp != self._stamp:
                try:
                    self._policy = load_policy(self.path)
                except ConfigError as exc:
                    raise PolicyFileError(f"signature policy unusable, no image is accepted: {exc}") from None
                self._stamp = stamp
            return self._policy


def check(policy: Policy | None, ref: Reference) -> Verifier | None:
    """Refuse what the policy rejects outright; return the signature check still to make, if any."""
    if policy is None:
        return None
    requirements = policy.requirements_for(ref)
    for req in requirements:
        if req.type == REJECT:
            raise PolicyRejected(
                f"image {ref} is rejected by signature policy {policy.path}: {req.where} is reject"
            )
    signed = [r for r in requirements if r.type == SIGSTORE]
    if not signed:
        return None

    async def verify(session: RegistrySession, manifest: bytes) -> None:
        from cri_py.image.sigstore import fetch_signatures, verify_requirement

        signatures = await fetch_signatures(session, manifest)
        for req in signed:
            problem = verify_requirement(req, ref, manifest, signatures)
            if problem:
                raise PolicyRejected(
                    f"image {ref} is rejected by signature policy {policy.path}: {req.where} ({SIGSTORE}): {problem}"
                )

    return verify
