"""Registry credentials from a containers-auth.json(5) or Docker config.json file.

Used for pulls whose request carries no credentials (kubelet sends none without pull secrets),
and for mirrors on another host. The file is read again when it changes, so a rotated global
pull secret is used without a reload. The most specific key wins: for
`reg.example/team/app` the keys `reg.example/team/app`, `reg.example/team`, `reg.example`
are tried in that order. Keys with a scheme (`https://index.docker.io/v1/`, Docker's form)
mean their host; docker.io, index.docker.io and registry-1.docker.io are one registry.

Nothing read here is logged or put into an error message: errors name the file and the key.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import threading
from pathlib import Path
from typing import Any

from cri_py.errors import FailedPrecondition
from cri_py.image.auth import Credentials
from cri_py.image.reference import Reference

_DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")
_MAX_SIZE = 4 << 20


class AuthFileError(FailedPrecondition):
    """The auth file exists but cannot be used."""


def normalize_key(key: str) -> str:
    stripped = key.removeprefix("https://").removeprefix("http://")
    if stripped != key:
        stripped = stripped.split("/", 1)[0]  # Docker's "https://index.docker.io/v1/": the host
    host, sep, rest = stripped.partition("/")
    if host in _DOCKER_HUB:
        host = "docker.io"
    return f"{host}{sep}{rest}".rstrip("/")


def lookup_keys(ref: Reference) -> list[str]:
    """Most specific first: repository, its namespaces, then the host."""
    host = "docker.io" if ref.domain in _DOCKER_HUB else ref.domain
    parts = ref.path.split("/")
    keys = [f"{host}/{'/'.join(parts[:n])}" for n in range(len(parts), 0, -1)]
    return [*keys, host]


def parse_auth_file(path: Path, text: str) -> dict[str, Credentials]:
    """Normalized key -> credentials. Raises AuthFileError naming the file (never a secret)."""
    try:
        data = json.loads(text)
    except ValueError:
        raise AuthFileError(f"auth file {path} is not valid JSON") from None
    if not isinstance(data, dict):
        raise AuthFileError(f"auth file {path} is not a JSON object")
    if "auths" in data:
        entries = data["auths"]
        if not isinstance(entries, dict):
            raise AuthFileError(f"auth file {path}: auths is not an object")
    else:
        # the legacy ~/.dockercfg form: registries at the top level
        entries = {k: v for k, v in data.items() if isinstance(v, dict)}
    out: dict[str, Credentials] = {}
    for key, entry in entries.items():
        if not isinstance(entry, dict):
            raise AuthFileError(f"auth file {path}: auths[{key!r}] is not an object")
        creds = _entry(path, key, entry)
        if creds.anonymous:
            continue  # e.g. `{}` left behind by a credential helper login
        normalized = normalize_key(key)
        # a key already in normal form beats a legacy one naming the same registry
        if normalized not in out or key == normalized:
            out[normalized] = creds
    return out


def _entry(path: Path, key: str, entry: dict[str, Any]) -> Credentials:
    def text(name: str) -> str:
        value = entry.get(name, "")
        if not isinstance(value, str):
            raise AuthFileError(f"auth file {path}: auths[{key!r}].{name} is not a string")
        return value

    username, password = text("username"), text("password")
    encoded = text("auth")
    if encoded:
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise AuthFileError(
                f"auth file {path}: auths[{key!r}].auth is not base64 of user:password"
            ) from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise AuthFileError(f"auth file {path}: auths[{key!r}].auth is not base64 of user:password")
    return Credentials(username, password, text("identitytoken"), text("registrytoken"))


class AuthFile:
    """The credentials file of `auth_file`, re-read when its size, time or inode change."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._entries: dict[str, Credentials] = {}

    def credentials(self, ref: Reference) -> Credentials:
        entries = self._current()
        for key in lookup_keys(ref):
            if key in entries:
                return entries[key]
        return Credentials()

    def _current(self) -> dict[str, Credentials]:
        if self.path is None:
            return {}
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise AuthFileError(f"auth file {self.path}: {exc.strerror}") from None
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            if stamp != self._stamp:
                if st.st_size > _MAX_SIZE:
                    raise AuthFileError(f"auth file {self.path} is larger than {_MAX_SIZE} bytes")
                try:
                    text = self.path.read_text()
                except OSError as exc:
                    raise AuthFileError(f"auth file {self.path} cannot be read: {exc.strerror}") from None
                except UnicodeDecodeError:
                    raise AuthFileError(f"auth file {self.path} is not UTF-8 text") from None
                self._entries = parse_auth_file(self.path, text)
                self._stamp = stamp
            return self._entries
