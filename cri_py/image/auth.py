"""Registry credentials and the WWW-Authenticate challenge (RFC 7235 / distribution token auth)."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field

from cri_py.api import api_pb2
from cri_py.errors import InvalidArgument

_PARAM = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)')
_SCHEME = re.compile(r"(?:^|,)\s*([A-Za-z][A-Za-z0-9_-]*)(?=\s+[A-Za-z0-9_-]+\s*=|\s*(?:,|$))")


@dataclass(frozen=True)
class Credentials:
    # secrets stay out of repr: a Credentials in a log line or traceback shows the user only
    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)
    registry_token: str = field(default="", repr=False)

    @property
    def anonymous(self) -> bool:
        return not (self.username or self.password or self.identity_token or self.registry_token)

    def key(self) -> str:
        """Distinguishes token cache entries per credential without keeping secrets in the key."""
        import hashlib

        raw = f"{self.username}\0{self.password}\0{self.identity_token}\0{self.registry_token}"
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    @classmethod
    def from_auth(cls, auth: api_pb2.AuthConfig | None) -> Credentials:
        if auth is None:
            return cls()
        username, password = auth.username, auth.password
        if auth.auth and not username:
            try:
                decoded = base64.b64decode(auth.auth, validate=True).decode()
            except ValueError as exc:
                raise InvalidArgument(f"auth.auth is not base64 of user:password: {exc}") from exc
            username, sep, password = decoded.partition(":")
            if not sep:
                raise InvalidArgument("auth.auth must encode user:password")
        return cls(username, password, auth.identity_token, auth.registry_token)


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower case: "bearer" or "basic"
    params: dict[str, str]


def parse_challenges(header: str) -> list[Challenge]:
    """Split a WWW-Authenticate value into its challenges (several may share one header)."""
    out: list[Challenge] = []
    starts = [(m.start(1), m.group(1)) for m in _SCHEME.finditer(header)]
    for i, (start, scheme) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(header)
        body = header[start + len(scheme) : end]
        params: dict[str, str] = {}
        for m in _PARAM.finditer(body):
            value = m.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            params[m.group(1).lower()] = value
        out.append(Challenge(scheme.lower(), params))
    return out
